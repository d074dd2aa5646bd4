"""Progress reporting: a tqdm bar on a terminal, plain periodic lines elsewhere (log files, Slurm).

A bar redrawn with carriage returns turns a log file into one unreadable line, so when the stream
is not a terminal the same counts are printed as one line every ``every`` seconds:
``search: 3/70 tiles, 1.2M cand/s, ETA 0:00:35``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.1f}{unit}"
    return f"{x:.1f}"


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class PlainProgress:
    """Counts work and prints ``desc: done/total unit, rate rate_unit/s, ETA`` every ``every`` seconds."""

    def __init__(
        self,
        total: int,
        desc: str,
        unit: str,
        *,
        rate_unit: str | None = None,
        stream: TextIO | None = None,
        every: float = 10.0,
    ) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.rate_unit = rate_unit or unit
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self.done = 0
        self.work = 0.0  # what the rate counts (e.g. candidates while ``done`` counts tiles)
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1, work: float | None = None) -> None:
        """Add ``n`` done (and ``work`` units of rate, default ``n``); print when ``every`` seconds passed."""
        self.done += n
        self.work += n if work is None else work
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._print(now)

    def close(self) -> None:
        """Print the final line (once something was done)."""
        if self.done:
            self._print(time.monotonic())
        self.done = 0

    def _print(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        line = f"{self.desc}: {self.done}/{self.total} {self.unit}, {_si(self.work / elapsed)} {self.rate_unit}/s"
        if 0 < self.done < self.total:
            line += f", ETA {_clock(elapsed * (self.total - self.done) / self.done)}"
        else:
            line += f", {_clock(elapsed)} elapsed"
        print(line, file=self.stream, flush=True)


class _TqdmProgress:
    """tqdm counting ``rate_unit`` (the rate tqdm shows), with the ``unit`` count as its postfix."""

    def __init__(self, total: int, desc: str, unit: str, rate_unit: str | None, work_total: float | None, stream: TextIO) -> None:
        from tqdm import tqdm

        self.total, self.unit, self.done = total, unit, 0
        self.counts_work = rate_unit is not None and work_total is not None
        self.bar = tqdm(
            total=work_total if self.counts_work else total,
            desc=desc,
            unit=rate_unit if self.counts_work else unit,
            unit_scale=self.counts_work,
            file=stream,
            dynamic_ncols=True,
        )

    def update(self, n: int = 1, work: float | None = None) -> None:
        """Add ``n`` done (``work`` units of rate when the bar counts them)."""
        self.done += n
        if self.counts_work:
            self.bar.set_postfix_str(f"{self.done}/{self.total} {self.unit}", refresh=False)
            self.bar.update(n if work is None else work)
        else:
            self.bar.update(n)

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


class _NoProgress:
    def update(self, n: int = 1, work: float | None = None) -> None:
        """Nothing to report."""

    def close(self) -> None:
        """Nothing to close."""


def progress(
    total: int,
    desc: str,
    unit: str,
    *,
    enabled: bool = True,
    rate_unit: str | None = None,
    work_total: float | None = None,
    stream: TextIO | None = None,
) -> Any:
    """A progress reporter with ``update(n, work=None)`` and ``close()``: a bar on a TTY, plain lines otherwise.

    ``rate_unit`` and ``work_total`` let the rate count something else than the steps (tiles
    done, candidates per second).
    """
    if not enabled or total <= 0:
        return _NoProgress()
    stream = stream if stream is not None else sys.stderr
    if getattr(stream, "isatty", lambda: False)():
        return _TqdmProgress(total, desc, unit, rate_unit, work_total, stream)
    return PlainProgress(total, desc, unit, rate_unit=rate_unit, stream=stream)
