"""How every speed benchmark measures, so a busy machine cannot flatter one method over another.

* The load average is recorded before and after; a run during which it exceeded the core count
  is noisy: the result line says so and no result file is written unless ``--allow-noisy``
  (the file then says it is noisy).
* Methods run in alternating order over repeats (A B, B A, A B, ...): a load drift during the
  run hits every method alike, and each method's median over the repeats is reported.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages (zeros where the OS does not report them)."""
    try:
        return os.getloadavg()
    except OSError:
        return (0.0, 0.0, 0.0)


@dataclass
class LoadRecord:
    """The load average around a measurement and the verdict on it."""

    cores: int = field(default_factory=lambda: os.cpu_count() or 1)
    before: tuple[float, float, float] = field(default_factory=lambda: load_average())  # looked up at call time
    after: tuple[float, float, float] | None = None

    def stop(self) -> None:
        """Record the load average at the end of the measurement."""
        self.after = load_average()

    @property
    def noisy(self) -> bool:
        """Whether the 1-minute load average exceeded the core count before or after."""
        ones = [self.before[0]] + ([self.after[0]] if self.after is not None else [])
        return max(ones) > self.cores

    def describe(self) -> str:
        """``load average (1 min) 0.41 -> 1.20 on 2 cores`` plus a NOISY warning where it applies."""
        after = f"{self.after[0]:.2f}" if self.after is not None else "?"
        text = f"load average (1 min) {self.before[0]:.2f} -> {after} on {self.cores} cores"
        if self.noisy:
            text += " -- NOISY: above the core count, other processes shared the cores"
        return text


def write_refusal(load: LoadRecord, allow_noisy: bool) -> str | None:
    """Why a result file must not be written (a noisy run without ``--allow-noisy``), else None."""
    if load.noisy and not allow_noisy:
        return f"not writing the result file: {load.describe()}; rerun on a quiet machine or pass --allow-noisy"
    return None


def alternating_orders(names: Sequence[str], repeats: int) -> list[list[str]]:
    """The order of the methods in each repeat: as given, reversed, as given, ... (A B, B A, A B)."""
    return [list(names) if r % 2 == 0 else list(reversed(names)) for r in range(repeats)]


def median(values: Sequence[float]) -> float:
    """The median of the repeats."""
    return float(statistics.median(values))
