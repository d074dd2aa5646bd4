"""Shared fixtures: where the read-only `../shared` material lives."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The `../shared` folder beside the checkout (data and published reference numbers)."""
    if not (SHARED / "data").is_dir():
        pytest.fail(f"../shared is missing: expected it at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def minilm_scifact_run(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results directory holding `mbench run --model minilm --tasks mteb.scifact` on ../shared/data.

    Encoding SciFact takes minutes on a 2-core CPU, so every test that needs this run shares it.
    """
    import os

    from mbench.cli import main

    root = tmp_path_factory.mktemp("minilm-scifact")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    argv = ["run", "--model", "minilm", "--tasks", "mteb.scifact", "--data-dir", str(shared_dir / "data"),
            "--results-dir", str(root / "results"), "--cache-dir", str(root / "cache"), "--no-progress"]
    assert main(argv) == 0
    return root / "results"
