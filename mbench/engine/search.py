"""Exact top-k search: a tiled matmul with a running top-k, on CPU or CUDA, with exact tie order.

Ranking order is score descending, ties by ``tie_rank`` descending (the caller passes each
candidate's position in ascending id order, which gives trec_eval's "ties by docno
descending"). Without ``tie_rank`` ties go to the smaller pool index.

How ties stay exact without sorting whole rows: every tile keeps its top ``k + margin`` by
score and merges them into a running top ``k + margin`` (``torch.topk``, fast). That set
contains every candidate scoring at least the k-th score whenever the k-th kept score is
strictly above the last kept one; the kept set is then ordered by one int64 key
``(order-preserving bits of the fp32 score) << 32 | tie_rank``. Queries whose tie at the k-th
score reaches past the margin (rare with real embeddings, common with integer test vectors)
are searched again with that int64 key in every tile, which is exact by construction.

Scores are accumulated in fp32: CPU computes in fp32; CUDA multiplies fp16/bf16 inputs with
fp32 accumulation and fp32 output. The pool may be a numpy array, a ``np.memmap``, a
``RowConcat`` of store shards or a tensor; it is streamed tile by tile (outer loop) so each tile
is read and moved once, and a pool larger than device memory works.

Tile and batch sizes do not change the result: the selection is exact given the scores, and on
CPU every matmul is given at least ``MIN_GEMM_ROWS`` rows per operand (zero-padded) because the
BLAS uses a different summation order for tiny matrices, which moved scores by an ulp. On CUDA
cuBLAS may pick shape-dependent kernels, so scores may differ in the last ulp between tilings;
only candidates whose scores are that close can swap.
"""

from __future__ import annotations

import concurrent.futures
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from mbench import faults
from mbench.errors import MbenchError

if TYPE_CHECKING:
    import torch

MIN_GEMM_ROWS = 64
DEFAULT_MARGIN = 16
_CPU_QUERY_BATCH = 512
_CPU_POOL_TILE = 32768
_CUDA_QUERY_BATCH = 8192
_CUDA_POOL_TILE = 65536
_FAISS_POOL_TILE = 1 << 20
_LOW32 = 0xFFFFFFFF
_MAG31 = 0x7FFFFFFF


# ----------------------------------------------------------------------------- helpers


