"""Reading input files with errors that name them: raw bytes (gzip or not), strict JSON, and fast
parsing of whitespace- or tab-separated column files (TREC runs, qrels) with file:line errors.

Files are parsed in one pass by pyarrow's multithreaded CSV reader, never a Python loop per
line. Only when that parse fails, or a reader finds a bad row afterwards, is the file scanned
line by line, to name the offending line as ``file:line: text``.

Text is UTF-8; a leading byte-order mark is dropped (spreadsheets write one). Fields hold no
control characters and no Unicode spaces: a no-break space or a vertical tab inside an id is
almost always damage, and an id must survive a round trip through a TREC file.
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
_BOM = b"\xef\xbb\xbf"
# Control characters other than tab, newline and carriage return, and the UTF-8 encodings of the
# C1 controls and Unicode spaces (NEL, no-break space, U+1680, U+2000-U+200A, U+2028/9, U+202F,
# U+205F, U+3000). In valid UTF-8 these byte sequences are exactly those characters.
_FORBIDDEN = re.compile(
    rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\xc2[\x80-\xa0]|\xe1\x9a\x80|\xe2\x80[\x80-\x8a\xa8\xa9\xaf]|\xe2\x81\x9f|\xe3\x80\x80"
)
_FORBIDDEN_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\x80-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
_INT64 = 2**63
_BLANK_LINE = re.compile(rb"(?m)^[ \t]+$")
# What breaks an id: any space or control character (ASCII whitespace included), as RE2 and Python patterns.
_ID_BREAKER_RE2 = r"[\x00-\x20\x7f-\xa0\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
_ID_BREAKER = re.compile("[\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")
ID_RULE = "an id is a non-empty string without whitespace or control characters"


def valid_id(value: object) -> bool:
    """Whether ``value`` can be an id: a non-empty string without spaces or control characters."""
    return isinstance(value, str) and bool(value) and not _ID_BREAKER.search(value)


def id_from_json(value: object) -> str | None:
    """A JSON id as text: an integer (not a boolean) or a valid id string; None for anything else.

    ``str()`` of a float, null, boolean or object would make a plausible-looking id that matches
    nothing (``13.0`` is not image 13), so those are refused instead.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value if valid_id(value) else None


