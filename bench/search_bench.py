"""Exact top-k search on CPU: mbench vs faiss vs mteb's chunked topk + heapq, against the GEMM floor.

    python bench/search_bench.py                                      # 5,000 x 500,000 x 768, fp32, top-100
    python bench/search_bench.py --queries 2000 --pool 200000
    python bench/search_bench.py --queries 500 --pool 5000000 --store  # memory-mapped from the store
    python bench/search_bench.py ... --write                          # update bench/results/search.md

All methods run in one process on the same random unit vectors (fp32), in alternating order over
``--repeats`` (A B C, C B A, ...); each method's median is reported with its ratio to mbench and
to the **GEMM floor**: the same fp32 matmuls mbench runs (same query blocks, same pool tiles, read
from the pool the same way) with no selection at all, the physical limit of an exact search.

* mbench: ``mbench.engine.search.exact_search`` (exact tie order: score desc, then id).
* faiss: in memory, ``IndexFlatIP``: ``add`` the pool, ``search`` (both timed). With ``--store``
  the pool is the store's memory-mapped shards, which faiss cannot ``add`` without a copy of the
  whole pool, so faiss runs its flat kernel (``faiss.knn``, what ``IndexFlatIP.search`` calls) on
  each shard in place and merges with ``faiss.ResultHeap``.
* mteb-style: mteb is not installed (it pulls datasets/transformers and a network-backed task
  registry), so its algorithm is re-implemented from ``SearchEncoderWrapper._full_corpus_search``
  in ``mteb/models/search_wrappers.py``: corpus chunks of 50,000, ``similarity`` (cosine:
  normalise, then matmul) of all queries against the chunk, ``torch.topk(top_k + 1)`` per chunk,
  ``.tolist()``, then per query a Python ``heapq`` of (score, corpus id) kept at top_k.

Every method's top-k must equal mbench's up to near-ties (a differing position must hold
candidates whose exact fp64 scores agree within 1e-5). The load average is recorded before and
after; above the core count the run is marked NOISY and ``--write`` is refused unless
``--allow-noisy``. GPU search has its own bench: ``bench/gpu_search_bench.py``.
"""

from __future__ import annotations

import argparse
import heapq
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mbench.engine.search import (  # noqa: E402
    default_tiles,
    exact_search,
    matmul_fp32,
    pool_tiles,
    score_scratch,
    tile_bounds,
)
from machine_facts import machine_facts  # noqa: E402  (bench/ is on sys.path when run as a script)
from bench_protocol import LoadRecord, alternating_orders, median, write_refusal  # noqa: E402

RESULTS = REPO_ROOT / "bench" / "results" / "search.md"
FLOOR = "GEMM floor"
MBENCH = "mbench exact_search"
NEAR_TIE = 1e-5


def machine() -> dict[str, str]:
    """CPU model, cores, RAM and library versions, for the record."""
    try:
        import faiss

        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = "not installed"
    return {
        **machine_facts(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "faiss": faiss_version,
        "torch threads": str(torch.get_num_threads()),
    }


def unit_vectors(n: int, dim: int, seed: int, chunk: int = 262144) -> np.ndarray:
    """``n`` random fp32 unit vectors, generated in chunks."""
    out = np.empty((n, dim), dtype=np.float32)
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, n, chunk):
        block = torch.randn((min(chunk, n - start), dim), generator=gen)
        out[start : start + block.shape[0]] = torch.nn.functional.normalize(block, dim=1).numpy()
    return out


def store_pool(root: Path, n: int, dim: int, seed: int, shard_size: int) -> Any:
    """The pool as the store serves it to search: a ``RowConcat`` of memory-mapped shards (reused if present)."""
    from mbench.engine.cache.store import EmbeddingStore

    store = EmbeddingStore(root)
    key = f"{seed:08x}{n:016x}{dim:08x}{shard_size:08x}"  # one entry per bench configuration
    entry = store.entry(key, n_items=n, shard_size=shard_size, meta={"bench": "search_bench", "seed": seed})
    missing = entry.missing_shards()
    gen = torch.Generator()
    for shard in missing:
        rows = entry.shard_range(shard)
        gen.manual_seed(seed * 1_000_003 + shard)  # each shard on its own: resuming a partial entry is exact
        block = torch.nn.functional.normalize(torch.randn((len(rows), dim), generator=gen), dim=1)
        entry.write_shard(shard, block.numpy())
    return entry.load()


