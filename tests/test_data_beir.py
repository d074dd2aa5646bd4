"""The BEIR adapter on SciFact (../shared/data/scifact) and on small hand-made folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mbench.data.loader import load_task
from mbench.errors import MbenchError
from mbench.tasks.spec import TaskSpec


def _spec(name: str, folder: str, **extra) -> TaskSpec:
    return TaskSpec(
        name=name, adapter="beir", data_folder=folder, query_modality="text", cand_modality="text",
        metrics=["ndcg@10"], main_metric="ndcg@10", files={"queries": "queries.jsonl", "qrels": "qrels/test.tsv"},
        pools={"local": {"file": "corpus.jsonl"}}, **extra,
    )


def _write_beir(root: Path, docs: list[dict], queries: list[dict], qrels: list[str]) -> Path:
    root.mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (root / "qrels").mkdir()
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(line + "\n" for line in qrels))
    return root


def test_scifact_counts(shared_dir: Path) -> None:
    data = load_task(_spec("test.scifact", "scifact"), data_dir=shared_dir / "data")
    assert len(data.pool) == 5183
    assert len(data.queries) == 300  # of 1,109 queries, only the 300 judged test queries stay
    assert data.relevance.indices.size == 339
    assert data.excluded is None and set(data.pool.modalities) == {"text"}


def test_scifact_document_text_is_title_space_text(shared_dir: Path) -> None:
    data = load_task(_spec("test.scifact", "scifact"), data_dir=shared_dir / "data")
    doc = data.pool.ids.index("4983")
    assert data.pool.texts[doc].startswith(
        "Microstructural development of human newborn cerebral white matter assessed in vivo by diffusion "
        "tensor magnetic resonance imaging. Alterations of the architecture")


def test_data_root_from_environment(shared_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MBENCH_DATA", str(shared_dir / "data"))
    assert len(load_task(_spec("test.scifact", "scifact"), data_dir=None).queries) == 300


def test_identical_ids_are_excluded_per_query(tmp_path: Path) -> None:
    docs = [{"_id": "a", "title": "", "text": "alpha"}, {"_id": "b", "title": "T", "text": "beta"}]
    queries = [{"_id": "b", "text": "query b"}, {"_id": "z", "text": "query z"}, {"_id": "y", "text": "unjudged"}]
    _write_beir(tmp_path / "toy", docs, queries, ["b\ta\t1", "z\tb\t2"])
    data = load_task(_spec("test.toy", "toy", ignore_identical_ids=True), data_dir=tmp_path)
    assert data.queries.ids == ["b", "z"]
    assert data.excluded.tolist() == [1, -1]  # query "b" excludes doc "b" (pool index 1)
    assert data.pool.texts == ["alpha", "T beta"]
    assert data.relevance.grades.tolist() == [1, 2]


def test_identical_ids_kept_without_the_flag(tmp_path: Path) -> None:
    _write_beir(tmp_path / "toy", [{"_id": "a", "title": "", "text": "x"}], [{"_id": "a", "text": "q"}], ["a\ta\t1"])
    assert load_task(_spec("test.toy", "toy"), data_dir=tmp_path).excluded is None


def test_every_unknown_id_is_listed_with_its_line(tmp_path: Path) -> None:
    _write_beir(tmp_path / "toy", [{"_id": "a", "title": "", "text": "x"}], [{"_id": "q1", "text": "q"}],
                ["q1\ta\t1", "q1\tmissing\t1", "q9\ta\t1"])
    with pytest.raises(MbenchError) as err:
        load_task(_spec("test.toy", "toy"), data_dir=tmp_path)
    message = str(err.value)
    assert "qrels/test.tsv:3: corpus id 'missing' is not in" in message
    assert "qrels/test.tsv:4: query id 'q9' is not in" in message


def test_numeric_json_ids_read_as_strings(tmp_path: Path) -> None:
    root = _write_beir(tmp_path / "toy", [], [], ["7\t12\t1"])
    (root / "corpus.jsonl").write_text('{"_id": 12, "title": "t", "text": "x"}\n')
    (root / "queries.jsonl").write_text('{"_id": 7, "text": "q"}\n')
    data = load_task(_spec("test.toy", "toy"), data_dir=tmp_path)
    assert data.pool.ids == ["12"] and data.queries.ids == ["7"]


def test_missing_folder_offline_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = _spec("test.nfcorpus", "nfcorpus", hf_dataset="mteb/nfcorpus", revision="ec0fa4fe99da2ff19ca1214b7966684033a58814")
    with pytest.raises(MbenchError) as err:
        load_task(spec, data_dir=tmp_path)
    message = str(err.value)
    assert f"looked for {(tmp_path / 'nfcorpus').absolute()} (--data-dir): not found" in message
    assert "mteb/nfcorpus@ec0fa4fe99da2ff19ca1214b7966684033a58814" in message and "HF_HUB_OFFLINE is set" in message


def test_no_data_root_says_how_to_set_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MBENCH_DATA", raising=False)
    with pytest.raises(MbenchError, match=r"no data root is set \(pass --data-dir ROOT or set MBENCH_DATA\)"):
        load_task(_spec("test.toy", "toy"), data_dir=None)


_HF_LAYOUT_CARD = """---
configs:
- config_name: corpus
  data_files:
  - split: corpus
    path: corpus/corpus-00000-of-00001.parquet
- config_name: queries
  data_files:
  - split: queries
    path: queries/queries-00000-of-00001.parquet
- config_name: default
  data_files:
  - split: test
    path: data/test-00000-of-00001.parquet
---
"""


def test_hf_dataset_tasks_load_through_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An `hf_dataset` task is read by `datasets.load_dataset`: here from a local copy in the layout of the
    mteb/<name> hub datasets (parquet files per config, written with `datasets`), so no hub is involved."""
    datasets = pytest.importorskip("datasets", reason="hf_dataset tasks load through datasets (pip install 'mbench[hub]')")
    repo = tmp_path / "mteb-toy"
    tables = {
        "corpus/corpus": {"_id": ["d1", "d2", "d3"], "title": ["Mill", "", "Bridge"],
                          "text": ["The mill burned in 1891.", "A quiet town.", "The bridge spans the Senn."]},
        "queries/queries": {"_id": ["q1", "q2", "q3"], "text": ["When did the mill burn?", "What spans the Senn?", "unjudged"]},
        "data/test": {"query-id": ["q1", "q2", "q2"], "corpus-id": ["d1", "d3", "d2"], "score": [1, 2, 0]},
    }
    for stem, columns in tables.items():
        (repo / stem).parent.mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict(columns).to_parquet(str(repo / f"{stem}-00000-of-00001.parquet"))
    (repo / "README.md").write_text(_HF_LAYOUT_CARD)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")

    spec = _spec("test.hub", "not-on-disk", hf_dataset=str(repo), revision="main")
    data = load_task(spec, data_dir=tmp_path / "empty-root")
    assert data.source == f"hf://{repo}@main"
    assert data.pool.ids == ["d1", "d2", "d3"]
    assert data.pool.texts == ["Mill The mill burned in 1891.", "A quiet town.", "Bridge The bridge spans the Senn."]
    assert data.queries.ids == ["q1", "q2"]  # q3 has no judgment
    assert data.relevance.grades.tolist() == [1, 0, 2]  # q2's judgments sorted by pool index: d2 (0), d3 (2)
