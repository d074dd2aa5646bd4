"""Paired bootstrap CI and sign-flip test: hand-checked tiny cases, a normal-theory check, `mbench compare`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from fake_results import fingerprint_of, write_result

from mbench.cli import main
from mbench.errors import MbenchError
from mbench.reporting.result_index import load_found
from mbench.reporting.stats import compare_pair, paired_bootstrap_ci, sign_flip_p_value


def test_all_differences_equal_give_a_point_ci_and_the_smallest_p() -> None:
    # Every resample of 30 equal differences has mean 0.2; a random sign flip reaches |sum| = 6 only when
    # all 30 signs agree (probability 2^-29), so no permutation does and p = 1 / (R + 1).
    d = np.full(30, 0.2)
    assert paired_bootstrap_ci(d) == pytest.approx((0.2, 0.2), abs=1e-12)
    assert sign_flip_p_value(d) == 1 / 10_001
    assert sign_flip_p_value(d, n_permutations=99) == 1 / 100


def test_identical_results_give_zero_ci_and_p_one() -> None:
    d = np.zeros(50)
    assert paired_bootstrap_ci(d) == (0.0, 0.0)
    assert sign_flip_p_value(d) == 1.0


def test_two_queries_by_hand() -> None:
    # d = (0, 1): resample means are 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4, so the 2.5% and
    # 97.5% quantiles are 0 and 1.
    assert paired_bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    # d = (1, 1): |s1 + s2| = 2 for half the sign vectors: p = (1 + ~R/2) / (R + 1).
    assert sign_flip_p_value([1.0, 1.0]) == pytest.approx(0.5, abs=0.015)
    # One query: every flip is as extreme as the observation.
    assert sign_flip_p_value([0.7]) == 1.0


def test_three_queries_exact_null_distribution() -> None:
    # d = (1, 1, -1): sums over the 8 sign vectors are ±3 (2 of 8) and ±1 (6 of 8); observed |sum| = 1, so
    # every vector is at least as extreme: p = 1. With d = (1, 1, 1): only ±3 (2 of 8): p ≈ 1/4.
    assert sign_flip_p_value([1.0, 1.0, -1.0]) == 1.0
    assert sign_flip_p_value([1.0, 1.0, 1.0]) == pytest.approx(0.25, abs=0.015)


def test_bootstrap_agrees_with_normal_theory_on_a_large_sample() -> None:
    rng = np.random.default_rng(7)
    d = rng.normal(0.05, 0.3, size=2000)
    low, high = paired_bootstrap_ci(d)
    half_width = 1.96 * d.std(ddof=1) / np.sqrt(d.size)
    assert low == pytest.approx(d.mean() - half_width, abs=0.002)
    assert high == pytest.approx(d.mean() + half_width, abs=0.002)
    # Mean 0.05 with standard error 0.0067: z ≈ 7.5, far beyond anything 10,000 flips produce.
    assert sign_flip_p_value(d) == 1 / 10_001


def test_seeded_and_chunked_work_is_deterministic() -> None:
    d = np.random.default_rng(1).normal(0.0, 1.0, size=30_000)  # 30k queries: several chunks of resamples
    # 500 resamples of 30k queries still take 4 chunks (139 resamples each).
    assert paired_bootstrap_ci(d, n_resamples=500, seed=3) == paired_bootstrap_ci(d, n_resamples=500, seed=3)
    assert sign_flip_p_value(d, n_permutations=500, seed=3) == sign_flip_p_value(d, n_permutations=500, seed=3)
    assert paired_bootstrap_ci(d, n_resamples=500, seed=3) != paired_bootstrap_ci(d, n_resamples=500, seed=4)


def test_rejects_empty_or_nan() -> None:
    with pytest.raises(ValueError):
        paired_bootstrap_ci([])
    with pytest.raises(ValueError):
        sign_flip_p_value([0.1, float("nan")])


# ------------------------------------------------------------------ mbench compare


def _hits(n: int, seed: int, p: float = 0.6) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < p).astype(float)


def _compare_csv(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, str]]:
    assert main(["compare", *argv, "--format", "csv"]) == 0
    return list(csv.DictReader(io.StringIO(capsys.readouterr().out)))


def test_same_model_twice_ci_covers_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hits = _hits(400, 0)
    a = write_result(tmp_path, model="m", fingerprint=fingerprint_of("a"), task="mbeir.cirr.it2i", pool="global",
                     per_query={"hit@5": hits}, main_metric="hit@5")  # fmt: skip
    b = write_result(tmp_path, model="m", fingerprint=fingerprint_of("b"), task="mbeir.cirr.it2i", pool="global",
                     per_query={"hit@5": hits}, main_metric="hit@5")  # fmt: skip
    [line] = _compare_csv(capsys, str(a), str(b))
    assert float(line["delta"]) == 0.0
    assert float(line["ci_low"]) <= 0.0 <= float(line["ci_high"])
    assert float(line["p"]) == 1.0
    assert line["n"] == "400" and line["metric"] == "hit@5"


def test_degraded_copy_ci_excludes_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hits = _hits(400, 0)
    degraded = hits.copy()
    degraded[::2] = 0.0  # every other query loses its hit
    a = write_result(tmp_path / "a", model="m", task="mbeir.cirr.it2i", pool="global", per_query={"hit@5": hits},
                     main_metric="hit@5")  # fmt: skip
    b = write_result(tmp_path / "b", model="m", task="mbeir.cirr.it2i", pool="global", per_query={"hit@5": degraded},
                     main_metric="hit@5")  # fmt: skip
    [line] = _compare_csv(capsys, str(a), str(b))
    expected = degraded.mean() - hits.mean()
    assert float(line["delta"]) == pytest.approx(expected)
    assert float(line["ci_high"]) < 0.0
    assert float(line["p"]) < 0.001
    # The markdown form says the same, x100, with the significance mark.
    assert main(["compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert f"{100 * expected:+.2f} †" in out and "95% CI" in out


def test_folders_of_results_are_paired_by_task_and_pool(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for side, shift in (("a", 0), ("b", 1)):
        for task in ("mteb.scifact", "mteb.nfcorpus"):
            write_result(tmp_path / side, model=f"m{side}", task=task, pool="local",
                         per_query={"ndcg@10": _hits(50, shift)}, main_metric="ndcg@10")  # fmt: skip
    write_result(tmp_path / "a", model="ma", task="mteb.arguana", pool="local",
                 per_query={"ndcg@10": _hits(50, 0)}, main_metric="ndcg@10")  # fmt: skip
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--format", "csv"]) == 0
    captured = capsys.readouterr()
    lines = list(csv.DictReader(io.StringIO(captured.out)))
    assert [line["task"] for line in lines] == ["mteb.nfcorpus", "mteb.scifact"]
    assert "only in A: ma/" in captured.err and "mteb.arguana" in captured.err


def test_missing_queries_are_an_error_naming_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = write_result(tmp_path / "a", model="m", task="mteb.scifact", pool="local", per_query={"ndcg@10": [0.1, 0.2, 0.3]},
                     qids=["q1", "q2", "q3"], main_metric="ndcg@10")  # fmt: skip
    b = write_result(tmp_path / "b", model="m", task="mteb.scifact", pool="local", per_query={"ndcg@10": [0.1, 0.2]},
                     qids=["q1", "q2"], main_metric="ndcg@10")  # fmt: skip
    with pytest.raises(MbenchError, match=r"1 qid\(s\) missing from B .*: q3"):
        compare_pair(load_found(a), load_found(b))
    assert main(["compare", str(a), str(b)]) == 2
    assert "q3" in capsys.readouterr().err


def test_compare_joins_on_qid_not_position(tmp_path: Path) -> None:
    a = write_result(tmp_path / "a", model="m", task="mteb.scifact", pool="local", per_query={"ndcg@10": [1.0, 0.0]},
                     qids=["x", "y"], main_metric="ndcg@10")  # fmt: skip
    b = write_result(tmp_path / "b", model="m", task="mteb.scifact", pool="local", per_query={"ndcg@10": [0.0, 1.0]},
                     qids=["y", "x"], main_metric="ndcg@10")  # fmt: skip
    result = compare_pair(load_found(a), load_found(b))
    assert result.delta == 0.0 and (result.ci_low, result.ci_high) == (0.0, 0.0) and result.p_value == 1.0


def test_compare_refuses_different_tasks(tmp_path: Path) -> None:
    a = write_result(tmp_path / "a", model="m", task="mteb.scifact", pool="local", per_query={"ndcg@10": [1.0]},
                     main_metric="ndcg@10")  # fmt: skip
    b = write_result(tmp_path / "b", model="m", task="mteb.nfcorpus", pool="local", per_query={"ndcg@10": [1.0]},
                     main_metric="ndcg@10")  # fmt: skip
    with pytest.raises(MbenchError, match="different task or pool"):
        compare_pair(load_found(a), load_found(b))
