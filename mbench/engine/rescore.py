"""Exact scores for the candidates a search kept, so no backend, device or tiling moves a rank.

A search sums fp32 products in its own order (the BLAS kernel, faiss, the GPU, the tile
shapes), and each order rounds differently: scores move by an ulp or a few, and near-ties swap
between backends and against an independent pipeline. Here the kept candidates of every query
are scored again with float64 sums of the stored values (every fp32, fp16 or bf16 product is
exact in float64) and rounded once to float32: the correctly rounded inner product, whatever
summed it first. Ranking is then by that score, ties by the tie rank (trec_eval's docid rule).

The search is asked for ``margin`` more candidates than kept. The kept set is exact when the
last kept exact score is above every score a candidate left out could have: the lowest fetched
search score plus the fp32 summation error bound ``d * u / (1 - d * u) * |q| * max|p|``
(recursive summation, u = 2^-24, products exact or fp32-rounded). A query that misses the bound
is searched again with twice the candidates, up to the whole pool.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from mbench.engine.ranking import merge_top_k

RESCORE_MARGIN = 16
_UNIT_ROUNDOFF = 2.0**-24
_TILE = 1 << 16
_CHUNK_ELEMENTS = 1 << 23  # float64 values per gathered chunk (64 MiB)

SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def exact_scores(queries: np.ndarray, pool: Any, indices: np.ndarray, *, device: str = "cpu") -> np.ndarray:
    """float32 ``[nq, k]``: ``queries[q] . pool[indices[q, j]]`` summed in float64, rounded once; -inf where -1.

    The pool (array, memmap or RowConcat) is read tile by tile in row order, so a memory-mapped
    pool is streamed once instead of gathered at random; the float64 products and sums run on
    ``device``.
    """
    import torch

    nq, width = indices.shape
    out = np.full(nq * width, -np.inf, dtype=np.float32)
    flat = indices.reshape(-1)
    positions = np.flatnonzero(flat >= 0)
    order = np.argsort(flat[positions], kind="stable")
    positions = positions[order]
    candidates = flat[positions]
    query_of = torch.from_numpy(positions // max(width, 1))
    dev = torch.device(device)
    q64 = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(dev, torch.float64)
    step = max(1, _CHUNK_ELEMENTS // max(int(q64.shape[1]) if q64.ndim == 2 else 1, 1))
    n = len(pool)
    with torch.inference_mode():
        for start in range(0, n, _TILE):
            stop = min(start + _TILE, n)
            lo, hi = (int(x) for x in np.searchsorted(candidates, [start, stop]))
            if lo == hi:
                continue
            with warnings.catch_warnings():  # read-only memmapped shards: the tensor is only ever read
                warnings.simplefilter("ignore", UserWarning)
                block = torch.from_numpy(np.ascontiguousarray(pool[start:stop])).to(dev)
            local = torch.from_numpy(candidates[lo:hi] - start).to(dev)
            for a in range(lo, hi, step):
                b = min(a + step, hi)
                rows = block[local[a - lo : b - lo]].double()
                sums = (rows * q64[query_of[a:b].to(dev)]).sum(dim=1)
                out[positions[a:b]] = sums.float().cpu().numpy()
    return out.reshape(nq, width)


def max_row_norm(pool: Any) -> float:
    """The largest L2 norm of a pool row (streamed tile by tile)."""
    best = 0.0
    for start in range(0, len(pool), _TILE):
        block = np.asarray(pool[start : start + _TILE], dtype=np.float64)
        if block.size:
            best = max(best, float(np.sqrt((block * block).sum(axis=1)).max()))
    return best


def summation_error_bound(queries: np.ndarray, max_pool_norm: float) -> np.ndarray:
    """Per query, a bound on |fp32-summed score - exact score| for any pool row (Higham's gamma_d)."""
    dim = int(queries.shape[1])
    gamma = dim * _UNIT_ROUNDOFF / (1.0 - dim * _UNIT_ROUNDOFF)
    norms = np.sqrt((np.asarray(queries, dtype=np.float64) ** 2).sum(axis=1))
    return gamma * norms * max_pool_norm


def exact_top_k(
    queries: np.ndarray,
    pool: Any,
    k: int,
    *,
    first: tuple[np.ndarray, np.ndarray],
    search_fn: SearchFn,
    tie_rank: np.ndarray,
    max_pool_norm: float,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-``k`` ``(scores float32, indices int64)`` by (exact score, tie rank).

    ``first`` is a search's answer for every query (sorted by its own scores, ``-1``/-inf padded);
    ``search_fn(query_rows, width)`` searches those queries again, deeper, when the bound says
    a candidate left out might belong in the top ``k``.
    """
    n = len(pool)
    nq = int(queries.shape[0])
    out_s = np.full((nq, k), -np.inf, dtype=np.float32)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    bound = summation_error_bound(queries, max_pool_norm)
    pending = np.arange(nq)
    approx_s, approx_i = first
    while pending.size:
        width = approx_i.shape[1]
        exact = exact_scores(queries[pending], pool, approx_i, device=device)
        scores, indices = merge_top_k([(exact, approx_i)], tie_rank, k)
        if scores.shape[1] < k:
            scores = np.pad(scores, ((0, 0), (0, k - scores.shape[1])), constant_values=-np.inf)
            indices = np.pad(indices, ((0, 0), (0, k - indices.shape[1])), constant_values=-1)
        if width >= n:
            settled = np.ones(pending.size, dtype=bool)
        else:
            # A candidate left out scored at most the last fetched search score; its exact score
            # is at most that plus the bound. The last kept exact score must beat it by an ulp.
            left_out = approx_s[:, width - 1].astype(np.float64) + bound[pending]
            last = scores[:, k - 1].astype(np.float64)
            padded = approx_i[:, width - 1] < 0  # the search returned every candidate there is
            settled = padded | (last - np.spacing(np.abs(scores[:, k - 1])) > left_out)
        out_s[pending[settled]], out_i[pending[settled]] = scores[settled], indices[settled]
        pending = pending[~settled]
        if pending.size:
            approx_s, approx_i = search_fn(pending, min(2 * width, n))
    return out_s, out_i
