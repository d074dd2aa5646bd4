"""Data adapters as plugins (mbench.data.registry): the built-ins, an entry-point adapter end to end,
and task YAMLs whose files or keys their adapter does not take."""

from __future__ import annotations

import importlib.metadata
import json
import textwrap
from pathlib import Path

import pytest

from mbench.cli import main
from mbench.data import registry
from mbench.errors import MbenchError
from mbench.tasks.index import clear_cache
from mbench.tasks.spec import TaskSpec

# A plugin's adapter: every line of items.jsonl is a query and a document of the same text; the
# query with id "qN" is judged relevant to the document "dN".
TOY_ADAPTER = textwrap.dedent('''
    import json
    from pathlib import Path

    import numpy as np

    from mbench.data.adapter import FileAdapter, FilesSchema
    from mbench.data.types import ItemTable, TaskData
    from mbench.errors import MbenchError
    from mbench.metrics import Relevance


    class ToyFiles(FilesSchema):
        items: str = "items.jsonl"


    class ToyAdapter(FileAdapter):
        name = "toy"
        files = ToyFiles

        def load(self, spec, request):
            if request.folder is None:
                raise MbenchError(request.not_found(spec))
            rows = [json.loads(line) for line in (request.folder / self.files_of(spec).items).read_text().splitlines()]
            texts = [row["text"] for row in rows]
            queries = ItemTable([f"q{i}" for i in range(len(rows))], texts, [None] * len(rows), ["text"] * len(rows))
            pool = ItemTable([f"d{i}" for i in range(len(rows))], texts, [None] * len(rows), ["text"] * len(rows))
            relevance = Relevance.from_lists([[i] for i in range(len(rows))])
            return TaskData(name=spec.name, queries=queries, pool=pool, relevance=relevance, source=str(request.folder))

        def count_file(self, spec, folder):
            return len((folder / self.files_of(spec).items).read_text().splitlines())

        def how_to_get(self, spec):
            return f"write ROOT/{spec.data_folder}/items.jsonl"
''')

TOY_TASK = textwrap.dedent("""\
    name: toy.words
    adapter: toy
    data_folder: toy
    query_modality: text
    cand_modality: text
    metrics: [hit@1]
    main_metric: hit@1
    n_queries: 3
    n_qrels: 3
    pools:
      local:
        file: items.jsonl
""")


def _spec(**fields) -> TaskSpec:
    base = dict(name="x.y", data_folder="x", query_modality="text", cand_modality="text", metrics=["hit@1"],
                main_metric="hit@1")
    return TaskSpec(**{**base, **fields})


def _entry_point_adapter(monkeypatch: pytest.MonkeyPatch, name: str, target: str) -> None:
    """Make `target` look like an installed `mbench.adapters` entry point called `name`."""
    real = importlib.metadata.entry_points

    def entry_points(**params):
        if params.get("group") == registry.ENTRY_POINT_GROUP:
            return [importlib.metadata.EntryPoint(name, target, registry.ENTRY_POINT_GROUP)]
        return real(**params)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    registry.clear_cache()


@pytest.fixture()
def toy_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The toy adapter installed as the entry point `toy`, a task using it, and its data; returns the root."""
    (tmp_path / "toy_adapter_pkg.py").write_text(TOY_ADAPTER)
    monkeypatch.syspath_prepend(str(tmp_path))
    _entry_point_adapter(monkeypatch, "toy", "toy_adapter_pkg:ToyAdapter")
    clear_cache()
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "toy.yaml").write_text(TOY_TASK)
    (tmp_path / "data" / "toy").mkdir(parents=True)
    lines = ["red kite", "blue tent", "green ring"]
    (tmp_path / "data" / "toy" / "items.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in lines))
    yield tmp_path
    registry.clear_cache()
    clear_cache()


def test_the_builtin_adapters_are_listed_without_importing_them() -> None:
    assert registry.adapter_names()[:3] == ["beir", "circo", "mbeir"]
    assert registry.get_adapter("beir").name == "beir"


def test_an_entry_point_adapter_is_listed(toy_plugin: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", "adapters", "--names"]) == 0
    assert capsys.readouterr().out.split() == ["beir", "circo", "mbeir", "toy"]


def test_an_entry_point_adapter_validates_and_runs_end_to_end(toy_plugin: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tasks, data = str(toy_plugin / "tasks"), str(toy_plugin / "data")
    assert main(["validate", "toy.words", "--tasks-dir", tasks, "--data-dir", data]) == 0
    assert "ok   toy.words [local]: 3 queries, 3 candidates, 3 judgments" in capsys.readouterr().out
    assert main(["run", "--model", "hash-embed", "--tasks", "toy.words", "--tasks-dir", tasks, "--data-dir", data,
                 "--results-dir", str(toy_plugin / "results"), "--cache-dir", str(toy_plugin / "cache"),
                 "--device", "cpu", "--no-progress"]) == 0
    [result] = (toy_plugin / "results").glob("hash-embed/*/toy.words/local/result.json")
    # Each query's text is its own document's text, so the hashing embedder ranks that document first.
    assert json.loads(result.read_text())["metrics"] == {"hit@1": 1.0}


def test_the_adapter_checks_the_counts_of_its_task(toy_plugin: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = toy_plugin / "tasks" / "toy.yaml"
    task.write_text(task.read_text().replace("n_qrels: 3", "n_qrels: 4"))
    code = main(["validate", "toy.words", "--tasks-dir", str(toy_plugin / "tasks"), "--data-dir", str(toy_plugin / "data")])
    assert code == 2
    assert "n_qrels: the YAML says 4, the qrels have 3 judgments" in capsys.readouterr().out


def test_missing_data_ends_with_the_adapters_instructions(toy_plugin: Path) -> None:
    from mbench.data.loader import load_task
    from mbench.tasks.index import load_task_spec

    spec = load_task_spec("toy.words", [toy_plugin / "tasks"])
    with pytest.raises(MbenchError, match=r"data not found: .* To get it: write ROOT/toy/items.jsonl\."):
        load_task(spec, data_dir=toy_plugin / "elsewhere")


def test_an_unknown_adapter_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown adapter 'parquet'; known adapters: beir, circo, mbeir"):
        _spec(adapter="parquet")


def test_a_files_key_the_adapter_does_not_take_is_refused_with_its_keys() -> None:
    with pytest.raises(ValueError, match=r"files\n.*colour: unknown key \(the beir adapter takes: corpus, queries, qrels\)"):
        _spec(adapter="beir", files={"colour": "red.tsv"})


def test_an_adapter_key_of_another_adapter_is_refused() -> None:
    with pytest.raises(ValueError, match=r"dataset_id: the beir adapter does not read it"):
        _spec(adapter="beir", dataset_id=9)


def test_an_entry_point_cannot_take_a_builtin_name(monkeypatch: pytest.MonkeyPatch) -> None:
    _entry_point_adapter(monkeypatch, "beir", "somewhere:Other")
    try:
        with pytest.raises(MbenchError, match=r"entry point 'beir' .* is shadowed by the built-in adapter"):
            registry.adapter_names()
    finally:
        registry.clear_cache()
