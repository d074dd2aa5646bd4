"""Parity with mteb on the same run: mbench's numbers are mteb's numbers.

1. The run `mbench run --model minilm --tasks mteb.scifact` wrote (run.trec.gz) is scored by mteb's
   own RetrievalEvaluator on the same qrels: every metric both define agrees to 1e-9, per query.
2. mteb's full evaluation path (its encode, search and scoring) on SciFact read from the local BEIR
   folder gives the nDCG@10 of `mbench run` to 1e-6.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from mbench.models.builtin.sentence_transformers import packaged_minilm_dir

mteb = pytest.importorskip("mteb", reason="parity with mteb needs mteb (pip install 'mbench[mteb]')")

pytestmark = pytest.mark.slow

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# mbench metric family -> the per-query key mteb's evaluator reports (pytrec_eval's names; MRR is mteb's own).
PYTREC_KEYS = {"ndcg": "ndcg_cut_{k}", "map_cut": "map_cut_{k}", "recall": "recall_{k}", "precision": "P_{k}",
               "hit": "success_{k}"}


def _scifact_result(results_root: Path) -> tuple[Path, dict]:
    [found] = results_root.glob("*/*/mteb.scifact/local/result.json")
    return found.parent, json.loads(found.read_text())


def _read_run(path: Path) -> dict[str, dict[str, float]]:
    """The run file as mteb's evaluator takes it: query id -> {document id: score}."""
    run: dict[str, dict[str, float]] = {}
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            qid, _, docid, _, score, _ = line.split()
            run.setdefault(qid, {})[docid] = float(score)
    return run


@pytest.fixture(scope="module")
def mteb_scores(minilm_scifact_run: Path, shared_dir: Path):
    """mteb's RetrievalEvaluator on the run mbench wrote, with SciFact's qrels as mteb's task loads them."""
    from mteb._evaluators import RetrievalEvaluator
    from mteb.timing import TimingStack

    from mbench.interop.mteb_tasks import local_beir_task

    directory, _ = _scifact_result(minilm_scifact_run)
    task = local_beir_task("SciFact", shared_dir / "data" / "scifact")
    task.load_data()
    split = task.dataset["default"]["test"]
    evaluator = RetrievalEvaluator(split["corpus"], split["queries"], task_metadata=task.metadata, hf_split="test",
                                   hf_subset="default", top_k=max(task.k_values), timer=TimingStack())
    scores = evaluator.evaluate(split["relevant_docs"], _read_run(directory / "run.trec.gz"), task.k_values,
                                ignore_identical_ids=task.ignore_identical_ids, skip_first_result=task.skip_first_result)
    return task, scores


def test_every_shared_metric_per_query_equals_mtebs_evaluator(minilm_scifact_run: Path, shared_dir: Path, mteb_scores) -> None:
    from mbench.formats.qrels import read_qrels
    from mbench.formats.runs import read_run
    from mbench.engine.scoring import score_run

    task, scores = mteb_scores
    directory, _ = _scifact_result(minilm_scifact_run)
    metrics = [f"{family}@{k}" for family in (*PYTREC_KEYS, "mrr") for k in task.k_values]
    ours = score_run(read_run(directory / "run.trec.gz"), read_qrels(shared_dir / "data/scifact/qrels/test.tsv"), metrics)
    qids = [str(q) for q in ours.qids]
    assert sorted(qids) == sorted(scores.all_scores) and len(qids) == 300
    for metric in metrics:
        family, k = metric.split("@")
        if family == "mrr":  # mteb reports only MRR's mean, unrounded
            assert float(ours.per_query[metric].mean()) == pytest.approx(scores.mrr[f"MRR@{k}"], abs=1e-9), metric
            continue
        theirs = np.array([scores.all_scores[q][PYTREC_KEYS[family].format(k=k)] for q in qids])
        np.testing.assert_allclose(ours.per_query[metric], theirs, rtol=0, atol=1e-9, err_msg=metric)


def test_the_runs_own_metrics_equal_mtebs_reported_scores(minilm_scifact_run: Path, mteb_scores) -> None:
    """result.json as `mbench run` computed it, against mteb's scores (which round all but MRR to 5 decimals)."""
    _, scores = mteb_scores
    _, record = _scifact_result(minilm_scifact_run)
    reported = {"ndcg": (scores.ndcg, "NDCG"), "map_cut": (scores.map, "MAP"), "recall": (scores.recall, "Recall")}
    for metric, value in record["metrics"].items():
        family, k = metric.split("@")
        if family == "mrr":
            assert value == pytest.approx(scores.mrr[f"MRR@{k}"], abs=1e-9), metric
        else:
            table, label = reported[family]
            assert round(value, 5) == pytest.approx(table[f"{label}@{k}"], abs=1e-12), metric
    assert set(record["metrics"]) == {"ndcg@10", "map_cut@10", "mrr@10", "recall@10", "recall@100", "recall@1000"}


def test_mtebs_full_evaluation_gives_mbenchs_ndcg(minilm_scifact_run: Path, shared_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """mteb encodes, searches and scores SciFact itself (data from the local BEIR folder, weights offline)."""
    from mteb._evaluators import RetrievalEvaluator

    from mbench.interop.mteb_tasks import local_beir_task
    from mbench.models.builtin.mteb_encoder import load_mteb_model

    # mteb reports nDCG rounded to 5 decimals; its evaluator's per-query scores are kept to compare at 1e-6.
    evaluations = []
    evaluate = RetrievalEvaluator.evaluate
    monkeypatch.setattr(RetrievalEvaluator, "evaluate",
                        lambda self, *args, **kwargs: evaluations.append(evaluate(self, *args, **kwargs)) or evaluations[-1])
    _, record = _scifact_result(minilm_scifact_run)
    model, _ = load_mteb_model(MINILM, packaged_minilm_dir(), device="cpu")
    result = mteb.evaluate(model, local_beir_task("SciFact", shared_dir / "data" / "scifact"), cache=None,
                           co2_tracker=False, show_progress_bar=False, encode_kwargs={"batch_size": 32})
    [task_result] = result.task_results
    [scores] = task_result.scores["test"]
    [evaluation] = evaluations
    per_query = [values["ndcg_cut_10"] for values in evaluation.all_scores.values()]
    assert len(per_query) == 300
    assert sum(per_query) / len(per_query) == pytest.approx(record["metrics"]["ndcg@10"], abs=1e-6)
    assert scores["main_score"] == scores["ndcg_at_10"] == round(record["metrics"]["ndcg@10"], 5) == 0.64508
