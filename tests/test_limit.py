"""`mbench run --limit N`: a seeded, recorded smoke sample per task, kept apart from full results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fake_results import write_result

from mbench.cli import main
from mbench.data.limit import Limit, limit_task, sampled_query_rows
from mbench.data.loader import load_task
from mbench.tasks.index import get_index


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("MBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return {"cache": tmp_path / "cache", "results": tmp_path / "results"}


def _run(env: dict, *extra: str) -> int:
    return main(["run", "--model", "hash-embed", "--results-dir", str(env["results"]), "--no-progress", *extra])


def test_the_sample_is_seeded_and_independent_of_query_order() -> None:
    ids = [f"q{i}" for i in range(100)]
    rows = sampled_query_rows(ids, 5, seed=0)
    assert rows.size == 5 and np.all(np.diff(rows) > 0)
    reversed_ids = ids[::-1]
    assert sorted(reversed_ids[i] for i in sampled_query_rows(reversed_ids, 5, seed=0)) == sorted(ids[i] for i in rows)
    assert set(sampled_query_rows(ids, 5, seed=1).tolist()) != set(rows.tolist())


def test_the_cut_pool_keeps_every_judged_candidate_and_fills_up_with_distractors(env: dict) -> None:
    data = load_task(get_index().task("mini.beir.towns"), data_dir=None, cache_dir=env["cache"])
    limited, record = limit_task(data, Limit(queries=5, pool=30))
    assert len(limited.queries) == 5 and len(limited.pool) == 30
    for row in range(5):  # each sampled query's judged documents, by id, are in the cut pool
        full_row = data.queries.ids.index(limited.queries.ids[row])
        judged = {data.pool.ids[i] for i in data.relevance.indices[data.relevance.indptr[full_row]:data.relevance.indptr[full_row + 1]]}
        mine = {limited.pool.ids[i] for i in limited.relevance.indices[limited.relevance.indptr[row]:limited.relevance.indptr[row + 1]]}
        assert mine == judged
    assert record["query_ids"] == limited.queries.ids
    assert (record["queries_of_task"], record["candidates_of_pool"], record["candidates"]) == (50, 200, 30)


def test_limit_run_lands_in_its_own_folder_marked_partial(env: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(env, "--tasks", "mini.beir.towns", "--limit", "5", "--limit-pool", "40") == 0
    out = capsys.readouterr().out
    assert "PARTIAL: --limit 5" in out
    [path] = env["results"].glob("hash-embed/*/mini.beir.towns/*/result.json")
    assert path.parent.name == "local.limit-5-pool-40"
    record = json.loads(path.read_text())
    assert record["partial"] is True and record["n_queries"] == 5
    assert (record["limit"]["queries"], record["limit"]["pool"], record["limit"]["candidates"]) == (5, 40, 40)
    assert len(record["limit"]["query_ids"]) == 5


def test_limit_with_the_whole_pool_scores_each_sampled_query_as_the_full_run(env: dict) -> None:
    import pandas as pd

    assert _run(env, "--tasks", "mini.beir.towns") == 0
    assert _run(env, "--tasks", "mini.beir.towns", "--limit", "7", "--limit-pool", "all") == 0
    [full] = env["results"].glob("hash-embed/*/mini.beir.towns/local/per_query.parquet")
    [part] = env["results"].glob("hash-embed/*/mini.beir.towns/local.limit-7-pool-all/per_query.parquet")
    full_q, part_q = pd.read_parquet(full).set_index("qid"), pd.read_parquet(part).set_index("qid")
    assert len(part_q) == 7
    pd.testing.assert_frame_equal(part_q, full_q.loc[part_q.index])


def test_tables_never_mix_partial_and_full_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_result(tmp_path, model="m", task="mteb.scifact", pool="local", per_query={"ndcg@10": [0.5, 0.5]},
                 main_metric="ndcg@10")
    partial = write_result(tmp_path, model="m", task="mteb.nfcorpus", pool="local", per_query={"ndcg@10": [0.25]},
                           main_metric="ndcg@10", created="2027-01-01T00:00:00+00:00",
                           directory=tmp_path / "m" / "x" / "mteb.nfcorpus" / "local.limit-1")
    record = json.loads((partial / "result.json").read_text())
    record.update(partial=True, limit={"queries": 1, "seed": 0, "pool": 1000, "query_ids": ["q0"]})
    (partial / "result.json").write_text(json.dumps(record))
    assert main(["table", "--tasks", "mteb.scifact", "mteb.nfcorpus", "--models", "m", "--results-dir", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "| mteb.nfcorpus | ndcg@10 | – |" in captured.out and "| mteb.scifact | ndcg@10 | 50.00 |" in captured.out
    assert "mteb.nfcorpus has only partial results (--limit 1); they are not mixed into this table" in captured.err
    assert main(["table", "--tasks", "mteb.scifact", "mteb.nfcorpus", "--models", "m", "--results-dir", str(tmp_path),
                 "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "| Task | Metric | m [partial: limit 1] |" in out
    assert "| mteb.nfcorpus | ndcg@10 | 25.00 |" in out and "| mteb.scifact | ndcg@10 | – |" in out
    assert "- PARTIAL: run columns hold `mbench run --limit 1` results" in out
    assert main(["table", "--tasks", "mteb.nfcorpus", "--models", "m", "--results-dir", str(tmp_path),
                 "--limit", "1", "--format", "csv"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(",partial_limit")


def test_a_limit_result_pairs_only_with_a_result_of_the_same_sample(env: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(env, "--tasks", "mini.beir.towns") == 0
    assert _run(env, "--tasks", "mini.beir.towns", "--limit", "5") == 0
    [model_dir] = env["results"].glob("hash-embed/*")
    assert main(["compare", str(model_dir), str(model_dir), "--resamples", "10"]) == 0
    out = capsys.readouterr().out
    assert "| mini.beir.towns | local | retrieval | ndcg@10 | 50 |" in out
    assert "| mini.beir.towns | local | retrieval [limit-5] | ndcg@10 | 5 |" in out


def test_reranking_a_limit_result_reranks_its_sample(env: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(env, "--tasks", "mini.mbeir.webqa.t2t", "--limit", "4") == 0
    [first] = env["results"].glob("hash-embed/*/mini.mbeir.webqa.t2t/local.limit-4")
    assert main(["rerank", str(first), "--reranker", "test_rerank_engine:OverlapReranker", "--rerank-top-k", "3",
                 "--no-progress"]) == 0
    [rerank] = first.glob("rerank-*/result.json")
    record = json.loads(rerank.read_text())
    assert record["n_queries"] == 4 and record["partial"] is True
    assert record["limit"] == json.loads((first / "result.json").read_text())["limit"]
