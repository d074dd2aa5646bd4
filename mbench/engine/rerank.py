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

Score cache. Every pair score is stored in SQLite under ``<cache>/rerank/scores.sqlite`` keyed by
sha256 of (reranker fingerprint, prompt template, query content digest, candidate content
digest); the template and the two items determine the rendered prompt. A rerun scores nothing,
a changed template, checkpoint or dtype (all in the key) misses. Scores are committed after
every batch, so an interrupted rerank resumes where it stopped. Content digests cover the
modality, the text and the image: its path relative to the dataset root plus its size (as the
embedding store does; hashing every image's bytes would read the whole top-k again), or the
bytes' sha256 for in-memory images.
"""

from __future__ import annotations

import hashlib
import io
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mbench.data.types import ItemTable, TaskData
from mbench.engine.encode import item_digest
from mbench.progress import progress as progress_reporter
from mbench.errors import MbenchError
from mbench.tasks.spec import TaskSpec

RERANK_CACHE_SUBDIR = "rerank"
CACHE_FILE = "scores.sqlite"
RERANK_SCORES_FILE = "rerank_scores.parquet"
SUBMISSION_FILE = "submission.json"


# -- identities and the score cache -----------------------------------------------------------


def pair_key(reranker_fingerprint: str, prompt: str | None, query_digest: str, cand_digest: str) -> str:
    """The cache key of one pair score."""
    payload = "\x1f".join((reranker_fingerprint, "\x00" if prompt is None else prompt, query_digest, cand_digest))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ScoreCache:
    """Pair scores in one SQLite file (no pickle): ``key -> score``; safe for several processes."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, score REAL NOT NULL)")
            self._db.commit()
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise MbenchError(f"rerank score cache {self.path} is not a readable SQLite file ({err}); delete it") from err

    @classmethod
    def in_cache_dir(cls, cache_dir: Path | str | None) -> ScoreCache:
        """The cache under ``cache_dir`` (default ``$MBENCH_CACHE`` or ``~/.cache/mbench``)/rerank/."""
        from mbench.data.loader import cache_root

        return cls(cache_root(cache_dir) / RERANK_CACHE_SUBDIR / CACHE_FILE)

    def get_many(self, keys: Sequence[str]) -> dict[str, float]:
        """The stored scores of those ``keys`` that are stored."""
        found: dict[str, float] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):  # SQLite limits the number of bound parameters
            chunk = unique[start: start + 500]
            marks = ",".join("?" * len(chunk))
            for key, score in self._db.execute(f"SELECT key, score FROM scores WHERE key IN ({marks})", chunk):
                found[key] = float(score)
        return found

    def put_many(self, scores: dict[str, float]) -> None:
        """Store ``scores`` (one transaction)."""
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO scores (key, score) VALUES (?, ?)", list(scores.items()))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()


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


def rank_scores(ranking: np.ndarray) -> np.ndarray:
    """Rank-based run scores: n - r + 1 at rank r of a row's n ranked candidates, NaN on padding."""
    valid = ranking >= 0
    n = valid.sum(axis=1, keepdims=True)
    position = np.cumsum(valid, axis=1)
    return np.where(valid, (n - position + 1).astype(np.float64), np.nan)


def drop_excluded(ranking: np.ndarray, excluded: np.ndarray | None) -> np.ndarray:
    """``ranking`` with each row's excluded pool index removed (rows shifted left, -1 padded)."""
    if excluded is None:
        return ranking
    excluded = np.asarray(excluded, dtype=np.int64)
    hit = (ranking == excluded[:, None]) & (excluded[:, None] >= 0)
    if not hit.any():
        return ranking
    out = np.full_like(ranking, -1)
    for row in np.flatnonzero(hit.any(axis=1)).tolist():
        kept = ranking[row][~hit[row]]
        out[row, : kept.size] = kept
    untouched = ~hit.any(axis=1)
    out[untouched] = ranking[untouched]
    return out


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
    ranking = drop_excluded(ranking, excluded)
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
    """A ``mbench.runfiles.Run`` as a ranking matrix over ``queries`` rows and ``pool`` indices (-1 padded)."""
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


