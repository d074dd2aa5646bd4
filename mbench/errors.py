"""The one exception type the CLI turns into a clear message and exit code 2."""

from __future__ import annotations


class MbenchError(Exception):
    """Bad input or state the user can fix (names the file, line or id); exit code 2 in the CLI."""


def write_failed(path: object, err: OSError) -> MbenchError:
    """The error for a file that could not be written (a full or failing disk): it names the file.

    Writes are atomic, so the file that was there (if any) is unchanged, and whatever was
    complete before (stored shards, cached scores, other results) is kept for the next run.
    """
    reason = err.strerror or str(err)
    return MbenchError(f"cannot write {path}: {reason}; the previous file, if any, is unchanged and everything "
                       "completed so far is kept: fix the disk (free space) and run the command again")
