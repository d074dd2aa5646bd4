"""JSON-lines files (one JSON object per line: BEIR corpora and queries, M-BEIR query and pool files):
the one reader and the one writer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from mbench.errors import MbenchError
from mbench.formats.atomic import atomic_write_bytes

if TYPE_CHECKING:
    import pandas as pd


def read_jsonl(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    """Read the given columns of a JSONL file (``{name: "string" | "int64" | "list<string>"}``).

    pyarrow parses the file in native code (the M-BEIR global pool has 5.6M rows); other keys
    are ignored and missing keys read as null. A malformed line is an error naming the file.
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


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, object]]) -> None:
    """Write one JSON object per line (UTF-8, non-ASCII kept as is)."""
    atomic_write_bytes(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8"))
