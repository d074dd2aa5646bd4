"""Shared fixtures: where the read-only shared material (real data, published numbers) lives.

One setting locates it: `MBENCH_SHARED`, a folder holding `data/` (SciFact, CIRCO annotations,
M-BEIR rows, trec_eval's test suite, ...) and `reference/` (published tables and result files);
it defaults to the `shared` folder beside the checkout. A fresh clone without it skips the tests
that need it, with the reason shown; under CI (`CI` set) its absence is a failure, so CI can
never skip them silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_root() -> Path:
    """The shared folder named by MBENCH_SHARED, else the `shared` folder beside the checkout."""
    return Path(os.environ.get("MBENCH_SHARED") or REPO_ROOT.parent / "shared").expanduser()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared folder (data and published reference numbers); skips (fails under CI) when absent."""
    root = shared_root()
    if not (root / "data").is_dir():
        reason = (f"real test data not found at {root}: set MBENCH_SHARED to a folder holding data/ "
                  "(SciFact in BEIR format, CIRCO annotations, M-BEIR rows, trec_eval's test suite) and reference/ "
                  "(published results), as the project's shared folder lays them out")
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI must not skip these tests)")
        pytest.skip(reason)
    return root


@pytest.fixture(scope="session")
def minilm_scifact_run(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results directory holding `mbench run --model minilm --tasks mteb.scifact` on the shared SciFact.

    Encoding SciFact takes minutes on a 2-core CPU, so every test that needs this run shares it.
    """
    from mbench.cli import main

    root = tmp_path_factory.mktemp("minilm-scifact")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    argv = ["run", "--model", "minilm", "--tasks", "mteb.scifact", "--data-dir", str(shared_dir / "data"),
            "--results-dir", str(root / "results"), "--cache-dir", str(root / "cache"), "--no-progress"]
    assert main(argv) == 0
    return root / "results"
