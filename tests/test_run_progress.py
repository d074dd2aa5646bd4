"""`mbench run` logging to a file (a Slurm job's output) reports progress as plain lines, not a redrawn bar.

The reporter itself (mbench/progress.py, shared with the search stage) has its own tests.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_run_logging_to_a_file_writes_plain_progress_lines(tmp_path: Path) -> None:
    # Regression: tqdm's carriage returns piled up in log files; a file gets lines with rate and count.
    log = tmp_path / "run.log"
    env = {**os.environ, "MBENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    with log.open("w") as handle:
        subprocess.run([sys.executable, "-m", "mbench", "run", "--model", "hash-embed", "--tasks", "mini.beir.towns",
                        "--results-dir", str(tmp_path / "results")], stderr=handle, stdout=subprocess.DEVNULL,
                       env=env, check=True, timeout=300)
    text = log.read_text()
    assert "\r" not in text
    assert re.search(r"^encode queries mini\.beir\.towns: 50/50 items, [0-9.]+[kMG]? items/s", text, re.M), text
    assert re.search(r"^encode candidates mini\.beir\.towns pool: 200/200 items, ", text, re.M), text
