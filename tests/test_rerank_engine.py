"""The rerank engine: top-k reordering with the tail kept, rank-based run scores that score the same,
the SQLite score cache (a rerun scores nothing, a changed prompt misses), CIRCO submissions and `mbench rerank`.

The tasks here are built in memory with hand-picked rankings, so every expected ranking and metric
below is worked out by hand; the reranker is a keyword counter that records its calls.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mbench.data.types import ItemTable, TaskData
from mbench.engine.cache.scores import ScoreCache
from mbench.engine.ranking import rank_scores
from mbench.engine.rerank import rerank_ranking, rerank_result, run_to_ranking
from mbench.engine.scoring import task_metrics
from mbench.errors import MbenchError
from mbench.formats.runs import read_trec_run
from mbench.metrics import Relevance, evaluate
from mbench.models.base import ModelMeta
from mbench.tasks.spec import TaskSpec

PROMPT = "Question: <qtxt>\nAnswer: <ctxt>\nTrue or False"
ALL = frozenset({"text", "image", "image,text"})


class KeywordReranker:
    """Score = number of times "good" occurs in the candidate text; counts the pairs it is asked to score."""

    def __init__(self, batch_size: int = 8, device: str = "cpu", dtype: str | None = None) -> None:
        self.meta = ModelMeta(name="keyword", version="1", revision="r1", query_modalities=ALL, cand_modalities=ALL,
                              dim=None, prompt_family="truefalse_rerank")
        self.calls = 0
        self.batch_sizes: list[int] = []

    def score(self, queries, candidates, *, prompts) -> torch.Tensor:
        assert all(p is not None for p in prompts)
        self.calls += len(candidates)
        self.batch_sizes.append(len(candidates))
        return torch.tensor([float((c.text or "").split().count("good")) for c in candidates])


class OverlapReranker(KeywordReranker):
    """Score = words shared by query and candidate (for the mini benchmark's text task)."""

    def score(self, queries, candidates, *, prompts) -> torch.Tensor:
        self.calls += len(candidates)
        return torch.tensor([
            float(len(set(q.text.lower().split()) & set(c.text.lower().split()))) for q, c in zip(queries, candidates)
        ])


# Distinct texts: the cache is keyed by content, so equal texts would share scores.
POOL_TEXTS = {
    "d0": "plain zero", "d1": "good good", "d2": "good", "d3": "plain three", "d4": "plain four",
    "d5": "plain five", "d8": "plain eight", "d9": "plain nine",
}


def _table(ids: list[str], texts: list[str]) -> ItemTable:
    return ItemTable(ids=ids, texts=texts, images=[None] * len(ids), modalities=["text"] * len(ids))


def _spec(prompt: str = PROMPT, **overrides) -> TaskSpec:
    fields = dict(
        name="toy.t2t", adapter="beir", data_folder="toy", query_modality="text", cand_modality="text",
        metrics=["hit@1", "recall@5", "mrr@10"], main_metric="hit@1", depth=10, prompts={"truefalse_rerank": prompt},
    )
    fields.update(overrides)
    return TaskSpec(**fields)


@pytest.fixture()
def toy(tmp_path: Path) -> tuple[TaskSpec, TaskData, Path]:
    """Three queries; a first-stage result whose run file has a score tie (d3 = d4 for q2)."""
    pool = _table(list(POOL_TEXTS), list(POOL_TEXTS.values()))
    queries = _table(["q1", "q2", "q3"], ["first", "second", "third"])
    index = pool.index_of()
    relevance = Relevance.from_lists([[index["d1"]], [index["d2"]], [index["d8"]]])
    data = TaskData(name="toy.t2t", queries=queries, pool=pool, relevance=relevance, source=str(tmp_path))
    first = tmp_path / "results" / "m" / "fp" / "toy.t2t" / "local"
    first.mkdir(parents=True)
    run_lines = [
        "q1 Q0 d0 1 0.9 t", "q1 Q0 d1 2 0.8 t", "q1 Q0 d2 3 0.7 t", "q1 Q0 d3 4 0.6 t", "q1 Q0 d4 5 0.5 t",
        "q1 Q0 d5 6 0.4 t",
        # A tie: trec_eval ranks the larger docid first, so q2's first stage is d4, d3, d2, d0, d1.
        "q2 Q0 d3 1 0.9 t", "q2 Q0 d4 2 0.9 t", "q2 Q0 d2 3 0.5 t", "q2 Q0 d0 4 0.4 t", "q2 Q0 d1 5 0.3 t",
        "q3 Q0 d9 1 0.9 t", "q3 Q0 d8 2 0.8 t",
    ]
    (first / "run.trec.gz").write_bytes(gzip.compress(("\n".join(run_lines) + "\n").encode()))
    record = {
        "mbench_result_version": 1, "task": "toy.t2t", "pool": "local", "kind": "retrieval",
        "model": {"name": "m", "fingerprint": "fp"}, "metrics": {"hit@1": 0.0, "recall@5": 1.0, "mrr@10": 4 / 9},
        "main_metric": "hit@1", "n_queries": 3, "depth": 6, "dataset": {"source": str(tmp_path)}, "rerank": None,
    }
    (first / "result.json").write_text(json.dumps(record))
    return _spec(), data, first


def _independent_ranking(path: Path, pool: ItemTable, qids: list[str]) -> np.ndarray:
    """Parse a run file the way trec_eval orders it (score desc, docid desc), independently of mbench's reader."""
    rows: dict[str, list[tuple[float, str]]] = {}
    for line in gzip.decompress(path.read_bytes()).decode().splitlines():
        qid, _, docid, _, score, _ = line.split()
        rows.setdefault(qid, []).append((float(score), docid))
    index = pool.index_of()
    out = np.full((len(qids), 6), -1)
    for r, qid in enumerate(qids):
        ranked = sorted(rows.get(qid, []), key=lambda t: (-t[0], [-ord(ch) for ch in t[1]]))
        out[r, : len(ranked)] = [index[d] for _, d in ranked]
    return out


def test_rerank_reorders_top_k_keeps_tail_and_ties(toy, tmp_path: Path) -> None:
    spec, data, first = toy
    reranker = KeywordReranker()
    out = rerank_result(first, reranker, top_k=3, data=data, spec=spec, cache_dir=tmp_path / "cache",
                        batch_size=3, progress=False)
    assert out == first.resolve() / "rerank-keyword-top3"
    ids = data.pool.ids
    got = [[ids[i] for i in row if i >= 0] for row in _independent_ranking(out / "run.trec.gz", data.pool, data.queries.ids)]
    # q1: top-3 d0(0) d1(2) d2(1) -> d1 d2 d0, tail d3 d4 d5 untouched.
    # q2: top-3 d4(0) d3(0) d2(1) -> d2, then d4 before d3 (equal scores keep first-stage order); tail d0 d1.
    # q3: two candidates, both 0 -> unchanged.
    assert got == [["d1", "d2", "d0", "d3", "d4", "d5"], ["d2", "d4", "d3", "d0", "d1"], ["d9", "d8"]]
    assert reranker.calls == 8 and reranker.batch_sizes == [3, 3, 2]
    record = json.loads((out / "result.json").read_text())
    # By hand: hit@1 = (1 + 1 + 0) / 3; mrr@10 = (1 + 1 + 1/2) / 3; recall@5 = 1 for all three.
    assert record["metrics"] == pytest.approx({"hit@1": 2 / 3, "recall@5": 1.0, "mrr@10": 2.5 / 3})
    assert record["kind"] == "rerank" and record["rerank"]["top_k"] == 3
    assert record["rerank"]["prompt"] == PROMPT
    assert record["rerank"]["first_stage"] == {
        "path": str(first.resolve()),
        "result_sha256": hashlib.sha256((first / "result.json").read_bytes()).hexdigest(),
    }
    assert record["rerank"]["reranker"]["name"] == "keyword" and record["model"]["name"] == "m"
    per_query = __import__("pandas").read_parquet(out / "per_query.parquet")
    assert per_query["qid"].tolist() == ["q1", "q2", "q3"] and per_query["hit@1"].tolist() == [1.0, 1.0, 0.0]
    scores = __import__("pandas").read_parquet(out / "rerank_scores.parquet")
    q1 = scores[scores.qid == "q1"]
    assert q1.docid.tolist() == ["d1", "d2", "d0"] and q1.score.tolist() == [2.0, 1.0, 0.0]
    assert q1.first_stage_rank.tolist() == [2, 3, 1]


def test_written_run_scores_the_same_as_the_result(toy, tmp_path: Path) -> None:
    spec, data, first = toy
    out = rerank_result(first, KeywordReranker(), top_k=3, data=data, spec=spec, cache_dir=tmp_path / "c", progress=False)
    record = json.loads((out / "result.json").read_text())
    for ranking in (
        run_to_ranking(read_trec_run(out / "run.trec.gz"), data.queries, data.pool, where="test"),
        _independent_ranking(out / "run.trec.gz", data.pool, data.queries.ids),
    ):
        means = evaluate(ranking, data.relevance, spec.metrics).mean()
        assert means == pytest.approx(record["metrics"], abs=0)


def test_mbench_score_of_the_rerank_run_gives_its_metrics(toy, tmp_path: Path, capsys) -> None:
    from mbench.cli import main

    spec, data, first = toy
    out = rerank_result(first, KeywordReranker(), top_k=3, data=data, spec=spec, cache_dir=tmp_path / "c", progress=False)
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 d1 1\nq2 0 d2 1\nq3 0 d8 1\n")
    capsys.readouterr()
    assert main(["score", str(out / "run.trec.gz"), str(qrels), "--metrics", ",".join(spec.metrics),
                 "--format", "json", "--complete"]) == 0
    scored = json.loads(capsys.readouterr().out)["all"]
    assert scored == pytest.approx(json.loads((out / "result.json").read_text())["metrics"], abs=1e-12)
    assert scored["hit@1"] == pytest.approx(2 / 3)


def test_rerun_is_free_and_a_changed_prompt_misses(toy, tmp_path: Path) -> None:
    spec, data, first = toy
    cache = tmp_path / "cache"
    first_run = KeywordReranker()
    out = rerank_result(first, first_run, top_k=3, data=data, spec=spec, cache_dir=cache, progress=False)
    before = (out / "run.trec.gz").read_bytes()
    assert first_run.calls == 8 and len(ScoreCache(cache / "rerank" / "scores.sqlite")) == 8

    # Without --overwrite an identical result is returned as it is.
    again = KeywordReranker()
    assert rerank_result(first, again, top_k=3, data=data, spec=spec, cache_dir=cache, progress=False) == out
    assert again.calls == 0
    # Recomputed: every pair comes from the cache, the files are the same.
    rerun = KeywordReranker()
    rerank_result(first, rerun, top_k=3, data=data, spec=spec, cache_dir=cache, progress=False, overwrite=True)
    assert rerun.calls == 0 and (out / "run.trec.gz").read_bytes() == before
    assert json.loads((out / "result.json").read_text())["rerank"]["pairs_cached"] == 8

    changed = _spec("Q: <qtxt>\nA: <ctxt>\nTrue or False")
    with pytest.raises(MbenchError, match="--overwrite"):
        rerank_result(first, KeywordReranker(), top_k=3, data=data, spec=changed, cache_dir=cache, progress=False)
    missed = KeywordReranker()
    rerank_result(first, missed, top_k=3, data=data, spec=changed, cache_dir=cache, progress=False, overwrite=True)
    assert missed.calls == 8
    # A deeper top-k scores only the new pairs: q1 and q2 have 2 more each, q3 none.
    deeper = KeywordReranker()
    rerank_result(first, deeper, top_k=5, data=data, spec=spec, cache_dir=cache, progress=False)
    assert deeper.calls == 4


def test_rerank_ranking_in_memory_drops_excluded_and_pads() -> None:
    pool = _table(["a", "b", "c", "d"], ["good", "plain", "good good", "plain"])
    queries = _table(["q"], ["x"])
    ranking = np.array([[1, 3, 0, 2]])
    out = rerank_ranking(ranking, queries, pool, KeywordReranker(), [PROMPT], 2, excluded=np.array([3]))
    # d (index 3) is excluded first: the ranking is b a c, the top-2 (b=0, a=1) -> a b; c stays third.
    assert out.ranking.tolist() == [[0, 1, 2, -1]]
    assert out.scores[0, :3].tolist() == [3.0, 2.0, 1.0] and np.isnan(out.scores[0, 3])
    assert out.rerank_scores.tolist() == [[1.0, 0.0]] and out.first_stage_rank.tolist() == [[2, 1]]
    assert rank_scores(np.array([[5, -1]])).tolist()[0][0] == 1.0


def test_pairs_of_equal_content_are_scored_once(tmp_path: Path) -> None:
    pool = _table(["a", "b", "c"], ["plain", "plain", "good"])
    queries = _table(["q1", "q2"], ["x", "x"])
    reranker = KeywordReranker()
    cache = ScoreCache(tmp_path / "s.sqlite")
    out = rerank_ranking(np.array([[0, 1, 2], [2, 1, 0]]), queries, pool, reranker, [PROMPT] * 2, 3, cache=cache)
    # Two distinct (query, candidate) contents: ("x", "plain") and ("x", "good").
    assert reranker.calls == 2 and out.pairs_scored == 2 and out.pairs_cached == 4
    assert out.ranking.tolist() == [[2, 0, 1], [2, 1, 0]]


def test_reranker_needs_the_task_prompt(toy, tmp_path: Path) -> None:
    spec, data, first = toy
    with pytest.raises(MbenchError, match="truefalse_rerank"):
        rerank_result(first, KeywordReranker(), top_k=3, data=data, spec=_spec().model_copy(update={"prompts": {}}),
                      cache_dir=tmp_path / "c", progress=False)


def test_circo_test_writes_the_reranked_submission(tmp_path: Path) -> None:
    ids = [str(100000 + i) for i in range(60)]
    texts = ["good" if i in (7, 9) else "plain" for i in range(60)]
    # Text stand-ins for the images: the keyword reranker reads text only.
    pool = _table(ids, texts)
    queries = _table(["0", "1"], ["make it red", "add a dog"])
    spec = TaskSpec(name="toy.circo.test", adapter="circo", data_folder="circo", query_modality="image,text",
                    cand_modality="image", scored=False, depth=50, prompts={"truefalse_rerank": "<cimg><qtxt>"})
    data = TaskData(name="toy.circo.test", queries=queries, pool=pool, relevance=None, source=str(tmp_path))
    first = tmp_path / "first"
    first.mkdir()
    lines = [f"{q} Q0 {ids[i]} {i + 1} {100 - i} t" for q in ("0", "1") for i in range(55)]
    (first / "run.trec.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    (first / "result.json").write_text(json.dumps({"task": "toy.circo.test", "pool": "local", "kind": "retrieval",
                                                   "metrics": {}, "dataset": {"source": str(tmp_path)}}))
    out = rerank_result(first, KeywordReranker(), top_k=10, data=data, spec=spec, cache_dir=tmp_path / "c",
                        progress=False)
    submission = json.loads((out / "submission.json").read_text())
    assert list(submission) == ["0", "1"]
    expected = [int(ids[i]) for i in [7, 9, 0, 1, 2, 3, 4, 5, 6, 8] + list(range(10, 50))]
    for ranked in submission.values():
        assert ranked == expected and len(set(ranked)) == 50
    assert json.loads((out / "result.json").read_text())["metrics"] == {}


