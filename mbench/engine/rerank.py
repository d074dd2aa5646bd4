"""Reranking a first-stage ranking: score the top-k (query, candidate) pairs, reorder them, keep the rest below.

Two entry points:

* ``rerank_ranking(ranking, queries, pool, reranker, prompts, top_k, ...)`` works in memory on a
  ranking matrix (pool indices, -1 padded), for ``mbench run --reranker`` right after search;
* ``rerank_result(first_stage_dir, reranker, top_k=..., data=..., spec=...)`` reads a stored
  first-stage result (``run.trec.gz`` + ``result.json``) and writes the rerank result to
  ``<first-stage dir>/rerank-<reranker>-top<k>/`` (``mbench rerank``).

Order. The top-k is sorted by reranker score, descending; equal scores keep their first-stage
order (a stable sort), and every candidate below the top-k keeps its first-stage position. A
candidate excluded from scoring (``TaskData.excluded``, BEIR's identical ids) is dropped first.

Run-file scores are rank-based: the candidate at rank r of a query's n ranked candidates gets
score n - r + 1. The reranker's probabilities and the first stage's similarities live on
different scales, so no single score column can hold both without an arbitrary offset; rank
scores are distinct integers, so the file's order (score descending, ties by docid descending,
trec_eval's rule) is exactly the reranked order and scoring the file gives the same metrics.
The reranker's own scores are kept beside it in ``rerank_scores.parquet`` (qid, docid, rank,
first_stage_rank, score) for the reranked top-k.

Score cache. Every pair score is stored in the cache (``engine.cache.scores``) under a key of the
reranker fingerprint, prompt template and both items' content (``engine.cache.keys.pair_key``):
a rerun scores nothing, a changed template, checkpoint or dtype misses, and an interrupted rerank
resumes where it stopped. Excluded candidates are dropped by ``engine.ranking.drop_excluded``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mbench.data.types import ItemTable, TaskData
from mbench.engine.cache.keys import item_digest, pair_key
from mbench.engine.cache.scores import ScoreCache
from mbench.engine.ranking import drop_excluded, rank_scores
from mbench.progress import progress as progress_reporter
from mbench.errors import MbenchError
from mbench.tasks.spec import TaskSpec

# -- reranking a ranking matrix ---------------------------------------------------------------


@dataclass
class RerankOutput:
    """A reranked ranking: pool indices [nq, depth] (-1 padded), run scores, and the reranker's top-k scores."""

    ranking: np.ndarray
    scores: np.ndarray
    rerank_scores: np.ndarray
    first_stage_rank: np.ndarray
    pairs_scored: int
    pairs_cached: int


