"""Scoring rankings: a task's ranking against its loaded judgments (``task_metrics``, what `mbench run`
and the reranker record), and a run read from disk against qrels (``score_run``, `mbench score`).

For a run file, run and qrels docids are mapped into one candidate-index vocabulary, the queries to average
over are chosen, and ``mbench.metrics.evaluate`` does the rest. As in trec_eval, a query
judged in the qrels but without any relevant document is averaged in with 0 everywhere, and a
run query absent from the qrels is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mbench.errors import MbenchError
from mbench.formats.qrels import Qrels
from mbench.formats.runs import Run
from mbench.metrics import METRICS, Metric, Relevance, evaluate, order_free_mean, parse_metric

if TYPE_CHECKING:
    from mbench.data.types import TaskData
    from mbench.tasks.spec import TaskSpec


def task_metrics(spec: TaskSpec, data: TaskData, ranking: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """The task's metrics of ``ranking`` (means, per-query values); empty for tasks without qrels."""
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


@dataclass(frozen=True)
class RunScores:
    """Per-query metric values of a scored run and the queries they belong to."""

    qids: np.ndarray
    per_query: dict[str, np.ndarray]
    skipped_run_queries: int
    missing_run_queries: int

    def mean(self) -> dict[str, float]:
        """The mean of every metric over the scored queries."""
        # The same mean as a run's result.json, whatever order the run file lists the queries in.
        return {name: order_free_mean(values) for name, values in self.per_query.items()}


def score_run(
    run: Run, qrels: Qrels, metrics: Sequence[str | Metric], *, complete: bool = False, relevance_level: int = 1
) -> RunScores:
    """Score ``run`` against ``qrels``.

    By default the queries present in both are scored (trec_eval); with ``complete`` every
    qrels query is, those missing from the run with an empty ranking (``trec_eval -c``).
    ``relevance_level``: the least grade the binary metrics count as relevant (``trec_eval -l``).
    """
    import pandas as pd

    parsed = [m if isinstance(m, Metric) else parse_metric(m) for m in metrics]
    for metric in parsed:
        needs = METRICS[metric.family].needs
        if "modalities" in needs:
            raise MbenchError(f"{metric.name} needs candidate modalities, which a run file does not carry")
        if "targets" in needs and qrels.targets is None:
            raise MbenchError(f"{metric.name} needs per-query targets: give CIRCO annotations as QRELS (got {qrels.format} qrels)")

    in_qrels = _positions(run.qids, qrels.query_ids) >= 0
    if not in_qrels.any():
        raise MbenchError(
            f"no query of the run is in the qrels: run query ids look like {list(run.qids[:3])}, "
            f"qrels query ids like {list(qrels.query_ids[:3])}"
        )
    qids = np.sort(np.asarray(qrels.query_ids, dtype=object)) if complete else np.asarray(run.qids[in_qrels], dtype=object)
    row_in_run = _positions(qids, run.qids)
    ranked = row_in_run >= 0
    ranking = np.full((qids.size, run.depth), -1, dtype=np.int64)
    ranking[ranked] = run.ranking[row_in_run[ranked]]

    # Documents judged (or targeted) but never retrieved get indices after the run's vocabulary.
    extra_ids = list(qrels.targets.values()) if qrels.targets is not None else []
    judged_and_targets = np.concatenate([np.asarray(qrels.docids, dtype=object), np.array(extra_ids, dtype=object)])
    cand = _positions(judged_and_targets, run.docids)
    unseen = cand < 0
    cand[unseen] = len(run.docids) + pd.factorize(judged_and_targets[unseen])[0]
    judged_cand, target_cand = cand[: len(qrels.docids)], cand[len(qrels.docids) :]

    query_row = _positions(qrels.qids, qids)
    kept = query_row >= 0
    relevance = Relevance.from_pairs(query_row[kept], judged_cand[kept], qrels.grades[kept], qids.size)

    targets = None
    if qrels.targets is not None:
        target_of = dict(zip(qrels.targets, target_cand.tolist()))
        targets = np.array([target_of.get(qid, -1) for qid in qids], dtype=np.int64)

    results = evaluate(ranking, relevance, parsed, targets=targets, relevance_level=relevance_level)
    return RunScores(
        qids=qids,
        per_query=results.per_query,
        skipped_run_queries=int((~in_qrels).sum()),
        missing_run_queries=int((_positions(qrels.query_ids, run.qids) < 0).sum()),
    )


def _positions(values: np.ndarray, universe: np.ndarray) -> np.ndarray:
    """For each value, its index in ``universe`` (unique strings), or -1 when absent; hash-based."""
    import pyarrow as pa
    import pyarrow.compute as pc

    found = pc.index_in(pa.array(values, type=pa.string()), value_set=pa.array(universe, type=pa.string()))
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
