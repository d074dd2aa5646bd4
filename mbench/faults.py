"""Fault injection for the reliability campaign: kill the process, or fail a write, at a named point.

``MBENCH_FAULT`` holds comma-separated specs ``<kind>:<point>:<n>``: the n-th time (1-based) this
process reaches ``<point>``, ``kill`` sends itself SIGKILL (a crash, no cleanup) and ``enospc`` /
``eio`` raise ``OSError`` (a full disk, a failing disk) from inside the writer. ``<point>`` may end
in ``*`` to match every point with that prefix (``kill:write.*:3``: the third write of any kind).

``MBENCH_FAULT_TRACE=<file>`` appends one line ``<point>`` per point reached, so a campaign can
list the points a run passes through and choose kills among them (seeded and recorded).

Both are read once, at import. With neither set, ``reached`` is one global test and a return:
the hooks cost nothing in a normal run.

Points: ``encode.batch`` (after each encoded batch), ``store.shard`` (a shard's data written,
its record not yet), ``search.tile`` (after each pool tile), ``rerank.batch`` (after each scored
and cached batch of pairs), ``write.<what>`` (a file about to be written: the place of a full
disk) and ``rename.<what>`` (a file written and synced, not yet renamed into place), where
``<what>`` is ``shard``, ``shard_record``, ``manifest``, ``run``, ``per_query``, ``result``,
``submission``, ``rerank_scores`` or ``score_cache``.
"""

from __future__ import annotations

import errno
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

FAULT_ENV = "MBENCH_FAULT"
TRACE_ENV = "MBENCH_FAULT_TRACE"
KINDS = ("kill", "enospc", "eio")
# File name -> the ``<what>`` of its write points; the first pattern that matches wins.
_FILE_KINDS = (
    (re.compile(r"^shard-\d+-[0-9a-f]+\.npy$"), "shard"),
    (re.compile(r"^shard-\d+\.json$"), "shard_record"),
    (re.compile(r"^manifest\.json$"), "manifest"),
    (re.compile(r"^run\.trec(\.gz)?$"), "run"),
    (re.compile(r"^per_query\.parquet$"), "per_query"),
    (re.compile(r"^result\.json$"), "result"),
    (re.compile(r"^submission\.json$"), "submission"),
    (re.compile(r"^rerank_scores\.parquet$"), "rerank_scores"),
    (re.compile(r"^scores\.sqlite$"), "score_cache"),
)


@dataclass(frozen=True)
class Fault:
    """One injected fault: what happens (``kind``), where (``point``) and on which visit (``n``)."""

    kind: str
    point: str
    n: int

    def matches(self, point: str) -> bool:
        """Whether ``point`` is this fault's point (a trailing ``*`` matches a prefix)."""
        if self.point.endswith("*"):
            return point.startswith(self.point[:-1])
        return point == self.point


def parse(text: str) -> list[Fault]:
    """The faults of an ``MBENCH_FAULT`` value; a malformed spec is a ValueError naming it."""
    faults = []
    for spec in (part.strip() for part in text.split(",")):
        if not spec:
            continue
        kind, _, rest = spec.partition(":")
        point, _, count = rest.rpartition(":")
        if kind not in KINDS or not point or not count.isdigit() or int(count) < 1:
            raise ValueError(f"{FAULT_ENV}: {spec!r} is not <kill|enospc|eio>:<point>:<n> with n >= 1")
        faults.append(Fault(kind, point, int(count)))
    return faults


_FAULTS: list[Fault] = []
_TRACE: str | None = None
_ACTIVE = False
_visits: dict[Fault, int] = {}


def configure(faults: str = "", trace: str | None = None) -> None:
    """Plan ``faults`` (an ``MBENCH_FAULT`` value) and the trace file anew, counting visits from zero.

    Import does this from the environment; a process forked from one that imported mbench
    (a campaign's worker) calls it again with its own settings.
    """
    global _FAULTS, _TRACE, _ACTIVE
    _FAULTS, _TRACE = parse(faults), trace or None
    _ACTIVE = bool(_FAULTS) or _TRACE is not None
    _visits.clear()


configure(os.environ.get(FAULT_ENV, ""), os.environ.get(TRACE_ENV))


def reached(point: str) -> None:
    """Mark that execution reached ``point``: trace it, and fire a fault planned for this visit."""
    if _ACTIVE:
        _reached(point)


def before_write(path: str | Path) -> None:
    """The point ``write.<what>`` of the file ``path``: called by a writer before its first byte."""
    if _ACTIVE:
        _reached("write." + file_kind(path))


def before_rename(path: str | Path) -> None:
    """The point ``rename.<what>``: the file's temp copy is complete and synced, not yet in place."""
    if _ACTIVE:
        _reached("rename." + file_kind(path))


def file_kind(path: str | Path) -> str:
    """The ``<what>`` of a file's write points, from its name (``other`` for names not listed)."""
    name = Path(path).name
    return next((kind for pattern, kind in _FILE_KINDS if pattern.match(name)), "other")


def _reached(point: str) -> None:
    if _TRACE is not None:
        with open(_TRACE, "a", encoding="utf-8") as trace:
            trace.write(point + "\n")
    for fault in _FAULTS:
        if not fault.matches(point):
            continue
        _visits[fault] = _visits.get(fault, 0) + 1
        if _visits[fault] != fault.n:
            continue
        if fault.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        code = errno.ENOSPC if fault.kind == "enospc" else errno.EIO
        raise OSError(code, f"{os.strerror(code)} (injected by {FAULT_ENV} at {point})")
