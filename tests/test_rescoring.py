"""`mbench score RESULT_DIR`: a result folder rescored against the qrels its result.json records."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mbench.cli import main


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """hash-embed results on a BEIR, an M-BEIR (OVEN, with judgments outside its local pool) and a CIRCO mini task."""
    root = tmp_path_factory.mktemp("rescoring")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MBENCH_CACHE", str(root / "cache"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        assert main(["run", "--model", "hash-embed", "--tasks", "mini.beir.towns,mini.mbeir.oven.it2t,mini.circo.val",
                     "--results-dir", str(root / "results"), "--no-progress"]) == 0
    return root / "results"


def _folder(results: Path, task: str) -> Path:
    [path] = results.glob(f"hash-embed/*/{task}/local/result.json")
    return path.parent


def _score_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["score", *argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)["all"]


def test_result_json_records_each_qrels_file_with_its_sha256(results: Path) -> None:
    record = json.loads((_folder(results, "mini.mbeir.oven.it2t") / "result.json").read_text())
    [file] = record["qrels"]["files"]
    assert file["path"].endswith("mbeir/qrels/test/mbeir_oven_task6_test_qrels.txt")
    assert file["sha256"] == hashlib.sha256(Path(file["path"]).read_bytes()).hexdigest()
    assert (record["qrels"]["format"], record["qrels"]["outside_pool"], record["qrels"]["outside_pool_prefix"]) == (
        "mbeir", 2, "6:")


@pytest.mark.parametrize("task", ["mini.beir.towns", "mini.mbeir.oven.it2t", "mini.circo.val"])
def test_rescoring_with_the_recorded_metrics_gives_the_stored_values_exactly(
    results: Path, task: str, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _folder(results, task)
    stored = json.loads((folder / "result.json").read_text())["metrics"]
    rescored = _score_json(capsys, str(folder))
    assert rescored == {name: value for name, value in stored.items() if not name.startswith("modality_acc")}


def test_rescoring_with_other_metrics(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(results, "mini.beir.towns")
    rescored = _score_json(capsys, str(folder), "--metrics", "recall@100,precision@1")
    assert set(rescored) == {"recall@100", "precision@1"}
    assert rescored["recall@100"] == json.loads((folder / "result.json").read_text())["metrics"]["recall@100"]


def test_changed_qrels_file_is_refused(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _folder(results, "mini.beir.towns")
    record = json.loads((folder / "result.json").read_text())
    copy = tmp_path / "test.tsv"
    copy.write_text(Path(record["qrels"]["files"][0]["path"]).read_text() + "t0\td1\t1\n")
    record["qrels"]["files"][0]["path"] = str(copy)
    moved = tmp_path / "result"
    moved.mkdir()
    (moved / "result.json").write_text(json.dumps(record))
    (moved / "run.trec.gz").write_bytes((folder / "run.trec.gz").read_bytes())
    assert main(["score", str(moved)]) == 2
    assert f"its qrels file {copy} changed since the run (sha256 differs)" in capsys.readouterr().err


def test_a_run_file_still_needs_qrels(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["score", str(_folder(results, "mini.beir.towns") / "run.trec.gz")]) == 2
    assert "give QRELS after a run file" in capsys.readouterr().err
