"""Exact rescoring of the kept candidates: scores independent of how a search summed them."""

from __future__ import annotations

import numpy as np

from mbench.engine.rescore import exact_scores, exact_top_k, summation_error_bound
from mbench.engine.cache.store import RowConcat


def exhaustive(queries: np.ndarray, pool: np.ndarray, tie_rank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference: every score in float64, rounded once, sorted by (score desc, tie rank desc)."""
    scores = (queries.astype(np.float64) @ pool.astype(np.float64).T).astype(np.float32)
    order = np.lexsort((-np.broadcast_to(tie_rank, scores.shape), -scores.astype(np.float64)), axis=1)[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def test_exact_scores_are_float64_sums_rounded_once_and_padding_is_minus_inf() -> None:
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((3, 7)).astype(np.float32)
    pool = rng.standard_normal((9, 7)).astype(np.float32)
    indices = np.array([[8, 0, -1], [3, 3, 5], [-1, -1, -1]])
    got = exact_scores(queries, RowConcat([pool[:4], pool[4:]]), indices)
    expected = (queries.astype(np.float64) @ pool.astype(np.float64).T).astype(np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got[0, :2], expected[0, [8, 0]])
    np.testing.assert_array_equal(got[1], expected[1, [3, 3, 5]])
    assert np.isneginf(got[0, 2]) and np.isneginf(got[2]).all()


def test_scores_perturbed_by_an_ulp_are_put_back_in_exact_order_with_ties_by_tie_rank() -> None:
    # Rows 0 and 1 score exactly 1.0 (a tie: the larger tie rank first); row 2 scores 1 - 2^-24.
    queries = np.array([[1.0, 1.0]], dtype=np.float32)
    pool = np.array([[0.5, 0.5], [0.25, 0.75], [0.5, 0.5 - 2.0**-24], [-1.0, 0.0]], dtype=np.float32)
    tie_rank = np.array([0, 3, 1, 2])
    # What a search with another summation order might return: wrong order, wrong last bits.
    first = (np.array([[1.0, 1.0 - 2.0**-24, 0.9999999, -1.0]], dtype=np.float32), np.array([[2, 0, 1, 3]]))

    def search_fn(rows: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        raise AssertionError("the first answer holds the whole pool")

    scores, indices = exact_top_k(queries, pool, 3, first=first, search_fn=search_fn, tie_rank=tie_rank,
                                  max_pool_norm=1.0)
    assert indices.tolist() == [[1, 0, 2]]
    assert scores.tolist() == [[1.0, 1.0, np.float32(1.0 - 2.0**-24)]]


def test_a_query_whose_cut_is_too_close_is_searched_again_deeper() -> None:
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((4, 16)).astype(np.float32)
    pool = rng.standard_normal((40, 16)).astype(np.float32)
    tie_rank = rng.permutation(40)
    calls: list[tuple[list[int], int]] = []

    def search_fn(rows: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        calls.append((rows.tolist(), width))
        return exhaustive(queries[rows], pool, tie_rank, width)

    # With an error bound wider than every score gap, a candidate left out could beat any kept
    # one, so no query may settle before the search has returned the whole pool.
    first = exhaustive(queries, pool, tie_rank, 6)
    scores, indices = exact_top_k(queries, pool, 5, first=first, search_fn=search_fn, tie_rank=tie_rank,
                                  max_pool_norm=1e8)
    expected_s, expected_i = exhaustive(queries, pool, tie_rank, 5)
    np.testing.assert_array_equal(indices, expected_i)
    np.testing.assert_array_equal(scores, expected_s)
    assert [width for _, width in calls] == [12, 24, 40]


def test_a_clear_cut_settles_without_a_second_search() -> None:
    rng = np.random.default_rng(2)
    queries = rng.standard_normal((5, 8)).astype(np.float32)
    pool = rng.standard_normal((200, 8)).astype(np.float32)
    tie_rank = np.arange(200)
    norm = float(np.linalg.norm(pool, axis=1).max())

    def search_fn(rows: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        raise AssertionError("a cut far above the error bound needs no deeper search")

    first = exhaustive(queries, pool, tie_rank, 26)
    scores, indices = exact_top_k(queries, pool, 10, first=first, search_fn=search_fn, tie_rank=tie_rank,
                                  max_pool_norm=norm)
    np.testing.assert_array_equal(indices, exhaustive(queries, pool, tie_rank, 10)[1])


def test_error_bound_is_gamma_d_times_the_norms() -> None:
    queries = np.array([[3.0, 4.0]], dtype=np.float32)
    gamma = 2 * 2.0**-24 / (1 - 2 * 2.0**-24)
    assert summation_error_bound(queries, 2.0)[0] == gamma * 5.0 * 2.0


def test_any_search_whose_scores_are_within_the_bound_gives_the_exhaustive_top_k() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        queries = rng.integers(-2, 3, (6, 5)).astype(np.float32) / 4  # small integers: many exact ties
        pool = rng.integers(-2, 3, (60, 5)).astype(np.float32) / 4
        tie_rank = rng.permutation(60)
        norm = float(np.linalg.norm(pool, axis=1).max())
        bound = summation_error_bound(queries, norm)

        def noisy_search(rows: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
            # Another summation order: every score off by up to the bound, ranked by those scores.
            exact = (queries[rows].astype(np.float64) @ pool.astype(np.float64).T)
            noisy = (exact + rng.uniform(-1, 1, exact.shape) * bound[rows, None]).astype(np.float32)
            order = np.argsort(-noisy.astype(np.float64), axis=1, kind="stable")[:, :width]
            return np.take_along_axis(noisy, order, axis=1), order

        first = noisy_search(np.arange(6), 9)
        scores, indices = exact_top_k(queries, pool, 7, first=first, search_fn=noisy_search, tie_rank=tie_rank,
                                      max_pool_norm=norm)
        expected_s, expected_i = exhaustive(queries, pool, tie_rank, 7)
        np.testing.assert_array_equal(indices, expected_i)
        np.testing.assert_array_equal(scores, expected_s)
