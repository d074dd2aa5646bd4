"""Progress reporting: a bar on a terminal, plain periodic lines (items/s, ETA) in a log file."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

from mbench.progress import PlainProgress, progress

REPO_ROOT = Path(__file__).resolve().parents[1]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_gets_plain_lines_with_rate_and_eta_and_no_carriage_returns() -> None:
    log = io.StringIO()
    reporter = PlainProgress(10, "encode queries", "items", stream=log, every=0.0)
    reporter.update(4)
    reporter.update(6)
    reporter.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert len(lines) == 3  # one per update (every=0), and the closing line
    assert re.fullmatch(r"encode queries: 4/10 items, [0-9.]+[kMG]? items/s, ETA \d+:\d\d:\d\d", lines[0])
    assert re.fullmatch(r"encode queries: 10/10 items, [0-9.]+[kMG]? items/s, \d+:\d\d:\d\d elapsed", lines[2])


def test_a_log_is_not_flooded_between_intervals() -> None:
    log = io.StringIO()
    reporter = PlainProgress(1000, "rerank", "pairs", stream=log, every=3600.0)
    for _ in range(1000):
        reporter.update(1)
    reporter.close()
    assert log.getvalue().count("\n") == 1  # only the closing line


def test_a_terminal_gets_a_redrawn_bar() -> None:
    terminal = _Terminal()
    reporter = progress(10, "encode", "items", stream=terminal)
    reporter.update(10)
    reporter.close()
    assert "\r" in terminal.getvalue() and "10/10" in terminal.getvalue()


def test_a_non_terminal_stream_gets_the_plain_reporter_and_disabled_gets_nothing() -> None:
    assert isinstance(progress(10, "encode", "items", stream=io.StringIO()), PlainProgress)
    log = io.StringIO()
    quiet = progress(10, "encode", "items", stream=log, enabled=False)
    quiet.update(10)
    quiet.close()
    assert log.getvalue() == ""


def test_run_logging_to_a_file_writes_plain_progress_lines(tmp_path: Path) -> None:
    # Regression: tqdm's carriage returns piled up in log files (Slurm jobs); a file gets lines.
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
