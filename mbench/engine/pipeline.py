"""One evaluation run: task -> data -> instructions -> cached encoding -> exact search ->
metrics -> result directory. The flow of DESIGN.md section 2, for every task of a run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mbench.data.types import ItemTable, TaskData
from mbench.engine.distributed import World, merge_top_k, slice_bounds
from mbench.engine.encode import (
    EncodeOptions,
    embedding_key,
    encode_rows,
    item_content_hash,
)
from mbench.engine.instructions import resolve_instructions
from mbench.errors import MbenchError
from mbench.metrics import evaluate, required_depth
from mbench.progress import progress
from mbench.tasks.spec import TaskSpec

MIN_DEPTH = 100


@dataclass
class RunOptions:
    """Everything about a run that is not the model or the task list."""

    pool: str = "local"
    data_dir: Path | None = None
    results_dir: Path = Path("results")
    cache_dir: Path | None = None
    tasks_dirs: Sequence[str] = ()
    instruction_policy: str = "first"
    seed: int = 0
    device: str = "cpu"
    batch_size: int = 64
    num_workers: int = 0
    depth: int | None = None
    search_backend: str = "torch"
    overwrite: bool = False
    progress: bool = True
    shard_size: int = 8192
    requested_model: str | None = None
    world: World = field(default_factory=World)


@dataclass
class TaskOutcome:
    """What happened to one task of a run: its result directory, and whether it was computed now."""

    task: str
    directory: Path
    computed: bool
    record: dict[str, Any] = field(default_factory=dict)
    data: TaskData | None = None


def ranking_depth(spec: TaskSpec, requested: int | None) -> int:
    """The top-k kept: the largest k any metric needs, the task's depth, at least 100, or more if asked."""
    return max(required_depth(spec.metrics), spec.depth, MIN_DEPTH, requested or 0)


def tie_ranks(ids: Sequence[str]) -> np.ndarray:
    """Per candidate, its position in ascending string order: the larger ranks first on equal scores."""
    order = np.argsort(np.asarray(ids, dtype=object), kind="stable")
    ranks = np.empty(len(ids), dtype=np.int64)
    ranks[order] = np.arange(len(ids), dtype=np.int64)
    return ranks


def pool_segments(pool: ItemTable) -> list[tuple[str, np.ndarray]]:
    """The pool split into the pools it was assembled from (one segment for a plain pool).

    The M-BEIR global pool is the 16 local pools concatenated; encoding per segment makes the
    global pool reuse the local pools' stored embeddings, so no candidate is encoded twice.
    """
    if pool.source is None or not pool.source_names:
        return [("pool", np.arange(len(pool), dtype=np.int64))]
    segments = []
    for index, name in enumerate(pool.source_names):
        rows = np.flatnonzero(pool.source == index)
        if rows.size:
            segments.append((name, rows))
    return segments