def mteb_style_search(queries: np.ndarray, pool: np.ndarray, top_k: int, chunk: int = 50_000) -> np.ndarray:
    """mteb's full-corpus search: per corpus chunk cosine scores, topk(top_k + 1), a heapq per query."""
    q = torch.from_numpy(queries)
    corpus_ids = [str(i) for i in range(pool.shape[0])]  # mteb keys everything by string ids
    heaps: dict[int, list[tuple[float, str]]] = {row: [] for row in range(q.shape[0])}
    q_norm = torch.nn.functional.normalize(q, dim=1)
    for start in range(0, pool.shape[0], chunk):
        sub = torch.from_numpy(np.asarray(pool[start : start + chunk], dtype=np.float32))
        scores = q_norm @ torch.nn.functional.normalize(sub, dim=1).T
        vals, idx = torch.topk(scores, min(top_k + 1, scores.shape[1]), dim=1, largest=True)
        idx_list, val_list = idx.tolist(), vals.tolist()
        sub_ids = corpus_ids[start : start + chunk]
        for row in range(q.shape[0]):
            heap = heaps[row]
            for sub_id, score in zip(idx_list[row], val_list[row]):
                if len(heap) < top_k:
                    heapq.heappush(heap, (score, sub_ids[sub_id]))
                else:
                    heapq.heappushpop(heap, (score, sub_ids[sub_id]))
    ranked = np.full((q.shape[0], top_k), -1, dtype=np.int64)
    for row, heap in heaps.items():
        order = sorted(((cid, score) for score, cid in heap), key=lambda kv: kv[1], reverse=True)
        ranked[row, : len(order)] = [int(cid) for cid, _ in order]
    return ranked


def faiss_flat_ip(queries: np.ndarray, pool: np.ndarray, k: int) -> np.ndarray:
    """Plain faiss: IndexFlatIP, add the pool, search."""
    import faiss

    index = faiss.IndexFlatIP(pool.shape[1])
    index.add(pool)
    return index.search(queries, k)[1].astype(np.int64)


def faiss_knn_shards(queries: np.ndarray, pool: Any, k: int) -> np.ndarray:
    """faiss's flat kernel on each memory-mapped shard in place, merged by ``faiss.ResultHeap``."""
    import faiss

    heap = faiss.ResultHeap(queries.shape[0], k, keep_max=True)
    offset = 0
    buffer = np.empty((max(part.shape[0] for part in pool.parts), pool.shape[1]), dtype=np.float32)
    for part in pool.parts:
        rows = np.asarray(part)
        if rows.dtype != np.float32:  # an fp16 store: faiss needs fp32, converted into one reused buffer
            rows = buffer[: rows.shape[0]]
            np.copyto(rows, part)
        dist, labels = faiss.knn(queries, rows, k, metric=faiss.METRIC_INNER_PRODUCT)
        heap.add_result(dist, np.where(labels >= 0, labels + offset, -1))
        offset += rows.shape[0]
    heap.finalize()
    return heap.I.astype(np.int64)


def gemm_floor(queries: np.ndarray, pool: Any, query_batch: int, pool_tile: int) -> None:
    """The matmuls of ``exact_search`` with the same tiles, read the same way, and no selection."""
    q = torch.from_numpy(queries)
    bounds = tile_bounds(pool, pool_tile)
    cpu = torch.device("cpu")
    scratch = score_scratch(cpu, min(query_batch, q.shape[0]), max(b - a for a, b in bounds))
    with torch.inference_mode():
        for _, block in pool_tiles(pool, bounds, cpu, torch.float32):
            for qs in range(0, q.shape[0], query_batch):
                matmul_fp32(q[qs : qs + query_batch], block, scratch)


