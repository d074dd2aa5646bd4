"""One rounding rule for every number a person reads; files keep full precision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mbench.cli import main
from mbench.display import display_decimals, format_value
from mbench.errors import MbenchError


@pytest.mark.parametrize(
    ("value", "decimals", "shown"),
    [(0.6955, 2, "69.55"), (0.6955, 1, "69.6"), (0.125, 0, "13"), (0.64508, 2, "64.51"), (-0.00001, 2, "0.00")],
)
def test_values_are_scaled_by_100_and_rounded_half_away_from_zero(value: float, decimals: int, shown: str) -> None:
    assert format_value(value, decimals) == shown


def test_signed_values_carry_their_sign_except_a_rounded_zero() -> None:
    assert [format_value(v, 2, signed=True) for v in (0.01, -0.01, 0.00001)] == ["+1.00", "-1.00", "0.00"]


def test_decimals_come_from_the_option_then_the_environment_then_the_spec_then_two(monkeypatch) -> None:
    monkeypatch.delenv("MBENCH_DECIMALS", raising=False)
    assert (display_decimals(), display_decimals(None, 1)) == (2, 1)
    monkeypatch.setenv("MBENCH_DECIMALS", "3")
    assert (display_decimals(None, 1), display_decimals(0, 1)) == (3, 0)
    monkeypatch.setenv("MBENCH_DECIMALS", "two")
    with pytest.raises(MbenchError, match="MBENCH_DECIMALS='two'"):
        display_decimals()


def test_run_summary_and_table_show_the_same_digits(tmp_path: Path, monkeypatch, capsys) -> None:
    # Regression: the run summary printed 69.55 and `mbench table` 69.5 for the same number.
    monkeypatch.setenv("MBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MBENCH_DECIMALS", raising=False)
    results = str(tmp_path / "results")
    assert main(["run", "--model", "hash-embed", "--tasks", "mini.beir.towns", "--results-dir", results,
                 "--no-progress"]) == 0
    summary = capsys.readouterr().out
    [path] = (tmp_path / "results").glob("hash-embed/*/mini.beir.towns/local/result.json")
    value = json.loads(path.read_text())["metrics"]["ndcg@10"]
    shown = format_value(value, 2)
    assert len(shown.split(".")[1]) == 2 and f" {shown} " in summary
    assert main(["table", "--tasks", "mini.beir.towns", "--models", "hash-embed", "--results-dir", results]) == 0
    assert f"| {shown} |" in capsys.readouterr().out
    assert main(["table", "--tasks", "mini.beir.towns", "--models", "hash-embed", "--results-dir", results,
                 "--decimals", "1"]) == 0
    assert f"| {format_value(value, 1)} |" in capsys.readouterr().out
