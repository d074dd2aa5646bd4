"""How every speed benchmark measures, so a busy machine cannot flatter one method over another.

* The load average is recorded before and after, and the CPU time that other processes used
  during the run (``/proc/stat`` minus this process). A run is noisy when the 1-minute load
  average exceeded the core count before it started, or other processes took more than
  ``OTHERS_LIMIT`` of the cores' time while it ran. (The load average after the run is not the
  test: a benchmark that keeps every core busy lifts it to the core count by itself; where
  ``/proc/stat`` is missing it is the fallback.) A noisy run says so on its result line and
  writes no result file unless ``--allow-noisy`` (the file then says it is noisy).
* Methods run in alternating order over repeats (A B, B A, A B, ...): a load drift during the
  run hits every method alike, and each method's median over the repeats is reported.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

OTHERS_LIMIT = 0.10


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (zeros where the OS does not report them)."""
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


def busy_cpu_seconds() -> float | None:
    """CPU seconds all processes spent busy since boot (user, nice, system, irq, softirq, steal), or None."""
    try:
        with open("/proc/stat") as fh:
            fields = fh.readline().split()
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds this process (all threads) and its finished children used."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class LoadRecord:
    """The load around a measurement and the verdict on it; created when the measurement starts."""

    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    before: tuple[float, float, float] = field(default_factory=lambda: load_average())  # looked up at call time
    after: tuple[float, float, float] | None = None
    others_share: float | None = None  # share of the cores' time used by other processes during the run
    _start: tuple[float, float | None, float] = field(
        default_factory=lambda: (time.monotonic(), busy_cpu_seconds(), own_cpu_seconds()), repr=False
    )

    def stop(self) -> None:
        """Record the load average and the other processes' CPU share at the end of the measurement."""
        self.after = load_average()
        wall0, busy0, own0 = self._start
        busy = busy_cpu_seconds()
        wall = time.monotonic() - wall0
        if busy is not None and busy0 is not None and wall > 0:
            others = (busy - busy0) - (own_cpu_seconds() - own0)
            self.others_share = max(0.0, others) / (self.cores * wall)

    @property
    def noisy(self) -> bool:
        """Whether other work shared the cores: see the module docstring for the rule."""
        if self.before[0] > self.cores:
            return True
        if self.others_share is not None:
            return self.others_share > OTHERS_LIMIT
        return self.after is not None and self.after[0] > self.cores

    def describe(self) -> str:
        """``load average (1 min) 0.41 -> 2.02 on 2 cores, other processes 1% of CPU time`` (+ NOISY)."""
        after = f"{self.after[0]:.2f}" if self.after is not None else "?"
        text = f"load average (1 min) {self.before[0]:.2f} -> {after} on {self.cores} cores"
        if self.others_share is not None:
            text += f", other processes {self.others_share:.0%} of the CPU time"
        if self.noisy:
            text += " -- NOISY: other processes shared the cores"
        return text


def write_refusal(load: LoadRecord, allow_noisy: bool) -> str | None:
    """Why a result file must not be written (a noisy run without ``--allow-noisy``), else None."""
    if load.noisy and not allow_noisy:
        return f"not writing the result file: {load.describe()}; rerun on a quiet machine or pass --allow-noisy"
    return None


def alternating_orders(names: Sequence[str], repeats: int) -> list[list[str]]:
    """The order of the methods in each repeat: as given, reversed, as given, ... (A B, B A, A B)."""
    return [list(names) if r % 2 == 0 else list(reversed(names)) for r in range(repeats)]


def median(values: Sequence[float]) -> float:
    """The median of the repeats."""
    return float(statistics.median(values))
