"""The stated tolerances of every CUDA-against-CPU comparison, and the near-tie order check.

Shared by ``tests/test_gpu.py`` and ``bench/gpu_mini_compare.py``. Measured with bf16 on the CPU
on the tiny random models of ``tiny_models``, the worst cosine-score deviation from fp32 was
0.009 and the worst P("True") deviation 0.0004; the tolerances are about 3 times (scores) and
25 times (P) that, far below what a wrong input, a lost image or a mixed-up item does (0.1 to 1).
"""

from __future__ import annotations

import numpy as np

# Largest |score on the accelerator - fp32 score| of a query-candidate pair (cosine scores).
SCORE_TOL = 0.03
# Candidates whose fp32 scores are this close may swap: twice SCORE_TOL (both scores move
# towards each other) plus the rounding of bf16 search inputs.
NEAR_TIE = 0.07
# Largest |P("True") on the accelerator - fp32 P("True")| of the True/False reranker.
PROB_TOL = 0.01


def order_violations(reference: np.ndarray, ranked: np.ndarray, near: float = NEAR_TIE) -> list[tuple[int, int]]:
    """(row, rank) where ``ranked`` puts an item below one whose ``reference`` score is lower by more than ``near``.

    ``reference`` [rows, items] holds the fp32 scores; ``ranked`` [rows, k] item indices in the
    order the accelerator ranked them (-1 pads a short ranking and is ignored).
    """
    found = []
    for row, order in enumerate(ranked):
        order = order[order >= 0]
        scores = reference[row, order]
        lowest_above = np.concatenate([[np.inf], np.minimum.accumulate(scores)[:-1]])
        found += [(row, int(rank)) for rank in np.flatnonzero(scores - lowest_above > near)]
    return found
