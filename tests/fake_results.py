"""Results written for tests through the writer `mbench run` uses (mbench.results).

Only the files tables, plots and compare read: `result.json` (written last) and `per_query.parquet`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mbench import results
from mbench.results import RESULT_FILE, RerankInfo, ResultRecord, library_versions, rerank_dir, result_dir


def fingerprint_of(text: str) -> str:
    """A sha256 hex fingerprint derived from `text` (distinct texts, distinct fingerprints)."""
    return hashlib.sha256(text.encode()).hexdigest()


def write_result(
    root: Path,
    *,
    model: str,
    task: str,
    pool: str,
    per_query: Mapping[str, Sequence[float]],
    main_metric: str,
    fingerprint: str | None = None,
    qids: Sequence[str] | None = None,
    created: str = "2026-01-01T00:00:00+00:00",
    extra_metrics: Mapping[str, float] | None = None,
    rerank: dict[str, Any] | None = None,
    directory: Path | None = None,
) -> Path:
    """Write one complete result (per-query scores, then result.json whose metrics are their means)."""
    fingerprint = fingerprint or fingerprint_of(model)
    n = len(next(iter(per_query.values())))
    qids = list(qids) if qids is not None else [f"q{i}" for i in range(n)]
    if directory is None:
        directory = result_dir(root, model, fingerprint, task, pool)
        if rerank is not None:
            directory = rerank_dir(directory, rerank["reranker"]["name"], rerank["top_k"])
    arrays = {name: np.asarray(values, dtype=np.float64) for name, values in per_query.items()}
    metrics = {name: float(values.mean()) for name, values in arrays.items()}
    metrics.update(extra_metrics or {})
    record = ResultRecord(
        task=task,
        task_spec_hash=fingerprint_of(task),
        pool=pool,
        kind="rerank" if rerank is not None else "retrieval",
        model={
            "name": model,
            "version": "1",
            "revision": "sha256:" + fingerprint_of(model + "revision"),
            "query_modalities": ["text"],
            "cand_modalities": ["text"],
            "dim": 8,
            "similarity": "cosine",
            "prompt_family": None,
            "uses_instructions": False,
            "output_args": {},
            "fingerprint": fingerprint,
        },
        metrics=metrics,
        main_metric=main_metric,
        n_queries=n,
        depth=1000,
        dataset={"source": "/tmp/test-data"},
        instruction_policy="first",
        seed=0,
        search_backend="torch",
        device="cpu",
        versions=library_versions(),
        timings={"load": 0.0, "encode_queries": 0.0, "encode_candidates": 0.0, "search": 0.0, "metrics": 0.0, "write": 0.0},
        created=created,
        rerank=None if rerank is None else RerankInfo(**rerank),
    )
    results.write_result(directory, record, query_ids=qids, per_query=arrays)
    return directory


def rerank_info(first_stage: Path, reranker: str = "llava-next-tf", top_k: int = 10) -> dict[str, Any]:
    """The `rerank` block of a rerank result reranking `first_stage`."""
    digest = hashlib.sha256((first_stage / RESULT_FILE).read_bytes()).hexdigest()
    return {
        "reranker": {"name": reranker, "version": "1", "fingerprint": fingerprint_of(reranker)},
        "reranker_args": {},
        "top_k": top_k,
        "first_stage": {"path": str(first_stage), "result_sha256": digest},
    }