def first_invalid_id(values: Sequence[object], *, spaces: bool = False) -> int | None:
    """The position of the first value that is not a valid id (see ``valid_id``), or None; vectorised.

    ``spaces``: a plain space inside an id is allowed (tab-separated files hold such ids), though
    not an id of spaces only.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        array = values
    else:
        try:
            array = pa.array(values, type=pa.string(), from_pandas=True)
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            return next(i for i, value in enumerate(values) if not isinstance(value, str))
    breaker = _ID_BREAKER_RE2.replace("\\x00-\\x20", "\\x00-\\x1f") + "|^ *$" if spaces else _ID_BREAKER_RE2
    invalid = pc.or_(pc.match_substring_regex(array, breaker), pc.equal(pc.utf8_length(array), 0))
    invalid = pc.fill_null(invalid, True)
    if not pc.any(invalid).as_py():
        return None
    return int(np.argmax(invalid.to_numpy(zero_copy_only=False)))


_FLOAT_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|infinity)", re.IGNORECASE | re.ASCII)
# As strict as pyarrow's integer parser, which rejects a leading "+".
_INT_RE = re.compile(r"-?\d+", re.ASCII)


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
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise MbenchError(f"{path}: corrupt gzip file ({err})") from None
    return raw.removeprefix(_BOM)


def read_json(path: str | Path) -> object:
    """The JSON value in ``path`` (gzip or not), strictly (see ``loads_strict``); errors name the file.

    The place is given as line and column for malformed JSON, as the JSON path for a repeated
    key or a NaN.
    """
    text = read_bytes(path)
    try:
        return loads_strict(text)
    except UnicodeDecodeError as err:
        line = text[: err.start].count(b"\n") + 1
        raise MbenchError(f"{path}:{line}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise MbenchError(f"{path}:{err.lineno}:{err.colno}: not valid JSON: {err.msg}") from None
    except StrictJsonError as err:
        raise MbenchError(f"{path}: {err}") from None


class StrictJsonError(ValueError):
    """Valid JSON that ``loads_strict`` refuses: a key twice in one object, or NaN / Infinity."""


def loads_strict(text: str | bytes) -> object:
    """``json.loads``, refusing a key given twice in one object and NaN / Infinity.

    Python's json module keeps the last of two equal keys and reads NaN; either would silently
    change what a file says. A StrictJsonError names the JSON path of the first such place.
    """
    flawed = False

    def pairs(items: list[tuple[str, object]]) -> object:
        nonlocal flawed
        found: dict[str, object] = {}
        for key, value in items:
            if key in found:
                flawed = True
                return _Flaw(f"the key {key!r} appears twice in one object")
            found[key] = value
        return found

    def constant(name: str) -> object:
        nonlocal flawed
        flawed = True
        return _Flaw(f"{name} is not a JSON number")

    value = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    if flawed:
        where, flaw = _find_flaw(value, "")
        raise StrictJsonError(f"{where or '(top level)'}: {flaw}")
    return value


class _Flaw:
    """Stands where a repeated key or a NaN was read, so the error can give its JSON path."""

    def __init__(self, message: str) -> None:
        self.message = message


def _find_flaw(value: object, where: str) -> tuple[str, str]:
    if isinstance(value, _Flaw):
        return where, value.message
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        found = _find_flaw(child, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else str(key))
        if found[1]:
            return found
    return "", ""


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
        return head.removeprefix(_BOM)
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read(size).removeprefix(_BOM)
    except (OSError, EOFError) as err:
        raise MbenchError(f"{path}: corrupt gzip file ({err})") from None


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Every line of ``path`` (gzip or not) as (1-based number, text without the newline), streamed.

    A leading byte-order mark is dropped; lines end at ``\\n`` only (a ``\\r`` before it is removed).
    """
    with open(path, "rb") as probe:
        compressed = probe.read(2) == _GZIP_MAGIC
    with (gzip.open(path, "rb") if compressed else open(path, "rb")) as stream:
        for number, line in enumerate(stream, start=1):
            if number == 1:
                line = line.removeprefix(_BOM)
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                raise MbenchError(f"{path}:{number}: not valid UTF-8: {line[:200]!r}") from None
            yield number, text[:-1] if text.endswith("\n") else text


def data_lines(path: str | Path, header: bool = False) -> Iterator[tuple[int, str]]:
    """The non-blank lines of ``path`` after the header line (if any): what a parse turns into rows."""
    for number, line in iter_lines(path):
        if header and number == 1:
            continue
        if line.strip(" \t\r"):
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
    if _FORBIDDEN.search(raw) or (delimiter is not None and b"\r" in raw):
        raise _first_bad_line(path, columns, what, delimiter, header is not None)
    if delimiter is not None and _BLANK_LINE.search(raw):
        raw = _BLANK_LINE.sub(b"", raw)  # a line of spaces is blank, as in the whitespace formats
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
    if delimiter is not None:
        # A tab-separated field may hold spaces (part of the id) but no other space or control character.
        for column in columns:
            if column.kind == "str":
                bad = first_invalid_id(table[column.name], spaces=True)
                if bad is not None:
                    raise bad_row(path, bad, f"{column.name} {table[column.name][bad].as_py()!r} is not an id", header is not None)
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
        if delimiter is None:
            # As the fast parse reads it: tabs and carriage returns are spaces, runs of spaces one separator.
            fields = re.split(" +", line.translate(str.maketrans("\t\r", "  ")).strip(" "))
        else:
            fields = (line[:-1] if line.endswith("\r") else line).split(delimiter)
        body = line if delimiter is None else line.removesuffix("\r")
        forbidden = _FORBIDDEN_TEXT.search(body) or (delimiter is not None and re.search("\r", body))
        if forbidden:
            return MbenchError(
                f"{path}:{number}: a field holds the control or space character {forbidden.group()!r} "
                f"(U+{ord(forbidden.group()):04X}), which no id or number of a {what} may contain: {line!r}"
            )
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
            if column.kind == "int" and not -_INT64 <= int(value) < _INT64:
                return MbenchError(f"{path}:{number}: {column.name} {value} does not fit 64 bits: {line.strip()!r}")
    return MbenchError(f"{path}: could not be parsed as a {what}")
