"""How metric values are shown to people: one rounding rule for every summary, table and report.

Files (result.json, CSV, JSON) keep full-precision fractions. What a person reads is the fraction
times 100, rounded half away from zero to a number of decimals chosen, first match wins, by the
command's ``--decimals``, the ``MBENCH_DECIMALS`` environment variable, the leaderboard spec's
``format.decimals`` (a paper table printed to 1 decimal), else ``DEFAULT_DECIMALS``.
"""

from __future__ import annotations

import math
import os
from decimal import ROUND_HALF_UP, Decimal

from mbench.errors import MbenchError

DEFAULT_DECIMALS = 2
DECIMALS_ENV = "MBENCH_DECIMALS"
MAX_DECIMALS = 6


def display_decimals(option: int | None = None, spec_decimals: int | None = None) -> int:
    """The decimals to show: ``option`` (--decimals), else $MBENCH_DECIMALS, else ``spec_decimals``, else 2."""
    if option is not None:
        return _checked(option, "--decimals")
    env = os.environ.get(DECIMALS_ENV, "").strip()
    if env:
        try:
            return _checked(int(env), DECIMALS_ENV)
        except ValueError:
            raise MbenchError(f"{DECIMALS_ENV}={env!r}: expected a whole number of decimals (0-{MAX_DECIMALS})") from None
    return DEFAULT_DECIMALS if spec_decimals is None else spec_decimals


def _checked(decimals: int, origin: str) -> int:
    if not 0 <= decimals <= MAX_DECIMALS:
        raise MbenchError(f"{origin}: {decimals} decimals; give 0 to {MAX_DECIMALS}")
    return decimals


def format_value(value: float, decimals: int, *, scale: float = 100.0, signed: bool = False) -> str:
    """``value * scale`` rounded half away from zero (69.555 -> 69.56); signed adds + (a rounded 0 gets no sign)."""
    if math.isnan(value):
        raise ValueError("format_value of NaN: show a missing value explicitly")
    # Decimal of the shortest repr, so 0.6955 * 100 (69.55 on paper) rounds as written, not as its binary neighbour.
    scaled = Decimal(repr(float(value) * scale)).quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)
    if scaled == 0:
        scaled = abs(scaled)  # no "-0.00"
    text = f"{scaled:.{decimals}f}"
    return f"+{text}" if signed and scaled > 0 else text


def add_decimals_argument(parser: object) -> None:
    """The ``--decimals N`` option of every command that shows metric values."""
    parser.add_argument(  # type: ignore[attr-defined]
        "--decimals", type=int, default=None, metavar="N",
        help=f"digits after the point of values x100 (default: ${DECIMALS_ENV}, else a leaderboard's own, else "
        f"{DEFAULT_DECIMALS}); files keep full precision",
    )