def agree_up_to_ties(ref: np.ndarray, other: np.ndarray, queries: np.ndarray, pool: Any) -> tuple[int, int]:
    """(rows identical, rows differing only among candidates whose fp64 scores agree within ``NEAR_TIE``)."""
    same = (ref == other).all(axis=1)
    tie_only = 0
    for row in np.flatnonzero(~same):
        qv = queries[row].astype(np.float64)
        diff = ref[row] != other[row]
        sa = np.asarray(pool[ref[row][diff]], dtype=np.float64) @ qv
        sb = np.asarray(pool[other[row][diff]], dtype=np.float64) @ qv
        if np.all(np.abs(np.sort(sa) - np.sort(sb)) <= NEAR_TIE) and np.all(np.abs(sa - sb) <= NEAR_TIE):
            tie_only += 1
        else:
            raise AssertionError(f"query {row}: top-k differs beyond near-ties: {ref[row][diff][:5]} vs {other[row][diff][:5]}")
    return int(same.sum()), tie_only


def shape_label(args: argparse.Namespace, pool_dtype: str) -> str:
    """The section title of this configuration in the results file."""
    where = f"memory-mapped from the store ({pool_dtype} shards of {args.shard_size:,} rows)" if args.store else "in memory (fp32)"
    return f"{args.queries:,} queries x {args.pool:,} pool x {args.dim}, top-{args.k}, pool {where}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Generate the data, time every method over the repeats, check agreement."""
    queries = unit_vectors(args.queries, args.dim, args.seed)
    tmp = None
    if args.store:
        root = args.store_dir
        if root is None:
            tmp = tempfile.TemporaryDirectory(prefix="mbench-search-bench-")
            root = Path(tmp.name)
        pool = store_pool(root, args.pool, args.dim, args.seed + 1, args.shard_size)
        pool_dtype = str(pool.dtype)
    else:
        pool = unit_vectors(args.pool, args.dim, args.seed + 1)
        pool_dtype = "float32"
    default_qb, default_tile = default_tiles("cpu", args.queries)
    qb, tile = args.query_batch or default_qb, args.pool_tile or default_tile

    methods: dict[str, Callable[[], np.ndarray | None]] = {
        FLOOR: lambda: gemm_floor(queries, pool, qb, tile),
        MBENCH: lambda: exact_search(queries, pool, args.k, query_batch=qb, pool_tile=tile)[1],
    }
    if not args.skip_faiss:
        label = "faiss knn per shard + ResultHeap" if args.store else "faiss IndexFlatIP"
        methods[label] = (lambda: faiss_knn_shards(queries, pool, args.k)) if args.store else (lambda: faiss_flat_ip(queries, pool, args.k))
    if not args.skip_mteb:
        methods["mteb-style topk+heapq"] = lambda: mteb_style_search(queries, pool, args.k)

    # Untimed warm-up on a slice: first-touch page faults, BLAS/OpenMP thread start-up.
    warm = min(args.pool, 50_000)
    exact_search(queries[:64], pool[:warm], args.k)
    times: dict[str, list[float]] = {name: [] for name in methods}
    results: dict[str, np.ndarray] = {}
    load = LoadRecord()
    for order in alternating_orders(list(methods), args.repeats):
        for name in order:
            start = time.perf_counter()
            out = methods[name]()
            times[name].append(time.perf_counter() - start)
            print(f"  {name:<36} {times[name][-1]:8.2f} s", flush=True)
            if out is not None:
                results[name] = out
    load.stop()
    agreement = {
        name: agree_up_to_ties(results[MBENCH], ranked, queries, pool) for name, ranked in results.items() if name != MBENCH
    }
    if tmp is not None:
        tmp.cleanup()
    largest_tile = max(b - a for a, b in tile_bounds(pool, tile))  # store shards cap the tiles
    return {"times": times, "agreement": agreement, "load": load, "query_batch": min(qb, args.queries),
            "pool_tile": largest_tile, "label": shape_label(args, pool_dtype)}


