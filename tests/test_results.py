"""The result folder (mbench.results): the typed record, its one writer and its one reader."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from mbench.errors import MbenchError
from mbench.results import (
    RESULT_FILE,
    RerankInfo,
    ResultRecord,
    read_per_query,
    read_result,
    read_result_run,
    rerank_dir,
    write_result,
)


def _record(**overrides) -> ResultRecord:
    fields = dict(
        task="toy.t2t", pool="local", model={"name": "m", "fingerprint": "ab" * 32}, metrics={"hit@1": 0.5},
        main_metric="hit@1", n_queries=2, depth=3, dataset={"source": "/data/toy"}, created="2026-01-01T00:00:00+00:00",
    )
    fields.update(overrides)
    return ResultRecord(**fields)


def test_a_record_round_trips_through_its_folder_including_keys_it_does_not_know(tmp_path: Path) -> None:
    rerank = RerankInfo(reranker={"name": "r", "fingerprint": "cd" * 32}, top_k=2,
                        first_stage={"path": "/first", "result_sha256": "ef" * 32}, prompt="<qtxt>",
                        extra={"future_rerank_key": [1, 2]})
    record = _record(kind="rerank", rerank=rerank, extra={"future_key": {"a": 1}})
    write_result(tmp_path / "r", record, query_ids=["q1", "q2"])
    assert read_result(tmp_path / "r") == record
    written = json.loads((tmp_path / "r" / RESULT_FILE).read_text())
    assert written["future_key"] == {"a": 1} and written["rerank"]["future_rerank_key"] == [1, 2]


def test_the_writer_puts_ranking_per_query_values_and_submission_in_the_folder(tmp_path: Path) -> None:
    # Query q1 ranks pool items b then a; q2 ranks only c (the second slot is padding, -1).
    ranking = np.array([[1, 0], [2, -1]])
    scores = np.array([[0.75, 0.25], [0.5, -np.inf]], dtype=np.float32)
    write_result(tmp_path / "r", _record(), query_ids=["q1", "q2"], ranking=ranking, scores=scores,
                 pool_ids=["a", "b", "c"], per_query={"hit@1": np.array([1.0, 0.0])})
    lines = gzip.decompress((tmp_path / "r" / "run.trec.gz").read_bytes()).decode().splitlines()
    assert lines == ["q1 Q0 b 1 0.75 mbench", "q1 Q0 a 2 0.25 mbench", "q2 Q0 c 1 0.5 mbench"]
    assert read_result_run(tmp_path / "r").docids.tolist() == ["b", "a", "c"]
    assert read_per_query(tmp_path / "r" / "per_query.parquet").to_dict("list") == {"qid": ["q1", "q2"], "hit@1": [1.0, 0.0]}
    assert not (tmp_path / "r" / "submission.json").exists()
    assert "write" in read_result(tmp_path / "r").timings


def test_a_folder_being_rewritten_has_no_result_json_until_the_end(tmp_path: Path) -> None:
    write_result(tmp_path / "r", _record(), query_ids=["q1"])
    with pytest.raises(MbenchError, match="CIRCO submission: query q1 has 1 ranked images; the server needs 50"):
        write_result(tmp_path / "r", _record(), query_ids=["q1"], ranking=np.array([[0]]), scores=np.array([[1.0]]),
                     pool_ids=["7"], submission=True)
    assert not (tmp_path / "r" / RESULT_FILE).exists()


def test_reading_a_folder_without_a_result_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(MbenchError, match=f"no result at {tmp_path} \\(missing result.json\\)"):
        read_result(tmp_path)


def test_a_result_json_without_a_task_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / RESULT_FILE).write_text(json.dumps({"pool": "local"}))
    with pytest.raises(MbenchError, match=r"result.json: missing key 'task'; not an mbench result.json"):
        read_result(tmp_path)


def test_a_rerank_folder_is_named_after_a_path_safe_reranker_name(tmp_path: Path) -> None:
    assert rerank_dir(tmp_path, "pkg.mod:Class/v2", 10) == tmp_path / "rerank-pkg.mod_Class_v2-top10"
