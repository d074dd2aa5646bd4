"""Exact top-k search at M-BEIR global-pool scale on a GPU: mbench's search vs the bare bf16 matmul floor.

For each d in ``--dims`` (default 768 and 4096): a pool of ``--pool-size`` (5,609,079, the
M-BEIR global pool) random unit vectors in bf16, resident on the device, and ``--queries``
random unit queries (a slice of the 190,000 M-BEIR test queries: the full run would take about
40 minutes at d=768). Timed in the same process, on the same tiles:

* **search**: ``mbench.engine.search.exact_search`` (bf16 inputs, fp32 accumulation and fp32
  scores, top-``k``, exact tie order);
* **floor**: the same matmuls (``matmul_fp32`` over the same query blocks and pool tiles) with no
  selection at all: the throughput limit of the search.

A warm-up search (one pool tile) runs first and is reported separately. Agreement is checked on
``--check-queries`` sampled queries against two fp32 references computed while the pool is
generated: an fp32 matmul of the same bf16-rounded vectors (equal up to fp32 summation order, so
only near-ties may swap) and of the original fp32 vectors (bf16 rounding moves scores by ~1e-3:
reported as overlap). The 190,000-query time is extrapolated linearly from this run's
per-query time and is labelled so.

    python3 bench/gpu_search_bench.py --out gpu-search.md                       # on the GPU (~4 min)
    python3 bench/gpu_search_bench.py --device cpu --pool-size 20000 --queries 64 --dims 64

Imports only torch, numpy and ``mbench.engine.search`` (no pydantic, no faiss).
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mbench.engine.search import default_tiles, exact_search, matmul_fp32, score_scratch, tile_bounds  # noqa: E402

FULL_QUERIES = 190_000
GLOBAL_POOL = 5_609_079
DEFAULT_QUERIES = {768: 4096, 4096: 512}  # sized so both d's finish in about 4 minutes on an H200
NEAR_TIE = 1e-5  # fp32 scores of the same bf16 vectors differ by summation order only


def sync(device: torch.device) -> None:
    """Wait for the device so wall times cover the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def unit_chunks(n: int, dim: int, seed: int, device: torch.device, chunk: int):  # type: ignore[no-untyped-def]
    """``(start, fp32 unit rows)`` chunk by chunk; chunk ``i`` depends on ``(seed, i)`` only."""
    gen = torch.Generator(device=device)
    for i, start in enumerate(range(0, n, chunk)):
        gen.manual_seed(seed * 1_000_003 + i)
        block = torch.randn((min(chunk, n - start), dim), generator=gen, device=device)
        yield start, torch.nn.functional.normalize(block, dim=1)


class Reference:
    """Running top-k of fp32 scores for the sampled queries (plain ``torch.topk``, ties by position)."""

    def __init__(self, queries: torch.Tensor, k: int) -> None:
        self.queries, self.k = queries, k
        self.scores = torch.full((queries.shape[0], 0), float("-inf"), device=queries.device)
        self.indices = torch.zeros((queries.shape[0], 0), dtype=torch.int64, device=queries.device)

    def add(self, start: int, rows: torch.Tensor) -> None:
        """Merge the scores of pool rows ``start...`` (fp32 rows) into the running top-k."""
        scores = torch.cat([self.scores, self.queries @ rows.T], dim=1)
        cand = torch.arange(start, start + rows.shape[0], device=rows.device).expand(self.queries.shape[0], -1)
        indices = torch.cat([self.indices, cand], dim=1)
        top, pos = torch.topk(scores, min(self.k, scores.shape[1]), dim=1)
        self.scores, self.indices = top, torch.gather(indices, 1, pos)


def make_data(args: argparse.Namespace, dim: int, n_queries: int, device: torch.device, sample: torch.Tensor):  # type: ignore[no-untyped-def]
    """bf16 queries and pool on the device, and the two fp32 references for the sampled queries."""
    torch.backends.cuda.matmul.allow_tf32 = False  # the fp32 references are true fp32 matmuls
    queries32 = next(unit_chunks(n_queries, dim, args.seed, device, n_queries))[1]
    queries = queries32.to(torch.bfloat16)
    ref_rounded = Reference(queries[sample].float(), args.k)
    ref_original = Reference(queries32[sample], args.k)
    del queries32
    pool = torch.empty((args.pool_size, dim), dtype=torch.bfloat16, device=device)
    for start, rows in unit_chunks(args.pool_size, dim, args.seed + 1, device, args.chunk):
        pool[start : start + rows.shape[0]] = rows.to(torch.bfloat16)
        ref_original.add(start, rows)
        ref_rounded.add(start, pool[start : start + rows.shape[0]].float())
    return queries, pool, ref_rounded, ref_original