class _TableMemo:
    """Values derived from one item table (keys, tie ranks), kept while the table object lives.

    The M-BEIR global pool is one shared object across the 16 tasks of a run; hashing its 5.6M
    items or sorting its ids once per task would be wasted work.
    """

    def __init__(self) -> None:
        self._table: ItemTable | None = None
        self._values: dict[Any, Any] = {}

    def get(self, table: ItemTable, name: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` for ``table``, or the value computed before for this very object."""
        if self._table is not table:
            self._table, self._values = table, {}
        if name not in self._values:
            self._values[name] = compute()
        return self._values[name]


_POOL_MEMO = _TableMemo()


class Encoder:
    """Encodes item tables through the embedding store: stored shards are reused, missing ones computed."""

    def __init__(self, model: Any, store: Any, options: EncodeOptions, dtype_name: str, world: World = World()) -> None:
        from mbench.models.base import model_fingerprint

        self.world = world
        self.model = model
        self.store = store
        self.options = options
        self.dtype_name = dtype_name
        self.fingerprint = model_fingerprint(model.meta)

    def encode(
        self,
        table: ItemTable,
        rows: np.ndarray,
        *,
        role: str,
        instructions: Sequence[str | None],
        prompts: Sequence[str | None],
        data_root: Path | None,
        label: str,
    ) -> Any:
        """The stored embedding entry of ``table[rows]`` (computed for the shards not yet stored)."""
        from mbench.models.base import check_items

        def key_of() -> str:
            hashes = [
                item_content_hash(table.item(int(r)), instructions[int(r)], prompts[int(r)], data_root) for r in rows
            ]
            return embedding_key(self.fingerprint, role, self.dtype_name, hashes)

        if role == "candidate":  # candidates carry no instruction or prompt: the key depends on content only
            key = _POOL_MEMO.get(table, ("key", self.fingerprint, self.dtype_name, label, len(rows)), key_of)
        else:
            key = key_of()
        meta = {
            "model": self.model.meta.name,
            "fingerprint": self.fingerprint,
            "role": role,
            "label": label,
            "dtype": self.dtype_name,
        }
        # An existing entry keeps the shard layout it was created with (a later --shard-size only
        # applies to new entries), so changing it never throws away stored embeddings.
        if key in self.store:
            entry = self.store.open(key)
        else:
            entry = self.store.entry(key, n_items=len(rows), shard_size=self.options.shard_size, meta=meta)
        # Under torchrun each rank computes the missing shards of its residue class; every rank
        # then waits for the others and checks that the entry is complete.
        missing = entry.missing_shards_for_rank(self.world.rank, self.world.size)
        if missing:
            check_items(self.model.meta, table.items(rows[: min(len(rows), 64)]), role)  # fail fast on modality
            total = sum(len(entry.shard_range(s)) for s in missing)
            bar = progress(total, f"encode {'queries' if role == 'query' else 'candidates'} {label}", "items",
                           enabled=self.options.progress)
            try:
                for shard in missing:
                    shard_rows = rows[np.asarray(entry.shard_range(shard), dtype=np.int64)]
                    vectors = encode_rows(
                        self.model.encode,
                        table,
                        shard_rows,
                        role=role,
                        instructions=instructions,
                        prompts=prompts,
                        options=self.options,
                        on_batch=bar.update,
                    )
                    if self.model.meta.similarity == "cosine":
                        # Unit rows on disk make search a plain inner product for every consumer.
                        vectors = _unit_rows(vectors)
                    entry.write_shard(shard, vectors)
            finally:
                bar.close()
        if self.world.size > 1:
            self.world.barrier()
            left = entry.missing_shards()
            if left:
                raise MbenchError(f"{role} embeddings {label}: shards {left[:10]} were not computed by their ranks")
        return entry


def _timed(timings: dict[str, float], stage: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    try:
        return fn()
    finally:
        timings[stage] = round(timings.get(stage, 0.0) + time.perf_counter() - start, 4)


def spec_hash(spec: TaskSpec) -> str:
    """sha256 of the resolved task definition, recorded so a changed YAML is visible in results."""
    import hashlib

    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()


def _data_root_of(data: TaskData) -> Path | None:
    source = Path(data.source) if data.source else None
    return source if source is not None and source.is_dir() else None


def _drop_excluded(scores: np.ndarray, indices: np.ndarray, excluded: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's excluded pool index (BEIR ``ignore_identical_ids``) and cut to k columns.

    A ranking shorter than k (a pool smaller than the depth) is padded with -1 / -inf.
    """
    if indices.shape[1] < k:
        pad = k - indices.shape[1]
        indices = np.concatenate([indices, np.full((indices.shape[0], pad), -1, dtype=np.int64)], axis=1)
        scores = np.concatenate([scores, np.full((scores.shape[0], pad), -np.inf, dtype=np.float32)], axis=1)
    if excluded is not None:
        hit = (indices == excluded[:, None]) & (excluded[:, None] >= 0)
        if hit.any():
            keep = ~hit
            # Stable compaction per row: kept entries first, in their order; dropped ones pad the end.
            order = np.argsort(~keep, axis=1, kind="stable")
            indices = np.take_along_axis(indices, order, axis=1)
            scores = np.take_along_axis(scores, order, axis=1)
            dropped = np.take_along_axis(hit, order, axis=1)
            indices = np.where(dropped, -1, indices)
            scores = np.where(dropped, -np.inf, scores)
    return scores[:, :k], indices[:, :k]


def retrieve(
    model: Any,
    spec: TaskSpec,
    data: TaskData,
    options: RunOptions,
    *,
    store: Any,
    timings: dict[str, float],
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Top-``depth`` ranking of every query: (scores [nq, depth], pool indices [nq, depth], details)."""
    from mbench.models.base import model_kind

    depth = ranking_depth(spec, options.depth)
    # One extra candidate where one may be dropped as the query's own id (ignore_identical_ids).
    fetch = depth + (1 if data.excluded is not None else 0)
    qids = data.queries.ids
    meta = model.meta
    instructions = resolve_instructions(
        spec.instructions if meta.uses_instructions else [], qids, options.instruction_policy, options.seed
    )
    prompt = spec.prompts.get(meta.prompt_family) if meta.prompt_family else None
    prompts = [prompt] * len(qids)
    details = {
        "instructions": sorted({i for i in instructions if i is not None}),
        "prompt": prompt,
        "depth": depth,
    }
    kind = model_kind(model)
    if kind == "lexical":
        pool_items = data.pool.items(range(len(data.pool)))
        _timed(timings, "index", lambda: model.index(pool_items))
        query_items = data.queries.items(range(len(qids)))
        scores, indices = _timed(
            timings, "search", lambda: model.search(query_items, min(fetch, len(data.pool)), instructions=instructions)
        )
        scores = np.asarray(scores, dtype=np.float32)
        indices = np.asarray(indices, dtype=np.int64)
        scores, indices = _drop_excluded(scores, indices, data.excluded, depth)
        return scores, indices, details
    if kind != "retriever":
        raise MbenchError(f"model {meta.name!r} is a {kind}; `mbench run --model` takes a retriever")

    from mbench.engine.search import search
    from mbench.engine.store import concat_entries

    dtype_name = "bfloat16" if options.device.startswith("cuda") else "float32"
    encoder = Encoder(
        model,
        store,
        EncodeOptions(batch_size=options.batch_size, num_workers=options.num_workers, device=options.device,
                      shard_size=options.shard_size, progress=options.progress),
        dtype_name,
        options.world,
    )
    root = _data_root_of(data)
    query_rows = np.arange(len(qids), dtype=np.int64)
    query_entry = _timed(
        timings,
        "encode_queries",
        lambda: encoder.encode(data.queries, query_rows, role="query", instructions=instructions, prompts=prompts,
                               data_root=root, label=spec.name),
    )
    no_text: list[str | None] = [None] * len(data.pool)
    cand_entries = []
    for label, rows in pool_segments(data.pool):
        cand_entries.append(
            _timed(
                timings,
                "encode_candidates",
                lambda rows=rows, label=label: encoder.encode(
                    data.pool, rows, role="candidate", instructions=no_text, prompts=no_text, data_root=root,
                    label=label if label != "pool" else f"{spec.name} pool",
                ),
            )
        )
    queries = np.asarray(query_entry.load()[:], dtype=np.float32)
    pool = concat_entries(cand_entries)
    tie = _POOL_MEMO.get(data.pool, "tie_ranks", lambda: tie_ranks(data.pool.ids))
    k = min(fetch, len(data.pool))
    world = options.world
    if world.size == 1:
        scores, indices = _timed(
            timings, "search",
            lambda: search(queries, pool, k, backend=options.search_backend, tie_rank=tie, device=options.device,
                           progress=options.progress),
        )
    else:
        # Each rank searches its slice of the pool; rank 0 merges the exact per-slice top-k.
        start, stop = slice_bounds(len(data.pool), world)
        # The slice's own permutation with the same relative order of ids.
        local_tie = np.argsort(np.argsort(tie[start:stop], kind="stable"), kind="stable")
        part_scores, part_indices = _timed(
            timings, "search",
            lambda: search(queries, pool[start:stop], min(k, stop - start), backend=options.search_backend,
                           tie_rank=local_tie, device=options.device, progress=options.progress) if stop > start
            else (np.zeros((len(qids), 0), np.float32), np.zeros((len(qids), 0), np.int64)),
        )
        parts = world.gather((part_scores, np.where(part_indices >= 0, part_indices + start, -1)))
        if not world.is_main:
            return np.zeros((len(qids), 0), np.float32), np.zeros((len(qids), 0), np.int64), details
        scores, indices = merge_top_k(parts, tie, k)
    scores, indices = _drop_excluded(scores, indices, data.excluded, depth)
    return scores, indices, details


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def score_and_write(
    spec: TaskSpec,
    data: TaskData,
    scores: np.ndarray,
    indices: np.ndarray,
    directory: Path,
    record: dict[str, Any],
    timings: dict[str, float],
) -> dict[str, Any]:
    """Compute the task's metrics on a ranking and write run file, per-query table and result.json."""
    from mbench import results
    from mbench.runfiles import write_trec_run

    pool_ids = np.asarray(data.pool.ids, dtype=object)
    ranked_ids = np.where(indices >= 0, pool_ids[np.maximum(indices, 0)], None)
    directory.mkdir(parents=True, exist_ok=True)
    _timed(timings, "write", lambda: write_trec_run(directory / results.RUN_FILE, data.queries.ids, ranked_ids,
                                                    np.where(indices >= 0, scores, 0.0), tag="mbench"))
    metrics: dict[str, float] = {}
    if spec.scored and data.relevance is not None:
        evaluated = _timed(
            timings,
            "metrics",
            lambda: evaluate(indices, data.relevance, spec.metrics, cand_modality=np.asarray(data.pool.modalities),
                             expected_modality=spec.cand_modality, targets=data.targets),
        )
        metrics = evaluated.mean()
        _timed(timings, "write", lambda: results.write_per_query(directory / results.PER_QUERY_FILE,
                                                                 list(data.queries.ids), evaluated.per_query))
    else:
        from mbench.runfiles import write_circo_submission

        top = min(50, ranked_ids.shape[1])
        _timed(timings, "write", lambda: write_circo_submission(directory / "submission.json", data.queries.ids,
                                                                ranked_ids[:, :top]))
    record = {**record, "metrics": metrics, "main_metric": spec.main_metric, "n_queries": len(data.queries),
              "timings": timings}
    results.write_result_json(directory / results.RESULT_FILE, record)
    return record


def instruction_variant(meta: Any, spec: TaskSpec, options: RunOptions) -> str | None:
    """The result-path suffix of a non-default instruction policy (None for `first`, or when the
    model or task takes no instructions: then every policy gives the same result)."""
    if not meta.uses_instructions or not spec.instructions or options.instruction_policy == "first":
        return None
    if options.instruction_policy == "seeded":
        return f"seeded-{options.seed}"
    return options.instruction_policy


def run_task(model: Any, model_args: dict[str, Any], spec: TaskSpec, options: RunOptions, *, store: Any) -> TaskOutcome:
    """Evaluate one task (skipped when its result exists, unless ``options.overwrite``)."""
    import datetime

    from mbench import results
    from mbench.data.loader import load_task
    from mbench.models.base import check_modalities, model_fingerprint

    meta = model.meta
    fingerprint = model_fingerprint(meta)
    directory = results.result_dir(options.results_dir, meta.name, fingerprint, spec.name, options.pool,
                                   instruction_variant(meta, spec, options))
    if results.result_exists(directory) and not options.overwrite:
        return TaskOutcome(spec.name, directory, computed=False, record=results.read_result(directory))
    check_modalities(meta, spec.query_modality, spec.cand_modality, spec.name)
    timings: dict[str, float] = {}
    data = _timed(timings, "load", lambda: load_task(spec, data_dir=options.data_dir, pool=options.pool,
                                                     cache_dir=options.cache_dir))
    scores, indices, details = retrieve(model, spec, data, options, store=store, timings=timings)
    if not options.world.is_main:  # only rank 0 writes results
        return TaskOutcome(spec.name, directory, computed=True, data=data)
    record = {
        "mbench_result_version": 1,
        "task": spec.name,
        "task_spec_hash": spec_hash(spec),
        "pool": options.pool,
        "kind": "retrieval",
        "model": meta.to_dict(),
        "requested_model": options.requested_model or meta.name,
        "model_args": {k: str(v) for k, v in model_args.items()},
        "depth": details["depth"],
        "dataset": {"source": data.source},
        "instruction_policy": options.instruction_policy,
        "seed": options.seed,
        "instructions": details["instructions"],
        "prompt": details["prompt"],
        "search_backend": options.search_backend,
        "device": options.device,
        "world_size": options.world.size,
        "versions": results.library_versions(),
        "git_sha": results.git_sha(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "rerank": None,
    }
    record = score_and_write(spec, data, scores, indices, directory, record, timings)
    return TaskOutcome(spec.name, directory, computed=True, record=record, data=data)
