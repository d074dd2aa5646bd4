"""Leaderboard specs: strict validation with errors naming file and key, and every transcribed number
checked against the published tables in ../shared/reference."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from mbench.reporting.leaderboard import (
    LeaderboardFileError,
    list_packaged_leaderboards,
    load_leaderboard,
    parse_leaderboard,
    resolve_leaderboard_path,
)
from mbench.tasks.index import get_index

REPO = Path(__file__).resolve().parents[1]
LEADERBOARDS = REPO / "leaderboards"
SHIPPED = {
    "mm-embed-table1",
    "mm-embed-table2",
    "mm-embed-table3",
    "mm-embed-table4",
    "mm-embed-table9",
    "mteb-minilm",
}


def _paper_csv(shared: Path, name: str) -> list[dict[str, str]]:
    text = (shared / "reference" / "mm-embed-paper" / name).read_text()
    return list(csv.DictReader(io.StringIO("".join(line for line in text.splitlines(True) if not line.startswith("#")))))


def _mbeir_task(paper_task: str, dataset: str) -> str:
    """The M-BEIR task of the paper's (task number, dataset) pair, found through the task index."""
    index = get_index()
    matches = [
        name
        for name, loaded in index.tasks.items()
        if name.startswith("mbeir.")
        and name.split(".")[1] == dataset.lower()
        and loaded.spec.paper_task == int(paper_task)  # type: ignore[union-attr]
    ]
    assert len(matches) == 1, (paper_task, dataset, matches)
    return matches[0]


PAPER_METRICS = {"R@1": "hit@1", "R@5": "hit@5", "R@10": "hit@10", "M.A.@1": "modality_acc@1"}


def test_every_shipped_spec_loads_and_is_listed() -> None:
    assert {p.stem for p in list_packaged_leaderboards()} == SHIPPED
    for name in SHIPPED:
        spec = load_leaderboard(resolve_leaderboard_path(name))
        assert spec.name == name
        assert spec.references, f"{name} has no reference column"


def test_table1_numbers_and_structure_match_the_paper(shared_dir: Path) -> None:
    spec = load_leaderboard(LEADERBOARDS / "mm-embed-table1.yaml")
    rows = _paper_csv(shared_dir, "table1_main.csv")
    paper_columns = [c for c in rows[0] if c not in ("task", "dataset", "metric")]
    assert [r.name for r in spec.references] == paper_columns
    averages = {"All": "avg-all", "Single-modal query (tasks 1-5)": "avg-single", "Multi-modal query (tasks 6-8)": "avg-multi"}
    by_key = {row.key: row for row in spec.rows}
    checked = 0
    for line in rows:
        if line["task"].isdigit():
            key = _mbeir_task(line["task"], line["dataset"])
            assert by_key[key].metric == PAPER_METRICS[line["metric"]], key
            assert spec.row_pool(by_key[key]) == "global"
        elif line["task"] == "avg":
            key = averages[line["dataset"]]
        else:
            key = "mteb"
            assert by_key[key].task == "mteb.retrieval15" and by_key[key].metric == "ndcg@10"
        for column in paper_columns:
            expected = float(line[column]) if line[column] else None
            assert spec.reference(column).values.get(key) == expected, (key, column)
            checked += 1
    assert checked == 20 * 8
    # The three averages cover tasks 1-5, 6-8 and all 16, by the tasks' paper numbers.
    index = get_index()
    rows_of = {a.id: a.rows for a in spec.averages}
    paper_task = {k: index.task(k).paper_task for k in by_key if k.startswith("mbeir.")}
    assert sorted(rows_of["avg-single"]) == sorted(k for k, t in paper_task.items() if t <= 5)
    assert sorted(rows_of["avg-multi"]) == sorted(k for k, t in paper_task.items() if t >= 6)
    assert sorted(rows_of["avg-all"]) == sorted(paper_task)
    assert len(paper_task) == 16


def test_table2_numbers_match_the_paper(shared_dir: Path) -> None:
    spec = load_leaderboard(LEADERBOARDS / "mm-embed-table2.yaml")
    rows = _paper_csv(shared_dir, "table2_modality.csv")
    columns = [c for c in rows[0] if c not in ("task", "metric")]
    assert [r.name for r in spec.references] == columns
    direction = {"1": "mbeir.mscoco.t2i", "4": "mbeir.mscoco.i2t"}
    for line in rows:
        [row] = [r for r in spec.rows if r.task == direction[line["task"]] and r.metric == PAPER_METRICS[line["metric"]]]
        for column in columns:
            assert spec.reference(column).values[row.key] == float(line[column]), (row.key, column)