def floor_seconds(queries: torch.Tensor, pool: torch.Tensor, query_batch: int, pool_tile: int, device: torch.device) -> float:
    """The same matmuls as the search (fp32 scores of the compute dtype's inputs), no selection."""
    dtype = torch.float32 if device.type == "cpu" else pool.dtype
    q = queries.to(dtype)
    bounds = tile_bounds(pool, pool_tile)
    scratch = score_scratch(device, min(query_batch, q.shape[0]), max(b - a for a, b in bounds))
    sync(device)
    start_time = time.perf_counter()
    for start, stop in bounds:
        block = pool[start:stop].to(dtype)
        for qs in range(0, q.shape[0], query_batch):
            matmul_fp32(q[qs : qs + query_batch], block, scratch)
    sync(device)
    return time.perf_counter() - start_time


def agreement(
    ours_s: np.ndarray, ours_i: np.ndarray, ref: Reference, rescore: Any = None
) -> dict[str, float]:
    """Rows identical, rows differing only among near-ties, mean/min top-k overlap, largest score gap.

    ``rescore(row, candidates)`` gives exact (fp64) scores; with it, a row whose differing
    positions hold candidates scoring within ``NEAR_TIE`` of each other counts as near-ties only.
    """
    ref_s, ref_i = ref.scores.cpu().numpy(), ref.indices.cpu().numpy()
    identical = near_ties = 0
    overlaps = []
    for row in range(ref_i.shape[0]):
        overlaps.append(len(set(ours_i[row].tolist()) & set(ref_i[row].tolist())) / ref_i.shape[1])
        if np.array_equal(ours_i[row], ref_i[row]):
            identical += 1
        elif rescore is not None:
            diff = ours_i[row] != ref_i[row]
            a, b = rescore(row, ours_i[row][diff]), rescore(row, ref_i[row][diff])
            if np.all(np.abs(a - b) <= NEAR_TIE):
                near_ties += 1
    same = ours_i == ref_i
    gap = float(np.max(np.abs(ours_s[same] - ref_s[same]))) if same.any() else float("nan")
    return {
        "identical": identical,
        "near_ties": near_ties,
        "mean_overlap": float(np.mean(overlaps)),
        "min_overlap": float(np.min(overlaps)),
        "max_score_gap": gap,
    }


def run_dim(args: argparse.Namespace, dim: int, device: torch.device) -> dict:
    """Generate, warm up, time search and floor, check agreement: one row of the report."""
    n_queries = args.queries or DEFAULT_QUERIES.get(dim, 1024)
    n_check = min(args.check_queries, n_queries)
    sample = torch.linspace(0, n_queries - 1, n_check, device=device).round().long()
    t0 = time.perf_counter()
    queries, pool, ref_rounded, ref_original = make_data(args, dim, n_queries, device, sample)
    sync(device)
    generate_s = time.perf_counter() - t0
    query_batch, pool_tile = default_tiles(device, n_queries)
    query_batch = args.query_batch or query_batch
    pool_tile = args.pool_tile or pool_tile

    t0 = time.perf_counter()
    exact_search(queries, pool[: min(pool_tile, args.pool_size)], args.k, device=device, query_batch=query_batch, pool_tile=pool_tile)
    matmul_fp32(queries[:query_batch].to(torch.float32 if device.type == "cpu" else torch.bfloat16),
                pool[:pool_tile].to(torch.float32 if device.type == "cpu" else torch.bfloat16))
    sync(device)
    warmup_s = time.perf_counter() - t0

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        resident = torch.cuda.memory_allocated(device)
    sync(device)
    t0 = time.perf_counter()
    scores, indices = exact_search(queries, pool, args.k, device=device, query_batch=query_batch, pool_tile=pool_tile)
    sync(device)
    search_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    floor_s = floor_seconds(queries, pool, query_batch, pool_tile, device)

    check = sample.cpu().numpy()

    def rescore(row: int, candidates: np.ndarray) -> np.ndarray:
        """fp64 scores of the bf16 vectors: the exact value both rankings approximate in fp32."""
        rows = pool[torch.as_tensor(candidates, device=device)].double()
        return (rows @ queries[int(check[row])].double()).cpu().numpy()

    flops = 2.0 * n_queries * args.pool_size * dim
    row = {
        "dim": dim,
        "queries": n_queries,
        "query_batch": query_batch,
        "pool_tile": pool_tile,
        "generate_s": generate_s,
        "warmup_s": warmup_s,
        "search_s": search_s,
        "floor_s": floor_s,
        "search_tflops": flops / search_s / 1e12,
        "floor_tflops": flops / floor_s / 1e12,
        "extrapolated_search_s": search_s * FULL_QUERIES / n_queries,
        "extrapolated_floor_s": floor_s * FULL_QUERIES / n_queries,
        "peak_gib": None if peak is None else peak / 2**30,
        "working_gib": None if peak is None else (peak - resident) / 2**30,
        "checked": n_check,
        "rounded": agreement(scores[check], indices[check], ref_rounded, rescore),
        "original": agreement(scores[check], indices[check], ref_original),
    }
    del queries, pool, ref_rounded, ref_original
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return row


