"""Exact top-k search: mbench's tiled search vs faiss IndexFlatIP vs mteb's chunked topk + heapq merge.

    python bench/search_bench.py                                   # 5,000 x 500,000 x 768 fp32 on CPU
    python bench/search_bench.py --device cuda --dtype bf16 \\
        --queries 190000 --pool 5600000 --dim 768 --skip-mteb       # the M-BEIR global-pool shape on a GPU

All methods run in one process on the same random unit vectors; their top-k must agree up to
ties (a differing position must hold candidates whose scores agree within 1e-5). On CUDA the
script also times the bf16 matmul floor: the same GEMM tiles with no selection at all.

mteb is not installed here (it pulls datasets/transformers and a network-backed task
registry), so its algorithm is re-implemented from `SearchEncoderWrapper._full_corpus_search`
in `mteb/models/search_wrappers.py`: corpus chunks of 50,000, `similarity` (cosine: normalise,
then matmul) of all queries against the chunk, `torch.topk(top_k + 1)` per chunk, `.tolist()`,
then per query a Python `heapq` of (score, corpus id) kept at top_k with `heappushpop`.
"""

from __future__ import annotations

import argparse
import heapq
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mbench.engine.search import exact_search
from machine_facts import machine_facts  # noqa: E402  (bench/ is on sys.path when run as a script)