def task_metrics(spec: TaskSpec, data: TaskData, ranking: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The task's metrics of ``ranking`` (means, per-query values); empty for tasks without qrels."""
    from mbench.metrics import evaluate

    if not spec.scored or data.relevance is None:
        return {}, {}
    results = evaluate(
        ranking,
        data.relevance,
        spec.metrics,
        cand_modality=np.asarray(data.pool.modalities),
        expected_modality=spec.cand_modality,
        targets=data.targets,
    )
    return results.mean(), results.per_query


def rerank_dir_name(reranker_name: str, top_k: int) -> str:
    """``rerank-<reranker>-top<k>``, the rerank result's folder inside the first-stage result."""
    import re

    return f"rerank-{re.sub(r'[^A-Za-z0-9._+-]', '_', reranker_name)}-top{top_k}"


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


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
    from mbench.models.base import model_fingerprint
    from mbench.results import (
        PER_QUERY_FILE,
        RESULT_FILE,
        RUN_FILE,
        git_sha,
        library_versions,
        read_result,
        result_exists,
        write_per_query,
        write_result_json,
    )
    from mbench.runfiles import read_trec_run, write_circo_submission, write_trec_run

    first_dir = Path(first_stage_dir).resolve()
    first = read_result(first_dir)
    if first.get("kind", "retrieval") != "retrieval":
        raise MbenchError(f"{first_dir}: is a {first.get('kind')!r} result; rerank a first-stage (retrieval) result")
    if first.get("task") != spec.name or first.get("pool", data.pool_name) != data.pool_name:
        raise MbenchError(
            f"{first_dir}: the result is for task {first.get('task')!r}, pool {first.get('pool')!r}, "
            f"but the data given is task {spec.name!r}, pool {data.pool_name!r}"
        )
    name = reranker_name or reranker.meta.name
    out_dir = first_dir / rerank_dir_name(name, top_k)
    first_sha = file_sha256(first_dir / RESULT_FILE)
    prompts = rerank_prompts(spec, reranker, len(data.queries))
    fingerprint = model_fingerprint(reranker.meta)
    if result_exists(out_dir) and not overwrite:
        existing = read_result(out_dir).get("rerank") or {}
        same = (
            (existing.get("reranker") or {}).get("fingerprint") == fingerprint
            and existing.get("prompt") == (prompts[0] if prompts else None)
            and (existing.get("first_stage") or {}).get("result_sha256") == first_sha
        )
        if not same:
            raise MbenchError(
                f"{out_dir} holds a rerank result of another reranker, prompt or first stage; "
                "pass --overwrite to replace it"
            )
        return out_dir

    timings: dict[str, float] = {}
    started = time.perf_counter()
    ranking = run_to_ranking(read_trec_run(first_dir / RUN_FILE), data.queries, data.pool, where=str(first_dir / RUN_FILE))
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

    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    # result.json goes last: until it is there the directory is not a complete result.
    (out_dir / RESULT_FILE).unlink(missing_ok=True)
    pool_ids = np.asarray(data.pool.ids + [None], dtype=object)  # index -1 (padding) -> None
    write_trec_run(
        out_dir / RUN_FILE, data.queries.ids, pool_ids[output.ranking], output.scores,
        tag=f"mbench-{rerank_dir_name(name, top_k)}",
    )
    _write_rerank_scores(out_dir / RERANK_SCORES_FILE, data, output)
    if per_query:
        write_per_query(out_dir / PER_QUERY_FILE, list(data.queries.ids), per_query)
    if not spec.scored:
        ranked_ids = [[data.pool.ids[i] for i in row if i >= 0] for row in output.ranking.tolist()]
        write_circo_submission(out_dir / SUBMISSION_FILE, data.queries.ids, ranked_ids)
    timings["write"] = round(time.perf_counter() - started, 4)

    record = dict(first)
    record.update(
        kind="rerank",
        metrics=metrics,
        main_metric=spec.main_metric,
        n_queries=len(data.queries),
        depth=int(output.ranking.shape[1]),
        dataset={"source": data.source or (first.get("dataset") or {}).get("source")},
        device=device or str(getattr(reranker, "device", "cpu")),
        world_size=1,
        versions=library_versions(),
        git_sha=git_sha(),
        timings=timings,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        rerank={
            "reranker": reranker.meta.to_dict(),
            "reranker_name": name,
            "reranker_args": dict(reranker_args or {}),
            "top_k": top_k,
            "prompt": prompts[0] if prompts else None,
            "batch_size": batch_size,
            "score_order": "run-file scores are rank-based (n - rank + 1); reranker scores in " + RERANK_SCORES_FILE,
            "pairs_scored": output.pairs_scored,
            "pairs_cached": output.pairs_cached,
            "first_stage": {"path": str(first_dir), "result_sha256": first_sha},
        },
    )
    write_result_json(out_dir / RESULT_FILE, record)
    return out_dir


def _write_rerank_scores(path: Path, data: TaskData, output: RerankOutput) -> None:
    import pandas as pd

    from mbench.results import atomic_write_bytes

    rows, cols = np.nonzero(output.first_stage_rank > 0)
    frame = pd.DataFrame({
        "qid": [data.queries.ids[r] for r in rows.tolist()],
        "docid": [data.pool.ids[int(output.ranking[r, c])] for r, c in zip(rows.tolist(), cols.tolist())],
        "rank": (cols + 1).astype(np.int64),
        "first_stage_rank": output.first_stage_rank[rows, cols].astype(np.int64),
        "score": output.rerank_scores[rows, cols].astype(np.float64),
    })
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