def _torch_dtype(name: Any) -> torch.dtype:
    import torch

    if isinstance(name, torch.dtype):
        return name
    aliases = {
        "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
        "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
        "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    }
    key = str(np.dtype(name)) if isinstance(name, (np.dtype, type)) else str(name).lower()
    if key not in aliases:
        raise ValueError(f"unsupported compute dtype {name!r}: use fp32, fp16 or bf16")
    return aliases[key]


def _compute_dtype(pool: Any, dev: torch.device, compute_dtype: Any) -> torch.dtype:
    """fp32 on CPU (never a down-cast there); on CUDA the asked dtype, else the pool's."""
    import torch

    if dev.type == "cpu":
        if compute_dtype is not None and _torch_dtype(compute_dtype) != torch.float32:
            raise ValueError("search on CPU computes in fp32; fp16/bf16 compute needs a CUDA device")
        return torch.float32
    return _torch_dtype(compute_dtype) if compute_dtype is not None else _source_dtype(pool)


def _source_dtype(array: Any) -> torch.dtype:
    import torch

    if isinstance(array, torch.Tensor):
        return array.dtype
    return {np.dtype("float16"): torch.float16, np.dtype("float32"): torch.float32}.get(np.dtype(array.dtype), torch.float32)


def _to_tensor(array: Any, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A contiguous tensor on ``device`` in ``dtype`` (zero-copy for fp32 numpy on CPU)."""
    import torch

    if not isinstance(array, torch.Tensor):
        array = np.asarray(array)
        if array.dtype not in (np.float16, np.float32):
            array = array.astype(np.float32)
        with warnings.catch_warnings():  # read-only memmaps: the tensor is only ever read
            warnings.simplefilter("ignore", UserWarning)
            array = torch.from_numpy(np.ascontiguousarray(array))
    # Move first, then convert: the device does the dtype conversion of a streamed tile.
    return array.to(device=device).to(dtype=dtype).contiguous()


def _pack(scores: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """One int64 per score whose order is (fp32 score, rank) lexicographic: exact, sortable keys."""
    import torch

    bits = (scores.float() + 0.0).view(torch.int32).to(torch.int64)  # + 0.0 turns -0.0 into +0.0
    ordered = bits ^ ((bits >> 31) & _MAG31)  # negative floats: flip magnitude bits so order holds
    return (ordered << 32) | ranks


def _unpack_scores(keys: torch.Tensor) -> torch.Tensor:
    import torch

    ordered = keys >> 32
    bits = ordered ^ ((ordered >> 31) & _MAG31)
    return bits.to(torch.int32).view(torch.float32)


def _check_queries(q: torch.Tensor) -> None:
    import torch

    finite = torch.isfinite(q).all(dim=1)
    if not bool(finite.all()):
        row = int(torch.nonzero(~finite)[0, 0])
        raise MbenchError(f"query embedding row {row} holds NaN or inf; search needs finite vectors")


def _tie_ranks(tie_rank: Any, n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``tie_rank`` (a permutation of 0..n-1; default: smaller index first) and its inverse."""
    import torch

    if tie_rank is None:
        ranks = torch.arange(n - 1, -1, -1, dtype=torch.int64, device=device)
    else:
        ranks = torch.as_tensor(np.asarray(tie_rank) if not isinstance(tie_rank, torch.Tensor) else tie_rank)
        ranks = ranks.to(device=device, dtype=torch.int64)
        if ranks.shape != (n,):
            raise ValueError(f"tie_rank needs one entry per pool row ({n}), got shape {tuple(ranks.shape)}")
        if n and (int(ranks.min()) < 0 or int(ranks.max()) >= n or int(torch.bincount(ranks, minlength=n).max()) != 1):
            raise ValueError("tie_rank must be a permutation of 0..n-1 (each candidate's position in id order)")
    inverse = torch.empty_like(ranks)
    inverse[ranks] = torch.arange(n, dtype=torch.int64, device=device)
    return ranks, inverse


def _without_excluded(search_fn: Any, exclude: Any, nq: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``search_fn(k + 1)`` with each query's excluded index dropped (``engine.ranking.drop_excluded``, the
    harness's one exclusion rule): the k best of the rest, since at most one of the k + 1 is dropped."""
    from mbench.engine.ranking import drop_excluded

    ex = np.asarray(exclude.cpu() if hasattr(exclude, "cpu") else exclude, dtype=np.int64)
    if ex.shape != (nq,):
        raise ValueError(f"exclude needs one pool index per query ({nq}), got shape {tuple(ex.shape)}")
    scores, indices = search_fn(k + 1)
    scores, indices = drop_excluded(scores, indices, ex, k)
    return np.ascontiguousarray(scores, dtype=np.float32), np.ascontiguousarray(indices)


def _matmul_fp32(q: torch.Tensor, tile: torch.Tensor) -> torch.Tensor:
    """``q @ tile.T`` as fp32 scores (fp32 accumulation for half inputs on CUDA)."""
    import torch

    if q.device.type == "cpu":
        m, n = q.shape[0], tile.shape[0]
        # Tiny operands take another BLAS code path with another summation order (ulp-level
        # differences); padding keeps scores independent of query_batch and pool_tile.
        if m < MIN_GEMM_ROWS:
            q = torch.cat([q, q.new_zeros(MIN_GEMM_ROWS - m, q.shape[1])])
        if n < MIN_GEMM_ROWS:
            tile = torch.cat([tile, tile.new_zeros(MIN_GEMM_ROWS - n, tile.shape[1])])
        out = torch.mm(q, tile.T)
        return out[:m, :n] if (m < MIN_GEMM_ROWS or n < MIN_GEMM_ROWS) else out
    if q.dtype == torch.float32:
        return torch.mm(q, tile.T)
    try:
        return torch.mm(q, tile.T, out_dtype=torch.float32)
    except (TypeError, RuntimeError):  # older torch: no fp32 output for half inputs
        return torch.mm(q.float(), tile.float().T)


def _iter_tiles(pool: Any, tile: int, device: torch.device, dtype: torch.dtype) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, tile tensor)`` over the pool; on CUDA the next tile is read on a thread meanwhile."""
    import torch

    n = len(pool)
    starts = range(0, n, tile)
    if isinstance(pool, torch.Tensor):
        for start in starts:
            yield start, _to_tensor(pool[start : start + tile], device, dtype)
        return
    if device.type == "cpu":
        for start in starts:
            yield start, _to_tensor(pool[start : start + tile], device, dtype)
        return

    def read(start: int) -> np.ndarray:
        return np.ascontiguousarray(pool[start : start + tile])  # page-cache/disk reads overlap the GPU

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:
        pending = ex.submit(read, starts[0]) if len(starts) else None
        for i, start in enumerate(starts):
            block = pending.result()  # type: ignore[union-attr]
            pending = ex.submit(read, starts[i + 1]) if i + 1 < len(starts) else None
            yield start, _to_tensor(block, device, dtype)


def _merge(run_s: torch.Tensor, run_i: torch.Tensor, vals: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``run_s.shape[1]`` by score of a running top-k and a tile's top-k (sorted, descending)."""
    import torch

    cat_s = torch.cat([run_s, vals], dim=1)
    cat_i = torch.cat([run_i, idx], dim=1)
    top_s, pos = torch.topk(cat_s, run_s.shape[1], dim=1)
    return top_s, torch.gather(cat_i, 1, pos)


def _order_exact(
    scores: torch.Tensor, indices: torch.Tensor, ranks: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` of each row ordered by (score desc, tie rank desc); -1/-inf stay last."""
    import torch

    rank_of = torch.where(indices >= 0, ranks[indices.clamp(min=0)], torch.zeros_like(indices))
    keys = _pack(scores, rank_of)
    keys = torch.where(indices >= 0, keys, torch.full_like(keys, torch.iinfo(torch.int64).min))
    pos = torch.topk(keys, min(k, keys.shape[1]), dim=1).indices
    return torch.gather(scores, 1, pos), torch.gather(indices, 1, pos)


def _finish(scores: torch.Tensor, indices: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Numpy outputs padded to k columns; excluded or absent candidates are -1 with -inf."""
    import torch

    indices = torch.where(torch.isneginf(scores), torch.full_like(indices, -1), indices)
    scores = torch.where(indices < 0, torch.full_like(scores, float("-inf")), scores)
    s = scores.float().cpu().numpy()
    i = indices.cpu().numpy().astype(np.int64, copy=False)
    if s.shape[1] < k:
        pad = k - s.shape[1]
        s = np.concatenate([s, np.full((s.shape[0], pad), -np.inf, dtype=np.float32)], axis=1)
        i = np.concatenate([i, np.full((i.shape[0], pad), -1, dtype=np.int64)], axis=1)
    return np.ascontiguousarray(s, dtype=np.float32), np.ascontiguousarray(i)


# ----------------------------------------------------------------------------- torch backend


def exact_search(
    queries: Any,
    pool: Any,
    k: int,
    *,
    tie_rank: Any = None,
    device: str | Any = "cpu",
    compute_dtype: Any = None,
    query_batch: int | None = None,
    pool_tile: int | None = None,
    exclude: Any = None,
    margin: int = DEFAULT_MARGIN,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k``: ``(scores float32 [nq, k], indices int64 [nq, k])``.

    ``pool``: array, memmap, ``RowConcat`` or tensor ``[n, d]``. ``tie_rank``: int64 permutation,
    larger ranks first among equal scores. ``exclude``: per query one pool index to drop (-1:
    none), by the harness's one exclusion rule on a search one deeper; k results are still returned. Fewer than k candidates: padded with -1 and -inf.
    ``compute_dtype``: CPU computes in fp32 only; CUDA defaults to the pool's dtype (fp16/bf16
    inputs, fp32 accumulation).
    """
    import torch

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if exclude is not None:
        return _without_excluded(
            lambda width: exact_search(queries, pool, width, tie_rank=tie_rank, device=device, compute_dtype=compute_dtype,
                                       query_batch=query_batch, pool_tile=pool_tile, margin=margin),
            exclude, int(queries.shape[0]), k,
        )
    dev = torch.device(device)
    n, d = int(pool.shape[0]), int(pool.shape[1])
    nq = int(queries.shape[0])
    if nq and int(queries.shape[1]) != d:
        raise MbenchError(f"query embeddings have dimension {queries.shape[1]}, the pool has {d}")
    dtype = _compute_dtype(pool, dev, compute_dtype)
    qb = max(1, int(query_batch or (_CPU_QUERY_BATCH if dev.type == "cpu" else _CUDA_QUERY_BATCH)))
    tile = max(1, int(pool_tile or (_CPU_POOL_TILE if dev.type == "cpu" else _CUDA_POOL_TILE)))

    q = _to_tensor(queries, dev, dtype)
    _check_queries(q)
    ranks, inverse = _tie_ranks(tie_rank, n, dev)
    keep = min(k + max(0, margin), n)
    if nq == 0 or n == 0:
        empty = torch.zeros((nq, 0), dtype=torch.float32)
        return _finish(empty, empty.long(), k)

    run_s = torch.full((nq, keep), float("-inf"), dtype=torch.float32, device=dev)
    run_i = torch.full((nq, keep), -1, dtype=torch.int64, device=dev)
    with torch.inference_mode():
        for start, block in _iter_tiles(pool, tile, dev, dtype):
            width = min(keep, block.shape[0])
            for qs in range(0, nq, qb):
                scores = _matmul_fp32(q[qs : qs + qb], block)
                vals, pos = torch.topk(scores, width, dim=1)
                run_s[qs : qs + qb], run_i[qs : qs + qb] = _merge(run_s[qs : qs + qb], run_i[qs : qs + qb], vals, pos + start)
            faults.reached("search.tile")

        out_s, out_i = _order_exact(run_s, run_i, ranks, k)
        if keep < n:
            # The kept set is exact unless the k-th score ties with the last kept one.
            kth = run_s[:, min(k, keep) - 1]
            redo = torch.nonzero((kth == run_s[:, keep - 1]) & torch.isfinite(kth)).flatten()
            if redo.numel():
                fix_s, fix_i = _exact_keyed(q[redo], pool, k, ranks, inverse, dev, dtype, qb, tile)
                out_s[redo], out_i[redo] = fix_s, fix_i
    return _finish(out_s, out_i, k)


def _pad_cols(scores: torch.Tensor, indices: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    if scores.shape[1] >= k:
        return scores, indices
    pad = k - scores.shape[1]
    return (
        torch.cat([scores, scores.new_full((scores.shape[0], pad), float("-inf"))], dim=1),
        torch.cat([indices, indices.new_full((indices.shape[0], pad), -1)], dim=1),
    )


def _exact_keyed(
    q: torch.Tensor,
    pool: Any,
    k: int,
    ranks: torch.Tensor,
    inverse: torch.Tensor,
    dev: torch.device,
    dtype: torch.dtype,
    qb: int,
    tile: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k by the exact (score, tie rank) key in every tile: the slow path for boundary ties."""
    import torch

    nq, n = q.shape[0], len(pool)
    width_k = min(k, n)
    sentinel = torch.iinfo(torch.int64).min
    run = torch.full((nq, width_k), sentinel, dtype=torch.int64, device=dev)
    for start, block in _iter_tiles(pool, tile, dev, dtype):
        block_ranks = ranks[start : start + block.shape[0]].unsqueeze(0)
        for qs in range(0, nq, qb):
            scores = _matmul_fp32(q[qs : qs + qb], block)
            keys = torch.topk(_pack(scores, block_ranks), min(width_k, block.shape[0]), dim=1).values
            run[qs : qs + qb] = torch.topk(torch.cat([run[qs : qs + qb], keys], dim=1), width_k, dim=1).values
    valid = run != sentinel
    indices = torch.where(valid, inverse[(run & _LOW32).clamp(max=n - 1)], torch.full_like(run, -1))
    scores = torch.where(valid, _unpack_scores(run), torch.full(run.shape, float("-inf"), device=dev))
    return _pad_cols(scores, indices, k)


# ----------------------------------------------------------------------------- faiss backend


def faiss_search(
    queries: Any,
    pool: Any,
    k: int,
    *,
    tie_rank: Any = None,
    device: str | Any = "cpu",
    pool_tile: int | None = None,
    exclude: Any = None,
    margin: int = DEFAULT_MARGIN,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` with faiss ``IndexFlatIP`` (faiss-gpu on CUDA where installed); outputs as ``exact_search``.

    faiss orders equal scores arbitrarily, so its top ``k + margin`` are re-sorted with the tie
    rule; queries whose tie at the k-th score reaches past that depth cannot be resolved from
    faiss's answer and are recomputed by ``exact_search`` (their scores then come from torch's
    matmul, which may differ from faiss's in the last ulp). The pool is added ``pool_tile`` rows
    at a time (fp32), so memory stays bounded for a memory-mapped pool.
    """
    try:
        import faiss
    except ImportError as err:
        raise MbenchError("the faiss search backend needs faiss: pip install 'mbench[faiss]' (faiss-cpu)") from err
    import torch

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if exclude is not None:
        return _without_excluded(
            lambda width: faiss_search(queries, pool, width, tie_rank=tie_rank, device=device, pool_tile=pool_tile,
                                       margin=margin),
            exclude, int(queries.shape[0]), k,
        )
    n, d = int(pool.shape[0]), int(pool.shape[1])
    qnp = np.ascontiguousarray(
        queries.detach().float().cpu().numpy() if isinstance(queries, torch.Tensor) else np.asarray(queries), dtype=np.float32
    )
    nq = qnp.shape[0]
    if nq and qnp.shape[1] != d:
        raise MbenchError(f"query embeddings have dimension {qnp.shape[1]}, the pool has {d}")
    _check_queries(torch.from_numpy(qnp))
    cpu = torch.device("cpu")
    ranks, _ = _tie_ranks(tie_rank, n, cpu)
    keep = min(k + max(0, margin), n)
    if nq == 0 or n == 0:
        empty = torch.zeros((nq, 0), dtype=torch.float32)
        return _finish(empty, empty.long(), k)

    use_gpu = torch.device(device).type == "cuda" and hasattr(faiss, "StandardGpuResources")
    resources = faiss.StandardGpuResources() if use_gpu else None
    tile = max(1, int(pool_tile or _FAISS_POOL_TILE))
    run_s = torch.full((nq, keep), float("-inf"), dtype=torch.float32)
    run_i = torch.full((nq, keep), -1, dtype=torch.int64)
    for start in range(0, n, tile):
        block = np.ascontiguousarray(pool[start : start + tile], dtype=np.float32)
        if use_gpu:
            config = faiss.GpuIndexFlatConfig()
            config.device = torch.device(device).index or 0
            index = faiss.GpuIndexFlatIP(resources, d, config)
        else:
            index = faiss.IndexFlatIP(d)
        index.add(block)
        dist, labels = index.search(qnp, min(keep, block.shape[0]))
        vals = torch.from_numpy(np.ascontiguousarray(dist, dtype=np.float32))
        idx = torch.from_numpy(labels.astype(np.int64))
        vals = torch.where(idx < 0, torch.full_like(vals, float("-inf")), vals)
        idx = torch.where(idx < 0, idx, idx + start)
        run_s, run_i = _merge(run_s, run_i, vals, idx)
        del index
    cut = run_s[:, keep - 1].clone()  # the score where faiss's answer was cut
    out_s, out_i = _pad_cols(*_order_exact(run_s, run_i, ranks, k), k)
    if keep < n:
        kth = run_s[:, min(k, keep) - 1]
        redo = torch.nonzero((kth == cut) & torch.isfinite(kth)).flatten().numpy()
        if redo.size:
            fix_s, fix_i = exact_search(qnp[redo], pool, k, tie_rank=ranks.numpy(), margin=margin)
            out_s[redo], out_i[redo] = torch.from_numpy(fix_s), torch.from_numpy(fix_i)
    return _finish(out_s, out_i, k)


def search_compute_dtype(pool: Any, *, backend: str = "torch", device: str | Any = "cpu", compute_dtype: Any = None) -> str:
    """The dtype ``search`` multiplies in (``float32``, ``float16`` or ``bfloat16``; sums are fp32), for result.json."""
    import torch

    dtype = _compute_dtype(pool, torch.device(device), compute_dtype) if backend == "torch" else torch.float32
    return str(dtype).removeprefix("torch.")


def search(queries: Any, pool: Any, k: int, *, backend: str = "torch", **options: Any) -> tuple[np.ndarray, np.ndarray]:
    """Dispatch to ``exact_search`` (``backend="torch"``) or ``faiss_search`` (``"faiss"``)."""
    if backend == "torch":
        return exact_search(queries, pool, k, **options)
    if backend == "faiss":
        compute_dtype = options.pop("compute_dtype", None)
        if compute_dtype is not None and _torch_dtype(compute_dtype) != _torch_dtype("fp32"):
            raise MbenchError("the faiss backend computes in fp32; drop the fp16/bf16 compute dtype or use the torch backend")
        options.pop("query_batch", None)  # faiss batches queries itself
        return faiss_search(queries, pool, k, **options)
    raise MbenchError(f"unknown search backend {backend!r}: use torch or faiss")
