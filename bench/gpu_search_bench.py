"""Exact top-k search at M-BEIR global-pool scale on a GPU: mbench's search vs the bare bf16 matmul floor.

For each d in ``--dims`` (default 768 and 4096): a pool of ``--pool-size`` (5,609,079, the
M-BEIR global pool) random unit vectors in bf16, resident on the device, and ``--queries``
(190,000, the M-BEIR test queries) random unit queries. Timed in the same process, on the same
tiles:

* **search**: ``mbench.engine.search.exact_search`` (bf16 inputs, fp32 accumulation and fp32
  scores, top-``k``, exact tie order);
* **floor**: the same matmuls (``matmul_fp32`` over the same query blocks and pool tiles) with no
  selection at all: the throughput limit of the search.

190,000 x 5.6M x 768 is 1.6 PFLOP, seconds on an H200; d=4096 is 5.3 times that. Before timing,
one query block is searched against the whole pool (also the warm-up); where that predicts more
than ``--budget-s`` for search plus floor, only a prefix of the queries is timed and the 190,000
figure is extrapolated from it and labelled so. Agreement is checked on ``--check-queries``
sampled queries against two fp32 references (plain ``torch.topk`` over fp32 matmuls, vectors
regenerated chunk by chunk): the same bf16-rounded vectors (equal up to fp32 summation order, so
only near-ties may swap) and the original fp32 vectors (bf16 rounding moves scores by ~1e-3:
reported as overlap).

    python3 bench/gpu_search_bench.py --out gpu-search.md                       # on the GPU
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


def bf16_units(n: int, dim: int, seed: int, device: torch.device, chunk: int) -> torch.Tensor:
    """``n`` random unit vectors rounded to bf16, generated chunk by chunk on the device."""
    out = torch.empty((n, dim), dtype=torch.bfloat16, device=device)
    for start, rows in unit_chunks(n, dim, seed, device, chunk):
        out[start : start + rows.shape[0]] = rows.to(torch.bfloat16)
    return out


def references(args: argparse.Namespace, dim: int, sample: torch.Tensor, device: torch.device) -> tuple[Reference, Reference]:
    """fp32 top-k of the sampled queries over the bf16-rounded and over the original fp32 vectors."""
    torch.backends.cuda.matmul.allow_tf32 = False  # true fp32 matmuls
    wanted = sample.tolist()
    picked: dict[int, torch.Tensor] = {}
    for start, rows in unit_chunks(args.queries, dim, args.seed, device, args.chunk):
        for i in wanted:
            if start <= i < start + rows.shape[0]:
                picked[i] = rows[i - start].clone()
    original = torch.stack([picked[i] for i in wanted])
    rounded_ref = Reference(original.to(torch.bfloat16).float(), args.k)
    original_ref = Reference(original, args.k)
    for start, rows in unit_chunks(args.pool_size, dim, args.seed + 1, device, args.chunk):
        original_ref.add(start, rows)
        rounded_ref.add(start, rows.to(torch.bfloat16).float())
    return rounded_ref, original_ref


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
    """Generate, warm up and calibrate, time search and floor, check agreement: one row of the report."""
    t0 = time.perf_counter()
    queries = bf16_units(args.queries, dim, args.seed, device, args.chunk)
    pool = bf16_units(args.pool_size, dim, args.seed + 1, device, args.chunk)
    sync(device)
    generate_s = time.perf_counter() - t0
    query_batch, pool_tile = default_tiles(device, args.queries)
    query_batch = args.query_batch or query_batch
    pool_tile = args.pool_tile or pool_tile

    # Warm-up and calibration: one query block against the whole pool.
    probe = min(query_batch, args.queries)
    sync(device)
    t0 = time.perf_counter()
    exact_search(queries[:probe], pool, args.k, device=device, query_batch=query_batch, pool_tile=pool_tile)
    sync(device)
    warmup_s = time.perf_counter() - t0
    n_queries = args.queries
    predicted = 2 * warmup_s * args.queries / probe  # search + floor, from a run that includes start-up costs
    if predicted > args.budget_s:
        n_queries = max(probe, int(args.budget_s / (2 * warmup_s / probe)) // probe * probe)
    q = queries[:n_queries]

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        resident = torch.cuda.memory_allocated(device)
    sync(device)
    t0 = time.perf_counter()
    scores, indices = exact_search(q, pool, args.k, device=device, query_batch=query_batch, pool_tile=pool_tile)
    sync(device)
    search_s = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    floor_s = floor_seconds(q, pool, query_batch, pool_tile, device)

    n_check = min(args.check_queries, n_queries)
    sample = torch.linspace(0, n_queries - 1, n_check).round().long().unique()
    t0 = time.perf_counter()
    ref_rounded, ref_original = references(args, dim, sample, device)
    sync(device)
    reference_s = time.perf_counter() - t0
    check = sample.numpy()

    def rescore(row: int, candidates: np.ndarray) -> np.ndarray:
        """fp64 scores of the bf16 vectors: the exact value both rankings approximate in fp32."""
        rows = pool[torch.as_tensor(candidates, device=device)].double()
        return (rows @ queries[int(check[row])].double()).cpu().numpy()

    flops = 2.0 * n_queries * args.pool_size * dim
    row = {
        "dim": dim,
        "queries": n_queries,
        "query_batch": min(query_batch, n_queries),
        "pool_tile": min(pool_tile, args.pool_size),
        "generate_s": generate_s,
        "reference_s": reference_s,
        "warmup_s": warmup_s,
        "probe": probe,
        "search_s": search_s,
        "floor_s": floor_s,
        "search_tflops": flops / search_s / 1e12,
        "floor_tflops": flops / floor_s / 1e12,
        "full_search_s": search_s * FULL_QUERIES / n_queries,
        "full_floor_s": floor_s * FULL_QUERIES / n_queries,
        "peak_gib": None if peak is None else peak / 2**30,
        "working_gib": None if peak is None else (peak - resident) / 2**30,
        "checked": int(sample.numel()),
        "rounded": agreement(scores[check], indices[check], ref_rounded, rescore),
        "original": agreement(scores[check], indices[check], ref_original),
    }
    del queries, pool, ref_rounded, ref_original, scores, indices
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
        "except those marked *extrapolated*).",
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
        "| d | queries timed | query batch x pool tile | search s | floor s | search / floor throughput "
        "| search TFLOP/s | floor TFLOP/s | 190,000 queries: search / floor | peak GPU memory (search's own) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in rows:
        memory = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.1f} GiB ({r['working_gib']:.1f} GiB)"
        full = "measured" if r["queries"] >= FULL_QUERIES else "*extrapolated*"
        lines.append(
            f"| {r['dim']} | {r['queries']:,} | {r['query_batch']:,} x {r['pool_tile']:,} "
            f"| {r['search_s']:.2f} | {r['floor_s']:.2f} | **{r['floor_s'] / r['search_s']:.0%}** "
            f"| {r['search_tflops']:.2f} | {r['floor_tflops']:.2f} "
            f"| {r['full_search_s']:.1f} s / {r['full_floor_s']:.1f} s ({full}) | {memory} |"
        )
    lines += [
        "",
        "*Extrapolated* (not measured): the timed queries' seconds per query times 190,000, same tiles; fewer "
        f"than 190,000 queries are timed when --queries asks so, or when the calibration predicted more than "
        f"--budget-s ({args.budget_s:g} s) for search plus floor. Warm-up and calibration (one query block against the whole "
        "pool, before timing): " + ", ".join(f"{r['warmup_s']:.2f} s for {r['probe']:,} queries (d={r['dim']})" for r in rows)
        + ".",
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
        "Generation of queries and pool (randn, normalise, bf16): "
        + ", ".join(f"{r['generate_s']:.1f} s (d={r['dim']})" for r in rows)
        + "; the fp32 references (vectors regenerated chunk by chunk): "
        + ", ".join(f"{r['reference_s']:.1f} s" for r in rows)
        + ".",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Run every d, print the markdown report and write it to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dims", default="768,4096", help="comma-separated embedding dimensions")
    parser.add_argument("--pool-size", type=int, default=GLOBAL_POOL)
    parser.add_argument("--queries", type=int, default=FULL_QUERIES)
    parser.add_argument("--budget-s", type=float, default=80.0,
                        help="per d, the most seconds for search plus floor; more predicted: time a prefix of the queries")
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
