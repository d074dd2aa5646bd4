"""Running a list of tasks with one model, and the optional rerank of each first-stage result.

`mbench run` parses its options and calls ``run_tasks``; under torchrun every rank runs the
tasks (each encodes its share and searches its slice), and rank 0 reranks and reports.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from mbench.engine.pipeline import RunOptions, TaskOutcome, run_task
from mbench.errors import MbenchError
from mbench.tasks.spec import TaskSpec


@dataclass(frozen=True)
class RerankRequest:
    """Rerank every first-stage result: the reranker (name and ``--reranker-arg``s), depth and batch size."""

    reranker: str
    reranker_args: Sequence[str] = ()
    top_k: int = 10
    batch_size: int = 8


def compatible_tasks(meta: Any, specs: Sequence[TaskSpec], named: Iterable[str]) -> list[TaskSpec]:
    """The tasks the model can run. A task named explicitly must be runnable; tasks that came from a
    group and need modalities the model lacks are skipped with a notice, so `--tasks mini` runs a
    text model on the group's text tasks."""
    from mbench.models.base import check_modalities

    named = set(named)
    kept, skipped = [], []
    for spec in specs:
        try:
            check_modalities(meta, spec.query_modality, spec.cand_modality, spec.name)
        except MbenchError:
            if spec.name in named:
                raise
            skipped.append(f"{spec.name} ({spec.query_modality} -> {spec.cand_modality})")
            continue
        kept.append(spec)
    if skipped:
        print(f"skipping {len(skipped)} task(s) whose modalities {meta.name} lacks: {', '.join(skipped)}", file=sys.stderr)
    if not kept:
        raise MbenchError(f"model {meta.name!r} can run none of the requested tasks (all need modalities it lacks)")
    return kept


def run_tasks(
    model: Any,
    model_args: dict[str, Any],
    specs: Sequence[TaskSpec],
    options: RunOptions,
    *,
    rerank: RerankRequest | None = None,
) -> list[tuple[TaskSpec, TaskOutcome]]:
    """Evaluate every task (then rerank each result); the outcomes in order, on rank 0 only (else empty).

    Each rerank outcome follows its first stage's.
    """
    from mbench.engine.cache import store_root
    from mbench.engine.cache.store import EmbeddingStore

    store = EmbeddingStore(store_root(options.cache_dir))
    outcomes = []
    for spec in specs:
        outcome = run_task(model, model_args, spec, options, store=store)
        if not options.world.is_main:
            continue
        status = "computed" if outcome.computed else "exists (use --overwrite to recompute)"
        print(f"{spec.name} [{options.pool}]: {status} -> {outcome.directory}", file=sys.stderr)
        outcomes.append((spec, outcome))
    options.world.barrier()
    if not options.world.is_main:  # rank 0 reranks, reports and has written every result
        return []
    return rerank_outcomes(outcomes, rerank, options) if rerank is not None else outcomes


def rerank_outcomes(
    outcomes: Sequence[tuple[TaskSpec, TaskOutcome]], request: RerankRequest, options: RunOptions
) -> list[tuple[TaskSpec, TaskOutcome]]:
    """Rerank every first-stage result; each rerank outcome is listed after its first stage's."""
    from mbench.data.limit import limited_like
    from mbench.data.loader import load_task
    from mbench.engine.rerank import rerank_result
    from mbench.models.registry import build_reranker
    from mbench.results import read_result

    if request.top_k < 1 or request.batch_size < 1:
        raise MbenchError("--rerank-top-k and --rerank-batch-size must be >= 1")
    reranker, reranker_args = build_reranker(request.reranker, request.reranker_args, batch_size=request.batch_size,
                                             device=options.device)
    out = []
    for spec, outcome in outcomes:
        out.append((spec, outcome))
        data = outcome.data or limited_like(
            load_task(spec, data_dir=options.data_dir, pool=options.pool, cache_dir=options.cache_dir), outcome.record)
        directory = rerank_result(
            outcome.directory, reranker, top_k=request.top_k, data=data, spec=spec, cache_dir=options.cache_dir,
            batch_size=request.batch_size, progress=options.progress, overwrite=options.overwrite,
            reranker_name=request.reranker, reranker_args=reranker_args, device=options.device,
        )
        print(f"{spec.name} [{options.pool}]: reranked top-{request.top_k} -> {directory}", file=sys.stderr)
        out.append((spec, TaskOutcome(f"{spec.name} (rerank)", directory, computed=True, record=read_result(directory))))
    return out
