"""The ranking rules of the harness, each in one place: how deep a ranking is kept, the tie order,
the exclusion of a query's own id, merging per-slice top-k lists, and rank-based run scores.

Order is score descending, equal scores by candidate id descending in string order (trec_eval's
"ties by docno descending"), so a run file scores the same here and in trec_eval.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from mbench.metrics import required_depth

if TYPE_CHECKING:
    from mbench.tasks.spec import TaskSpec

MIN_DEPTH = 100


def ranking_depth(spec: TaskSpec, requested: int | None) -> int:
    """The top-k kept: the largest k any metric needs, the task's depth, at least 100, or more if asked."""
    return max(required_depth(spec.metrics), spec.depth, MIN_DEPTH, requested or 0)


def tie_ranks(ids: Sequence[str]) -> np.ndarray:
    """Per candidate, its position in ascending string order: the larger ranks first on equal scores."""
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    ranks = np.empty(len(ids), dtype=np.int64)
    ranks[order] = np.arange(len(ids), dtype=np.int64)
    return ranks


def drop_excluded(
    scores: np.ndarray | None, indices: np.ndarray, excluded: np.ndarray | None, k: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """Remove each query's excluded pool index (BEIR ``ignore_identical_ids``) and cut to k columns.

    The one exclusion rule of the harness: kept candidates move up in their order, the dropped
    ones become padding at the end. A ranking shorter than k (a pool smaller than the depth) is
    padded with -1 / -inf. ``scores`` may be None when only the ranking matters (the reranker).
    """
    if indices.shape[1] < k:
        pad = k - indices.shape[1]
        indices = np.concatenate([indices, np.full((indices.shape[0], pad), -1, dtype=np.int64)], axis=1)
        if scores is not None:
            scores = np.concatenate([scores, np.full((scores.shape[0], pad), -np.inf, dtype=np.float32)], axis=1)
    if excluded is not None:
        excluded = np.asarray(excluded, dtype=np.int64)
        hit = (indices == excluded[:, None]) & (excluded[:, None] >= 0)
        if hit.any():
            keep = ~hit
            # Stable compaction per row: kept entries first, in their order; dropped ones pad the end.
            order = np.argsort(~keep, axis=1, kind="stable")
            indices = np.take_along_axis(indices, order, axis=1)
            dropped = np.take_along_axis(hit, order, axis=1)
            indices = np.where(dropped, -1, indices)
            if scores is not None:
                scores = np.where(dropped, -np.inf, np.take_along_axis(scores, order, axis=1))
    return (None if scores is None else scores[:, :k]), indices[:, :k]


def merge_top_k(
    parts: list[tuple[np.ndarray, np.ndarray]], tie_rank: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-slice (scores, global indices) top-k lists into the global top-k.

    Each part is exact for its slice under the total order, so the k best of their union under
    the same order are the exact global top-k whatever the number of parts.
    """
    scores = np.concatenate([s for s, _ in parts], axis=1)
    indices = np.concatenate([i for _, i in parts], axis=1)
    ties = np.where(indices >= 0, tie_rank[np.maximum(indices, 0)], -1)
    # Padding (-1) has score -inf and sorts last; lexsort's last key is the primary one.
    order = np.lexsort((-ties, -scores.astype(np.float64)), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(indices, order, axis=1)


def rank_scores(ranking: np.ndarray) -> np.ndarray:
    """Rank-based run scores: n - r + 1 at rank r of a row's n ranked candidates, NaN on padding."""
    valid = ranking >= 0
    n = valid.sum(axis=1, keepdims=True)
    position = np.cumsum(valid, axis=1)
    return np.where(valid, (n - position + 1).astype(np.float64), np.nan)
