"""Command-line behaviour every subcommand shares: exact option names, quiet closed pipes, the shared-data setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mbench.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_an_abbreviated_option_is_refused_not_read_as_a_longer_one(capsys: pytest.CaptureFixture[str]) -> None:
    # `mbench plot` has --tasks-dir; `--tasks-d` must not be taken for it.
    with pytest.raises(SystemExit) as exit_:
        main(["plot", "spec", "--out", "figs", "--tasks-d", "x"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --tasks-d x" in capsys.readouterr().err


def test_an_abbreviated_option_of_a_nested_subcommand_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["cache", "verify", "--cache", "/tmp"])
    assert "unrecognized arguments: --cache /tmp" in capsys.readouterr().err


def test_output_into_a_closed_pipe_ends_without_a_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before mbench writes its first line, as with `| head` quitting
    proc = subprocess.Popen([sys.executable, "-m", "mbench", "ls", "tasks"], stdout=write_end,
                            stderr=subprocess.PIPE, cwd=REPO_ROOT)
    os.close(write_end)
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 0
    assert stderr == ""


def _pytest_without_shared_data(tmp_path: Path, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["MBENCH_SHARED"] = str(tmp_path / "nowhere")
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                           "tests/test_data_circo.py::test_val_annotations_count"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True)


def test_missing_shared_data_skips_with_the_reason_outside_ci(tmp_path: Path) -> None:
    proc = _pytest_without_shared_data(tmp_path, ci=False)
    assert proc.returncode == 0, proc.stdout
    assert "1 skipped" in proc.stdout and "set MBENCH_SHARED" in proc.stdout


def test_missing_shared_data_fails_under_ci(tmp_path: Path) -> None:
    proc = _pytest_without_shared_data(tmp_path, ci=True)
    assert proc.returncode == 1
    assert "CI must not skip these tests" in proc.stdout
