"""Exact top-k search: a tiled matmul with a pruned, exactly ordered running top-k, on CPU or CUDA.

Ranking order is score descending, ties by ``tie_rank`` descending (the caller passes each
candidate's position in ascending id order, which gives trec_eval's "ties by docno
descending"). Without ``tie_rank`` ties go to the smaller pool index.

Every candidate is compared by one int64 key ``(order-preserving bits of the fp32 score) << 32 |
tie_rank``, so the running top-k is exact by construction, ties included. Packing a key for every
score of a tile would cost as much as the matmul, so each score tile is pruned first, exactly:

* the tile's columns are split into runs of ``group`` adjacent columns and each run's max taken
  (one read of the score tile, the only full pass the selection makes);
* a score below the lowest score of a full running top-k cannot enter it, and a score below the
  k-th largest group max of the tile cannot either (the top k groups hold k scores at least that
  large), so only groups whose max reaches the larger of the two bounds are gathered;
* within them only scores reaching the bound get a key. Equal scores are never pruned, so the tie
  rule decides them. After the first tiles few groups pass: gathering them is one short row copy
  each, and only the queries that got candidates merge them into their running top-k.

Scores are accumulated in fp32: CPU computes in fp32 end to end (fp16 and bf16 pools are upcast,
which is exact); CUDA multiplies fp16/bf16 inputs with fp32 accumulation and fp32 output. The pool
may be a numpy array, a ``np.memmap``, a ``RowConcat`` of store shards (on CPU tiles never
straddle two shards, so an fp32 shard is multiplied in place, without a copy) or a tensor; it is
streamed tile by tile (outer loop) so each tile is read and moved once, and a pool larger than
device memory works. On CPU the scores of every tile go into one reused buffer. bf16 kept as raw
16-bit patterns (numpy has no bf16) is read with ``bf16_bits=True``.

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

from mbench.errors import MbenchError

if TYPE_CHECKING:
    import torch

MIN_GEMM_ROWS = 64
DEFAULT_MARGIN = 16  # faiss backend: extra depth fetched to resolve ties at the k-th score
DEFAULT_GROUP = 32
_CPU_QUERY_BATCH = 1024
_CPU_POOL_TILE = 16384
_CUDA_QUERY_BATCH = 16384
_CUDA_SCORE_BYTES = 4 << 30  # the fp32 score tile on CUDA: query batch x pool tile x 4 bytes
_CUDA_MIN_POOL_TILE = 65536
_FAISS_POOL_TILE = 1 << 20
_LOW32 = 0xFFFFFFFF
_MAG31 = 0x7FFFFFFF
_NO_KEY = -(2**63)  # int64 min: an empty slot of the running top-k


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


def _compute_dtype(pool: Any, dev: torch.device, compute_dtype: Any, bf16_bits: bool = False) -> torch.dtype:
    """fp32 on CPU (never a down-cast there); on CUDA the asked dtype, else the pool's."""
    import torch

    if dev.type == "cpu":
        if compute_dtype is not None and _torch_dtype(compute_dtype) != torch.float32:
            raise ValueError("search on CPU computes in fp32; fp16/bf16 compute needs a CUDA device")
        return torch.float32
    return _torch_dtype(compute_dtype) if compute_dtype is not None else _source_dtype(pool, bf16_bits)


def _source_dtype(array: Any, bf16_bits: bool) -> torch.dtype:
    """The dtype of the values an array holds (uint16 with ``bf16_bits``: bf16)."""
    import torch

    if isinstance(array, torch.Tensor):
        return array.dtype
    kind = np.dtype(array.dtype)
    if kind == np.uint16 and bf16_bits:
        return torch.bfloat16
    return torch.float16 if kind == np.float16 else torch.float32