def test_table3_numbers_match_the_paper(shared_dir: Path) -> None:
    spec = load_leaderboard(LEADERBOARDS / "mm-embed-table3.yaml")
    rows = _paper_csv(shared_dir, "table3_rerank_mbeir.csv")
    columns = [c for c in rows[0] if c not in ("task", "dataset", "metric")]
    assert [r.name for r in spec.references] == columns
    assert len(spec.rows) == len(rows) == 6
    for line in rows:
        key = _mbeir_task(line["task"], line["dataset"])
        [row] = [r for r in spec.rows if r.key == key]
        assert row.metric == PAPER_METRICS[line["metric"]]
        for column in columns:
            assert spec.reference(column).values[key] == float(line[column]), (key, column)
    kinds = {run.name: (run.kind, run.top_k) for run in spec.runs}
    assert kinds == {"mm-embed": ("retrieval", None), "mm-embed-rerank": ("rerank", 10)}


def test_table4_numbers_match_the_paper(shared_dir: Path) -> None:
    spec = load_leaderboard(LEADERBOARDS / "mm-embed-table4.yaml")
    rows = _paper_csv(shared_dir, "table4_circo.csv")
    assert [r.name for r in spec.references] == [line["model"] for line in rows]
    for line in rows:
        values = spec.reference(line["model"]).values
        assert values == {"circo.retrieval": float(line["ret_mAP@5"]), "circo.rerank": float(line["rerank_mAP@5"])}
    assert [(r.task, r.metric, r.kind, r.top_k) for r in spec.rows] == [
        ("circo.val", "map@5", "retrieval", None),
        ("circo.val", "map@5", "rerank", 10),
    ]


def test_table9_numbers_match_the_paper(shared_dir: Path) -> None:
    spec = load_leaderboard(LEADERBOARDS / "mm-embed-table9.yaml")
    rows = _paper_csv(shared_dir, "table9_mteb.csv")
    abbreviations = {  # the CSV's header comment spells these out
        "AA": "mteb.arguana", "CF": "mteb.climatefever", "CQ": "mteb.cqadupstack", "DB": "mteb.dbpedia",
        "Fe": "mteb.fever", "FQ": "mteb.fiqa2018", "HQ": "mteb.hotpotqa", "MS": "mteb.msmarco",
        "NF": "mteb.nfcorpus", "NQ": "mteb.nq", "Qu": "mteb.quora", "SD": "mteb.scidocs", "SF": "mteb.scifact",
        "T2": "mteb.touche2020", "TC": "mteb.treccovid", "Avg": "avg",
    }  # fmt: skip
    assert [r.task for r in spec.rows] == [v for k, v in abbreviations.items() if k != "Avg"]
    assert {r.metric for r in spec.rows} == {"ndcg@10"}
    assert [r.name for r in spec.references] == [line["model"] for line in rows]
    for line in rows:
        values = spec.reference(line["model"]).values
        assert values == {key: float(line[abbr]) for abbr, key in abbreviations.items()}, line["model"]


def test_mteb_minilm_numbers_match_the_published_results(shared_dir: Path) -> None:
    spec = load_leaderboard(LEADERBOARDS / "mteb-minilm.yaml")
    reference = spec.reference("mteb")
    assert reference.values_scale == 1
    folder = shared_dir / "reference" / "mteb-results" / "all-MiniLM-L6-v2"
    files = sorted(folder.glob("*.json"))
    assert len(files) == len(spec.rows) == 5
    for path in files:
        published = json.loads(path.read_text())
        [score] = [s for s in published["scores"]["test"] if s["hf_subset"] == "default"]
        key = f"mteb.{published['task_name'].lower()}"
        assert reference.values[key] == score["main_score"] == score["ndcg_at_10"], key
        assert get_index().task(key).main_metric == "ndcg@10"
    assert [run.reference for run in spec.runs] == ["mteb"]


# ------------------------------------------------------------------ strict errors

MINIMAL = {
    "name": "t",
    "pool": "local",
    "rows": [{"task": "mteb.scifact", "metric": "ndcg@10"}],
    "runs": [{"name": "a", "model": "minilm"}],
}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _with(**changes: object) -> dict:
    data = json.loads(json.dumps(MINIMAL))
    data.update(changes)
    return data


def test_minimal_spec_loads(tmp_path: Path) -> None:
    spec = load_leaderboard(_write(tmp_path, MINIMAL))
    assert spec.format.scale == 100 and spec.format.decimals is None  # None: mbench's display rule
    assert spec.rows[0].key == "mteb.scifact"


