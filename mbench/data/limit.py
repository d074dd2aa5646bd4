"""`mbench run --limit N`: a smoke run on a seeded sample of N queries per task.

The pool is cut to the candidates those queries need from the pool as given (local or global):
every candidate judged for a sampled query (and CIRCO's targets), plus a seeded sample of the
other candidates up to ``pool`` in all, so the ranking still has distractors; ``pool=None`` keeps
the whole pool, and then each sampled query scores exactly as in the full run. The sample is
recorded in result.json (``limit``), the result is marked ``partial`` and lives in its own folder
(``<pool>.limit-N``), so it never mixes with full results.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mbench.data.types import ItemTable, TaskData
from mbench.errors import MbenchError
from mbench.metrics import Relevance

DEFAULT_LIMIT_POOL = 1000


@dataclass(frozen=True)
class Limit:
    """How a smoke run samples a task: ``queries`` per task, a pool of ``pool`` candidates (None: all), a seed."""

    queries: int
    seed: int = 0
    pool: int | None = DEFAULT_LIMIT_POOL

    def __post_init__(self) -> None:
        if self.queries < 1:
            raise MbenchError(f"--limit must be >= 1, got {self.queries}")
        if self.pool is not None and self.pool < 1:
            raise MbenchError(f"--limit-pool must be >= 1 or 'all', got {self.pool}")

    @property
    def variant(self) -> str:
        """The result-folder suffix: ``limit-N``, plus ``-pool-M``/``-pool-all`` and ``-seed-S`` when not the default."""
        name = f"limit-{self.queries}"
        if self.pool != DEFAULT_LIMIT_POOL:
            name += f"-pool-{'all' if self.pool is None else self.pool}"
        return name + (f"-seed-{self.seed}" if self.seed else "")

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Limit:
        """The limit a result.json's ``limit`` entry describes."""
        return cls(queries=int(record["queries"]), seed=int(record.get("seed", 0)), pool=record.get("pool"))


def parse_limit_pool(text: str) -> int | None:
    """``--limit-pool``: a number of candidates, or ``all`` (None) for the whole pool."""
    if text.strip().lower() == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise MbenchError(f"--limit-pool: expected a number of candidates or 'all', got {text!r}") from None


def sampled_query_rows(query_ids: list[str], n: int, seed: int) -> np.ndarray:
    """The rows of the ``n`` queries with the smallest sha256(seed, qid), in file order.

    Hashing each id on its own makes a query's membership independent of the others' order.
    """
    if n >= len(query_ids):
        return np.arange(len(query_ids), dtype=np.int64)
    keys = np.fromiter(
        (int.from_bytes(hashlib.sha256(f"{seed}\0{qid}".encode()).digest()[:8], "big") for qid in query_ids),
        dtype=np.uint64, count=len(query_ids),
    )
    order = np.argsort(keys, kind="stable")[:n]
    return np.sort(order).astype(np.int64)


def limit_task(data: TaskData, limit: Limit) -> tuple[TaskData, dict[str, Any]]:
    """The task cut to the sampled queries and the candidates they need, and the ``limit`` record of it."""
    rows = sampled_query_rows(list(data.queries.ids), limit.queries, limit.seed)
    sub = None if data.relevance is None else data.relevance.subset(rows)
    needed = set() if sub is None else set(sub.indices.tolist())
    if data.targets is not None:
        needed.update(int(t) for t in data.targets[rows] if t >= 0)
    n_pool = len(data.pool)
    if limit.pool is None or limit.pool >= n_pool:
        kept = np.arange(n_pool, dtype=np.int64)
    else:
        judged = np.asarray(sorted(needed), dtype=np.int64)
        others = np.setdiff1d(np.arange(n_pool, dtype=np.int64), judged, assume_unique=True)
        extra = max(0, limit.pool - judged.size)
        rng = np.random.default_rng([limit.seed, n_pool])
        distractors = rng.choice(others, size=min(extra, others.size), replace=False) if extra else others[:0]
        kept = np.sort(np.concatenate([judged, distractors]))
    new_index = np.full(n_pool, -1, dtype=np.int64)
    new_index[kept] = np.arange(kept.size, dtype=np.int64)
    relevance = None if sub is None else Relevance(sub.indptr, new_index[sub.indices], sub.grades)
    targets = None if data.targets is None else np.where(data.targets[rows] >= 0, new_index[data.targets[rows]], -1)
    excluded = None if data.excluded is None else np.where(data.excluded[rows] >= 0, new_index[data.excluded[rows]], -1)
    limited = TaskData(
        name=data.name, queries=_subset(data.queries, rows), pool=_subset(data.pool, kept), relevance=relevance,
        targets=targets, excluded=excluded, source=data.source, pool_name=data.pool_name, qrels=data.qrels,
    )
    record = {
        "queries": limit.queries,
        "seed": limit.seed,
        "pool": limit.pool,
        "variant": limit.variant,
        "query_ids": list(limited.queries.ids),
        "queries_of_task": len(data.queries),
        "candidates": len(limited.pool),
        "candidates_of_pool": n_pool,
        "judged_candidates": len(needed),
    }
    return limited, record


def limited_like(data: TaskData, record: Any) -> TaskData:
    """``data`` cut as the result ``record`` (a results.ResultRecord) was, by its ``limit``; unchanged for a full result."""
    entry = record.limit
    if not entry:
        return data
    limited, again = limit_task(data, Limit.from_record(entry))
    if again["query_ids"] != list(entry["query_ids"]):
        raise MbenchError(
            f"the data of {record.task} no longer gives the sample of its --limit result (different queries): rerun it"
        )
    return limited


def _subset(table: ItemTable, rows: np.ndarray) -> ItemTable:
    picked = rows.tolist()
    return ItemTable(
        ids=[table.ids[i] for i in picked], texts=[table.texts[i] for i in picked],
        images=[table.images[i] for i in picked], modalities=[table.modalities[i] for i in picked],
        source=None if table.source is None else table.source[rows], source_names=list(table.source_names),
    )
