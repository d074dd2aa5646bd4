"""What every benchmark records about the machine it ran on (CPU model, cores, RAM, OS, Python)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_facts() -> dict[str, str]:
    """CPU model, core count, RAM, OS and Python version of this machine; libraries are added by each bench."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0])
        ram = f"{kb / 2**20:.1f} GiB"
    except (OSError, IndexError, ValueError):
        pass
    return {"CPU": cpu, "cores": str(os.cpu_count()), "RAM": ram, "OS": platform.platform(),
            "Python": platform.python_version()}
