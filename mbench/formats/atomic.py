"""The one way mbench writes a file: into a temp file beside it, flushed, then renamed into place.

Readers see the old file or the whole new one, never a part. The temp file's name carries the
writer's host and pid (``.<name>.<host>.<pid>.<random>.tmp``), so a cleaner (`mbench cache gc`)
can tell the leftovers of a killed writer from a file that is still being written.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

TMP_SUFFIX = ".tmp"


def _host_tag() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"


def temp_path(final: Path) -> Path:
    """A fresh temp-file name beside ``final`` naming this host and process."""
    return final.with_name(f".{final.name}.{_host_tag()}.{os.getpid()}.{secrets.token_hex(3)}{TMP_SUFFIX}")


def writer_is_dead(tmp: Path) -> bool:
    """Whether the temp file's writer (host and pid in its name) is a dead process on this host."""
    parts = tmp.name[: -len(TMP_SUFFIX)].split(".")
    if len(parts) < 4 or not parts[-2].isdigit():
        return False
    host, pid = parts[-3], int(parts[-2])
    if host != _host_tag():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened/fsynced
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary stream whose content replaces ``path`` atomically when the block ends without error."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(final.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_writer``)."""
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_with(path: str | Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` create a temp file beside ``path`` (a library that writes to a path), then rename it into place."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(final)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(final.parent)