def test_task_metrics_of_unscored_task_is_empty() -> None:
    spec = TaskSpec(name="x", adapter="circo", data_folder="c", query_modality="image,text", cand_modality="image",
                    scored=False)
    data = TaskData(name="x", queries=_table(["q"], ["t"]), pool=_table(["a"], ["t"]), relevance=None)
    assert task_metrics(spec, data, np.array([[0]])) == ({}, {})


def test_mbench_rerank_command_on_a_mini_benchmark_result(tmp_path: Path, capsys) -> None:
    from mbench.cli import main
    from mbench.data.loader import load_task
    from mbench.tasks.index import load_task_spec

    cache = tmp_path / "cache"
    spec = load_task_spec("mini.mbeir.webqa.t2t")
    data = load_task(spec, data_dir=None, cache_dir=cache)
    rng = np.random.default_rng(0)
    n, depth = len(data.queries), 20
    ranking = np.stack([rng.permutation(len(data.pool))[:depth] for _ in range(n)])
    first = tmp_path / "results" / "m" / "fp" / spec.name / "local"
    first.mkdir(parents=True)
    scores = rank_scores(ranking)
    lines = [f"{data.queries.ids[q]} Q0 {data.pool.ids[ranking[q, c]]} {c + 1} {int(scores[q, c])} t"
             for q in range(n) for c in range(depth)]
    (first / "run.trec.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    first_metrics, _ = task_metrics(spec, data, ranking)
    (first / "result.json").write_text(json.dumps({
        "task": spec.name, "pool": "local", "kind": "retrieval", "metrics": first_metrics,
        "main_metric": spec.main_metric, "dataset": {"source": data.source},
    }))
    code = main(["rerank", str(first), "--reranker", "test_rerank_engine:OverlapReranker", "--rerank-top-k", "10",
                 "--cache-dir", str(cache), "--no-progress"])
    assert code == 0
    out = first / "rerank-test_rerank_engine_OverlapReranker-top10"
    record = json.loads((out / "result.json").read_text())
    printed = capsys.readouterr().out
    main_metric = spec.main_metric
    assert f"{main_metric}: retrieval {100 * first_metrics[main_metric]:.2f}  rerank {100 * record['metrics'][main_metric]:.2f}" in printed
    assert f"{n * 10} pairs scored" in printed
    # The reranked run scores the same, and the reranker only moved candidates within each top-10.
    reread = run_to_ranking(read_trec_run(out / "run.trec.gz"), data.queries, data.pool, where="test")
    assert task_metrics(spec, data, reread)[0] == record["metrics"]
    assert (np.sort(reread[:, :10], axis=1) == np.sort(ranking[:, :10], axis=1)).all()
    assert (reread[:, 10:] == ranking[:, 10:]).all()
    assert record["rerank"]["reranker_args"] == {"batch_size": "8"}
