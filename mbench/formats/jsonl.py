"""JSON-lines files (one JSON object per line: BEIR corpora and queries, M-BEIR query and pool files):
the one reader and the one writer.

pyarrow parses the file in native code (the M-BEIR global pool has 5.6M rows). When it refuses
the file, a Python pass over the lines finds the first bad one and names it (``file:line``):
not UTF-8, not JSON, not an object, a key given twice, NaN, or a column of the wrong type.
Blank lines are skipped, so a row's line number is found by counting non-blank lines, which is
done only to name a line in an error.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from mbench.errors import MbenchError
from mbench.formats.atomic import atomic_write_bytes
from mbench.formats.columns import loads_strict

if TYPE_CHECKING:
    import pandas as pd

_BOM = b"\xef\xbb\xbf"
_KINDS = {"string": str, "int64": int, "list<string>": list}


def read_jsonl(path: Path, columns: dict[str, str], *, integer_ids: Iterable[str] = ()) -> pd.DataFrame:
    """Read the given columns of a JSONL file (``{name: "string" | "int64" | "list<string>"}``).

    Other keys are ignored and missing keys read as null. ``integer_ids`` are string columns
    whose values may also be JSON integers (BEIR ids written as numbers); they read as text.
    Any bad line is an error naming ``file:line``.
    """
    if not path.is_file():
        raise MbenchError(f"{path}: file not found")
    import pandas as pd
    import pyarrow as pa
    import pyarrow.json as pj

    types = {"string": pa.string(), "int64": pa.int64(), "list<string>": pa.list_(pa.string())}
    schema = pa.schema([(name, types[kind]) for name, kind in columns.items()])
    options = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(path, parse_options=options, read_options=pj.ReadOptions(block_size=1 << 24))
        # The parser does not check that strings are UTF-8; the conversion to Python objects does.
        frame = table.select(list(columns)).to_pandas()
        for name, kind in columns.items():
            if kind == "string":
                frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
    except pa.ArrowException as err:
        if path.stat().st_size == 0:
            return pd.DataFrame({name: pd.Series(dtype=object) for name in columns})
        rows = _python_rows(path, columns, set(integer_ids))
        if rows is None:
            raise MbenchError(f"{path}: not JSON lines: {err}") from None
        return pd.DataFrame({name: pd.Series([row.get(name) for row in rows], dtype=object) for name in columns})
    return frame


def _python_rows(path: Path, columns: dict[str, str], integer_ids: set[str]) -> list[dict] | None:
    """Every row, read line by line with the same rules; the first bad line raises MbenchError.

    Returns None when every line is good by these rules, so pyarrow's refusal had another cause.
    A row whose integer id made pyarrow refuse the file is returned with the id as text.
    """
    rows, converted = [], False
    for number, line in _numbered_lines(path):
        try:
            row = loads_strict(line)
        except ValueError as err:  # JSONDecodeError, StrictJsonError (a repeated key, NaN)
            raise MbenchError(f"{path}:{number}: not a JSON object: {err}") from None
        if not isinstance(row, dict):
            raise MbenchError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        for name, kind in columns.items():
            value = row.get(name)
            if value is None:
                continue
            if name in integer_ids and isinstance(value, int) and not isinstance(value, bool):
                row[name], converted = str(value), True
                continue
            if not isinstance(value, _KINDS[kind]) or isinstance(value, bool) or (
                kind == "list<string>" and not all(isinstance(v, str) for v in value)
            ):
                raise MbenchError(f"{path}:{number}: {name!r} is {json.dumps(value)[:80]}, expected a {kind.replace('int64', 'integer')}")
        rows.append(row)
    return rows if converted else None


def _numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The non-blank lines of ``path`` with their 1-based numbers, decoded (a bad byte names its line)."""
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1:
                raw = raw.removeprefix(_BOM)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise MbenchError(f"{path}:{number}: not valid UTF-8 ({err.reason} at byte {err.start} of the line)") from None
            if text.strip():
                yield number, text


def line_numbers(path: Path, rows: Sequence[int]) -> dict[int, int]:
    """The 1-based line number of each 0-based row (blank lines hold no row); a scan, for error messages."""
    wanted = set(int(r) for r in rows)
    found: dict[int, int] = {}
    if not wanted:
        return found
    last = max(wanted)
    for row, (number, _) in enumerate(_numbered_lines(path)):
        if row in wanted:
            found[row] = number
        if row >= last:
            break
    return found


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, object]]) -> None:
    """Write one JSON object per line (UTF-8, non-ASCII kept as is)."""
    atomic_write_bytes(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8"))
