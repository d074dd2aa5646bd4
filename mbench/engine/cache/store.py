"""The embedding store: content-addressed, sharded, checksummed matrices on disk, kept losslessly.

Layout of one entry (``<root>/<key>/``)::

    manifest.json                 key, n_items, dim, dtype, store_dtype, shard_size, n_shards, created, meta
    shard-000003.json             the record of shard 3: rows, dim, dtype, file name, bytes, sha256
    shard-000003-1f2e3d4c.npy     its data: a (rows, dim) ``.npy`` file (no pickle)
    quarantine/                   shards found corrupted, kept for inspection until `mbench cache gc`

What is stored is what the encoder emitted, bit for bit: float32, float16, or bfloat16 kept as
its raw 16-bit patterns (``.npy`` has no bfloat16: the file holds uint16 and the manifest says
``bfloat16``; reading widens it to float32, which is exact). ``store_dtype`` is ``native`` (that
rule; the first shard written fixes ``dtype``) or ``float16``: a down-cast asked for explicitly,
for disk-bound pools. A cache must never change a number unless the user asked it to.

Why this shape:

* Fixed item ranges per shard (``shard_size`` items) make resume independent of worker count
  and world size: any process can compute any missing shard, e.g. rank r takes
  ``missing_shards()[r::world_size]``.
* One record per shard instead of one shared list in the manifest: writers of different
  shards never touch the same file, so concurrent writers (ranks, array jobs, on NFS too)
  need no lock for the common path.
* Every data file has a fresh random suffix and is never modified after its record names it:
  a rewrite creates a new file and then replaces the record atomically, so a record and the
  bytes it vouches for can never be mixed up by a concurrent rewrite, and a quarantine of a
  bad file can never move a good file that another process just wrote.
* A shard counts only when its record exists, its file exists, has the recorded size, a
  ``(rows, dim)`` header of the entry's dtype and the recorded sha256. Anything else is missing; a corrupted file is
  moved to ``quarantine/`` and recomputed, never served.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mbench import __version__, faults
from mbench.engine.cache import store_root
from mbench.errors import MbenchError
from mbench.formats.atomic import TMP_SUFFIX, atomic_write_bytes, writer_is_alive, writer_is_dead
from mbench.formats.checked_json import dumps_checked, loads_checked

try:  # POSIX only; on other systems the rare manifest rewrite goes unlocked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

# Format 2 stores any of STORED_DTYPES; format 1 (fp16 only) entries stay readable, so `mbench
# cache ls|gc` can list and remove them. Their keys never match a format-2 lookup.
FORMAT = "mbench-embeddings/2"
READABLE_FORMATS = ("mbench-embeddings/1", FORMAT)
DEFAULT_SHARD_SIZE = 8192
# Stored dtype -> the dtype of its .npy file (bfloat16 as raw bit patterns).
STORED_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2"), "bfloat16": np.dtype("<u2")}
STORE_POLICIES = ("native", "float16")
MANIFEST = "manifest.json"
QUARANTINE = "quarantine"
_LOCK = ".lock"
_IN_USE_LOCK = ".in-use"
_LOCK_FILES = frozenset({_LOCK, _IN_USE_LOCK})
# The keys of manifests and shard records written before they carried a checksum.
_LEGACY_KEYS = frozenset({
    "format", "key", "n_items", "dim", "dtype", "store_dtype", "shard_size", "n_shards", "created", "mbench_version",
    "meta", "shard", "start", "stop", "rows", "file", "bytes", "sha256", "written", "host", "pid",
})
_KEY_RE = re.compile(r"^[0-9a-f]{8,128}$")
_RECORD_RE = re.compile(r"^shard-(\d{6,})\.json$")
_DATA_RE = re.compile(r"^shard-(\d{6,})-[0-9a-f]{8}\.npy$")
_HASH_CHUNK = 8 << 20


class NonFiniteEmbeddingError(MbenchError):
    """An embedding row holds NaN or inf (or overflows an asked-for fp16); ``row`` is its index in the entry."""

    def __init__(self, message: str, row: int) -> None:
        super().__init__(message)
        self.row = row


@dataclass(frozen=True)
class ShardCheck:
    """The state of one shard: ``ok``, ``absent`` (never written) or ``corrupt`` (with a reason)."""

    index: int
    status: Literal["ok", "absent", "corrupt"]
    reason: str = ""


# ----------------------------------------------------------------------------- small file helpers


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _json_bytes(obj: Any) -> bytes:
    return dumps_checked(obj)


def _read_json(path: Path) -> dict[str, Any]:
    """A manifest or shard record; ValueError (ChecksumError) when it is damaged."""
    return loads_checked(path.read_bytes(), legacy=lambda record: set(record) <= _LEGACY_KEYS)


@contextlib.contextmanager
def _exclusive_unless_in_use(directory: Path) -> Iterator[bool]:
    """Hold the entry's in-use lock exclusively; yields False (holding nothing) while a run is using it."""
    if fcntl is None:  # pragma: no cover
        yield True
        return
    try:
        fh = open(directory / _IN_USE_LOCK, "a+b")  # noqa: SIM115 - released below
    except FileNotFoundError:  # removed meanwhile
        yield False
        return
    with fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# Entry folders this process uses -> the descriptor holding their shared in-use lock, kept until exit.
