"""Paired significance for two results of one task: bootstrap CI of the difference and a sign-flip test.

Both work on per-query differences d_i = B_i - A_i of the main metric (joined on qid), seeded,
and vectorised with numpy in chunks of resamples so memory stays bounded for 50k-query tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mbench.errors import MbenchError
from mbench.metrics import order_free_mean
from mbench.reporting.result_index import FoundResult, newest

DEFAULT_RESAMPLES = 10_000
DEFAULT_SEED = 0
# Work on at most this many (resample x query) entries at once: 4M float64 = 32 MB.
_CHUNK_ENTRIES = 1 << 22
# Sums of per-query differences in [-1, 1] agree to far better than this when mathematically equal.
_TIE_TOLERANCE = 1e-9


def _chunks(n_total: int, n_queries: int) -> list[int]:
    per_chunk = max(1, _CHUNK_ENTRIES // max(1, n_queries))
    sizes = [per_chunk] * (n_total // per_chunk)
    if n_total % per_chunk:
        sizes.append(n_total % per_chunk)
    return sizes


def _as_differences(differences: Sequence[float] | np.ndarray) -> np.ndarray:
    d = np.asarray(differences, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError("need a non-empty 1-d array of per-query differences")
    if not np.all(np.isfinite(d)):
        raise ValueError("per-query differences contain NaN or infinity")
    return d


def paired_bootstrap_ci(
    differences: Sequence[float] | np.ndarray,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of paired differences (queries resampled with replacement)."""
    d = _as_differences(differences)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples, dtype=np.float64)
    start = 0
    for size in _chunks(n_resamples, d.size):
        picks = rng.integers(0, d.size, size=(size, d.size))
        means[start : start + size] = d[picks].mean(axis=1)
        start += size
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(low), float(high)


def sign_flip_p_value(
    differences: Sequence[float] | np.ndarray, *, n_permutations: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED
) -> float:
    """Two-sided paired randomisation test: p = (1 + #{|sum(s_i d_i)| >= |sum(d_i)|}) / (R + 1), s_i = ±1."""
    d = _as_differences(differences)
    observed = abs(float(d.sum()))
    rng = np.random.default_rng(seed)
    at_least_as_extreme = 0
    for size in _chunks(n_permutations, d.size):
        flips = rng.integers(0, 2, size=(size, d.size), dtype=np.int8).astype(bool)
        sums = np.where(flips, d, -d).sum(axis=1)
        at_least_as_extreme += int(np.count_nonzero(np.abs(sums) >= observed - _TIE_TOLERANCE))
    # Counting the observed labelling itself keeps p > 0 and the test exact in size.
    return (1 + at_least_as_extreme) / (n_permutations + 1)


