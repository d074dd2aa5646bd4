"""A data folder with one undecodable image: `mbench run` names it and stops, or with
`--skip-bad-items` leaves the item out and lists it in result.json.

The image 000003.jpg of the mini M-BEIR folder is candidate 9:3 of MSCOCO text->image and the
query image of 9:27 in MSCOCO image->text; here it is emptied (zero bytes).
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from mbench.cli import main
from mbench.data.mini import ensure_mini

TASK = """\
name: {name}
adapter: mbeir
data_folder: mbeir
query_modality: {query}
cand_modality: {cand}
files:
  queries: query/test/mbeir_mscoco_task{k}_test.jsonl
  qrels: qrels/test/mbeir_mscoco_task{k}_test_qrels.txt
pools:
  local:
    file: cand_pool/local/mbeir_mscoco_task{k}_test_cand_pool.jsonl
metrics: [hit@1, hit@5]
main_metric: hit@5
"""


@pytest.fixture()
def bad_image_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The mini M-BEIR folder with 000003.jpg emptied, and task YAMLs for its MSCOCO t2i and i2t tasks."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "cache"
    shutil.copytree(ensure_mini(cache) / "mbeir", tmp_path / "data" / "mbeir")
    (tmp_path / "data/mbeir/mbeir_images/mscoco_images/000003.jpg").write_bytes(b"")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "t2i.yaml").write_text(TASK.format(name="case.t2i", query="text", cand="image", k=0))
    (tasks / "i2t.yaml").write_text(TASK.format(name="case.i2t", query="image", cand="text", k=3))
    return {"cache": cache, "data": tmp_path / "data", "tasks": tasks, "results": tmp_path / "results"}


def run(paths: dict[str, Path], *extra: str) -> int:
    return main(["run", "--model", "hash-embed", "--tasks", "case.t2i,case.i2t", "--tasks-dir", str(paths["tasks"]),
                 "--data-dir", str(paths["data"]), "--results-dir", str(paths["results"]), "--cache-dir",
                 str(paths["cache"]), "--no-progress", "--device", "cpu", *extra])


def record(paths: dict[str, Path], task: str) -> dict:
    [path] = paths["results"].glob(f"hash-embed/*/{task}/local/result.json")
    return json.loads(path.read_text())


def ranked_ids(paths: dict[str, Path], task: str) -> tuple[set[str], set[str]]:
    [path] = paths["results"].glob(f"hash-embed/*/{task}/local/run.trec.gz")
    rows = [line.split() for line in gzip.open(path, "rt").read().splitlines()]
    return {row[0] for row in rows}, {row[2] for row in rows}


def test_a_bad_image_stops_the_run_naming_the_item_and_the_file(bad_image_data, capsys):
    assert run(bad_image_data) == 2
    err = capsys.readouterr().err
    assert "'9:3'" in err and "000003.jpg" in err and "Traceback" not in err


def test_a_bad_image_decoded_in_a_worker_process_gives_the_same_message(bad_image_data, capsys):
    assert run(bad_image_data, "--num-workers", "1") == 2
    err = capsys.readouterr().err
    assert "'9:3'" in err and "000003.jpg" in err and "Traceback" not in err


def test_skip_bad_items_leaves_out_the_candidate_and_lists_it(bad_image_data):
    assert run(bad_image_data, "--skip-bad-items") == 0
    result = record(bad_image_data, "case.t2i")
    assert [item["id"] for item in result["skipped_items"]["candidates"]] == ["9:3"]
    assert "000003.jpg" in result["skipped_items"]["candidates"][0]["reason"]
    assert result["skipped_items"]["queries"] == []
    queries, documents = ranked_ids(bad_image_data, "case.t2i")
    assert "9:3" not in documents and len(queries) == result["n_queries"] == 24
    # Query 9:3's only relevant candidate was left out: it counts, and is missed at every cutoff.
    import pandas as pd

    [table] = bad_image_data["results"].glob("hash-embed/*/case.t2i/local/per_query.parquet")
    per_query = pd.read_parquet(table).set_index("qid")
    assert per_query.loc["9:3", "hit@5"] == 0.0 and per_query.loc["9:3", "hit@1"] == 0.0


def test_skip_bad_items_leaves_out_the_query_and_lists_it(bad_image_data):
    assert run(bad_image_data, "--skip-bad-items") == 0
    result = record(bad_image_data, "case.i2t")
    assert [item["id"] for item in result["skipped_items"]["queries"]] == ["9:27"]
    assert result["skipped_items"]["candidates"] == []
    queries, _ = ranked_ids(bad_image_data, "case.i2t")
    assert "9:27" not in queries and len(queries) == result["n_queries"] == 19


def test_a_result_that_skipped_items_is_not_reused_without_the_option(bad_image_data, capsys):
    assert run(bad_image_data, "--skip-bad-items") == 0
    assert run(bad_image_data) == 2
    assert "000003.jpg" in capsys.readouterr().err
