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