def section(args: argparse.Namespace, argv: list[str], outcome: dict[str, Any]) -> str:
    """The markdown section of this configuration."""
    times, load = outcome["times"], outcome["load"]
    med = {name: median(values) for name, values in times.items()}
    lines = [
        f"## {outcome['label']}",
        "",
        "```bash",
        "python " + " ".join(["bench/search_bench.py", *argv]),
        "```",
        "",
        f"- {load.describe()}" + (" (recorded with --allow-noisy)" if load.noisy and args.allow_noisy else ""),
        f"- {args.repeats} repeats in alternating order; mbench's tiles (and the floor's): {outcome['query_batch']:,} "
        f"queries x {outcome['pool_tile']:,} pool rows",
        "",
        "| method | median s | runs s | GEMM floor / time | time / mbench |",
        "|---|---:|---|---:|---:|",
    ]
    for name, values in times.items():
        lines.append(
            f"| {name} | {med[name]:.2f} | {', '.join(f'{v:.2f}' for v in values)} | {med[FLOOR] / med[name]:.2f} "
            f"| {med[name] / med[MBENCH]:.2f} |"
        )
    lines.append("")
    for name, (same, ties) in outcome["agreement"].items():
        lines.append(
            f"- {name}: {same}/{args.queries} rows identical to mbench's, {ties} differ only among near-ties "
            f"(fp64 scores within {NEAR_TIE:g})"
        )
    return "\n".join(lines) + "\n"


HEADER = """# Exact top-k search on CPU: mbench vs faiss vs mteb's search, against the GEMM floor

Recorded by `bench/search_bench.py` (its docstring describes each method). fp32 random unit
vectors, top-100; each configuration below ran in one process, every method on the same arrays,
in alternating order over the repeats; the median is quoted. **GEMM floor / time** is the share
of the physical limit a method reaches: the floor is the same fp32 matmuls as mbench's search
(same tiles, read the same way) with no selection. **time / mbench** above 1 means slower than
mbench.

## Machine

{machine}
"""


def write_results(path: Path, info: dict[str, str], label: str, text: str) -> None:
    """Replace (or add) this configuration's section in the results file, keeping the others."""
    sections: dict[str, str] = {}
    if path.exists():
        for chunk in re.split(r"(?m)^(?=## )", path.read_text()):
            if chunk.startswith("## ") and not chunk.startswith("## Machine"):
                sections[chunk.splitlines()[0][3:]] = chunk.rstrip() + "\n"
    sections[label] = text
    machine_lines = "\n".join(f"- {key}: {value}" for key, value in info.items())
    body = HEADER.format(machine=machine_lines) + "\n" + "\n".join(sections[key] for key in sorted(sections))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)


def main(argv: list[str] | None = None) -> int:
    """Run one configuration, print its section, optionally write it to the results file."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--pool", type=int, default=500_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--query-batch", type=int, default=None)
    parser.add_argument("--pool-tile", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--store", action="store_true", help="search the pool memory-mapped from an embedding store")
    parser.add_argument("--store-dir", type=Path, default=None, help="keep the store here (reused by later runs)")
    parser.add_argument("--shard-size", type=int, default=8192, help="store shard rows (mbench run's default)")
    parser.add_argument("--skip-faiss", action="store_true")
    parser.add_argument("--skip-mteb", action="store_true")
    parser.add_argument("--write", type=Path, nargs="?", const=RESULTS, default=None,
                        help=f"update this configuration's section of the results file (default {RESULTS.relative_to(REPO_ROOT)})")
    parser.add_argument("--allow-noisy", action="store_true", help="write even if the load average exceeded the core count")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")

    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        args.skip_faiss = True
    if args.store:
        args.skip_mteb = True  # mteb holds its corpus in memory; the store shape compares mbench with faiss
    info = machine()
    print(f"{args.queries:,} x {args.pool:,} x {args.dim}, top-{args.k}, {args.repeats} repeats", flush=True)
    outcome = run(args)
    text = section(args, argv, outcome)
    print(text)
    med = {name: median(values) for name, values in outcome["times"].items()}
    ratios = ", ".join(f"{name} {med[name] / med[MBENCH]:.2f}x" for name in med if name not in (FLOOR, MBENCH))
    print(f"RESULT {outcome['label']}: mbench {med[MBENCH]:.2f} s = {med[FLOOR] / med[MBENCH]:.2f} of the GEMM floor "
          f"({med[FLOOR]:.2f} s); time / mbench: {ratios or '-'}; {outcome['load'].describe()}")
    if args.write is not None:
        refusal = write_refusal(outcome["load"], args.allow_noisy)
        if refusal:
            print(refusal, file=sys.stderr)
            return 3
        write_results(args.write, info, outcome["label"], text)
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