def rerank_ranking(
    ranking: np.ndarray,
    queries: ItemTable,
    pool: ItemTable,
    reranker: Any,
    prompts: Sequence[str | None],
    top_k: int,
    *,
    cache: ScoreCache | None = None,
    batch_size: int = 32,
    data_root: Path | str | None = None,
    excluded: np.ndarray | None = None,
    progress: bool = False,
) -> RerankOutput:
    """Rerank the top ``top_k`` of every row of ``ranking`` (pool indices, -1 padded) with ``reranker``.

    ``prompts[q]`` is the prompt template of query row ``q`` (None for rerankers without a prompt
    family). Pairs found in ``cache`` are not scored again; new scores are stored after every batch.
    """
    from mbench.models.base import check_items, model_fingerprint

    ranking = np.asarray(ranking, dtype=np.int64)
    if ranking.ndim != 2 or ranking.shape[0] != len(queries):
        raise ValueError(f"ranking must be [n_queries={len(queries)}, depth], got shape {ranking.shape}")
    if len(prompts) != len(queries):
        raise ValueError("rerank_ranking needs one prompt per query row")
    if top_k < 1:
        raise MbenchError(f"--rerank-top-k must be >= 1, got {top_k}")
    if batch_size < 1:
        raise MbenchError(f"--rerank-batch-size must be >= 1, got {batch_size}")
    _, ranking = drop_excluded(None, ranking, excluded, ranking.shape[1])
    k = min(top_k, ranking.shape[1])
    top = ranking[:, :k]
    rows, cols = np.nonzero(top >= 0)
    fingerprint = model_fingerprint(reranker.meta)
    query_digests: dict[int, str] = {}
    cand_digests: dict[int, str] = {}
    keys = []
    for row, col in zip(rows.tolist(), cols.tolist()):
        cand = int(top[row, col])
        if row not in query_digests:
            query_digests[row] = item_digest(queries.item(row), data_root)
        if cand not in cand_digests:
            cand_digests[cand] = item_digest(pool.item(cand), data_root)
        keys.append(pair_key(fingerprint, prompts[row], query_digests[row], cand_digests[cand]))

    known = cache.get_many(keys) if cache is not None else {}
    pair_scores = np.array([known.get(key, np.nan) for key in keys], dtype=np.float64)
    # Pairs of equal content (a duplicate image or text in the pool) are scored once.
    first_of_key: dict[str, int] = {}
    for i in np.flatnonzero(np.isnan(pair_scores)).tolist():
        first_of_key.setdefault(keys[i], i)
    missing = np.asarray(sorted(first_of_key.values()), dtype=np.int64)
    if missing.size:
        check_items(reranker.meta, queries.items(sorted({int(rows[i]) for i in missing[:64]})), "query")
        check_items(reranker.meta, pool.items(sorted({int(top[rows[i], cols[i]]) for i in missing[:64]})), "candidate")
    bar = progress_reporter(int(missing.size), "rerank", "pairs", enabled=progress)
    try:
        for start in range(0, missing.size, batch_size):
            chosen = missing[start: start + batch_size]
            q_items = [queries.item(int(rows[i])) for i in chosen]
            c_items = [pool.item(int(top[rows[i], cols[i]])) for i in chosen]
            batch_prompts = [prompts[int(rows[i])] for i in chosen]
            values = reranker.score(q_items, c_items, prompts=batch_prompts)
            values = np.asarray(values.detach().float().cpu().numpy() if hasattr(values, "detach") else values,
                                dtype=np.float64).reshape(-1)
            if values.shape[0] != len(chosen):
                raise MbenchError(
                    f"reranker {reranker.meta.name!r} returned {values.shape[0]} scores for {len(chosen)} pairs"
                )
            if not np.all(np.isfinite(values)):
                bad = int(np.flatnonzero(~np.isfinite(values))[0])
                raise MbenchError(
                    f"reranker {reranker.meta.name!r} gave a non-finite score ({values[bad]}) to the pair "
                    f"({q_items[bad].id!r}, {c_items[bad].id!r})"
                )
            pair_scores[chosen] = values
            if cache is not None:
                cache.put_many({keys[int(i)]: float(v) for i, v in zip(chosen, values)})
            bar.update(len(chosen))
    finally:
        bar.close()
    for i in np.flatnonzero(np.isnan(pair_scores)).tolist():
        pair_scores[i] = pair_scores[first_of_key[keys[i]]]

    score_matrix = np.full(top.shape, -np.inf)
    score_matrix[rows, cols] = pair_scores
    # Stable: equal reranker scores keep their first-stage order; padding (-inf) stays last.
    order = np.argsort(-score_matrix, axis=1, kind="stable")
    new_top = np.take_along_axis(top, order, axis=1)
    reordered = np.concatenate([new_top, ranking[:, k:]], axis=1)
    rerank_scores = np.take_along_axis(score_matrix, order, axis=1)
    rerank_scores[new_top < 0] = np.nan
    first_rank = np.where(new_top >= 0, order + 1, 0)
    return RerankOutput(
        ranking=reordered,
        scores=rank_scores(reordered),
        rerank_scores=rerank_scores,
        first_stage_rank=first_rank,
        pairs_scored=int(missing.size),
        pairs_cached=int(len(keys) - len(first_of_key)),
    )


def rerank_prompts(spec: TaskSpec, reranker: Any, n_queries: int) -> list[str | None]:
    """One prompt template per query: the task's template of the reranker's prompt family, or None."""
    family = reranker.meta.prompt_family
    if family is None:
        return [None] * n_queries
    if family not in spec.prompts:
        raise MbenchError(
            f"task {spec.name} has no `prompts: {{{family}: ...}}` entry, which reranker {reranker.meta.name!r} needs; "
            f"add one to the task YAML (its prompts: {', '.join(spec.prompts) or 'none'})"
        )
    return [spec.prompts[family]] * n_queries


# -- run files --------------------------------------------------------------------------------


def run_to_ranking(run: Any, queries: ItemTable, pool: ItemTable, *, where: str) -> np.ndarray:
    """A ``mbench.formats.runs.Run`` as a ranking matrix over ``queries`` rows and ``pool`` indices (-1 padded)."""
    ranking = np.full((len(queries), run.depth), -1, dtype=np.int64)
    query_row = queries.index_of()
    pool_index = pool.index_of()
    unknown_queries = sorted(str(q) for q in run.qids if q not in query_row)
    if unknown_queries:
        raise MbenchError(
            f"{where}: the run has {len(unknown_queries)} query ids the task's data does not have "
            f"(e.g. {unknown_queries[:3]}); was it computed on other data?"
        )
    doc_to_pool = np.full(len(run.docids), -1, dtype=np.int64)
    for i, docid in enumerate(run.docids.tolist()):
        if docid not in pool_index:
            raise MbenchError(
                f"{where}: the run ranks document {docid!r}, which is not in the pool; was it computed on another "
                "pool or other data?"
            )
        doc_to_pool[i] = pool_index[docid]
    rows = np.asarray([query_row[q] for q in run.qids.tolist()], dtype=np.int64)
    ranking[rows] = np.where(run.ranking >= 0, doc_to_pool[np.maximum(run.ranking, 0)], -1)
    return ranking


# -- metrics and the result directory ---------------------------------------------------------