def paired_values(a: FoundResult, b: FoundResult, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-query values of `metric` in A and B joined on qid: (qids, a_values, b_values), in A's order."""
    from mbench.results import read_per_query

    frames = []
    for side, found in (("A", a), ("B", b)):
        if not found.per_query_path.is_file():
            raise MbenchError(f"{side}: {found.directory} has no {found.per_query_path.name}; rerun that result")
        frame = read_per_query(found.per_query_path)
        if metric not in frame.columns:
            raise MbenchError(f"{side}: {found.per_query_path} has no column {metric!r} (columns: {list(frame.columns)})")
        if frame["qid"].duplicated().any():
            dup = frame.loc[frame["qid"].duplicated(), "qid"].astype(str).tolist()[:5]
            raise MbenchError(f"{side}: {found.per_query_path}: duplicate qid(s) {dup}")
        frames.append(frame[["qid", metric]].astype({"qid": str}))
    frame_a, frame_b = frames
    qids_a, qids_b = set(frame_a["qid"]), set(frame_b["qid"])
    only_a, only_b = sorted(qids_a - qids_b), sorted(qids_b - qids_a)
    if only_a or only_b:
        parts = []
        for side, missing, found in (("B", only_a, b), ("A", only_b, a)):
            if missing:
                shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
                parts.append(f"{len(missing)} qid(s) missing from {side} ({found.per_query_path}): {shown}")
        raise MbenchError(
            f"{a.task} [{a.pool}]: the two results were scored on different queries; " + "; ".join(parts)
        )
    joined = frame_a.merge(frame_b, on="qid", suffixes=("_a", "_b"), sort=False)
    return (
        joined["qid"].to_numpy(),
        joined[f"{metric}_a"].to_numpy(dtype=np.float64),
        joined[f"{metric}_b"].to_numpy(dtype=np.float64),
    )


@dataclass(frozen=True)
class PairedComparison:
    """B against A on one task: means, the difference B - A, its bootstrap CI and the sign-flip p-value."""

    task: str
    pool: str
    metric: str
    n_queries: int
    mean_a: float
    mean_b: float
    ci_low: float
    ci_high: float
    p_value: float
    a: FoundResult
    b: FoundResult

    @property
    def delta(self) -> float:
        """Mean of B minus mean of A."""
        return self.mean_b - self.mean_a

    @property
    def significant(self) -> bool:
        """Whether p < 0.05."""
        return self.p_value < 0.05


def compare_pair(
    a: FoundResult,
    b: FoundResult,
    *,
    metric: str | None = None,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> PairedComparison:
    """Compare two results of the same task and pool on `metric` (default: the task's main metric)."""
    if (a.task, a.pool) != (b.task, b.pool):
        raise MbenchError(f"cannot compare {a.describe()} with {b.describe()}: different task or pool")
    if metric is None:
        if a.record.main_metric != b.record.main_metric:
            raise MbenchError(
                f"{a.task}: A's main metric is {a.record.main_metric!r}, B's is {b.record.main_metric!r}; pass --metric"
            )
        metric = str(a.record.main_metric)
    qids, values_a, values_b = paired_values(a, b, metric)
    differences = values_b - values_a
    low, high = paired_bootstrap_ci(differences, n_resamples=n_resamples, seed=seed)
    p_value = sign_flip_p_value(differences, n_permutations=n_resamples, seed=seed)
    return PairedComparison(
        task=a.task,
        pool=a.pool,
        metric=metric,
        n_queries=int(qids.size),
        mean_a=order_free_mean(values_a),  # the bits of result.json's mean (and so of `mbench table`)
        mean_b=order_free_mean(values_b),
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        a=a,
        b=b,
    )


@dataclass(frozen=True)
class Matching:
    """Results of two sides paired by (task, pool, variant), with what could not be paired."""

    pairs: list[tuple[FoundResult, FoundResult]]
    only_a: list[FoundResult]
    only_b: list[FoundResult]
    notes: list[str]


def match_results(side_a: Sequence[FoundResult], side_b: Sequence[FoundResult]) -> Matching:
    """Pair results by (task, pool, variant); several on one side for a key: the newest, with a note."""
    notes: list[str] = []

    def by_key(side: str, results: Sequence[FoundResult]) -> dict[tuple[str, str, str], FoundResult]:
        grouped: dict[tuple[str, str, str], list[FoundResult]] = {}
        for found in results:
            grouped.setdefault((found.task, found.pool, found.record.variant), []).append(found)
        chosen = {}
        for key, group in grouped.items():
            chosen[key] = newest(group)
            if len(group) > 1:
                others = ", ".join(str(g.directory) for g in group if g is not chosen[key])
                notes.append(
                    f"{side}: {len(group)} results for {key[0]} [{key[1]}, {key[2]}]; using the newest "
                    f"(created {chosen[key].record.created}) at {chosen[key].directory}; not used: {others}"
                )
        return chosen

    keyed_a, keyed_b = by_key("A", side_a), by_key("B", side_b)
    pairs = [(keyed_a[k], keyed_b[k]) for k in sorted(keyed_a) if k in keyed_b]
    only_a = [keyed_a[k] for k in sorted(keyed_a) if k not in keyed_b]
    only_b = [keyed_b[k] for k in sorted(keyed_b) if k not in keyed_a]
    return Matching(pairs, only_a, only_b, notes)