def machine() -> dict[str, str]:
    """CPU model, cores, RAM, load and library versions, for the record."""
    try:
        import faiss

        faiss_version = faiss.__version__
    except ImportError:
        faiss_version = "not installed"
    info = {
        **machine_facts(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "faiss": faiss_version,
        "torch threads": str(torch.get_num_threads()),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def unit_vectors(n: int, dim: int, seed: int, device: str, dtype: torch.dtype, chunk: int = 262144) -> torch.Tensor:
    """``n`` random unit vectors, generated in chunks so the fp32 intermediate stays small."""
    out = torch.empty((n, dim), dtype=dtype, device=device)
    gen = torch.Generator(device=device).manual_seed(seed)
    for start in range(0, n, chunk):
        block = torch.randn((min(chunk, n - start), dim), generator=gen, device=device)
        out[start : start + block.shape[0]] = torch.nn.functional.normalize(block, dim=1).to(dtype)
    return out


def mteb_style_search(queries: torch.Tensor, pool: torch.Tensor, top_k: int, chunk: int = 50_000) -> np.ndarray:
    """mteb's full-corpus search: per corpus chunk cosine scores, topk(top_k + 1), a heapq per query."""
    corpus_ids = [str(i) for i in range(pool.shape[0])]  # mteb keys everything by string ids
    heaps: dict[int, list[tuple[float, str]]] = {q: [] for q in range(queries.shape[0])}
    q_norm = torch.nn.functional.normalize(queries.float(), dim=1)
    for start in range(0, pool.shape[0], chunk):
        sub = pool[start : start + chunk]
        scores = q_norm @ torch.nn.functional.normalize(sub.float(), dim=1).T
        vals, idx = torch.topk(scores, min(top_k + 1, scores.shape[1]), dim=1, largest=True)
        idx_list, val_list = idx.cpu().tolist(), vals.cpu().tolist()
        sub_ids = corpus_ids[start : start + chunk]
        for q in range(queries.shape[0]):
            heap = heaps[q]
            for sub_id, score in zip(idx_list[q], val_list[q]):
                if len(heap) < top_k:
                    heapq.heappush(heap, (score, sub_ids[sub_id]))
                else:
                    heapq.heappushpop(heap, (score, sub_ids[sub_id]))
    results = {q: {cid: score for score, cid in heap} for q, heap in heaps.items()}
    ranked = np.full((queries.shape[0], top_k), -1, dtype=np.int64)
    for q, docs in results.items():
        order = sorted(docs.items(), key=lambda kv: kv[1], reverse=True)
        ranked[q, : len(order)] = [int(cid) for cid, _ in order]
    return ranked


def faiss_flat_ip(queries: np.ndarray, pool: np.ndarray, k: int, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Plain faiss: IndexFlatIP (GpuIndexFlatIP on CUDA), add the pool, search."""
    import faiss

    if device.startswith("cuda"):
        index = faiss.GpuIndexFlatIP(faiss.StandardGpuResources(), pool.shape[1])
    else:
        index = faiss.IndexFlatIP(pool.shape[1])
    index.add(pool)
    dist, labels = index.search(queries, k)
    return dist, labels


def agree_up_to_ties(ref: np.ndarray, other: np.ndarray, q: torch.Tensor, p: torch.Tensor, atol: float = 1e-5) -> tuple[int, int]:
    """(rows identical, rows differing only among candidates whose exact scores agree within ``atol``)."""
    same = (ref == other).all(axis=1)
    tie_only = 0
    for row in np.flatnonzero(~same):
        qv = q[row].double().cpu()
        sa = (p[torch.from_numpy(ref[row])].double().cpu() @ qv).numpy()
        sb = (p[torch.from_numpy(other[row])].double().cpu() @ qv).numpy()
        diff = ref[row] != other[row]
        if np.allclose(np.sort(sa)[::-1], np.sort(sb)[::-1], atol=atol, rtol=0) and np.all(
            np.abs(sa[diff] - sb[diff]) <= atol
        ):
            tie_only += 1
        else:
            raise AssertionError(f"query {row}: top-k differs beyond ties: {ref[row][diff][:5]} vs {other[row][diff][:5]}")
    return int(same.sum()), tie_only


def timed(label: str, fn, device: str):  # type: ignore[no-untyped-def]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    print(f"{label:<28} {seconds:10.2f} s", flush=True)
    return out, seconds


def matmul_floor(q: torch.Tensor, p: torch.Tensor, query_batch: int, pool_tile: int) -> float:
    """Seconds for the same GEMM tiles as the search (fp32 output), without any top-k."""
    nq, n = q.shape[0], p.shape[0]
    tile = p[:pool_tile]
    torch.mm(q[:query_batch], tile.T, out_dtype=torch.float32) if q.dtype != torch.float32 else q[:query_batch] @ tile.T
    torch.cuda.synchronize()
    start = time.perf_counter()
    for ps in range(0, n, pool_tile):
        block = p[ps : ps + pool_tile]
        for qs in range(0, nq, query_batch):
            if q.dtype == torch.float32:
                q[qs : qs + query_batch] @ block.T
            else:
                torch.mm(q[qs : qs + query_batch], block.T, out_dtype=torch.float32)
    torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> int:
    """Run the comparison and print times and ratios."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--pool", type=int, default=500_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--query-batch", type=int, default=None)
    parser.add_argument("--pool-tile", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-faiss", action="store_true")
    parser.add_argument("--skip-mteb", action="store_true")
    parser.add_argument("--reverse", action="store_true", help="time the baselines before mbench")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
        if args.device.startswith("cuda") and not hasattr(faiss, "GpuIndexFlatIP"):
            print("note: faiss has no GPU support here; faiss skipped")
            args.skip_faiss = True
    except ImportError:
        args.skip_faiss = True
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
    if args.device == "cpu" and dtype != torch.float32:
        print("note: CPU search computes in fp32; vectors are rounded to", args.dtype, "then upcast")
    info = machine()
    print("command:", " ".join([Path(sys.executable).name] + sys.argv))
    for key, value in info.items():
        print(f"{key}: {value}")
    print("load average before:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"shape: {args.queries} queries x {args.pool} pool x {args.dim} dim, top-{args.k}, {args.dtype}, {args.device}")

    q = unit_vectors(args.queries, args.dim, args.seed, args.device, dtype)
    p = unit_vectors(args.pool, args.dim, args.seed + 1, args.device, dtype)
    if args.device == "cpu":
        q_in, p_in = q.float().numpy(), p.float().numpy()  # how the harness hands the store's arrays over
    else:
        q_in, p_in = q, p

    methods = [
        (
            "mbench exact_search",
            lambda: exact_search(q_in, p_in, args.k, device=args.device, query_batch=args.query_batch, pool_tile=args.pool_tile)[1],
        )
    ]
    if not args.skip_faiss:
        qf, pf = q.float().cpu().numpy(), p.float().cpu().numpy()
        methods.append(("faiss IndexFlatIP", lambda: faiss_flat_ip(qf, pf, args.k, args.device)[1].astype(np.int64)))
    if not args.skip_mteb:
        methods.append(("mteb-style topk+heapq", lambda: mteb_style_search(q, p, args.k)))
    if args.reverse:  # run the baselines first, to expose drift in a shared machine's load
        methods.reverse()
    times: dict[str, float] = {}
    results: dict[str, np.ndarray] = {}
    for name, fn in methods:
        results[name], times[name] = timed(name, fn, args.device)
    ours = results["mbench exact_search"]
    if args.device.startswith("cuda"):
        from mbench.engine import search as search_mod

        qb = args.query_batch or search_mod._CUDA_QUERY_BATCH
        tile = args.pool_tile or search_mod._CUDA_POOL_TILE
        times["bf16 matmul floor"] = matmul_floor(q, p, qb, tile)
        print(f"{'matmul floor (same tiles)':<28} {times['bf16 matmul floor']:10.2f} s")

    print("load average after:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    for name, ranked in results.items():
        if name == "mbench exact_search":
            continue
        same, ties = agree_up_to_ties(ours, ranked, q, p)
        print(f"agreement with {name}: {same}/{args.queries} rows identical, {ties} differ only among candidates whose scores agree within 1e-5 (near-ties; fp32 summation order differs between BLAS libraries)")
    base = times["mbench exact_search"]
    print("\nratios (time / mbench time):")
    for name, seconds in times.items():
        print(f"  {name:<28} {seconds / base:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
