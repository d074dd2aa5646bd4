"""The near-tie order check that every CUDA-against-CPU comparison relies on."""

from __future__ import annotations

import numpy as np

from accelerator_tolerances import NEAR_TIE, SCORE_TOL, order_violations


def test_a_swap_within_the_margin_is_a_near_tie() -> None:
    reference = np.array([[0.9, 0.5, 0.48, 0.1]])
    # 0.48 ranked above 0.5: they are 0.02 apart.
    assert order_violations(reference, np.array([[0, 2, 1, 3]]), near=0.05) == []


def test_each_item_ranked_below_a_clearly_worse_one_is_named() -> None:
    reference = np.array([[0.9, 0.5, 0.48, 0.1], [0.1, 0.2, 0.3, 0.4]])
    # Row 0: 0.1 at rank 1 sits above 0.5 (rank 2) and 0.48 (rank 3). Row 1 is in order.
    ranked = np.array([[0, 3, 1, 2], [3, 2, 1, 0]])
    assert order_violations(reference, ranked, near=0.05) == [(0, 2), (0, 3)]


def test_padding_of_a_short_ranking_is_ignored() -> None:
    reference = np.array([[0.3, 0.9, 0.1]])
    assert order_violations(reference, np.array([[1, 0, -1]]), near=0.05) == []
    assert order_violations(reference, np.array([[0, 1, -1]]), near=0.05) == [(0, 1)]


def test_near_tie_margin_covers_two_scores_moving_towards_each_other() -> None:
    assert NEAR_TIE > 2 * SCORE_TOL
