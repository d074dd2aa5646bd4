"""Every retrieval metric of the harness, vectorised with numpy over integer arrays.

Inputs are a ranked matrix of candidate indices per query (``-1`` pads rankings shorter than
the matrix), graded relevance as a CSR structure over candidate indices, and optionally a
candidate-modality array and a per-query target. Definitions (DESIGN.md section 7):

========================  ====================================================================
``hit@k``                 1 if any relevant candidate is in the top k (UniIR "Recall@k")
``recall@k``              |relevant in top k| / |relevant|            (trec_eval ``recall_k``)
``precision@k``           |relevant in top k| / k                     (trec_eval ``P_k``)
``ndcg@k``                linear-gain nDCG, ideal from the judgments  (trec_eval ``ndcg_cut_k``)
``map@k``                 sum_{i<=k} P@i rel_i / min(|relevant|, k)   (CIRCO's official mAP@k)
``map_cut@k``             sum_{i<=k} P@i rel_i / |relevant|           (trec_eval ``map_cut_k``)
``mrr@k``                 1 / rank of the first relevant within k, else 0
``modality_acc@k``        share of the top k whose modality is the task's candidate modality
``circo_recall@k``        1 if the query's single target is in the top k (CIRCO Recall@k)
========================  ====================================================================

A candidate is relevant when its grade is > 0; nDCG uses grades as linear gains and negative
grades count as 0. A query with no relevant candidate scores 0 everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

METRIC_FAMILIES = (
    "hit",
    "recall",
    "precision",
    "ndcg",
    "map",
    "map_cut",
    "mrr",
    "modality_acc",
    "circo_recall",
)

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
    if not match or match.group(1) not in METRIC_FAMILIES:
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

    def num_relevant(self) -> np.ndarray:
        """Per query, the number of candidates with grade > 0."""
        return np.bincount(self.row_ids()[self.grades > 0], minlength=self.n_queries).astype(np.int64)

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


def evaluate(
    ranking: np.ndarray,
    relevance: Relevance,
    metrics: Iterable[str | Metric],
    *,
    cand_modality: np.ndarray | Sequence[str] | None = None,
    expected_modality: str | None = None,
    targets: np.ndarray | Sequence[int] | None = None,
) -> MetricResults:
    """Compute the metrics for every query row of ``ranking`` (n_queries x depth, -1 padded).

    ``cand_modality`` (one entry per candidate index) and ``expected_modality`` are needed by
    ``modality_acc@k``; ``targets`` (one candidate index per query, -1 for none) by
    ``circo_recall@k``.
    """
    parsed = [m if isinstance(m, Metric) else parse_metric(m) for m in metrics]
    ranking = np.asarray(ranking, dtype=np.int64)
    if ranking.ndim != 2:
        raise ValueError("ranking must be a 2-d array (n_queries x depth)")
    if ranking.size and ranking.min() < -1:
        raise ValueError("ranking holds candidate indices >= 0, or -1 for padding; found a value below -1")
    # Every metric looks at the top k only: cutting the ranking to the largest k first makes the
    # cost independent of how deep the run is (a top-100 run scored at @10 does a tenth of the work).
    ranking = ranking[:, : required_depth(parsed)]
    n_queries, depth = ranking.shape
    grades = ranked_grades(ranking, relevance)
    is_relevant = grades > 0
    num_relevant = relevance.num_relevant().astype(np.float64)
    families = {metric.family for metric in parsed}
    # Cumulative count of relevant candidates down the ranking: P@i = cum_relevant[:, i-1] / i.
    cum_relevant = np.cumsum(is_relevant, axis=1, dtype=np.float64)
    if families & {"map", "map_cut"}:
        precision_at_i = cum_relevant / np.arange(1, depth + 1, dtype=np.float64)
        sum_precision = np.cumsum(np.where(is_relevant, precision_at_i, 0.0), axis=1)
    if "mrr" in families:
        # Position of the first relevant candidate, or -1 if none is ranked (a sentinel of
        # `depth` would wrongly fall inside k when the ranking is shorter than k). argmax
        # refuses an empty axis, which a run that retrieved nothing at all has.
        first_position = is_relevant.argmax(axis=1) if depth else np.zeros(n_queries, dtype=np.int64)
        first_relevant = np.where(is_relevant.any(axis=1), first_position, -1)
    if "ndcg" in families:
        gains = np.maximum(grades, 0).astype(np.float64)

    def upto(matrix: np.ndarray, k: int) -> np.ndarray:
        """Column k-1 of a cumulative matrix, where rankings shorter than k keep their last value."""
        if depth == 0:
            return np.zeros(n_queries, dtype=np.float64)
        return matrix[:, min(k, depth) - 1]

    per_query: dict[str, np.ndarray] = {}
    for metric in parsed:
        k, family = metric.k, metric.family
        if family == "hit":
            values = (upto(cum_relevant, k) > 0).astype(np.float64)
        elif family == "recall":
            values = _safe_divide(upto(cum_relevant, k), num_relevant)
        elif family == "precision":
            values = upto(cum_relevant, k) / k
        elif family == "map_cut":
            values = _safe_divide(upto(sum_precision, k), num_relevant)
        elif family == "map":
            values = _safe_divide(upto(sum_precision, k), np.minimum(num_relevant, k))
        elif family == "mrr":
            within = (first_relevant >= 0) & (first_relevant < k)
            values = np.zeros(n_queries, dtype=np.float64)
            values[within] = 1.0 / (first_relevant[within] + 1.0)
        elif family == "ndcg":
            top = gains[:, :k]
            dcg = top @ _discounts(k)[: top.shape[1]]
            values = _safe_divide(dcg, _ideal_dcg(relevance, k))
        elif family == "modality_acc":
            values = _modality_accuracy(ranking[:, :k], k, cand_modality, expected_modality)
        elif family == "circo_recall":
            if targets is None:
                raise ValueError(f"{metric.name} needs per-query targets")
            target = np.asarray(targets, dtype=np.int64)
            if target.shape != (n_queries,):
                raise ValueError(f"{metric.name}: targets must hold one candidate index per query row")
            values = ((ranking[:, :k] == target[:, None]) & (target[:, None] >= 0)).any(axis=1).astype(np.float64)
        else:  # pragma: no cover - parse_metric admits only known families
            raise ValueError(metric.name)
        per_query[metric.name] = values
    return MetricResults(per_query)


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
