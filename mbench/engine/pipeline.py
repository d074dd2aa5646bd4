"""One task of a run: task -> data -> instructions -> cached encoding -> exact search -> metrics ->
result folder. The embedding cache (``engine.cache``), the ranking rules (``engine.ranking``) and
the result writer (``mbench.results``) do the work; ``engine.orchestrate`` runs a list of tasks.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mbench.data.limit import Limit
from mbench.data.types import ItemTable, TaskData
from mbench.engine.cache.encoder import POOL_MEMO, Encoder, pool_segments
from mbench.engine.distributed import World, slice_bounds
from mbench.engine.encode import EncodeOptions, encode_precision
from mbench.engine.instructions import resolve_instructions
from mbench.engine.ranking import drop_excluded, merge_top_k, ranking_depth, tie_ranks
from mbench.errors import MbenchError
from mbench.tasks.spec import TaskSpec

if TYPE_CHECKING:
    from mbench.results import ResultRecord

# `--store-dtype` spellings -> the store's policy names, and back.
STORE_DTYPE_CHOICES = {"native": "native", "fp16": "float16"}
STORE_DTYPE_OPTIONS = {policy: option for option, policy in STORE_DTYPE_CHOICES.items()}


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
    store_dtype: str = "native"
    overwrite: bool = False
    progress: bool = True
    shard_size: int = 8192
    requested_model: str | None = None
    world: World = field(default_factory=World)
    limit: Limit | None = None  # --limit: a smoke run on a sample of each task


@dataclass
class TaskOutcome:
    """What happened to one task of a run: its result directory, and whether it was computed now."""

    task: str
    directory: Path
    computed: bool
    record: ResultRecord | None = None
    data: TaskData | None = None


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


def query_inputs(
    meta: Any, spec: TaskSpec, qids: Sequence[str], policy: str, seed: int
) -> tuple[list[str | None], str | None]:
    """Each query's instruction (by the policy, if the model takes instructions) and the task's prompt for the model's family."""
    instructions = resolve_instructions(spec.instructions if meta.uses_instructions else [], qids, policy, seed)
    prompt = spec.prompts.get(meta.prompt_family) if meta.prompt_family else None
    return instructions, prompt


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
    instructions, prompt = query_inputs(meta, spec, qids, options.instruction_policy, options.seed)
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
        scores, indices = drop_excluded(scores, indices, data.excluded, depth)
        return scores, indices, details
    if kind != "retriever":
        raise MbenchError(f"model {meta.name!r} is a {kind}; `mbench run --model` takes a retriever")

    from mbench.engine.cache.store import concat_entries
    from mbench.engine.rescore import RESCORE_MARGIN, exact_top_k, max_row_norm
    from mbench.engine.search import search, search_compute_dtype
    from mbench.models.base import UNIT_NORM_TOLERANCE

    encoder = Encoder(
        model,
        store,
        EncodeOptions(batch_size=options.batch_size, num_workers=options.num_workers, device=options.device,
                      shard_size=options.shard_size, progress=options.progress),
        options.store_dtype,
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
    # Widening the queries to fp32 is exact; the pool is searched in the dtype it is stored in.
    queries = np.asarray(query_entry.load()[:], dtype=np.float32)
    pool = concat_entries(cand_entries)
    details["embeddings"] = {
        "encode_precision": encode_precision(options.device),
        "store_dtype": options.store_dtype,
        "query_dtype": query_entry.dtype,
        "candidate_dtype": "+".join(sorted({str(entry.dtype) for entry in cand_entries})),
        "search_compute_dtype": search_compute_dtype(pool, backend=options.search_backend, device=options.device),
        # Final scores: float64 sums of the stored values, rounded once (mbench.engine.rescore).
        "score_dtype": "float32 (exact: float64 sums, rounded once)",
    }
    tie = POOL_MEMO.get(data.pool, "tie_ranks", lambda: tie_ranks(data.pool.ids))
    k = min(fetch, len(data.pool))
    # The search keeps a margin of extra candidates; rescoring them exactly decides the final top-k.
    width = min(k + RESCORE_MARGIN, len(data.pool))
    world = options.world

    def search_rows(rows: np.ndarray, depth_wanted: int) -> tuple[np.ndarray, np.ndarray]:
        return search(queries[rows], pool, depth_wanted, backend=options.search_backend, tie_rank=tie,
                      device=options.device, progress=options.progress)

    def first_pass() -> tuple[np.ndarray, np.ndarray] | None:
        if world.size == 1:
            return search_rows(np.arange(len(qids)), width)
        # Each rank searches its slice of the pool; rank 0 merges the per-slice top lists.
        start, stop = slice_bounds(len(data.pool), world)
        # The slice's own permutation with the same relative order of ids.
        local_tie = np.argsort(np.argsort(tie[start:stop], kind="stable"), kind="stable")
        part_scores, part_indices = (
            search(queries, pool[start:stop], min(width, stop - start), backend=options.search_backend,
                   tie_rank=local_tie, device=options.device, progress=options.progress) if stop > start
            else (np.zeros((len(qids), 0), np.float32), np.zeros((len(qids), 0), np.int64))
        )
        parts = world.gather((part_scores, np.where(part_indices >= 0, part_indices + start, -1)))
        return merge_top_k(parts, tie, width) if world.is_main else None

    first = _timed(timings, "search", first_pass)
    if first is None:  # a rank other than 0: rank 0 finishes the ranking and writes
        return np.zeros((len(qids), 0), np.float32), np.zeros((len(qids), 0), np.int64), details
    norm = 1.0 + UNIT_NORM_TOLERANCE if meta.similarity == "cosine" else POOL_MEMO.get(
        data.pool, ("max_norm", encoder.fingerprint, encoder.precision), lambda: max_row_norm(pool))
    scores, indices = _timed(
        timings, "rescore",
        lambda: exact_top_k(queries, pool, k, first=first, search_fn=search_rows, tie_rank=tie, max_pool_norm=norm,
                            device=options.device),
    )
    scores, indices = drop_excluded(scores, indices, data.excluded, depth)
    return scores, indices, details


def pool_modality_counts(pool: ItemTable) -> dict[str, int]:
    """How many candidates of the pool have each modality."""
    from collections import Counter

    return dict(sorted(Counter(pool.modalities).items()))


def score_and_write(
    spec: TaskSpec,
    data: TaskData,
    scores: np.ndarray,
    indices: np.ndarray,
    directory: Path,
    record: ResultRecord,
    timings: dict[str, float],
) -> ResultRecord:
    """Compute the task's metrics on a ranking and write the result folder (run file, per-query table, record)."""
    from mbench import results
    from mbench.engine.scoring import task_metrics

    metrics, per_query = _timed(timings, "metrics", lambda: task_metrics(spec, data, indices))
    record = dataclasses.replace(record, metrics=metrics, main_metric=spec.main_metric, n_queries=len(data.queries),
                                 timings=timings)
    results.write_result(
        directory, record, query_ids=data.queries.ids, ranking=indices, scores=scores, pool_ids=data.pool.ids,
        per_query=per_query, submission=not per_query,
    )
    return record


def instruction_variant(meta: Any, spec: TaskSpec, options: RunOptions) -> str | None:
    """The result-path suffix of a non-default instruction policy (None for `first`, or when the
    model or task takes no instructions: then every policy gives the same result)."""
    if not meta.uses_instructions or not spec.instructions or options.instruction_policy == "first":
        return None
    if options.instruction_policy == "seeded":
        return f"seeded-{options.seed}"
    return options.instruction_policy


def result_variant(model: Any, spec: TaskSpec, options: RunOptions) -> str | None:
    """The result-path suffix of every run option that changes numbers without changing the model:
    a non-default instruction policy, an explicit fp16 store of a dense model (``store-fp16``) and a
    ``--limit`` sample (``limit-N``), so such results sit beside the default ones instead of being mistaken for them."""
    from mbench.models.base import model_kind

    parts = [instruction_variant(model.meta, spec, options)]
    if options.store_dtype != "native" and model_kind(model) == "retriever":
        parts.append(f"store-{STORE_DTYPE_OPTIONS[options.store_dtype]}")
    if options.limit:
        parts.append(options.limit.variant)
    kept = [part for part in parts if part]
    return ".".join(kept) if kept else None


def run_task(model: Any, model_args: dict[str, Any], spec: TaskSpec, options: RunOptions, *, store: Any) -> TaskOutcome:
    """Evaluate one task (skipped when its result exists, unless ``options.overwrite``)."""
    from mbench import results
    from mbench.data.loader import load_task
    from mbench.models.base import check_modalities, model_fingerprint

    meta = model.meta
    fingerprint = model_fingerprint(meta)
    directory = results.result_dir(options.results_dir, meta.name, fingerprint, spec.name, options.pool,
                                   result_variant(model, spec, options))
    if results.result_exists(directory) and not options.overwrite:
        return TaskOutcome(spec.name, directory, computed=False, record=results.read_result(directory))
    check_modalities(meta, spec.query_modality, spec.cand_modality, spec.name)
    timings: dict[str, float] = {}
    data = _timed(timings, "load", lambda: load_task(spec, data_dir=options.data_dir, pool=options.pool,
                                                     cache_dir=options.cache_dir))
    limit_record = None
    if options.limit is not None:
        from mbench.data.limit import limit_task

        data, limit_record = limit_task(data, options.limit)
    scores, indices, details = retrieve(model, spec, data, options, store=store, timings=timings)
    if not options.world.is_main:  # only rank 0 writes results
        return TaskOutcome(spec.name, directory, computed=True, data=data)
    record = results.ResultRecord(
        task=spec.name,
        task_spec_hash=spec_hash(spec),
        pool=options.pool,
        kind="retrieval",
        model=meta.to_dict(),
        requested_model=options.requested_model or meta.name,
        model_args={k: str(v) for k, v in model_args.items()},
        depth=details["depth"],
        dataset={"source": data.source},
        qrels=results.qrels_entry(data.qrels),
        # Modality accuracy means something only where the pool holds more than one modality.
        pool_modalities=POOL_MEMO.get(data.pool, "modalities", lambda: pool_modality_counts(data.pool)),
        partial=limit_record is not None,  # a --limit smoke run: never to be read as a full result
        limit=limit_record,
        instruction_policy=options.instruction_policy,
        seed=options.seed,
        instructions=details["instructions"],
        prompt=details["prompt"],
        search_backend=options.search_backend,
        embeddings=details.get("embeddings"),
        device=options.device,
        world_size=options.world.size,
        versions=results.library_versions(),
        git_sha=results.git_sha(),
        created=results.now_iso(),
    )
    record = score_and_write(spec, data, scores, indices, directory, record, timings)
    return TaskOutcome(spec.name, directory, computed=True, record=record, data=data)