def report(args: argparse.Namespace, device: torch.device, rows: list[dict], argv: list[str]) -> str:
    """The markdown report."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    lines = [
        "# Exact search at global-pool scale: mbench vs the matmul floor",
        "",
        "Recorded by `bench/gpu_search_bench.py` (one process; every figure below was measured in this run,",
        "except the rows marked *extrapolated*).",
        "",
        "```bash",
        "python3 " + " ".join(["bench/gpu_search_bench.py", *argv]),
        "```",
        "",
        f"- device: {name} ({device.type})",
        f"- torch {torch.__version__}, CUDA {torch.version.cuda}, numpy {np.__version__}, Python {platform.python_version()}",
        f"- pool: {args.pool_size:,} random unit vectors (bf16, resident on the device), top-{args.k}, "
        f"{'bf16 inputs with fp32 accumulation' if device.type == 'cuda' else 'fp32 compute (bf16 pool upcast)'}",
        "- search: `exact_search` (exact tie order: score desc, then id); floor: the same matmuls over the same "
        "query blocks and pool tiles with fp32 output and no top-k",
        "",
        "| d | queries | query batch x pool tile | warm-up s | search s | floor s | search / floor throughput "
        "| search TFLOP/s | floor TFLOP/s | 190,000 queries, extrapolated: search / floor | peak GPU memory (working) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        memory = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f} GiB ({r['working_gib']:.1f} GiB)"
        lines.append(
            f"| {r['dim']} | {r['queries']:,} | {r['query_batch']:,} x {r['pool_tile']:,} | {r['warmup_s']:.2f} "
            f"| {r['search_s']:.2f} | {r['floor_s']:.2f} | **{r['floor_s'] / r['search_s']:.0%}** "
            f"| {r['search_tflops']:.2f} | {r['floor_tflops']:.2f} "
            f"| {r['extrapolated_search_s'] / 60:.1f} min / {r['extrapolated_floor_s'] / 60:.1f} min | {memory} |"
        )
    lines += [
        "",
        "Extrapolated (not measured): this run's seconds per query times 190,000, with the same query batch "
        "and pool tile.",
        "",
        "## Agreement on sampled queries",
        "",
        "| d | sampled | fp32 reference of the same bf16 vectors: rows identical / near-ties only / "
        "largest score gap | fp32 reference of the original fp32 vectors: mean / min top-k overlap |",
        "|---:|---:|---|---|",
    ]
    for r in rows:
        a, b = r["rounded"], r["original"]
        lines.append(
            f"| {r['dim']} | {r['checked']} | {a['identical']} / {a['near_ties']} / {a['max_score_gap']:.1e} "
            f"| {b['mean_overlap']:.4f} / {b['min_overlap']:.2f} |"
        )
    lines += [
        "",
        f"Near-ties: where the two rankings differ, the swapped candidates' exact (fp64) scores of the bf16 vectors "
        f"agree within {NEAR_TIE:g}: fp32 summation order differs between the tiled matmul and the reference. "
        "Largest score gap: between mbench's fp32 scores and the reference's at identical positions.",
        "",
        "Pool generation (randn, normalise, bf16, both references) took "
        + ", ".join(f"{r['generate_s']:.1f} s (d={r['dim']})" for r in rows)
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run every d, print the markdown report and write it to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dims", default="768,4096", help="comma-separated embedding dimensions")
    parser.add_argument("--pool-size", type=int, default=GLOBAL_POOL)
    parser.add_argument("--queries", type=int, default=None,
                        help=f"queries per d (default: {', '.join(f'{v} at d={d}' for d, v in DEFAULT_QUERIES.items())})")
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--check-queries", type=int, default=64, help="sampled queries checked against fp32 references")
    parser.add_argument("--query-batch", type=int, default=None)
    parser.add_argument("--pool-tile", type=int, default=None)
    parser.add_argument("--chunk", type=int, default=131072, help="pool rows generated at a time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown report here")
    args = parser.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    dims = [int(x) for x in args.dims.split(",") if x.strip()]
    rows = []
    for dim in dims:
        t0 = time.perf_counter()
        rows.append(run_dim(args, dim, device))
        r = rows[-1]
        print(
            f"d={dim}: search {r['search_s']:.2f} s, floor {r['floor_s']:.2f} s "
            f"({r['floor_s'] / r['search_s']:.0%} of floor throughput), warm-up {r['warmup_s']:.2f} s, "
            f"total {time.perf_counter() - t0:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    text = report(args, device, rows, argv)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    bad = [r["dim"] for r in rows if r["rounded"]["identical"] + r["rounded"]["near_ties"] != r["checked"]]
    if bad:
        print(f"FAILED: top-{args.k} differs from the fp32 reference of the same bf16 vectors beyond near-ties at d={bad}",
              file=sys.stderr)
        return 1
    return 0 if all(math.isfinite(r["search_s"]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