_IN_USE: dict[Path, int] = {}


def _mark_in_use(directory: Path) -> None:
    """Take a shared in-use lock on the entry folder, so `mbench cache gc` leaves it alone while we live.

    The folder is created if needed; if a collector renamed it away between our mkdir and our
    lock (the lock then sits on a moved file), the folder is made again and locked anew.
    """
    if fcntl is None or directory in _IN_USE:  # pragma: no cover - no fcntl
        return
    while True:
        directory.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(directory / _IN_USE_LOCK, os.O_RDWR | os.O_CREAT, 0o644)  # held for the process lifetime
        except FileNotFoundError:
            continue
        fcntl.flock(fd, fcntl.LOCK_SH)
        try:
            same = os.fstat(fd).st_ino == os.stat(directory / _IN_USE_LOCK).st_ino
        except FileNotFoundError:
            same = False
        if same:
            _IN_USE[directory] = fd
            return
        os.close(fd)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on ``directory`` (manifest creation and the one-time ``dim`` fill)."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(directory / _LOCK, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _npy_header(fh: Any) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, fortran order, dtype and data offset of an open ``.npy`` file (no pickle, no data read)."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    return tuple(shape), bool(fortran), np.dtype(dtype), fh.tell()


def _sha256_of(fh: Any) -> str:
    fh.seek(0)
    digest = hashlib.sha256()
    while chunk := fh.read(_HASH_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def _as_stored(array: Any) -> tuple[np.ndarray, str]:
    """``(numpy array, stored dtype name)`` holding exactly the values of a torch tensor or numpy array.

    float32 and float16 map to themselves; a torch bfloat16 tensor becomes its raw uint16 bit
    patterns. Anything else (float64, integers) is refused: storing it would change it.
    """
    if hasattr(array, "detach") and hasattr(array, "cpu"):  # a torch tensor, without importing torch
        tensor = array.detach().cpu().contiguous()
        name = str(tensor.dtype).removeprefix("torch.")
        if name == "bfloat16":
            import torch

            return tensor.view(torch.int16).numpy().view(STORED_DTYPES["bfloat16"]), name
        if name in ("float32", "float16"):
            return tensor.numpy(), name
        raise MbenchError(f"embeddings must be float32, float16 or bfloat16 tensors, got torch.{name}")
    data = np.asarray(array)
    for name in ("float32", "float16"):
        if data.dtype == STORED_DTYPES[name]:
            return data, name
    raise MbenchError(f"embeddings must be float32, float16 or bfloat16, got a numpy {data.dtype} array")


def widen_to_float32(data: np.ndarray, dtype: str) -> np.ndarray:
    """The float32 values of stored data (exact: every float16 and bfloat16 is a float32)."""
    if dtype == "bfloat16":
        return (np.asarray(data, dtype=np.uint32) << 16).view(np.float32)
    return np.asarray(data, dtype=np.float32)


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise MbenchError(f"invalid embedding store key {key!r}: expected 8-128 lowercase hex digits (a sha256)")
    return key


def human_bytes(n: float) -> str:
    """``1536`` -> ``1.5 KiB``: sizes for humans in `mbench cache ls`."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


# ----------------------------------------------------------------------------- the lazy row concat


class RowConcat:
    """A read-only, lazy row-wise concatenation of 2-D arrays (memory-mapped shards or entries).

    Slicing rows returns a numpy array (a view when the rows lie in one part, a copy across
    parts), so search can stream tile by tile over a 5.6M-row pool without materialising it.
    Nested RowConcats are flattened. ``np.asarray(view)`` materialises the whole matrix.
    """

    def __init__(self, parts: Sequence[Any], *, dim: int | None = None, dtype: Any = None) -> None:
        flat: list[Any] = []
        for part in parts:
            flat.extend(part.parts if isinstance(part, RowConcat) else [part])
        for part in flat:
            if len(part.shape) != 2:
                raise ValueError(f"RowConcat parts must be 2-D, got shape {tuple(part.shape)}")
        dims = {int(part.shape[1]) for part in flat}
        if len(dims) > 1:
            raise MbenchError(f"cannot concatenate embeddings of different dimensions {sorted(dims)}")
        if dims and dim is not None and dims != {dim}:
            raise MbenchError(f"embedding dimension {dims.pop()} does not match the expected {dim}")
        self.parts: list[Any] = flat
        self._dim = dims.pop() if dims else int(dim or 0)
        self.dtype = np.result_type(*[part.dtype for part in flat]) if flat else np.dtype(dtype or np.float32)
        self._offsets = np.cumsum([0] + [int(part.shape[0]) for part in flat], dtype=np.int64)

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, dim)``."""
        return int(self._offsets[-1]), self._dim

    ndim = 2

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __repr__(self) -> str:
        return f"RowConcat(shape={self.shape}, dtype={self.dtype}, parts={len(self.parts)})"

    def _rows(self, start: int, stop: int) -> np.ndarray:
        if start >= stop:
            return np.empty((0, self._dim), dtype=self.dtype)
        first = int(np.searchsorted(self._offsets, start, side="right")) - 1
        last = int(np.searchsorted(self._offsets, stop - 1, side="right")) - 1
        pieces = [
            self.parts[p][max(start, int(self._offsets[p])) - int(self._offsets[p]) : min(stop, int(self._offsets[p + 1])) - int(self._offsets[p])]
            for p in range(first, last + 1)
        ]
        if len(pieces) == 1:
            return np.asarray(pieces[0])
        return np.concatenate([np.asarray(piece, dtype=self.dtype) for piece in pieces], axis=0)

    def __getitem__(self, key: Any) -> np.ndarray:
        cols: Any = slice(None)
        if isinstance(key, tuple):
            key, cols = key
        n = len(self)
        if isinstance(key, (int, np.integer)):
            i = int(key) + n if key < 0 else int(key)
            if not 0 <= i < n:
                raise IndexError(f"row {key} out of range for {n} rows")
            return self._rows(i, i + 1)[0][cols]
        if isinstance(key, slice):
            start, stop, step = key.indices(n)
            rows = self._rows(start, max(start, stop)) if step == 1 else self[np.arange(start, stop, step)]
            return rows[:, cols]
        index = np.asarray(key)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if index.ndim != 1:
            raise IndexError("RowConcat supports an int, a slice or a 1-D index array for rows")
        index = np.where(index < 0, index + n, index).astype(np.int64)
        if index.size and (index.min() < 0 or index.max() >= n):
            raise IndexError(f"row index out of range for {n} rows")
        out = np.empty((index.size, self._dim), dtype=self.dtype)
        part_of = np.searchsorted(self._offsets, index, side="right") - 1
        for p in np.unique(part_of):
            sel = part_of == p
            out[sel] = np.asarray(self.parts[p])[index[sel] - self._offsets[p]]
        return out[:, cols]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        # Always a fresh array: never hand out an alias of the read-only shard files.
        return np.array(self._rows(0, len(self)), dtype=dtype if dtype is not None else self.dtype)


class BFloat16Rows:
    """A read-only 2-D view of bfloat16 bit patterns (uint16) whose rows read as exact float32."""

    ndim = 2

    def __init__(self, bits: np.ndarray) -> None:
        if bits.ndim != 2 or bits.dtype != STORED_DTYPES["bfloat16"]:
            raise ValueError(f"BFloat16Rows needs a 2-D uint16 array, got {bits.dtype} {bits.shape}")
        self.bits = bits
        self.shape = bits.shape
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return int(self.shape[0])

    def __getitem__(self, key: Any) -> np.ndarray:
        return widen_to_float32(self.bits[key], "bfloat16")

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        values = widen_to_float32(self.bits, "bfloat16")
        return values if dtype is None else values.astype(dtype)


# ----------------------------------------------------------------------------- one entry


class StoreEntry:
    """One embedding matrix of the store: ``n_items`` rows cut into shards of ``shard_size`` rows."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.key: str = manifest["key"]
        self.n_items: int = int(manifest["n_items"])
        self.shard_size: int = int(manifest["shard_size"])
        self.n_shards: int = int(manifest["n_shards"])
        # shard index -> (file name, size, mtime_ns, inode) of files this object verified or wrote;
        # load() may skip re-hashing those when their stat is unchanged.
        self._verified: dict[int, tuple[str, int, int, int]] = {}

    # -- manifest ---------------------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        """The caller's metadata (model name, role, ...) recorded when the entry was created."""
        return dict(self.manifest.get("meta") or {})

    @property
    def dim(self) -> int | None:
        """Embedding dimension; ``None`` until it was given or the first shard was written."""
        if self.manifest.get("dim") is None:
            self._reread_manifest()
        dim = self.manifest.get("dim")
        return None if dim is None else int(dim)

    @property
    def dtype(self) -> str | None:
        """The stored dtype (float32, float16 or bfloat16); ``None`` until the first shard fixes it."""
        if self.manifest.get("dtype") is None:
            self._reread_manifest()
        dtype = self.manifest.get("dtype")
        return None if dtype is None else str(dtype)

    @property
    def store_dtype(self) -> str:
        """``native`` (the encoder's dtype, kept bit for bit) or the dtype every shard is converted to."""
        # Format-1 entries predate the policy: they hold float16 copies.
        return str(self.manifest.get("store_dtype", "float16"))

    def _reread_manifest(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.manifest = _read_json(self.path / MANIFEST)  # another process may have filled it in

    def __repr__(self) -> str:
        return f"StoreEntry({self.key[:12]}, n_items={self.n_items}, dim={self.manifest.get('dim')}, shards={self.n_shards})"

    # -- shards -----------------------------------------------------------------------------------
    def shard_range(self, index: int) -> range:
        """The item rows that shard ``index`` holds."""
        if not 0 <= index < self.n_shards:
            raise IndexError(f"shard {index} out of range: entry {self.key[:12]} has {self.n_shards} shards")
        start = index * self.shard_size
        return range(start, min(start + self.shard_size, self.n_items))

    def _record_path(self, index: int) -> Path:
        return self.path / f"shard-{index:06d}.json"

    def _read_record(self, index: int) -> dict[str, Any] | None:
        try:
            return _read_json(self._record_path(index))
        except FileNotFoundError:
            return None

    def check_shard(self, index: int, *, verify: bool = True, trust_verified: bool = False) -> ShardCheck:
        """Check shard ``index``: record, file, size, ``(rows, dim)`` header of the entry's dtype and (if ``verify``) sha256."""
        check, _ = self._check(index, verify=verify, trust_verified=trust_verified, keep_open=False)
        return check

    def _check(self, index: int, *, verify: bool, trust_verified: bool, keep_open: bool) -> tuple[ShardCheck, Any]:
        rows = len(self.shard_range(index))
        try:
            record = self._read_record(index)
        except (OSError, ValueError) as err:
            return ShardCheck(index, "corrupt", f"unreadable record: {err}"), None
        if record is None:
            return ShardCheck(index, "absent"), None
        dim, dtype = self.dim, self.dtype
        try:
            name = str(record["file"])
            if not _DATA_RE.match(name) or int(_DATA_RE.match(name).group(1)) != index:  # type: ignore[union-attr]
                raise ValueError(f"bad file name {name!r}")
            size, digest = int(record["bytes"]), str(record["sha256"])
            if int(record["rows"]) != rows or (dim is not None and int(record["dim"]) != dim):
                return ShardCheck(index, "corrupt", f"record says {record['rows']}x{record['dim']}, expected {rows}x{dim}"), None
            stored = str(record.get("dtype", "float16"))
            if stored not in STORED_DTYPES or (dtype is not None and stored != dtype):
                return ShardCheck(index, "corrupt", f"record says dtype {stored}, the entry holds {dtype}"), None
        except (KeyError, TypeError, ValueError) as err:
            return ShardCheck(index, "corrupt", f"malformed record: {err}"), None
        path = self.path / name
        try:
            fh = open(path, "rb")  # noqa: SIM115 - kept open for load() to map this very inode
        except FileNotFoundError:
            return ShardCheck(index, "corrupt", f"data file {name} is missing"), None
        keep = False
        try:
            stat = os.fstat(fh.fileno())
            if stat.st_size != size:
                return ShardCheck(index, "corrupt", f"{name} has {stat.st_size} bytes, record says {size} (truncated?)"), None
            try:
                shape, fortran, header_dtype, _ = _npy_header(fh)
            except (ValueError, OSError) as err:
                return ShardCheck(index, "corrupt", f"{name} has an unreadable .npy header: {err}"), None
            expected_dim = dim if dim is not None else int(record["dim"])
            file_dtype = STORED_DTYPES[stored]
            if shape != (rows, expected_dim) or fortran or header_dtype != file_dtype:
                return ShardCheck(
                    index, "corrupt", f"{name} holds {header_dtype} {shape}, expected {file_dtype} {(rows, expected_dim)}"
                ), None
            signature = (name, stat.st_size, stat.st_mtime_ns, stat.st_ino)
            if verify and not (trust_verified and self._verified.get(index) == signature):
                if _sha256_of(fh) != digest:
                    self._verified.pop(index, None)
                    return ShardCheck(index, "corrupt", f"{name} fails its sha256 checksum"), None
                self._verified[index] = signature
            if dim is None or dtype is None:
                # A manifest written anew (a damaged one was quarantined) learns its layout from the
                # first good shard it keeps, as it would from the first shard written.
                self._set_layout(expected_dim, stored, index)
            keep = keep_open
            return ShardCheck(index, "ok"), (fh if keep_open else None)
        finally:
            if not keep:
                fh.close()

    def quarantine_shard(self, index: int) -> None:
        """Move shard ``index``'s data file to ``quarantine/`` and drop its record, so it is recomputed."""
        record = None
        with contextlib.suppress(OSError, ValueError):
            record = self._read_record(index)
        name = str(record.get("file", "")) if record else ""
        if name and _DATA_RE.match(name):
            qdir = self.path / QUARANTINE
            qdir.mkdir(exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path / name, qdir / f"{name}.{int(time.time())}")
        # Drop the record only while it still names the file we judged bad: a concurrent
        # rewrite's fresh record must survive (losing it would only cost a recompute).
        with contextlib.suppress(OSError, ValueError):
            current = self._read_record(index)
            if current is None or current.get("file") == (record or {}).get("file"):
                self._record_path(index).unlink(missing_ok=True)
        self._verified.pop(index, None)

    def missing_shards(self, *, verify: bool = True) -> list[int]:
        """Shards to compute: absent, or corrupted (truncated, bad checksum, wrong shape; quarantined).

        ``verify=False`` skips the sha256 (size and header are still checked). Shards verified here
        are remembered, so a following ``load()`` does not hash them again.
        """
        missing = []
        for index in range(self.n_shards):
            check = self.check_shard(index, verify=verify, trust_verified=True)
            if check.status == "corrupt":
                self.quarantine_shard(index)
            if check.status != "ok":
                missing.append(index)
        return missing

    def missing_shards_for_rank(self, rank: int, world_size: int, *, verify: bool = True) -> list[int]:
        """The missing shards rank ``rank`` of ``world_size`` computes: those with ``index % world_size == rank``.

        Stable however late each rank lists them, so no barrier is needed. (``missing_shards()[rank::world_size]``
        balances better after a partial run, but only if every rank lists before any rank writes.)
        """
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        return [i for i in self.missing_shards(verify=verify) if i % world_size == rank]

    def complete(self, *, verify: bool = False) -> bool:
        """Whether every shard is present (sizes and headers checked; checksums too if ``verify``)."""
        return all(self.check_shard(i, verify=verify, trust_verified=True).status == "ok" for i in range(self.n_shards))

    def write_shard(self, index: int, array: Any) -> None:
        """Store shard ``index`` (rows ``shard_range(index)``) atomically, with its checksum.

        The values are kept bit for bit (float32, float16, or a bfloat16 tensor's bit patterns)
        unless the entry's ``store_dtype`` asks for float16. Raises ``NonFiniteEmbeddingError``
        naming the entry row of the first NaN/inf (or of a value that overflows that float16).
        """
        rows = self.shard_range(index)
        data, dtype = _as_stored(array)
        if data.ndim != 2 or data.shape[0] != len(rows):
            raise MbenchError(
                f"shard {index} of entry {self.key[:12]} needs a ({len(rows)}, dim) array, got shape {data.shape}"
            )
        dim = self.dim
        if dim is not None and data.shape[1] != dim:
            raise MbenchError(f"entry {self.key[:12]} holds {dim}-d embeddings, shard {index} has {data.shape[1]}")
        if data.shape[1] == 0:
            raise MbenchError(f"shard {index} of entry {self.key[:12]} has zero-width embeddings")
        values = widen_to_float32(data, dtype)
        _check_finite(values, rows.start, self.key, "")
        if self.store_dtype != "native" and self.store_dtype != dtype:
            # The one lossy path, taken only when the user asked for it (--store-dtype fp16).
            with np.errstate(over="ignore"):  # overflow is reported just below, naming the row
                data = values.astype(STORED_DTYPES[self.store_dtype])
            dtype = self.store_dtype
            _check_finite(data, rows.start, self.key, f" after conversion to {dtype} (|value| > 65504)")
        held = self.dtype
        if held is not None and held != dtype:
            raise MbenchError(
                f"entry {self.key[:12]} holds {held} embeddings, shard {index} is {dtype}: the encoder's output "
                f"dtype changed; remove the entry with `mbench cache gc --key {self.key[:12]}`"
            )
        data = np.ascontiguousarray(data)

        buf = io.BytesIO()
        np.lib.format.write_array(buf, data, allow_pickle=False)
        payload = buf.getvalue()
        digest = hashlib.sha256(payload).hexdigest()
        name = f"shard-{index:06d}-{secrets.token_hex(4)}.npy"
        old = None
        with contextlib.suppress(OSError, ValueError):
            old = self._read_record(index)
        atomic_write_bytes(self.path / name, payload)
        faults.reached("store.shard")
        record = {
            "shard": index,
            "start": rows.start,
            "stop": rows.stop,
            "rows": len(rows),
            "dim": int(data.shape[1]),
            "dtype": dtype,
            "file": name,
            "bytes": len(payload),
            "sha256": digest,
            "written": _now_iso(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        atomic_write_bytes(self._record_path(index), _json_bytes(record))
        if old and old.get("file") != name and _DATA_RE.match(str(old.get("file", ""))):
            with contextlib.suppress(OSError):
                (self.path / str(old["file"])).unlink()  # the superseded copy of this shard
        if dim is None or held is None:
            self._set_layout(int(data.shape[1]), dtype, index)
        stat = os.stat(self.path / name)
        self._verified[index] = (name, stat.st_size, stat.st_mtime_ns, stat.st_ino)

    def _set_layout(self, dim: int, dtype: str, index: int) -> None:
        """Fill in the manifest's ``dim`` and ``dtype`` once; a shard that disagrees is discarded."""
        with _locked(self.path):
            manifest = _read_json(self.path / MANIFEST)
            held = {"dim": manifest.get("dim"), "dtype": manifest.get("dtype")}
            if held["dim"] is not None and int(held["dim"]) != dim or held["dtype"] not in (None, dtype):
                self.quarantine_shard(index)
                raise MbenchError(
                    f"entry {self.key[:12]} holds {held['dim']}-d {held['dtype']} embeddings, shard {index} had "
                    f"{dim}-d {dtype}; it was discarded"
                )
            if held != {"dim": dim, "dtype": dtype}:
                manifest.update(dim=dim, dtype=dtype)
                atomic_write_bytes(self.path / MANIFEST, _json_bytes(manifest))
            self.manifest = manifest

    # -- reading ----------------------------------------------------------------------------------
    def load(self, *, mmap: bool = True, verify: bool = True, trust_verified: bool = True) -> RowConcat:
        """The full ``(n_items, dim)`` matrix as a lazy ``RowConcat`` of its shards (bfloat16 reads as float32).

        Every shard is checked (sha256 too when ``verify``) before it is served; shards this
        object already verified or wrote are not hashed again when their file is unchanged,
        unless ``trust_verified=False``. Corrupted shards are quarantined and an error asks for
        a re-run (which recomputes them). ``mmap=False`` reads the shards into memory.
        """
        parts, problems = [], []
        for index in range(self.n_shards):
            check, fh = self._check(index, verify=verify, trust_verified=trust_verified, keep_open=True)
            if check.status != "ok":
                if check.status == "corrupt":
                    self.quarantine_shard(index)
                problems.append(f"shard {index} ({check.status}{': ' + check.reason if check.reason else ''})")
                continue
            with fh:  # map the very file (inode) that was just checked
                fh.seek(0)
                shape, _, dtype, offset = _npy_header(fh)
                if mmap:
                    part = np.memmap(fh, dtype=dtype, mode="r", offset=offset, shape=shape)
                else:
                    part = np.fromfile(fh, dtype=dtype, count=shape[0] * shape[1]).reshape(shape)
            parts.append(BFloat16Rows(part) if self.dtype == "bfloat16" else part)
        if problems:
            shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise MbenchError(
                f"embedding store entry {self.key[:12]} at {self.path} is not complete: {shown}. "
                "Run the command again to compute the missing shards."
            )
        return RowConcat(parts, dim=self.dim, dtype=np.float32 if self.dtype in (None, "bfloat16") else self.dtype)

    # -- bookkeeping ------------------------------------------------------------------------------
    def size_bytes(self) -> int:
        """Bytes on disk (data, records, manifest, quarantine)."""
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    def last_activity(self) -> float:
        """The newest modification time of any file of the entry (a running writer keeps it fresh; lock files do not count)."""
        times = [p.stat().st_mtime for p in self.path.iterdir() if p.is_file() and p.name not in _LOCK_FILES]
        return max(times, default=self.path.stat().st_mtime)


def _check_finite(data: np.ndarray, first_row: int, key: str, what: str) -> None:
    finite = np.isfinite(data).all(axis=1)
    if not finite.all():
        local = int(np.argmin(finite))
        raise NonFiniteEmbeddingError(
            f"embedding row {first_row + local} of entry {key[:12]} holds NaN or inf{what}; nothing was stored for its shard",
            row=first_row + local,
        )


# ----------------------------------------------------------------------------- the store


class EmbeddingStore:
    """A directory of entries, one per key (``<root>/<key>/``); default root ``$MBENCH_CACHE/embeddings``."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else store_root()

    def __repr__(self) -> str:
        return f"EmbeddingStore({str(self.root)!r})"

    def __contains__(self, key: str) -> bool:
        return (self.root / _check_key(key) / MANIFEST).is_file()

    def entry(
        self,
        key: str,
        n_items: int,
        *,
        shard_size: int = DEFAULT_SHARD_SIZE,
        meta: dict[str, Any] | None = None,
        dim: int | None = None,
        store_dtype: str = "native",
    ) -> StoreEntry:
        """Open the entry ``key``, creating it if absent; an existing one must agree on ``n_items``,
        ``shard_size`` and ``store_dtype``.

        ``meta`` (JSON; put ``model`` and ``role`` in it for `mbench cache ls`) is recorded by the
        creator; later callers keep the first one. ``store_dtype``: ``native`` keeps what the
        encoder emits bit for bit; ``float16`` converts every shard (put it in the key too).
        """
        _check_key(key)
        if n_items < 0 or shard_size < 1:
            raise ValueError(f"n_items must be >= 0 and shard_size >= 1, got {n_items} and {shard_size}")
        if store_dtype not in STORE_POLICIES:
            raise ValueError(f"store_dtype must be one of {STORE_POLICIES}, got {store_dtype!r}")
        path = self.root / key
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            try:
                meta_json = json.loads(json.dumps(meta or {}, allow_nan=False))
            except (TypeError, ValueError) as err:
                raise MbenchError(f"embedding store meta must be plain JSON: {err}") from err
            path.mkdir(parents=True, exist_ok=True)
            with _locked(path):
                if not manifest_path.is_file():
                    manifest = {
                        "format": FORMAT,
                        "key": key,
                        "n_items": int(n_items),
                        "dim": None if dim is None else int(dim),
                        "dtype": None if store_dtype == "native" else store_dtype,
                        "store_dtype": store_dtype,
                        "shard_size": int(shard_size),
                        "n_shards": -(-int(n_items) // int(shard_size)),
                        "created": _now_iso(),
                        "mbench_version": __version__,
                        "meta": meta_json,
                    }
                    atomic_write_bytes(manifest_path, _json_bytes(manifest))
        entry = self.open(key)
        if entry.n_items != n_items or entry.shard_size != shard_size:
            raise MbenchError(
                f"embedding store entry {key[:12]} at {path} has n_items={entry.n_items}, shard_size={entry.shard_size}; "
                f"asked for n_items={n_items}, shard_size={shard_size}. Remove it with `mbench cache gc --key {key[:12]}`."
            )
        if dim is not None and entry.dim is not None and entry.dim != dim:
            raise MbenchError(f"embedding store entry {key[:12]} holds {entry.dim}-d embeddings, asked for {dim}")
        if entry.store_dtype != store_dtype:
            raise MbenchError(
                f"embedding store entry {key[:12]} stores {entry.store_dtype} embeddings, asked for {store_dtype}; "
                "the store dtype belongs in the key"
            )
        return entry

    def reuse_or_create(
        self, key: str, n_items: int, *, shard_size: int, meta: dict[str, Any] | None = None, store_dtype: str = "native"
    ) -> StoreEntry:
        """The entry ``key`` as stored (keeping its shard layout), else a new one; for a run that will use it.

        The entry is marked in use for the rest of this process (`mbench cache gc` leaves it
        alone). A damaged manifest is moved to ``quarantine/`` and written anew: the key fixes
        what the entry holds, and each shard record is checked against the new manifest, so good
        shards are kept and the rest recomputed.
        """
        path = self.root / _check_key(key)
        _mark_in_use(path)
        if (path / MANIFEST).is_file():
            try:
                entry = self.open(key)
            except MbenchError:
                with _locked(path):
                    try:
                        self.open(key)  # another process may have repaired it meanwhile
                    except MbenchError:
                        quarantine = path / QUARANTINE
                        quarantine.mkdir(exist_ok=True)
                        with contextlib.suppress(FileNotFoundError):
                            os.replace(path / MANIFEST, quarantine / f"{MANIFEST}.{int(time.time())}")
                return self.entry(key, n_items, shard_size=shard_size, meta=meta, store_dtype=store_dtype)
            if entry.n_items != n_items:
                raise MbenchError(f"embedding store entry {key[:12]} at {path} holds {entry.n_items} items, "
                                  f"asked for {n_items}; remove it with `mbench cache gc --key {key[:12]}`")
            return entry
        return self.entry(key, n_items, shard_size=shard_size, meta=meta, store_dtype=store_dtype)

    def open(self, key: str) -> StoreEntry:
        """The existing entry ``key`` (MbenchError if absent or its manifest is unreadable)."""
        path = self.root / _check_key(key)
        try:
            manifest = _read_json(path / MANIFEST)
        except FileNotFoundError as err:
            raise MbenchError(f"no embedding store entry {key} under {self.root}") from err
        except (OSError, ValueError) as err:
            raise MbenchError(f"unreadable manifest {path / MANIFEST}: {err}; remove the entry with `mbench cache gc --key {key[:12]}`") from err
        if manifest.get("format") not in READABLE_FORMATS or manifest.get("key") != key:
            raise MbenchError(f"{path / MANIFEST} is not an mbench embedding manifest for key {key}")
        return StoreEntry(path, manifest)

    def entry_dirs(self) -> list[Path]:
        """Every entry directory (a key-named folder), readable or not."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and _KEY_RE.match(p.name))

    def entries(self) -> list[StoreEntry]:
        """Every entry with a readable manifest, oldest first."""
        found = []
        for path in self.entry_dirs():
            with contextlib.suppress(MbenchError):
                found.append(self.open(path.name))
        return sorted(found, key=lambda e: (str(e.manifest.get("created", "")), e.key))

    def resolve(self, key_or_prefix: str) -> str:
        """The full key of an entry given its key or a unique prefix (as `mbench cache ls` shows)."""
        matches = [p.name for p in self.entry_dirs() if p.name.startswith(key_or_prefix.lower())]
        if len(matches) != 1:
            what = "no entry" if not matches else f"{len(matches)} entries"
            raise MbenchError(f"{what} under {self.root} match key {key_or_prefix!r}")
        return matches[0]

    def remove(self, key: str) -> bool:
        """Delete an entry (renamed aside first, so a reader never sees half of it); False if a run is using it."""
        path = self.root / _check_key(key)
        with _exclusive_unless_in_use(path) as free:
            if not free:
                return False
            trash = self.root / f".trash-{key}-{secrets.token_hex(3)}"
            os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def gc(self, *, older_than_days: float | None = None, tmp_grace_s: float = 3600.0, dry_run: bool = False) -> list[Path]:
        """Remove what no reader needs; returns the removed paths (or those it would remove).

        * temp files of writers that are dead (same host, pid gone) or older than ``tmp_grace_s``;
        * data files no record names (a writer killed between data and record) older than ``tmp_grace_s``;
        * quarantined shards and half-removed entries;
        * incomplete entries with no activity for ``older_than_days`` (if given).

        An entry a running process uses (its in-use lock is held) is left alone whatever the
        options say, and so is a temp file whose writer is alive on this host.
        """
        now = time.time()
        removed: list[Path] = []

        def drop(path: Path) -> None:
            removed.append(path)
            if not dry_run:
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)

        if not self.root.is_dir():
            return removed
        for path in sorted(self.root.iterdir()):
            if path.name.startswith(".trash-"):
                drop(path)
        for path in self.entry_dirs():
            with _exclusive_unless_in_use(path) as free:
                if free:
                    self._collect(path, now, drop, older_than_days, tmp_grace_s)
        return removed

    def _collect(self, path: Path, now: float, drop: Any, older_than_days: float | None, tmp_grace_s: float) -> None:
        """gc of one entry folder that no running process uses."""
        for tmp in sorted(path.glob(f".*{TMP_SUFFIX}")):
            if writer_is_dead(tmp) or (now - _mtime(tmp) > tmp_grace_s and not writer_is_alive(tmp)):
                drop(tmp)
        if (path / QUARANTINE).is_dir():
            drop(path / QUARANTINE)
        try:
            entry = self.open(path.name)
        except MbenchError:
            if older_than_days is not None and now - _newest_mtime(path) > older_than_days * 86400:
                drop(path)  # a manifest never written (a creator killed at once) or damaged
            return
        referenced = set()
        for record_path in path.glob("shard-*.json"):
            with contextlib.suppress(OSError, ValueError):
                referenced.add(str(_read_json(record_path).get("file")))
        for data in sorted(path.glob("shard-*.npy")):
            if data.name not in referenced and now - _mtime(data) > tmp_grace_s:
                drop(data)
        idle = older_than_days is not None and now - entry.last_activity() > older_than_days * 86400
        if idle and not entry.complete():
            drop(path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()


def _newest_mtime(path: Path) -> float:
    # Files only: taking a lock creates a lock file, which touches the folder itself.
    return max([_mtime(p) for p in path.rglob("*") if p.name not in _LOCK_FILES], default=_mtime(path))


def concat_entries(entries: Sequence[StoreEntry], *, verify: bool = True) -> RowConcat:
    """The rows of several complete entries, concatenated lazily (the M-BEIR global pool from its local pools)."""
    if not entries:
        raise MbenchError("concat_entries needs at least one entry")
    return RowConcat([entry.load(verify=verify) for entry in entries])