def _host_tensor(array: Any, bf16_bits: bool) -> torch.Tensor:
    """A CPU tensor sharing memory with a numpy array (uint16 bf16 patterns viewed as bf16)."""
    import torch

    array = np.asarray(array)
    if array.dtype == np.uint16:
        if not bf16_bits:
            raise MbenchError("embeddings stored as uint16 need bf16_bits=True to be read as bf16 bit patterns")
    elif array.dtype not in (np.float16, np.float32):
        if not np.issubdtype(array.dtype, np.floating):
            raise MbenchError(f"embeddings must be floating point (or bf16 bit patterns), got {array.dtype}")
        array = array.astype(np.float32)
    with warnings.catch_warnings():  # read-only memmaps: the tensor is only ever read
        warnings.simplefilter("ignore", UserWarning)
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.view(torch.bfloat16) if tensor.dtype == torch.uint16 else tensor


def _to_tensor(array: Any, device: torch.device, dtype: torch.dtype, bf16_bits: bool = False) -> torch.Tensor:
    """A contiguous tensor on ``device`` in ``dtype`` (zero-copy for fp32 numpy on CPU)."""
    import torch

    if not isinstance(array, torch.Tensor):
        array = _host_tensor(array, bf16_bits)
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


def matmul_fp32(q: torch.Tensor, tile: torch.Tensor, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """``q @ tile.T`` as fp32 scores (fp32 accumulation for half inputs on CUDA).

    On CPU the scores are written into ``scratch`` (fp32, at least ``len(q) * len(tile)``
    elements) when given: a fresh output of tens of MB is a new mapping whose first touch
    page-faults, which cost a fifth of the matmul's time.
    """
    import torch

    if q.device.type == "cpu":
        m, n = q.shape[0], tile.shape[0]
        if m < MIN_GEMM_ROWS or n < MIN_GEMM_ROWS:
            # Tiny operands take another BLAS code path with another summation order (ulp-level
            # differences); padding keeps scores independent of query_batch and pool_tile.
            if m < MIN_GEMM_ROWS:
                q = torch.cat([q, q.new_zeros(MIN_GEMM_ROWS - m, q.shape[1])])
            if n < MIN_GEMM_ROWS:
                tile = torch.cat([tile, tile.new_zeros(MIN_GEMM_ROWS - n, tile.shape[1])])
            return torch.mm(q, tile.T)[:m, :n].contiguous()
        if scratch is not None and scratch.numel() >= m * n:
            return torch.mm(q, tile.T, out=scratch[: m * n].view(m, n))
        return torch.mm(q, tile.T)
    if q.dtype == torch.float32:
        return torch.mm(q, tile.T)
    try:
        return torch.mm(q, tile.T, out_dtype=torch.float32)
    except TypeError:  # older torch: no fp32 output for half inputs
        return torch.mm(q.float(), tile.float().T)


def tile_bounds(pool: Any, tile: int, *, within_parts: bool = True) -> list[tuple[int, int]]:
    """``[start, stop)`` row ranges of at most ``tile`` rows.

    ``within_parts``: a ``RowConcat``'s tiles never straddle two parts, so each tile is a view of
    one shard (no copy on CPU). Where tiles are copied anyway (to a GPU, into faiss), larger tiles
    across parts are better.
    """
    parts = getattr(pool, "parts", None)
    split = within_parts and isinstance(parts, list)
    sizes = [int(part.shape[0]) for part in parts] if split else [int(pool.shape[0])]
    bounds, offset = [], 0
    for size in sizes:
        bounds += [(offset + a, offset + min(a + tile, size)) for a in range(0, size, tile)]
        offset += size
    return bounds


def pool_tiles(
    pool: Any, bounds: list[tuple[int, int]], device: torch.device, dtype: torch.dtype, bf16_bits: bool = False
) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, tile tensor)`` over the pool; on CUDA the next host tile is read on a thread meanwhile.

    A tile is valid until the next one is drawn: on CPU, tiles that need a dtype conversion are
    converted into one reused buffer (fresh buffers page-fault on first touch).
    """
    import torch

    if device.type == "cpu":
        buffer: torch.Tensor | None = None
        for start, stop in bounds:
            block = pool[start:stop] if isinstance(pool, torch.Tensor) else _host_tensor(pool[start:stop], bf16_bits)
            if block.dtype == dtype:
                yield start, block.contiguous()
                continue
            if buffer is None:
                buffer = torch.empty((max(b - a for a, b in bounds), block.shape[1]), dtype=dtype)
            yield start, buffer[: block.shape[0]].copy_(block)
        return
    if isinstance(pool, torch.Tensor):
        for start, stop in bounds:
            yield start, _to_tensor(pool[start:stop], device, dtype, bf16_bits)
        return

    def read(bound: tuple[int, int]) -> np.ndarray:
        block = np.asarray(pool[bound[0] : bound[1]])
        # A view of a memory-mapped shard is copied here, so the page-cache/disk reads overlap the GPU.
        return block if block.flags.owndata else np.array(block)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as ex:
        pending = ex.submit(read, bounds[0]) if bounds else None
        for i, (start, _) in enumerate(bounds):
            block = pending.result()  # type: ignore[union-attr]
            pending = ex.submit(read, bounds[i + 1]) if i + 1 < len(bounds) else None
            yield start, _to_tensor(block, device, dtype, bf16_bits)


def _tile_keys(
    scores: torch.Tensor, start: int, entry: torch.Tensor, kk: int, group: int, ranks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Keys of the tile's scores that can still enter a running top-``kk`` whose entry score is ``entry``.

    ``(rows, keys)``: the queries (rows of ``scores``) that have such scores, and one row of keys
    for each, as many columns as the busiest needs, unused slots ``_NO_KEY``. ``None`` when no
    score of the tile reaches its query's entry score.
    """
    import torch

    b, t = scores.shape
    g = max(1, min(group, t))
    n_groups = -(-t // g)
    if n_groups * g != t:
        scores = torch.nn.functional.pad(scores, (0, n_groups * g - t), value=float("-inf"))
    # Groups are runs of g adjacent columns, so a passing group is gathered as one short row copy.
    group_max = scores.view(b, n_groups, g).amax(dim=2)
    top = float(group_max.max())
    if not top < float("inf"):  # NaN or +inf: a non-finite pool vector
        bad = torch.nonzero(torch.isnan(scores) | torch.isposinf(scores))[0, 1]
        raise MbenchError(f"pool embedding row {start + int(bad)} holds NaN or inf; search needs finite vectors")
    if n_groups > kk and bool(torch.isneginf(entry).any()):
        entry = _kth_group_bound(group_max, entry, kk)  # a running top-k not yet full: every group would pass
    row, grp = torch.nonzero(group_max >= entry.unsqueeze(1), as_tuple=True)
    if row.numel() > kk and int(torch.bincount(row, minlength=b).max()) > kk:
        entry = _kth_group_bound(group_max, entry, kk)
        row, grp = torch.nonzero(group_max >= entry.unsqueeze(1), as_tuple=True)
    if row.numel() == 0:
        return None
    # The passing groups' scores; keep those reaching the entry score (ties included).
    vals = torch.index_select(scores.view(-1, g), 0, row * n_groups + grp)
    keep = vals >= entry[row].unsqueeze(1)
    if bool(torch.isneginf(entry).any()):  # padding scores (-inf) are no candidates
        keep &= vals > float("-inf")
    pair, member = torch.nonzero(keep, as_tuple=True)
    if pair.numel() == 0:
        return None
    cand_row = row[pair]
    keys = _pack(vals[pair, member], ranks[grp[pair] * g + member + start])
    # One row of keys per query that has candidates (nonzero lists them row by row).
    per_row = torch.bincount(cand_row, minlength=b)
    active = torch.nonzero(per_row).flatten()
    position = torch.empty_like(per_row)
    position[active] = torch.arange(active.numel(), device=scores.device)
    first = torch.cumsum(per_row, 0) - per_row
    slot = torch.arange(cand_row.numel(), device=scores.device) - first[cand_row]
    out = torch.full((active.numel(), int(per_row.max())), _NO_KEY, dtype=torch.int64, device=scores.device)
    out[position[cand_row], slot] = keys
    return active, out


def _kth_group_bound(group_max: torch.Tensor, entry: torch.Tensor, kk: int) -> torch.Tensor:
    """The entry score raised to each row's kk-th largest group max (the top kk groups hold kk scores >= it)."""
    import torch

    return torch.maximum(entry, torch.topk(group_max, kk, dim=1, sorted=False).values.amin(dim=1))


def _keys_to_results(keys: torch.Tensor, inverse: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Numpy ``(scores, indices)`` of sorted keys, padded to k columns with -inf and -1."""
    import torch

    filled = keys != _NO_KEY
    indices = torch.where(filled, inverse[(keys & _LOW32).clamp(max=max(inverse.shape[0] - 1, 0))], -1)
    scores = torch.where(filled, _unpack_scores(keys), float("-inf"))
    return _finish(scores, indices, k)


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


def score_scratch(device: torch.device, query_batch: int, pool_tile: int) -> torch.Tensor | None:
    """The reused fp32 score buffer for ``matmul_fp32`` on CPU (CUDA's caching allocator reuses memory itself)."""
    import torch

    return torch.empty(query_batch * pool_tile, dtype=torch.float32) if device.type == "cpu" else None


def default_tiles(device: str | Any, n_queries: int) -> tuple[int, int]:
    """``(query_batch, pool_tile)`` used when not given: on CUDA the fp32 score tile is about 4 GiB."""
    import torch

    if torch.device(device).type == "cpu":
        return _CPU_QUERY_BATCH, _CPU_POOL_TILE
    qb = _CUDA_QUERY_BATCH
    rows = max(1, min(qb, n_queries))
    return qb, max(_CUDA_MIN_POOL_TILE, _CUDA_SCORE_BYTES // (4 * rows) // 1024 * 1024)


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
    group: int = DEFAULT_GROUP,
    bf16_bits: bool = False,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-``k``: ``(scores float32 [nq, k], indices int64 [nq, k])``.

    ``pool``: array, memmap, ``RowConcat`` or tensor ``[n, d]`` in fp32, fp16 or bf16 (a tensor,
    or uint16 bit patterns with ``bf16_bits=True``). ``tie_rank``: int64 permutation, larger
    ranks first among equal scores. ``exclude``: per query one pool index to drop (-1: none), by
    the harness's one exclusion rule on a search one deeper; k results are still returned. Fewer
    than k candidates: padded with -1 and -inf. ``compute_dtype``: CPU computes in fp32 only;
    CUDA defaults to the pool's dtype (fp16/bf16 inputs, fp32 accumulation). ``group``: columns per pruning group (any value gives the same
    result). ``progress``: report pool tiles done and candidates/s on stderr.
    """
    import torch

    from mbench.progress import progress as progress_reporter

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if group < 1:
        raise ValueError(f"group must be >= 1, got {group}")
    if exclude is not None:
        return _without_excluded(
            lambda width: exact_search(queries, pool, width, tie_rank=tie_rank, device=device, compute_dtype=compute_dtype,
                                       query_batch=query_batch, pool_tile=pool_tile, group=group, bf16_bits=bf16_bits,
                                       progress=progress),
            exclude, int(queries.shape[0]), k,
        )
    dev = torch.device(device)
    n, d = int(pool.shape[0]), int(pool.shape[1])
    nq = int(queries.shape[0])
    if nq and int(queries.shape[1]) != d:
        raise MbenchError(f"query embeddings have dimension {queries.shape[1]}, the pool has {d}")
    dtype = _compute_dtype(pool, dev, compute_dtype, bf16_bits)
    default_qb, default_tile = default_tiles(dev, nq)
    qb = max(1, int(query_batch or default_qb))
    tile = max(1, int(pool_tile or default_tile))

    q = _to_tensor(queries, dev, dtype, bf16_bits)
    _check_queries(q)
    ranks, inverse = _tie_ranks(tie_rank, n, dev)
    kk = min(k, n)
    if nq == 0 or n == 0:
        empty = torch.zeros((nq, 0), dtype=torch.float32)
        return _finish(empty, empty.long(), k)

    # The running top-kk as keys (unsorted), and per query the lowest score that can still enter it.
    run = torch.full((nq, kk), _NO_KEY, dtype=torch.int64, device=dev)
    entry = torch.full((nq,), float("-inf"), dtype=torch.float32, device=dev)
    bounds = tile_bounds(pool, tile, within_parts=dev.type == "cpu")
    bar = progress_reporter(len(bounds), "search", "tiles", enabled=progress, rate_unit="cand", work_total=n)
    scratch = score_scratch(dev, min(qb, nq), max(b - a for a, b in bounds))
    try:
        with torch.inference_mode():
            for start, block in pool_tiles(pool, bounds, dev, dtype, bf16_bits):
                for qs in range(0, nq, qb):
                    rows = slice(qs, qs + qb)
                    scores = matmul_fp32(q[rows], block, scratch)
                    found = _tile_keys(scores, start, entry[rows], kk, group, ranks)
                    if found is None:
                        continue
                    active, keys = found
                    active += qs
                    # Unsorted: the kept set and its smallest key are all the next tiles need.
                    merged = torch.topk(torch.cat([run[active], keys], dim=1), kk, dim=1, sorted=False).values
                    run[active] = merged
                    last = merged.amin(dim=1)
                    entry[active] = torch.where(last != _NO_KEY, _unpack_scores(last), float("-inf"))
                bar.update(1, work=block.shape[0])
            return _keys_to_results(torch.sort(run, dim=1, descending=True).values, inverse, k)
    finally:
        bar.close()


def _pad_cols(scores: torch.Tensor, indices: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    if scores.shape[1] >= k:
        return scores, indices
    pad = k - scores.shape[1]
    return (
        torch.cat([scores, scores.new_full((scores.shape[0], pad), float("-inf"))], dim=1),
        torch.cat([indices, indices.new_full((indices.shape[0], pad), -1)], dim=1),
    )


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
    bf16_bits: bool = False,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` with faiss ``IndexFlatIP`` (faiss-gpu on CUDA where installed); outputs as ``exact_search``.

    faiss orders equal scores arbitrarily, so its top ``k + margin`` are re-sorted with the tie
    rule; queries whose tie at the k-th score reaches past that depth cannot be resolved from
    faiss's answer and are recomputed by ``exact_search`` (their scores then come from torch's
    matmul, which may differ from faiss's in the last ulp). The pool is added ``pool_tile`` rows
    at a time (fp32), so memory stays bounded for a memory-mapped pool.
    """
    from mbench.progress import progress as progress_reporter

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
                                       margin=margin, bf16_bits=bf16_bits, progress=progress),
            exclude, int(queries.shape[0]), k,
        )
    n, d = int(pool.shape[0]), int(pool.shape[1])
    cpu = torch.device("cpu")
    qnp = _to_tensor(queries.detach() if isinstance(queries, torch.Tensor) else queries, cpu, torch.float32, bf16_bits).numpy()
    nq = qnp.shape[0]
    if nq and qnp.shape[1] != d:
        raise MbenchError(f"query embeddings have dimension {qnp.shape[1]}, the pool has {d}")
    _check_queries(torch.from_numpy(qnp))
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
    bounds = tile_bounds(pool, tile, within_parts=False)  # faiss copies each tile: the larger the better
    bar = progress_reporter(len(bounds), "search (faiss)", "tiles", enabled=progress, rate_unit="cand", work_total=n)
    for start, stop in bounds:
        block = _to_tensor(pool[start:stop], cpu, torch.float32, bf16_bits).numpy()
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
        bar.update(1, work=stop - start)
    bar.close()
    cut = run_s[:, keep - 1].clone()  # the score where faiss's answer was cut
    out_s, out_i = _pad_cols(*_order_exact(run_s, run_i, ranks, k), k)
    if keep < n:
        kth = run_s[:, min(k, keep) - 1]
        redo = torch.nonzero((kth == cut) & torch.isfinite(kth)).flatten().numpy()
        if redo.size:
            fix_s, fix_i = exact_search(qnp[redo], pool, k, tie_rank=ranks.numpy(), bf16_bits=bf16_bits)
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
        options.pop("group", None)  # faiss selects with its own heaps
        return faiss_search(queries, pool, k, **options)
    raise MbenchError(f"unknown search backend {backend!r}: use torch or faiss")
