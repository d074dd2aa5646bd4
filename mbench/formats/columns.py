"""Reading input files with errors that name them: raw bytes (gzip or not), JSON, and fast parsing of
whitespace- or tab-separated column files (TREC runs, qrels) with file:line errors.

Files are parsed in one pass by pyarrow's multithreaded CSV reader, never a Python loop per
line. Only when that parse fails, or a reader finds a bad row afterwards, is the file scanned
line by line, to name the offending line as ``file:line: text``.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mbench.errors import MbenchError

if TYPE_CHECKING:
    import pyarrow as pa

# Kinds of column: "str" kept as text, "float" and "int" converted, "any" checked to exist only.
KINDS = ("str", "float", "int", "any")

_GZIP_MAGIC = b"\x1f\x8b"
_FLOAT_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity)", re.IGNORECASE)
# As strict as pyarrow's integer parser, which rejects a leading "+".
_INT_RE = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Column:
    """One column of a file: its name (used in messages) and kind (see ``KINDS``)."""

    name: str
    kind: str = "any"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column kind {self.kind!r} is not one of {KINDS}")


def read_bytes(path: str | Path) -> bytes:
    """The content of ``path``, decompressed when it is gzip (detected by its magic bytes)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MbenchError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise MbenchError(f"{path}: is a directory, expected a file") from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise MbenchError(f"{path}: corrupt gzip file ({err})") from None
    return raw


def read_json(path: str | Path) -> object:
    """The JSON value in ``path`` (gzip or not); invalid JSON is an error naming the file."""
    try:
        return json.loads(read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MbenchError(f"{path}: not valid JSON ({err})") from None


def read_head(path: str | Path, size: int = 4096) -> bytes:
    """The first ``size`` bytes of ``path`` (decompressed when gzip), to tell formats apart cheaply."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(size)
    except FileNotFoundError:
        raise MbenchError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise MbenchError(f"{path}: is a directory, expected a file") from None
    if head[:2] != _GZIP_MAGIC:
        return head
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read(size)
    except (OSError, EOFError) as err:
        raise MbenchError(f"{path}: corrupt gzip file ({err})") from None


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Every line of ``path`` (gzip or not) as (1-based number, text without the newline), streamed."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == _GZIP_MAGIC
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as stream:
        for number, line in enumerate(stream, start=1):
            try:
                yield number, line.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                raise MbenchError(f"{path}:{number}: not valid UTF-8: {line[:200]!r}") from None


def data_lines(path: str | Path, header: bool = False) -> Iterator[tuple[int, str]]:
    """The non-blank lines of ``path`` after the header line (if any): what a parse turns into rows."""
    for number, line in iter_lines(path):
        if header and number == 1:
            continue
        if line.strip():
            yield number, line


def lines_of_rows(path: str | Path, rows: Sequence[int], header: bool = False) -> dict[int, tuple[int, str]]:
    """For each 0-based data row, its (line number, text); a scan of the file, for error messages only."""
    wanted = set(int(r) for r in rows)
    found: dict[int, tuple[int, str]] = {}
    last = max(wanted, default=-1)
    for row, (number, line) in enumerate(data_lines(path, header)):
        if row in wanted:
            found[row] = (number, line)
        if row >= last:
            break
    return found


def bad_row(path: str | Path, row: int, message: str, header: bool = False) -> MbenchError:
    """An error naming the file:line of a 0-based data row, the message and the line's text."""
    number, text = lines_of_rows(path, [row], header).get(row, (0, ""))
    return MbenchError(f"{path}:{number}: {message}: {text.strip()!r}")


def read_columns(
    path: str | Path,
    columns: Sequence[Column],
    *,
    what: str,
    delimiter: str | None = None,
    header: Sequence[str] | None = None,
) -> pa.Table:
    """Parse ``path`` into a table of its "str", "float" and "int" columns.

    ``delimiter`` None means runs of spaces and tabs (TREC files); a single character means
    exactly that character (BEIR TSV). ``header``, if given, is the exact expected first line.
    ``what`` names the format in messages, e.g. "TREC run (qid Q0 docid rank score tag)".
    Blank lines are skipped. Any malformed line raises MbenchError naming file:line.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    raw = read_bytes(path)
    if header is not None:
        first, _, raw = raw.partition(b"\n")
        got = first.decode("utf-8", errors="replace").rstrip("\r").split(delimiter)
        if got != list(header):
            raise MbenchError(f"{path}:1: expected the header {'<TAB>'.join(header)!r} of a {what}, got {first[:200]!r}")
    sep = " " if delimiter is None else delimiter
    if delimiter is None and (b"\t" in raw or b"\r" in raw):
        raw = raw.translate(bytes.maketrans(b"\t\r", b"  "))
    elif delimiter is not None and b"\r" in raw:
        raw = raw.replace(b"\r\n", b"\n")
    names = [c.name for c in columns]
    types = {c.name: {"str": pa.string(), "float": pa.float64(), "int": pa.int64(), "any": pa.string()}[c.kind] for c in columns}

    def parse(data: bytes) -> pa.Table | None:
        try:
            table = pa_csv.read_csv(
                pa.py_buffer(data),
                read_options=pa_csv.ReadOptions(column_names=names),
                parse_options=pa_csv.ParseOptions(delimiter=sep, quote_char=False),
                # Empty strings become nulls so that a doubled delimiter (an empty field) shows up.
                convert_options=pa_csv.ConvertOptions(
                    column_types=types, null_values=[""], strings_can_be_null=True
                ),
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            return None
        if any(table[name].null_count for name in names):
            return None
        return table

    # isspace() stops at the first other byte: O(1) on any real file, unlike strip().
    table = _empty_table(names, types) if not raw or raw.isspace() else parse(raw)
    if table is None and delimiter is None:
        # Aligned files (several spaces between fields, indented lines) are valid TREC input:
        # collapse the runs of spaces and strip each line, then parse again.
        raw = re.sub(rb" {2,}", b" ", raw).replace(b"\n ", b"\n").replace(b" \n", b"\n").strip(b" ")
        table = parse(raw)
    if table is None:
        raise _first_bad_line(path, columns, what, delimiter, header is not None)
    return table.select([c.name for c in columns if c.kind != "any"])


def _empty_table(names: Sequence[str], types: dict) -> pa.Table:
    import pyarrow as pa

    return pa.table({name: pa.array([], type=types[name]) for name in names})


def _first_bad_line(
    path: str | Path, columns: Sequence[Column], what: str, delimiter: str | None, header: bool
) -> MbenchError:
    """Scan the file for the first line the fast parse must have rejected, as an error to raise."""
    checks: dict[str, Callable[[str], bool]] = {
        "float": lambda s: bool(_FLOAT_RE.fullmatch(s)),
        "int": lambda s: bool(_INT_RE.fullmatch(s)),
    }
    for number, line in data_lines(path, header):
        fields = line.split(delimiter)
        if len(fields) != len(columns) or (delimiter is not None and not all(fields)):
            return MbenchError(
                f"{path}:{number}: expected {len(columns)} {'whitespace' if delimiter is None else repr(delimiter)}-separated "
                f"fields of a {what}, got {len(fields)}: {line.strip()!r}"
            )
        for column, value in zip(columns, fields):
            check = checks.get(column.kind)
            if check is not None and not check(value):
                kind = "a number" if column.kind == "float" else "an integer"
                return MbenchError(f"{path}:{number}: {column.name} {value!r} is not {kind}: {line.strip()!r}")
    return MbenchError(f"{path}: could not be parsed as a {what}")
