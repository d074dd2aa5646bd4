"""Helpers shared by the dataset adapters: fast JSONL reading, id checks, and the data warning type."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from mbench.errors import MbenchError


class DataWarning(UserWarning):
    """Something in a dataset that does not stop loading but that the user should know about."""


def read_jsonl(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    """Read the given columns of a JSONL file (``{name: "string" | "int64" | "list<string>"}``).

    pyarrow parses the file in native code (the M-BEIR global pool has 5.6M rows); other keys
    are ignored and missing keys read as null. A malformed line is an error naming the file.
    """
    if not path.is_file():
        raise MbenchError(f"{path}: file not found")
    import pyarrow as pa
    import pyarrow.json as pj

    types = {"string": pa.string(), "int64": pa.int64(), "list<string>": pa.list_(pa.string())}
    schema = pa.schema([(name, types[kind]) for name, kind in columns.items()])
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(path, parse_options=options, read_options=pj.ReadOptions(block_size=1 << 24))
    except pa.ArrowInvalid as err:
        if path.stat().st_size == 0:
            return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
        # pyarrow names no line; a Python pass finds the first offending one for the message.
        raise MbenchError(f"{_first_bad_json_line(path, columns)}: {err}") from None
    frame = table.select(list(columns)).to_pandas()
    for name, kind in columns.items():
        if kind == "string":
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    return frame


def _first_bad_json_line(path: Path, columns: dict[str, str]) -> str:
    """``file:line`` of the first line that is not a JSON object with well-typed columns."""
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                return f"{path}:{number}"
            if not isinstance(row, dict):
                return f"{path}:{number}"
            for name, kind in columns.items():
                value = row.get(name)
                if value is None:
                    continue
                if kind == "string" and not isinstance(value, str):
                    return f"{path}:{number} (key {name!r})"
                if kind == "int64" and not isinstance(value, int):
                    return f"{path}:{number} (key {name!r})"
                if kind == "list<string>" and not isinstance(value, list):
                    return f"{path}:{number} (key {name!r})"
    return str(path)


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


def inside_folder(folder: Path, relative: str) -> Path:
    """``folder / relative``, refused when it resolves outside ``folder`` (a symlink out of the task's data).

    Task YAMLs name files relative to the task's data folder and cannot climb out with ``..``
    (the schema refuses it); this catches the same escape through a symlink.
    """
    path = folder / relative
    base = folder.resolve()
    resolved = path.resolve()
    if resolved != base and base not in resolved.parents:
        raise MbenchError(
            f"{path}: resolves to {resolved}, outside the task's data folder {base}; a file named by a task "
            "YAML must lie inside its data folder (a symlink out of it is refused)"
        )
    return path


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
