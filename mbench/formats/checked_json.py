"""JSON files that vouch for their own bytes: a ``checksum`` key holding the sha256 of the file.

Store manifests, shard records and ``result.json`` are small JSON files whose every field can
change a number or a decision (a row count, a metric, the sha256 of a shard). A flipped bit can
leave them valid JSON that says something else; the checksum makes every change detectable.

The checksum covers the exact bytes of the file with its own 64 hex digits replaced by zeros,
so it needs no canonical form. It is the last key; a file written before checksums existed has
none and is read as it is when the caller's ``legacy`` test says it is such a file (a test a
damaged ``checksum`` key cannot pass: old keys only, or an old version number).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from mbench.formats.columns import loads_strict

CHECKSUM_KEY = "checksum"
_PLACEHOLDER = "0" * 64
_MARKER = f'"{CHECKSUM_KEY}": "'.encode()


class ChecksumError(ValueError):
    """A checked JSON file that is damaged: unreadable, or its bytes do not match its checksum."""


def dumps_checked(record: Mapping[str, Any]) -> bytes:
    """``record`` as indented JSON with its checksum as the last key, newline-terminated."""
    if CHECKSUM_KEY in record:
        record = {k: v for k, v in record.items() if k != CHECKSUM_KEY}
    body = json.dumps({**record, CHECKSUM_KEY: _PLACEHOLDER}, indent=2, allow_nan=False) + "\n"
    data = body.encode("utf-8")
    digest = hashlib.sha256(data).hexdigest()
    at = data.rindex(_MARKER) + len(_MARKER)
    return data[:at] + digest.encode() + data[at + 64:]


def loads_checked(data: bytes, *, legacy: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """The record in ``data`` (without its checksum); ChecksumError when it is damaged.

    A file without a checksum is accepted only when ``legacy(record)`` says it predates checksums.
    """
    try:
        record = loads_strict(data.decode("utf-8"))
    except ValueError as err:  # UnicodeDecodeError, JSONDecodeError, StrictJsonError
        raise ChecksumError(f"not valid JSON ({err})") from None
    if not isinstance(record, dict):
        raise ChecksumError(f"expected a JSON object, got {type(record).__name__}")
    if CHECKSUM_KEY not in record:
        if legacy is None or not legacy(record):
            raise ChecksumError(f"no {CHECKSUM_KEY!r} key")
        return record
    at = data.rfind(_MARKER)
    stored = data[at + len(_MARKER): at + len(_MARKER) + 64].decode("ascii", errors="replace") if at >= 0 else ""
    if at < 0 or stored != record[CHECKSUM_KEY]:
        raise ChecksumError(f"its {CHECKSUM_KEY!r} is not where it belongs (the last key)")
    expected = hashlib.sha256(data[: at + len(_MARKER)] + _PLACEHOLDER.encode() + data[at + len(_MARKER) + 64:]).hexdigest()
    if stored != expected:
        raise ChecksumError(f"its bytes do not match its {CHECKSUM_KEY} (the file was changed or damaged)")
    del record[CHECKSUM_KEY]
    return record
