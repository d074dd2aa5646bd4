"""The one way mbench writes a file: into a temp file beside it, flushed and synced, then renamed into place.

Readers see the old file or the whole new one, never a part. The temp file's name carries the
writer's host and pid (``.<name>.<host>.<pid>.<random>.tmp``), so a cleaner can tell the
leftovers of a killed writer from a file that is still being written. A write that fails (a
full or failing disk) leaves no temp file and raises an error naming the file.
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

from mbench import faults
from mbench.errors import write_failed

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


def writer_is_alive(tmp: Path) -> bool:
    """Whether the temp file's writer is a live process on this host (its file must not be touched)."""
    parts = tmp.name[: -len(TMP_SUFFIX)].split(".")
    if len(parts) < 4 or not parts[-2].isdigit() or parts[-3] != _host_tag():
        return False
    return not writer_is_dead(tmp)


def remove_dead_temps(directory: Path) -> None:
    """Delete the temp files a killed writer left in ``directory`` (those of live writers stay)."""
    with contextlib.suppress(FileNotFoundError):
        for tmp in directory.glob(f".*{TMP_SUFFIX}"):
            if writer_is_dead(tmp):
                tmp.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (best effort: not every filesystem lets a folder be synced)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _replace_from_temp(path: str | Path) -> Iterator[Path]:
    """A temp path beside ``path``: renamed onto it when the block ends without error, else removed.

    An OSError on the way (a full or failing disk) becomes the clear error of ``write_failed``.
    """
    final = Path(path)
    tmp = temp_path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        faults.before_write(final)
        yield tmp
        faults.before_rename(final)
        os.replace(tmp, final)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError):
            raise write_failed(final, err) from err
        raise
    fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_writer(path: str | Path) -> Iterator[BinaryIO]:
    """A binary stream whose content replaces ``path`` atomically when the block ends without error."""
    with _replace_from_temp(path) as tmp, open(tmp, "wb") as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_writer``)."""
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_with(path: str | Path, write: Callable[[Path], None]) -> None:
    """Let ``write`` create a temp file beside ``path`` (a library that writes to a path), then rename it into place."""
    with _replace_from_temp(path) as tmp:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
