"""Helpers shared by the dataset adapters: id checks, problem lists, and the data warning type."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mbench.errors import MbenchError

if TYPE_CHECKING:
    import pandas as pd


class DataWarning(UserWarning):
    """Something in a dataset that does not stop loading but that the user should know about."""


def require_column(frame: pd.DataFrame, column: str, path: Path) -> None:
    """Error naming ``path:line`` of the first row whose ``column`` is null."""
    missing = frame[column].isna().to_numpy().nonzero()[0]
    if missing.size:
        raise MbenchError(f"{path}:{int(missing[0]) + 1}: missing {column!r} ({missing.size} rows lack it)")


def duplicate_lines(ids: pd.Series) -> list[tuple[str, int, int]]:
    """Every id that occurs more than once, as (id, first 1-based row, repeated 1-based row)."""
    repeated = ids.duplicated(keep=False)
    if not repeated.any():
        return []
    first: dict[str, int] = {}
    out = []
    for row, item_id in zip(repeated.to_numpy().nonzero()[0].tolist(), ids[repeated].tolist()):
        if item_id in first:
            out.append((item_id, first[item_id] + 1, row + 1))
        else:
            first[item_id] = row
    return out


def check_unique(ids: pd.Series, path: Path, what: str, problems: Problems) -> None:
    """Record every id that occurs twice in ``path``, with both line numbers."""
    for item_id, first, again in duplicate_lines(ids):
        problems.add(f"duplicate {what}", f"{path}:{again}: duplicate {what} {item_id!r} (first at line {first})")


def absolute_paths(root: Path, relative: Sequence[str | None]) -> list[str | None]:
    """Join relative image paths onto ``root`` (None stays None), as absolute path strings."""
    base = os.path.abspath(root)
    return [None if p is None else os.path.join(base, p) for p in relative]


def hub_offline() -> bool:
    """Whether the user asked the Hugging Face libraries to stay offline."""
    value = os.environ.get("HF_HUB_OFFLINE", "") or os.environ.get("HF_DATASETS_OFFLINE", "")
    return value.strip().lower() not in ("", "0", "false", "no", "off")


class Problems:
    """Collects every problem found while loading a dataset, so one error lists them all."""

    # Enough lines to locate a systematic fault; the count says how many more there are.
    SHOWN_PER_KIND = 20

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._per_kind: dict[str, int] = {}

    def add(self, kind: str, message: str) -> None:
        """Record one problem of ``kind`` (a short label used to cap repetitive lists)."""
        count = self._per_kind.get(kind, 0) + 1
        self._per_kind[kind] = count
        if count <= self.SHOWN_PER_KIND:
            self.lines.append(message)

    def __bool__(self) -> bool:
        return bool(self._per_kind)

    def raise_if_any(self, what: str) -> None:
        """Raise one MbenchError listing every recorded problem."""
        if not self:
            return
        lines = list(self.lines)
        for kind, count in self._per_kind.items():
            if count > self.SHOWN_PER_KIND:
                lines.append(f"... and {count - self.SHOWN_PER_KIND} more {kind} problems")
        total = sum(self._per_kind.values())
        raise MbenchError(f"{what}: {total} problem(s):\n  " + "\n  ".join(lines))
