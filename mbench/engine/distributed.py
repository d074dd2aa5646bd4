"""Data-parallel runs under `torchrun` (or `srun` with the same variables): one process per GPU.

Ranks encode disjoint store shards (shard index modulo world size), so any world size resumes
any partial cache; search splits the pool into one contiguous slice per rank and rank 0 merges
the per-rank top-k with the harness's total order (score descending, then candidate id
descending), which makes the ranking identical to a single process; only rank 0 writes results.
Without `WORLD_SIZE` > 1 in the environment everything runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel run (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes results and prints (rank 0)."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait until every rank reaches this point (a no-op in a single process)."""
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` on rank 0 (in rank order), None on the other ranks."""
        if self.size == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.size if self.is_main else None
        dist.gather_object(value, out, dst=0)
        return out


def current_world(device: str = "cpu") -> World:
    """The world from torchrun's environment, joining the process group on first use.

    The backend is NCCL for CUDA devices and gloo otherwise; on CUDA each rank takes the GPU of
    its ``LOCAL_RANK``.
    """
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    import torch
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    return World(rank=rank, size=size)


def rank_device(device: str) -> str:
    """``cuda`` becomes ``cuda:<LOCAL_RANK>`` under torchrun, so each rank uses its own GPU."""
    if device == "cuda" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


def slice_bounds(n_items: int, world: World) -> tuple[int, int]:
    """The contiguous rows ``[start, stop)`` of a pool that ``world.rank`` searches."""
    per_rank = -(-n_items // world.size)
    start = min(n_items, world.rank * per_rank)
    return start, min(n_items, start + per_rank)


