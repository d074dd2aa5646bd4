"""Data-parallel `mbench run` under torchrun (2 CPU processes, gloo): each candidate is encoded
once across the ranks, and the rankings are identical to a single process (DESIGN section 8)."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from mbench.engine.distributed import World, slice_bounds
from mbench.engine.ranking import merge_top_k

TASKS = "mini.beir.towns,mini.mbeir.cirr.it2i"


def _run(tmp: Path, name: str, world_size: int, log: Path, *, tasks: str = TASKS, cache: str | None = None) -> Path:
    results, cache_dir = tmp / f"results-{name}", tmp / f"cache-{cache or name}"
    command = ["-m", "mbench", "run", "--model", "hash-embed", "--tasks", tasks, "--results-dir", str(results),
               "--cache-dir", str(cache_dir), "--no-progress", "--shard-size", "16", "--model-arg", f"call_log={log}"]
    if world_size > 1:
        command = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world_size}", *command]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return results


def _run_files(results: Path) -> dict[str, str]:
    return {path.parts[-3]: gzip.open(path, "rt").read() for path in results.glob("hash-embed/*/*/local/run.trec.gz")}


def test_two_ranks_encode_each_candidate_once_and_rank_like_one_process(tmp_path):
    single = _run(tmp_path, "single", 1, tmp_path / "single.log")
    double = _run(tmp_path, "double", 2, tmp_path / "double.log")
    assert _run_files(double) == _run_files(single) and len(_run_files(single)) == 2
    lines = [line.split("\t") for line in (tmp_path / "double.log").read_text().splitlines()]
    candidates = [item for _, role, item in lines if role == "candidate"]
    assert len(candidates) == len(set(candidates)) == 200 + 60
    # Both ranks did part of the encoding.
    assert len({pid for pid, role, _ in lines if role == "candidate"}) == 2


def test_two_ranks_resume_a_cache_a_single_process_started(tmp_path):
    _run(tmp_path, "first", 1, tmp_path / "first.log", tasks="mini.beir.towns", cache="shared")
    _run(tmp_path, "second", 2, tmp_path / "second.log", cache="shared")
    lines = [line.split("\t") for line in (tmp_path / "second.log").read_text().splitlines()]
    # The towns pool (doc ids) came from the store; only the cirr pool was encoded, once.
    candidates = [item for _, role, item in lines if role == "candidate"]
    assert len(candidates) == len(set(candidates)) == 60
    assert not [item for item in candidates if item.startswith("doc")]


def test_merge_of_slice_top_k_is_the_global_top_k_with_ties_by_id():
    # Pool of 6 candidates, scores with ties; tie rank = position of the id in ascending order.
    scores = np.array([[0.5, 0.9, 0.5, 0.1, 0.9, 0.5]], dtype=np.float32)
    tie_rank = np.array([0, 5, 1, 2, 3, 4])
    world_parts = []
    for rank in range(3):
        start, stop = slice_bounds(6, World(rank, 3))
        local = scores[:, start:stop]
        order = np.lexsort((-tie_rank[start:stop], -local[0]))[:2]
        world_parts.append((local[:, order], (order + start)[None, :]))
    merged_scores, merged = merge_top_k(world_parts, tie_rank, 4)
    # 0.9 ties: index 1 (tie rank 5) before index 4 (3); 0.5 ties: index 5 (4) before 2 (1) before 0 (0).
    assert merged.tolist() == [[1, 4, 5, 2]]
    assert merged_scores.tolist() == [[np.float32(0.9), np.float32(0.9), 0.5, 0.5]]


def test_slices_cover_the_pool_without_overlap():
    bounds = [slice_bounds(10, World(rank, 4)) for rank in range(4)]
    assert bounds == [(0, 3), (3, 6), (6, 9), (9, 10)]
