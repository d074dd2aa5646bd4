"""The ranking rules (mbench.engine.ranking): one exclusion rule, used by search, pipeline and reranker alike."""

from __future__ import annotations

import numpy as np

from mbench.engine.ranking import drop_excluded, rank_scores, tie_ranks
from mbench.engine.search import exact_search


def test_dropping_without_scores_keeps_the_width_and_pads_the_end() -> None:
    # Row 0 excludes pool index 1: 3 and 2 move up, the freed slot at the end is padding.
    scores, ranking = drop_excluded(None, np.array([[3, 1, 2], [0, 1, 2]]), np.array([1, -1]), 3)
    assert scores is None and ranking.tolist() == [[3, 2, -1], [0, 1, 2]]


def test_search_exclusion_is_the_ranking_rule_applied_to_a_search_one_deeper() -> None:
    rng = np.random.default_rng(3)
    queries, pool = rng.normal(size=(6, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32)
    excluded = np.array([0, -1, 39, 7, 7, 12])
    scores, indices = exact_search(queries, pool, 5, exclude=excluded)
    deeper_scores, deeper = exact_search(queries, pool, 6)
    expected_scores, expected = drop_excluded(deeper_scores, deeper, excluded, 5)
    assert indices.tolist() == expected.tolist() and np.array_equal(scores, expected_scores)
    assert all(excluded[row] not in indices[row] for row in range(6))


def test_equal_scores_rank_the_larger_id_first_as_trec_eval() -> None:
    # Ascending string order of the ids: "a" 0, "b" 1, "c" 2; the larger tie rank goes first.
    ranks = tie_ranks(["b", "c", "a"])
    assert ranks.tolist() == [1, 2, 0]
    _, indices = exact_search(np.ones((1, 2), np.float32), np.ones((3, 2), np.float32), 3, tie_rank=ranks)
    assert indices.tolist() == [[1, 0, 2]]  # c, b, a


def test_rank_scores_count_down_from_the_number_ranked() -> None:
    assert rank_scores(np.array([[4, 2, -1]])).tolist()[0][:2] == [2.0, 1.0]
    assert np.isnan(rank_scores(np.array([[4, 2, -1]]))[0, 2])
