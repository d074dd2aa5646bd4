"""Results both ways with mteb: `mbench export --format mteb` writes files mteb's loader reads back, and
leaderboard reference columns read mteb result files through that loader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fake_results import fingerprint_of, rewrite_record, write_result

from mbench.cli import main
from mbench.errors import MbenchError
from mbench.reporting.leaderboard import LeaderboardFileError, load_leaderboard

mteb = pytest.importorskip("mteb", reason="the mteb bridge needs mteb (pip install 'mbench[mteb]')")

from mbench.interop.mteb_results import mteb_metric_key, read_mteb_results  # noqa: E402 - after the skip

REPO = Path(__file__).resolve().parents[1]
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
# Two queries; the means are exact in binary and at mteb's 6 stored decimals.
PER_QUERY = {"ndcg@10": [0.5, 0.25], "map_cut@10": [1.0, 0.0], "mrr@10": [1.0, 0.5], "recall@10": [1.0, 0.5],
             "recall@100": [1.0, 1.0], "recall@1000": [1.0, 1.0]}


def _export(*args: str) -> int:
    return main(["export", *args])


def _minilm_result(root: Path, task: str = "mteb.nfcorpus", **kwargs) -> Path:
    return write_result(root, model=MINILM, task=task, pool="local", per_query=PER_QUERY, main_metric="ndcg@10", **kwargs)


@pytest.mark.parametrize(
    ("metric", "key"),
    [("ndcg@10", "ndcg_at_10"), ("map_cut@10", "map_at_10"), ("mrr@10", "mrr_at_10"), ("recall@100", "recall_at_100"),
     ("precision@5", "precision_at_5"), ("hit@5", "hit_rate_at_5"), ("map@5", None), ("modality_acc@1", None),
     ("circo_recall@10", None)],
)
def test_mbench_metrics_map_to_mtebs_keys_and_map_at_k_has_none(metric: str, key: str | None) -> None:
    assert mteb_metric_key(metric) == key


def test_every_shipped_mteb_task_is_the_mteb_task_reading_its_dataset() -> None:
    from mbench.interop.mteb_tasks import find_mteb_task
    from mbench.tasks.index import get_index

    index = get_index()
    names = {}
    for task in index.expand(["mteb.retrieval15"]):
        found, why = find_mteb_task(index.task(task))
        assert found is not None, why
        names[task] = found.metadata.name
    assert len(names) == 26  # 14 tasks + CQADupStack's 12 subforums
    assert names["mteb.scifact"] == "SciFact" and names["mteb.quora"] == "QuoraRetrieval"
    assert names["mteb.msmarco"] == "MSMARCO" and names["mteb.cqadupstack.android"] == "CQADupstackAndroidRetrieval"


def test_a_task_that_scores_identical_ids_differently_is_not_the_mteb_task() -> None:
    from mbench.interop.mteb_tasks import find_mteb_task
    from mbench.tasks.index import get_index

    arguana = get_index().task("mteb.arguana").model_copy(update={"ignore_identical_ids": False})
    assert find_mteb_task(arguana) == (
        None, "mteb's ArguAna has ignore_identical_ids=True, task mteb.arguana has False")


def test_export_writes_mtebs_layout_that_mtebs_loader_reads_back(tmp_path: Path, capsys) -> None:
    source = _minilm_result(tmp_path / "results")
    assert _export(str(tmp_path / "results"), "--format", "mteb", "--out", str(tmp_path / "cache" / "results")) == 0
    revision = "sha256:" + fingerprint_of(MINILM + "revision")
    folder = tmp_path / "cache" / "results" / "sentence-transformers__all-MiniLM-L6-v2" / revision.replace(":", "-")
    assert sorted(p.name for p in folder.iterdir()) == ["NFCorpus.json", "model_meta.json"]
    assert f"{source} -> {folder / 'NFCorpus.json'} (NFCorpus, ndcg_at_10 = 0.37500)" in capsys.readouterr().out
    meta = json.loads((folder / "model_meta.json").read_text())
    assert (meta["name"], meta["revision"]) == (MINILM, revision)

    loaded = mteb.ResultCache(cache_path=tmp_path / "cache").load_results(include_remote=False)
    [model_result] = loaded.model_results
    assert (model_result.model_name, model_result.model_revision) == (MINILM, revision)
    [task_result] = model_result.task_results
    assert task_result.task_name == "NFCorpus" and task_result.main_score == 0.375
    assert task_result.dataset_revision == "ec0fa4fe99da2ff19ca1214b7966684033a58814"
    [scores] = task_result.scores["test"]
    assert {key: scores[key] for key in ("ndcg_at_10", "map_at_10", "mrr_at_10", "recall_at_10", "recall_at_100",
                                         "recall_at_1000")} == {
        "ndcg_at_10": 0.375, "map_at_10": 0.5, "mrr_at_10": 0.75, "recall_at_10": 0.75, "recall_at_100": 1.0,
        "recall_at_1000": 1.0}
    assert (scores["hf_subset"], scores["languages"]) == ("default", ["eng-Latn"])


def test_tasks_mteb_does_not_know_are_skipped_with_a_line(tmp_path: Path, capsys) -> None:
    root = tmp_path / "results"
    write_result(root, model="hash-embed", task="mini.beir.towns", pool="local", per_query={"ndcg@10": [1.0]},
                 main_metric="ndcg@10")
    write_result(root, model="hash-embed", task="mbeir.mscoco.t2i", pool="local", per_query={"hit@5": [1.0]},
                 main_metric="hit@5")
    assert _export(str(root), "--out", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "mteb does not know this task: task mini.beir.towns names no hf_dataset" in err
    assert "mteb does not know this task: no mteb task reads TIGER-Lab/M-BEIR (task mbeir.mscoco.t2i)" in err
    assert "nothing exported (2 result(s) skipped)" in err
    assert not (tmp_path / "out").exists()


def test_reranks_and_other_pools_are_skipped_with_the_reason(tmp_path: Path, capsys) -> None:
    root = tmp_path / "results"
    _minilm_result(root, rerank={"reranker": {"name": "cross-encoder"}, "top_k": 10,
                                  "first_stage": {"path": "first-stage", "result_sha256": "0" * 64}})
    _minilm_result(root, directory=root / "global-pool")
    record = json.loads((root / "global-pool" / "result.json").read_text())
    rewrite_record(root / "global-pool" / "result.json", {**record, "pool": "global"})
    assert _export(str(root), "--out", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "a rerank result (mteb result files describe one model's retrieval)" in err
    assert "pool 'global' (an mteb task searches its own corpus" in err


def test_partial_and_skipped_item_results_are_not_exported(tmp_path: Path, capsys) -> None:
    root = tmp_path / "results"
    _minilm_result(root, directory=root / "limit")
    record = json.loads((root / "limit" / "result.json").read_text())
    rewrite_record(root / "limit" / "result.json",
                   {**record, "partial": True, "limit": {"queries": 5, "seed": 0, "variant": "limit-5"}})
    _minilm_result(root, directory=root / "skipped")
    record = json.loads((root / "skipped" / "result.json").read_text())
    rewrite_record(root / "skipped" / "result.json",
                   {**record, "skipped_items": {"candidate": [{"id": "d1", "reason": "truncated image"}]}})
    assert _export(str(root), "--out", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert "a partial result (limit-5: mbench run --limit scores a sample of the queries)" in err
    assert "items were left out by --skip-bad-items" in err
    assert not (tmp_path / "out").exists()


def test_two_results_for_one_mteb_file_are_an_error(tmp_path: Path, capsys) -> None:
    root = tmp_path / "results"
    _minilm_result(root, fingerprint=fingerprint_of("a"))
    _minilm_result(root, fingerprint=fingerprint_of("b"))
    assert _export(str(root), "--out", str(tmp_path / "out")) == 2
    assert "would both be written to" in capsys.readouterr().err


def test_a_missing_result_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert _export(str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")) == 2
    assert "nowhere does not exist" in capsys.readouterr().err


def _spec(tmp_path: Path, reference: dict, rows: list[dict] | None = None, runs: list[dict] | None = None) -> Path:
    spec = {
        "name": "mteb-import",
        "pool": "local",
        "rows": rows or [{"task": "mteb.scifact", "metric": "ndcg@10"}, {"task": "mteb.nfcorpus", "metric": "ndcg@10"}],
        "runs": runs or [],
        "references": [{"name": "mteb", **reference}],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_reference_column_read_from_mtebs_published_files_equals_the_transcription(shared_dir: Path, tmp_path: Path) -> None:
    transcribed = load_leaderboard(REPO / "leaderboards" / "mteb-minilm.yaml")
    spec_data = yaml.safe_load((REPO / "leaderboards" / "mteb-minilm.yaml").read_text())
    spec_data["references"] = [{"name": "mteb", "mteb_results": str(shared_dir / "reference" / "mteb-results"),
                                "mteb_model": MINILM}]
    path = tmp_path / "from-files.yaml"
    path.write_text(yaml.safe_dump(spec_data))
    [read] = load_leaderboard(path).references
    [written] = transcribed.references
    assert read.values == {key: value for key, value in written.values.items() if key != "mean"}
    assert read.values_scale == 1.0 and read.source.column == "ndcg_at_10"
    assert "SciFact was scored on dataset revision 0228b52c" in read.source.note  # the files predate mteb 2's SciFact


def test_exported_results_come_back_as_a_reference_column(tmp_path: Path) -> None:
    """The round trip: mbench results -> mteb files -> a leaderboard column holding the same numbers."""
    for task in ("mteb.scifact", "mteb.nfcorpus"):
        _minilm_result(tmp_path / "results", task=task)
    assert _export(str(tmp_path / "results"), "--out", str(tmp_path / "mteb")) == 0
    [column] = load_leaderboard(_spec(tmp_path, {"mteb_results": str(tmp_path / "mteb")})).references
    assert column.values == {"mteb.scifact": 0.375, "mteb.nfcorpus": 0.375}
    assert column.source.table == f"{MINILM} @ sha256:{fingerprint_of(MINILM + 'revision')}"


def test_a_table_shows_the_mteb_column(tmp_path: Path, capsys) -> None:
    _minilm_result(tmp_path / "results", task="mteb.scifact")
    _minilm_result(tmp_path / "results", task="mteb.nfcorpus")
    assert _export(str(tmp_path / "results"), "--out", str(tmp_path / "mteb")) == 0
    capsys.readouterr()
    spec = _spec(tmp_path, {"mteb_results": str(tmp_path / "mteb"), "display": "MiniLM (mteb files)"},
                 runs=[{"name": "minilm", "model": MINILM}])
    assert main(["table", str(spec), "--results-dir", str(tmp_path / "results"), "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith(",mteb,minilm")
    assert [line.split(",")[0] + "," + ",".join(line.split(",")[-2:]) for line in lines[1:]] == [
        "mteb.scifact,0.375,0.375", "mteb.nfcorpus,0.375,0.375"]


def test_a_folder_of_several_models_needs_mteb_model(tmp_path: Path) -> None:
    for name in ("org__model-a", "org__model-b"):
        (tmp_path / "mteb" / name / "rev1").mkdir(parents=True)
        (tmp_path / "mteb" / name / "rev1" / "SciFact.json").write_text("{}")
    with pytest.raises(LeaderboardFileError, match=r"references.0.mteb_results: .*several models or revisions "
                       r"\(org/model-a@rev1, org/model-b@rev1\): name one with mteb_model"):
        load_leaderboard(_spec(tmp_path, {"mteb_results": str(tmp_path / "mteb")}))


def test_a_broken_mteb_file_names_itself(tmp_path: Path) -> None:
    (tmp_path / "org__model" / "rev1").mkdir(parents=True)
    (tmp_path / "org__model" / "rev1" / "SciFact.json").write_text("{not json")
    with pytest.raises(MbenchError, match=r"SciFact.json: not an mteb result file"):
        read_mteb_results(tmp_path)


@pytest.mark.parametrize(
    ("reference", "what"),
    [
        ({"mteb_results": "x", "values": {"mteb.scifact": 1.0}}, "takes no `values` or `values_scale`"),
        ({"mteb_results": "x", "values_scale": 1}, "takes no `values` or `values_scale`"),
        ({"values": {"mteb.scifact": 1.0}}, "needs `source`"),
        ({"source": {"paper": "p", "table": "t", "column": "c"}, "mteb_model": MINILM}, "`mteb_results`, which is not given"),
    ],
)
def test_reference_column_schema_errors(tmp_path: Path, reference: dict, what: str) -> None:
    with pytest.raises(LeaderboardFileError, match="references.0") as err:
        load_leaderboard(_spec(tmp_path, reference))
    assert what in str(err.value)


def test_a_missing_mteb_folder_names_the_key(tmp_path: Path) -> None:
    with pytest.raises(LeaderboardFileError, match=r"references.0.mteb_results: mteb results folder .*nowhere: no such directory"):
        load_leaderboard(_spec(tmp_path, {"mteb_results": str(tmp_path / "nowhere")}))


@pytest.mark.slow
def test_the_minilm_scifact_run_exports_to_the_score_mteb_publishes(minilm_scifact_run: Path, tmp_path: Path) -> None:
    [found] = minilm_scifact_run.glob("*/*/mteb.scifact/local/result.json")
    record = json.loads(found.read_text())
    assert _export(str(minilm_scifact_run), "--out", str(tmp_path / "results")) == 0
    loaded = mteb.ResultCache(cache_path=tmp_path).load_results(include_remote=False, tasks=["SciFact"])
    [model_result] = loaded.model_results
    [task_result] = model_result.task_results
    assert model_result.model_name == MINILM
    assert task_result.main_score == pytest.approx(record["metrics"]["ndcg@10"], abs=5e-7)
    assert round(task_result.main_score, 5) == 0.64508
    [scores] = task_result.scores["test"]
    for metric, value in record["metrics"].items():
        assert scores[mteb_metric_key(metric)] == pytest.approx(value, abs=5e-7), metric