@pytest.mark.parametrize(
    ("data", "where", "what"),
    [
        (_with(colour="red"), "colour", "unknown key"),
        (_with(rows=[{"task": "mteb.scifact", "metric": "ndcg@10", "metrik": "x"}]), "rows.0.metrik", "unknown key"),
        (_with(format={"scale": 100, "digits": 2}), "format.digits", "unknown key"),
        (_with(rows=[{"task": "mteb.scifact", "metric": "ndgc@10"}]), "rows.0.metric", "unknown metric"),
        (_with(runs=[{"name": "a"}]), "runs.0", "at least one of model, fingerprint or results_dir"),
        (_with(runs=[{"name": "a", "model": "m", "reference": "paper"}]), "reference", "not a reference column"),
        (
            _with(averages=[{"id": "avg", "rows": ["mteb.nfcorpus"]}]),
            "averages.0.rows",
            "unknown row id",
        ),
        (
            _with(rows=[{"task": "mteb.scifact", "metric": "ndcg@10"}, {"task": "mteb.scifact", "metric": "recall@10"}]),
            "rows",
            "duplicate row id",
        ),
        (
            _with(
                references=[
                    {"name": "p", "source": {"paper": "x", "table": "1", "column": "c"}, "values": {"mteb.nfcorpus": 1.0}}
                ]
            ),
            "references.0.values",
            "unknown row or average id",
        ),
        (
            _with(references=[{"name": "p", "source": {"paper": "x", "table": "1"}, "values": {}}]),
            "references.0.source.column",
            "Field required",
        ),
        (
            _with(
                rows=[{"task": "mteb.scifact", "metric": "ndcg@10", "kind": "rerank"}],
                runs=[{"name": "a", "model": "m", "kind": "retrieval"}],
            ),
            "runs.0.kind",
            "contradicts rows.0.kind",
        ),
        (_with(pool=None), "rows.0.pool", "no pool"),
    ],
)
def test_schema_errors_name_file_and_key(tmp_path: Path, data: dict, where: str, what: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(LeaderboardFileError) as err:
        load_leaderboard(path)
    message = str(err.value)
    assert str(path) in message and where in message and what in message, message


@pytest.mark.parametrize(
    ("rows", "where", "what"),
    [
        ([{"task": "mteb.scifactt", "metric": "ndcg@10"}], "rows.0.task", "did you mean mteb.scifact"),
        ([{"task": "mteb.scifact", "metric": "hit@5"}], "rows.0.metric", "does not compute 'hit@5'"),
        ([{"task": "mteb.scifact", "metric": "ndcg@10", "pool": "global"}], "rows.0.pool", "no pool 'global'"),
        ([{"task": "mteb.cqadupstack", "metric": "hit@5"}], "rows.0.metric", "mteb.cqadupstack.android"),
    ],
)
def test_rows_are_checked_against_the_task_index(tmp_path: Path, rows: list, where: str, what: str) -> None:
    path = _write(tmp_path, _with(rows=rows))
    with pytest.raises(LeaderboardFileError) as err:
        load_leaderboard(path)
    assert str(path) in str(err.value) and where in str(err.value) and what in str(err.value), str(err.value)


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: t\nrows:\n  - task: [unclosed\n")
    with pytest.raises(LeaderboardFileError, match=r"bad\.yaml:\d+: malformed YAML"):
        load_leaderboard(path)


def test_yaml_is_read_safely(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['true']\nrows: []\n")
    with pytest.raises(LeaderboardFileError, match="malformed YAML"):
        load_leaderboard(path)


def test_not_a_mapping() -> None:
    with pytest.raises(LeaderboardFileError, match="x.yaml: expected a mapping"):
        parse_leaderboard(["a"], "x.yaml")


def test_unknown_spec_name_lists_the_packaged_ones() -> None:
    with pytest.raises(LeaderboardFileError, match="mm-embed-table1"):
        resolve_leaderboard_path("mm-embed-table99")


def test_a_row_naming_an_unscored_task_itself_is_refused() -> None:
    from mbench.reporting.leaderboard import check_tasks, parse_leaderboard

    spec = parse_leaderboard({"name": "t", "pool": "local", "rows": [{"task": "circo.test", "metric": "map@5"}],
                              "runs": [{"name": "m", "model": "m"}]}, "spec.yaml")
    with pytest.raises(LeaderboardFileError, match=r"spec.yaml: rows.0.task: 'circo.test' is not scored locally"):
        check_tasks(spec, "spec.yaml")