def rerank_result(
    first_stage_dir: Path | str,
    reranker: Any,
    *,
    top_k: int,
    data: TaskData,
    spec: TaskSpec,
    cache_dir: Path | str | None = None,
    batch_size: int = 32,
    progress: bool = True,
    overwrite: bool = False,
    reranker_name: str | None = None,
    reranker_args: dict[str, Any] | None = None,
    device: str | None = None,
) -> Path:
    """Rerank a stored first-stage result and write the rerank result beside it; return its directory.

    An existing complete rerank result of the same reranker, prompt and first stage is returned
    as it is unless ``overwrite``; one from a different reranker, prompt or first stage is an
    error (pass ``overwrite``).
    """
    from mbench import results
    from mbench.engine.scoring import task_metrics
    from mbench.models.base import model_fingerprint

    first_dir = Path(first_stage_dir).resolve()
    first = results.read_result(first_dir)
    if first.kind != "retrieval":
        raise MbenchError(f"{first_dir}: is a {first.kind!r} result; rerank a first-stage (retrieval) result")
    if first.task != spec.name or first.pool != data.pool_name:
        raise MbenchError(
            f"{first_dir}: the result is for task {first.task!r}, pool {first.pool!r}, "
            f"but the data given is task {spec.name!r}, pool {data.pool_name!r}"
        )
    name = reranker_name or reranker.meta.name
    out_dir = results.rerank_dir(first_dir, name, top_k)
    first_sha = results.file_sha256(first_dir / results.RESULT_FILE)
    prompts = rerank_prompts(spec, reranker, len(data.queries))
    fingerprint = model_fingerprint(reranker.meta)
    if results.result_exists(out_dir) and not overwrite:
        existing = results.read_result(out_dir).rerank
        same = existing is not None and (
            existing.reranker.get("fingerprint") == fingerprint
            and existing.prompt == (prompts[0] if prompts else None)
            and existing.first_stage.get("result_sha256") == first_sha
        )
        if not same:
            raise MbenchError(
                f"{out_dir} holds a rerank result of another reranker, prompt or first stage; "
                "pass --overwrite to replace it"
            )
        return out_dir

    timings: dict[str, float] = {}
    started = time.perf_counter()
    ranking = run_to_ranking(results.read_result_run(first_dir), data.queries, data.pool,
                             where=str(first_dir / results.RUN_FILE))
    timings["load"] = round(time.perf_counter() - started, 4)

    started = time.perf_counter()
    cache = ScoreCache.in_cache_dir(cache_dir)
    try:
        data_root = data.source if data.source and Path(data.source).is_dir() else None
        output = rerank_ranking(
            ranking, data.queries, data.pool, reranker, prompts, top_k,
            cache=cache, batch_size=batch_size, data_root=data_root, excluded=data.excluded, progress=progress,
        )
    finally:
        cache.close()
    timings["rerank"] = round(time.perf_counter() - started, 4)

    started = time.perf_counter()
    metrics, per_query = task_metrics(spec, data, output.ranking)
    timings["metrics"] = round(time.perf_counter() - started, 4)

    record = dataclasses.replace(
        first,
        kind="rerank",
        metrics=metrics,
        main_metric=spec.main_metric,
        n_queries=len(data.queries),
        depth=int(output.ranking.shape[1]),
        dataset={"source": data.source or first.dataset.get("source")},
        device=device or str(getattr(reranker, "device", "cpu")),
        world_size=1,
        versions=results.library_versions(),
        git_sha=results.git_sha(),
        timings=timings,
        created=results.now_iso(),
        rerank=results.RerankInfo(
            reranker=reranker.meta.to_dict(),
            reranker_name=name,
            reranker_args=dict(reranker_args or {}),
            top_k=top_k,
            prompt=prompts[0] if prompts else None,
            batch_size=batch_size,
            score_order="run-file scores are rank-based (n - rank + 1); reranker scores in " + results.RERANK_SCORES_FILE,
            pairs_scored=output.pairs_scored,
            pairs_cached=output.pairs_cached,
            first_stage={"path": str(first_dir), "result_sha256": first_sha},
        ),
    )
    results.write_result(
        out_dir, record, query_ids=data.queries.ids, ranking=output.ranking, scores=output.scores,
        pool_ids=data.pool.ids, tag=f"mbench-{results.rerank_dir_name(name, top_k)}", per_query=per_query,
        submission=not spec.scored, rerank_scores=_rerank_scores_table(data, output),
    )
    return out_dir


def _rerank_scores_table(data: TaskData, output: RerankOutput) -> Any:
    """The reranker's own scores of the reranked top-k: qid, docid, rank, first_stage_rank, score."""
    import pandas as pd

    rows, cols = np.nonzero(output.first_stage_rank > 0)
    return pd.DataFrame({
        "qid": [data.queries.ids[r] for r in rows.tolist()],
        "docid": [data.pool.ids[int(output.ranking[r, c])] for r, c in zip(rows.tolist(), cols.tolist())],
        "rank": (cols + 1).astype(np.int64),
        "first_stage_rank": output.first_stage_rank[rows, cols].astype(np.int64),
        "score": output.rerank_scores[rows, cols].astype(np.float64),
    })


