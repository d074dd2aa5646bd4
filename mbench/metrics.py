"""Every retrieval metric of the harness, vectorised with numpy over integer arrays.

Inputs are a ranked matrix of candidate indices per query (``-1`` pads rankings shorter than
the matrix), graded relevance as a CSR structure over candidate indices, and optionally a
candidate-modality array and a per-query target. ``METRICS`` is the registry: one entry per
metric family with its definition, the reference it matches (trec_eval's name where it has one)
and its computation; ``evaluate`` and the documentation's table (``metrics_table``) both read it,
so adding a metric is adding one entry.

A candidate is relevant when its grade is >= the relevance level (1 unless asked: trec_eval's
``-l``); nDCG ignores the level, as trec_eval's ``ndcg_cut`` does: grades > 0 are linear gains
and negative grades count as 0. A query with judgments but no relevant candidate scores 0 on
every binary metric (and nDCG 0 when no grade is positive) and is averaged in, as trec_eval does.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

_METRIC_RE = re.compile(r"^([a-z_]+)@([0-9]+)$")


@dataclass(frozen=True)
class Metric:
    """A parsed metric name such as ``ndcg@10``."""

    family: str
    k: int

    @property
    def name(self) -> str:
        """The canonical name, ``family@k``."""
        return f"{self.family}@{self.k}"


def parse_metric(name: str) -> Metric:
    """Parse ``family@k`` into a Metric, with an error listing the known families."""
    match = _METRIC_RE.match(name.strip())
    if not match or match.group(1) not in METRICS:
        raise ValueError(
            f"unknown metric {name!r}: expected FAMILY@K with FAMILY one of {', '.join(METRIC_FAMILIES)}"
        )
    k = int(match.group(2))
    if k < 1:
        raise ValueError(f"metric {name!r}: k must be >= 1")
    return Metric(match.group(1), k)


def required_depth(metrics: Iterable[str | Metric]) -> int:
    """The ranking depth the given metrics need: their largest k."""
    ks = [(m if isinstance(m, Metric) else parse_metric(m)).k for m in metrics]
    return max(ks, default=0)


@dataclass(frozen=True)
class Relevance:
    """Graded relevance judgments per query: row ``q`` holds candidate indices and grades.

    ``indices[indptr[q]:indptr[q+1]]`` are the judged candidates of query ``q`` (sorted,
    unique) and ``grades`` the matching integer grades. Non-positive grades are judged but
    not relevant.
    """

    indptr: np.ndarray
    indices: np.ndarray
    grades: np.ndarray

    def __post_init__(self) -> None:
        indptr = np.asarray(self.indptr, dtype=np.int64)
        if indptr.ndim != 1 or indptr.size < 1 or indptr[0] != 0 or np.any(np.diff(indptr) < 0):
            raise ValueError("Relevance.indptr must be a non-decreasing 1-d array starting at 0")
        indices = np.asarray(self.indices, dtype=np.int64)
        grades = np.asarray(self.grades, dtype=np.int64)
        if indices.shape != grades.shape or indices.shape[0] != indptr[-1]:
            raise ValueError("Relevance.indices and grades must both have indptr[-1] entries")
        if indices.size and indices.min() < 0:
            raise ValueError("Relevance.indices must be >= 0")
        object.__setattr__(self, "indptr", indptr)
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "grades", grades)

    @property
    def n_queries(self) -> int:
        """Number of query rows."""
        return int(self.indptr.shape[0] - 1)

    def row_ids(self) -> np.ndarray:
        """The query row of every stored judgment."""
        return np.repeat(np.arange(self.n_queries, dtype=np.int64), np.diff(self.indptr))

    def num_relevant(self, level: int = 1) -> np.ndarray:
        """Per query, the number of candidates with grade >= ``level`` (trec_eval's num_rel under ``-l``)."""
        return np.bincount(self.row_ids()[self.grades >= level], minlength=self.n_queries).astype(np.int64)

    @classmethod
    def from_pairs(
        cls,
        query_index: Sequence[int] | np.ndarray,
        cand_index: Sequence[int] | np.ndarray,
        grades: Sequence[int] | np.ndarray,
        n_queries: int,
    ) -> Relevance:
        """Build from parallel (query row, candidate index, grade) arrays; a repeated pair is an error."""
        q = np.asarray(query_index, dtype=np.int64)
        c = np.asarray(cand_index, dtype=np.int64)
        g = np.asarray(grades, dtype=np.int64)
        if not (q.shape == c.shape == g.shape):
            raise ValueError("query_index, cand_index and grades must have the same length")
        if q.size and (q.min() < 0 or q.max() >= n_queries):
            raise ValueError(f"query_index out of range for {n_queries} queries")
        if c.size and c.min() < 0:
            raise ValueError("cand_index must be >= 0")
        order = _row_major_order(q, c, n_queries)
        if order is not None:
            q, c, g = q[order], c[order], g[order]
        repeated = np.flatnonzero((q[1:] == q[:-1]) & (c[1:] == c[:-1]))
        if repeated.size:
            i = repeated[0]
            raise ValueError(f"candidate {int(c[i])} is judged twice for query row {int(q[i])}")
        indptr = np.zeros(n_queries + 1, dtype=np.int64)
        np.cumsum(np.bincount(q, minlength=n_queries), out=indptr[1:])
        return cls(indptr, c, g)

    @classmethod
    def from_lists(
        cls, cand_lists: Sequence[Sequence[int]], grade_lists: Sequence[Sequence[int]] | None = None
    ) -> Relevance:
        """Build from one list of candidate indices per query (grades default to 1)."""
        lengths = [len(x) for x in cand_lists]
        q = np.repeat(np.arange(len(cand_lists), dtype=np.int64), lengths)
        c = np.fromiter((i for row in cand_lists for i in row), dtype=np.int64, count=sum(lengths))
        if grade_lists is None:
            g = np.ones_like(c)
        else:
            g = np.fromiter((x for row in grade_lists for x in row), dtype=np.int64, count=sum(lengths))
        return cls.from_pairs(q, c, g, len(cand_lists))

    def subset(self, rows: np.ndarray) -> Relevance:
        """The relevance of the given query rows, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, ends = self.indptr[rows], self.indptr[rows + 1]
        lengths = ends - starts
        indptr = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        take = np.repeat(starts - indptr[:-1], lengths) + np.arange(indptr[-1], dtype=np.int64)
        return Relevance(indptr, self.indices[take], self.grades[take])


def _row_major_order(rows: np.ndarray, cands: np.ndarray, n_rows: int) -> np.ndarray | None:
    """The permutation sorting (row, candidate) pairs, or None when they are already sorted."""
    if rows.size < 2:
        return None
    width = int(cands.max()) + 1
    if n_rows * width < 2**62:
        # One packed int64 key per pair: a single sort is several times cheaper than lexsort, and
        # inputs that arrive sorted (most qrels files) skip sorting altogether.
        keys = rows * width + cands
        if np.all(keys[1:] >= keys[:-1]):
            return None
        # Stability is irrelevant: equal keys are repeated judgments, which callers reject.
        return np.argsort(keys)
    return np.lexsort((cands, rows))


@dataclass(frozen=True)
class MetricResults:
    """Per-query values of each metric (float64 arrays, one entry per query row)."""

    per_query: dict[str, np.ndarray]

    def mean(self, rows: np.ndarray | None = None) -> dict[str, float]:
        """The mean of every metric over all query rows, or over the selected ``rows``."""
        out = {}
        for name, values in self.per_query.items():
            selected = values if rows is None else values[rows]
            out[name] = order_free_mean(selected)
        return out


def order_free_mean(values: np.ndarray) -> float:
    """The mean with a correctly rounded sum (math.fsum): the same bits whatever order the queries come in."""
    import math

    return math.fsum(values.tolist()) / values.size if values.size else 0.0


def ranked_grades(ranking: np.ndarray, relevance: Relevance) -> np.ndarray:
    """The grade of every ranked candidate (0 for unjudged and padding), same shape as ``ranking``."""
    ranking = np.asarray(ranking, dtype=np.int64)
    if ranking.ndim != 2:
        raise ValueError("ranking must be a 2-d array (n_queries x depth)")
    n_queries, depth = ranking.shape
    if n_queries != relevance.n_queries:
        raise ValueError(f"ranking has {n_queries} rows but relevance has {relevance.n_queries} queries")
    if ranking.size and ranking.min() < -1:
        raise ValueError("ranking holds candidate indices >= 0, or -1 for padding; found a value below -1")
    if relevance.indices.size == 0 or ranking.size == 0:
        return np.zeros(ranking.shape, dtype=np.int64)
    indptr, indices, grades = _sorted_rows(relevance)
    # One int64 key per judgment, (row, candidate + 1), sorted because the rows are; a ranked
    # candidate is found by one binary search. Padding (-1) maps to (row, 0), which no judgment has.
    width = int(max(indices.max(), ranking.max())) + 2
    if n_queries * width >= 2**62:
        raise ValueError(f"{n_queries} queries x {width} candidate indices is too large to index")
    keys = np.repeat(np.arange(n_queries, dtype=np.int64) * width, np.diff(indptr)) + (indices + 1)
    lookup = (np.arange(n_queries, dtype=np.int64)[:, None] * width + (ranking + 1)).reshape(-1)
    pos = np.minimum(np.searchsorted(keys, lookup), keys.size - 1)
    found = keys[pos] == lookup
    return np.where(found, grades[pos], 0).reshape(ranking.shape)


def _sorted_rows(relevance: Relevance) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """indptr, indices and grades with each row's indices strictly increasing (sorted if needed)."""
    indptr, indices, grades = relevance.indptr, relevance.indices, relevance.grades
    starts_row = np.zeros(indices.size, dtype=bool)
    starts_row[indptr[:-1][indptr[:-1] < indices.size]] = True
    if not np.any((indices[1:] <= indices[:-1]) & ~starts_row[1:]):
        return indptr, indices, grades
    rows = relevance.row_ids()
    order = _row_major_order(rows, indices, relevance.n_queries)
    if order is not None:
        indices, grades = indices[order], grades[order]
    if np.any((indices[1:] == indices[:-1]) & (rows[1:] == rows[:-1])):
        raise ValueError("Relevance judges some candidate twice for the same query")
    return indptr, indices, grades


def _discounts(k: int) -> np.ndarray:
    """1 / log2(i + 1) for ranks i = 1..k, trec_eval's nDCG discount."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


# Up to this many distinct positive grades, the ideal DCG is built grade level by grade level
# (a few linear passes); beyond it, by sorting every row's gains.
_MAX_GRADE_LEVELS = 8


def _ideal_dcg(relevance: Relevance, k: int) -> np.ndarray:
    """Per query, the DCG of the judged positive grades sorted descending, cut at k."""
    n_queries = relevance.n_queries
    positive = relevance.grades > 0
    rows = relevance.row_ids()[positive]
    gains = relevance.grades[positive]
    if gains.size == 0:
        return np.zeros(n_queries, dtype=np.float64)
    top = int(gains.max())
    levels = np.flatnonzero(np.bincount(gains)) if top <= 4096 else None
    if levels is not None and levels.size <= _MAX_GRADE_LEVELS:
        # The ideal ranking puts each query's gains of the highest level first, then the next:
        # level g occupies positions [start, start + count_g), worth g x the discounts there.
        cum_discount = np.concatenate(([0.0], np.cumsum(_discounts(k))))
        ideal = np.zeros(n_queries, dtype=np.float64)
        start = np.zeros(n_queries, dtype=np.int64)
        for grade in levels[::-1]:
            end = start + np.bincount(rows[gains == grade], minlength=n_queries)
            ideal += grade * (cum_discount[np.minimum(end, k)] - cum_discount[np.minimum(start, k)])
            start = end
        return ideal
    # Rows are already sorted; sorting packed (row, top - grade) keys orders each row's gains
    # descending without moving rows, and sorting keys is far cheaper than a lexsort.
    span = top + 1
    if n_queries * span < 2**62:
        gains = span - 1 - (np.sort(rows * span + (span - 1 - gains)) - rows * span)
    else:
        gains = gains[np.lexsort((-gains, rows))]
    counts = np.bincount(rows, minlength=n_queries)
    position = np.arange(rows.size) - (np.cumsum(counts) - counts)[rows]
    keep = position < k
    return np.bincount(rows[keep], weights=gains[keep] * _discounts(k)[position[keep]], minlength=n_queries)


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(num.shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


class _Ranked:
    """What every metric reads off one ranking: grades down the ranking and their running sums.

    The sums only some families need are computed on first use, once per ``evaluate`` call.
    """

    def __init__(
        self,
        ranking: np.ndarray,
        relevance: Relevance,
        cand_modality: np.ndarray | Sequence[str] | None,
        expected_modality: str | None,
        targets: np.ndarray | Sequence[int] | None,
        relevance_level: int = 1,
    ) -> None:
        self.ranking = ranking
        self.relevance = relevance
        self.cand_modality = cand_modality
        self.expected_modality = expected_modality
        self.targets = targets
        self.n_queries, self.depth = ranking.shape
        self.grades = ranked_grades(ranking, relevance)
        # Binary relevance is grade >= the level (trec_eval's -l); nDCG reads the grades themselves.
        self.is_relevant = self.grades >= relevance_level
        self.num_relevant = relevance.num_relevant(relevance_level).astype(np.float64)
        # Cumulative count of relevant candidates down the ranking: P@i = cum_relevant[:, i-1] / i.
        self.cum_relevant = np.cumsum(self.is_relevant, axis=1, dtype=np.float64)

    @functools.cached_property
    def sum_precision(self) -> np.ndarray:
        """Running sum of P@i over the relevant ranks i."""
        precision_at_i = self.cum_relevant / np.arange(1, self.depth + 1, dtype=np.float64)
        return np.cumsum(np.where(self.is_relevant, precision_at_i, 0.0), axis=1)

    @functools.cached_property
    def first_relevant(self) -> np.ndarray:
        """Position of each query's first relevant candidate, or -1 if none is ranked.

        (A sentinel of ``depth`` would wrongly fall inside k when the ranking is shorter than k;
        argmax refuses an empty axis, which a run that retrieved nothing at all has.)
        """
        first_position = self.is_relevant.argmax(axis=1) if self.depth else np.zeros(self.n_queries, dtype=np.int64)
        return np.where(self.is_relevant.any(axis=1), first_position, -1)

    @functools.cached_property
    def gains(self) -> np.ndarray:
        """Linear gains of the ranked candidates (negative grades count as 0)."""
        return np.maximum(self.grades, 0).astype(np.float64)

    def upto(self, matrix: np.ndarray, k: int) -> np.ndarray:
        """Column k-1 of a cumulative matrix, where rankings shorter than k keep their last value."""
        if self.depth == 0:
            return np.zeros(self.n_queries, dtype=np.float64)
        return matrix[:, min(k, self.depth) - 1]


def _hit(r: _Ranked, k: int) -> np.ndarray:
    return (r.upto(r.cum_relevant, k) > 0).astype(np.float64)


def _recall(r: _Ranked, k: int) -> np.ndarray:
    return _safe_divide(r.upto(r.cum_relevant, k), r.num_relevant)


def _precision(r: _Ranked, k: int) -> np.ndarray:
    return r.upto(r.cum_relevant, k) / k


def _ndcg(r: _Ranked, k: int) -> np.ndarray:
    top = r.gains[:, :k]
    dcg = top @ _discounts(k)[: top.shape[1]]
    return _safe_divide(dcg, _ideal_dcg(r.relevance, k))


def _map(r: _Ranked, k: int) -> np.ndarray:
    return _safe_divide(r.upto(r.sum_precision, k), np.minimum(r.num_relevant, k))


def _map_cut(r: _Ranked, k: int) -> np.ndarray:
    return _safe_divide(r.upto(r.sum_precision, k), r.num_relevant)


def _mrr(r: _Ranked, k: int) -> np.ndarray:
    within = (r.first_relevant >= 0) & (r.first_relevant < k)
    values = np.zeros(r.n_queries, dtype=np.float64)
    values[within] = 1.0 / (r.first_relevant[within] + 1.0)
    return values


def _modality_acc(r: _Ranked, k: int) -> np.ndarray:
    return _modality_accuracy(r.ranking[:, :k], k, r.cand_modality, r.expected_modality)


def _circo_recall(r: _Ranked, k: int) -> np.ndarray:
    if r.targets is None:
        raise ValueError(f"circo_recall@{k} needs per-query targets")
    target = np.asarray(r.targets, dtype=np.int64)
    if target.shape != (r.n_queries,):
        raise ValueError(f"circo_recall@{k}: targets must hold one candidate index per query row")
    return ((r.ranking[:, :k] == target[:, None]) & (target[:, None] >= 0)).any(axis=1).astype(np.float64)


@dataclass(frozen=True)
class MetricFamily:
    """One metric family of the registry: ``name@k`` is computed by ``compute(ranked, k)``.

    ``definition`` is the one-line definition, ``trec_eval`` trec_eval's measure of the same
    definition (``recall_k`` style) when there is one, ``anchor`` the other references it matches,
    and ``needs`` what it reads beyond a ranking and judgments (``modalities``, ``targets``).
    """

    name: str
    definition: str
    compute: Callable[[_Ranked, int], np.ndarray]
    trec_eval: str | None = None
    anchor: str = ""
    needs: frozenset[str] = frozenset()

    def reference(self) -> str:
        """The references the definition matches, as the documentation's table shows them."""
        return ", ".join(([f"trec_eval `{self.trec_eval}`"] if self.trec_eval else []) + ([self.anchor] if self.anchor else []))


METRICS: dict[str, MetricFamily] = {family.name: family for family in (
    MetricFamily("hit", "1 if any relevant candidate is in the top k", _hit, anchor='M-BEIR "Recall@k" (UniIR)'),
    MetricFamily("recall", "relevant in top k / relevant", _recall, trec_eval="recall_k"),
    MetricFamily("precision", "relevant in top k / k", _precision, trec_eval="P_k"),
    MetricFamily("ndcg", "linear-gain nDCG, ideal from the judgments", _ndcg, trec_eval="ndcg_cut_k", anchor="MTEB"),
    MetricFamily("map", "sum of P@i at relevant ranks / min(relevant, k)", _map, anchor="CIRCO mAP@k"),
    MetricFamily("map_cut", "sum of P@i at relevant ranks / relevant", _map_cut, trec_eval="map_cut_k"),
    MetricFamily("mrr", "1 / rank of the first relevant within k", _mrr),
    MetricFamily("modality_acc", "share of the top k with the task's candidate modality", _modality_acc,
                 anchor="MM-Embed Table 2", needs=frozenset({"modalities"})),
    MetricFamily("circo_recall", "1 if the annotated target is in the top k", _circo_recall, anchor="CIRCO Recall@k",
                 needs=frozenset({"targets"})),
)}
METRIC_FAMILIES = tuple(METRICS)


def metrics_table() -> str:
    """The registry as the documentation's markdown table (README's Metrics section shows exactly this)."""
    lines = ["| name | definition | anchor |", "|---|---|---|"]
    lines += [f"| `{f.name}@k` | {f.definition} | {f.reference()} |" for f in METRICS.values()]
    return "\n".join(lines)


def evaluate(
    ranking: np.ndarray,
    relevance: Relevance,
    metrics: Iterable[str | Metric],
    *,
    cand_modality: np.ndarray | Sequence[str] | None = None,
    expected_modality: str | None = None,
    targets: np.ndarray | Sequence[int] | None = None,
    relevance_level: int = 1,
) -> MetricResults:
    """Compute the metrics for every query row of ``ranking`` (n_queries x depth, -1 padded).

    ``cand_modality`` (one entry per candidate index) and ``expected_modality`` are needed by
    ``modality_acc@k``; ``targets`` (one candidate index per query, -1 for none) by
    ``circo_recall@k``. ``relevance_level``: the least grade that counts as relevant for the
    binary metrics (trec_eval's ``-l``; nDCG always uses the graded gains).
    """
    if relevance_level < 1:
        raise ValueError(f"relevance_level must be >= 1 (unjudged candidates have grade 0), got {relevance_level}")
    parsed = [m if isinstance(m, Metric) else parse_metric(m) for m in metrics]
    ranking = np.asarray(ranking, dtype=np.int64)
    if ranking.ndim != 2:
        raise ValueError("ranking must be a 2-d array (n_queries x depth)")
    if ranking.size and ranking.min() < -1:
        raise ValueError("ranking holds candidate indices >= 0, or -1 for padding; found a value below -1")
    # Every metric looks at the top k only: cutting the ranking to the largest k first makes the
    # cost independent of how deep the run is (a top-100 run scored at @10 does a tenth of the work).
    ranked = _Ranked(ranking[:, : required_depth(parsed)], relevance, cand_modality, expected_modality, targets,
                     relevance_level)
    return MetricResults({metric.name: METRICS[metric.family].compute(ranked, metric.k) for metric in parsed})


def _modality_accuracy(
    top: np.ndarray, k: int, cand_modality: np.ndarray | Sequence[str] | None, expected: str | None
) -> np.ndarray:
    """Share of the top k (padding counts as wrong) whose modality is ``expected``."""
    if cand_modality is None or expected is None:
        raise ValueError(f"modality_acc@{k} needs cand_modality and expected_modality")
    modality = np.asarray(cand_modality)
    matches = np.zeros(modality.shape[0] + 1, dtype=np.float64)
    matches[:-1] = modality == expected
    # Index -1 (padding) lands on the extra trailing 0.
    return matches[top].sum(axis=1) / k
