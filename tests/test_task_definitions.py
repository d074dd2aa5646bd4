"""The packaged task YAMLs against the published reference tables and the real data in ../shared."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mbench.tasks.index import build_index, packaged_tasks_dir
from mbench.tasks.loader import is_base_file, load_file
from mbench.tasks.spec import TaskSpec

# mbeir_pools.csv `name` -> our task name and M-BEIR dataset id (ids from the csv's header comment).
MBEIR_NAMES = {
    "visualnews_task0": ("mbeir.visualnews.t2i", 0),
    "mscoco_task0": ("mbeir.mscoco.t2i", 9),
    "fashion200k_task0": ("mbeir.fashion200k.t2i", 1),
    "webqa_task1": ("mbeir.webqa.t2t", 2),
    "edis_task2": ("mbeir.edis.t2it", 3),
    "webqa_task2": ("mbeir.webqa.t2it", 2),
    "visualnews_task3": ("mbeir.visualnews.i2t", 0),
    "mscoco_task3": ("mbeir.mscoco.i2t", 9),
    "fashion200k_task3": ("mbeir.fashion200k.i2t", 1),
    "nights_task4": ("mbeir.nights.i2i", 4),
    "oven_task6": ("mbeir.oven.it2t", 5),
    "infoseek_task6": ("mbeir.infoseek.it2t", 6),
    "fashioniq_task7": ("mbeir.fashioniq.it2i", 7),
    "cirr_task7": ("mbeir.cirr.it2i", 8),
    "oven_task8": ("mbeir.oven.it2it", 5),
    "infoseek_task8": ("mbeir.infoseek.it2it", 6),
}
MTEB_PLAIN = {
    "mteb.arguana", "mteb.climatefever", "mteb.dbpedia", "mteb.fever", "mteb.fiqa2018", "mteb.hotpotqa",
    "mteb.msmarco", "mteb.nfcorpus", "mteb.nq", "mteb.quora", "mteb.scidocs", "mteb.scifact",
    "mteb.touche2020", "mteb.treccovid",
}  # fmt: skip
CQADUPSTACK = {
    f"mteb.cqadupstack.{sub}"
    for sub in (
        "android english gaming gis mathematica physics programmers stats tex unix webmasters wordpress".split()
    )
}


def read_reference_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(line for line in handle if not line.startswith("#")))


@pytest.fixture(scope="module")
def index():
    return build_index([packaged_tasks_dir()])


@pytest.fixture(scope="module")
def pools_table(shared_dir: Path) -> list[dict[str, str]]:
    return read_reference_csv(shared_dir / "reference/mm-embed-paper/mbeir_pools.csv")


def test_every_packaged_task_yaml_validates() -> None:
    files = [p for p in packaged_tasks_dir().rglob("*.yaml") if not is_base_file(p)]
    assert len(files) >= 44 + 6
    for path in files:
        load_file(path)  # raises with file and key on any problem


def test_packaged_tasks_are_the_16_mbeir_the_mteb_15_and_2_circo(index) -> None:
    names = {n for n in index.tasks if not n.startswith("mini.")}
    assert {n for n in names if n.startswith("mbeir.")} == {v[0] for v in MBEIR_NAMES.values()}
    assert {n for n in names if n.startswith("mteb.")} == MTEB_PLAIN | CQADUPSTACK
    assert {n for n in names if n.startswith("circo.")} == {"circo.val", "circo.test"}


def test_mbeir_tasks_match_mbeir_pools_csv_row_by_row(index, pools_table) -> None:
    assert len(pools_table) == 16
    for row in pools_table:
        name, dataset_id = MBEIR_NAMES[row["name"]]
        spec: TaskSpec = index.task(name)
        task_id = int(row["uniir_task_id"])
        dataset = row["name"].split("_task")[0]
        ks = [int(m.removeprefix("R@")) for m in row["metrics"].split(";")]
        assert (spec.query_modality, spec.cand_modality) == (row["query_modality"], row["cand_modality"]), name
        assert (spec.uniir_task_id, spec.paper_task, spec.dataset_id) == (task_id, int(row["paper_task"]), dataset_id)
        assert spec.n_queries == int(row["test_queries"]), name
        assert spec.pools["local"].file == f"cand_pool/local/{row['local_pool_file']}"
        assert spec.pools["local"].size == int(row["local_pool_size"]), name
        assert spec.metrics == [f"hit@{k}" for k in ks] + ["modality_acc@1"], name
        assert spec.files["queries"] == f"query/test/mbeir_{dataset}_task{task_id}_test.jsonl"
        assert spec.files["qrels"] == f"qrels/test/mbeir_{dataset}_task{task_id}_test_qrels.txt"
        assert (spec.adapter, spec.data_folder, spec.split, spec.hf_dataset) == (
            "mbeir", "M-BEIR", "test", "TIGER-Lab/M-BEIR"
        )  # fmt: skip


def test_mbeir_main_metric_is_the_one_table1_reports(index, shared_dir: Path) -> None:
    rows = read_reference_csv(shared_dir / "reference/mm-embed-paper/table1_main.csv")
    table1 = [r for r in rows if r["task"].isdigit()]
    assert len(table1) == 16
    by_paper_row = {(r["task"], r["dataset"].lower()): r["metric"] for r in table1}
    for csv_name, (name, _) in MBEIR_NAMES.items():
        spec = index.task(name)
        metric = by_paper_row[(str(spec.paper_task), csv_name.split("_task")[0])]
        assert spec.main_metric == "hit@" + metric.removeprefix("R@"), name
    assert index.task("mbeir.fashioniq.it2i").main_metric == "hit@10"
    assert index.task("mbeir.cirr.it2i").main_metric == "hit@5"


def test_mbeir_global_pool_is_the_union_of_the_16_local_pools(index, pools_table) -> None:
    total = sum(int(row["local_pool_size"]) for row in pools_table)
    assert total == 5_609_079
    for name, _ in MBEIR_NAMES.values():
        pool = index.task(name).pools["global"]
        assert (pool.union_of, pool.size) == ("mbeir", total)
    assert index.expand(["mbeir"]) == [MBEIR_NAMES[row["name"]][0] for row in pools_table]


def test_mbeir_instructions_are_the_reconstructed_tsv_rows(index, shared_dir: Path) -> None:
    lines = (shared_dir / "data/mbeir-samples/query_instructions.RECONSTRUCTED.tsv").read_text().splitlines()
    rows = {}
    for line in lines[1:]:
        fields = line.split("\t")
        rows[(int(fields[3]), fields[0], fields[1])] = [p for p in fields[4:8] if p]
    for name, dataset_id in MBEIR_NAMES.values():
        spec = index.task(name)
        assert spec.instructions == rows[(dataset_id, spec.query_modality, spec.cand_modality)], name
        assert "prompt_1" in spec.instructions_source and "transcribed" in spec.instructions_source
    assert index.task("mbeir.cirr.it2i").instructions[0] == (
        "Retrieve a day-to-day image that aligns with the modification instructions of the provided image."
    )
    assert len(index.task("mbeir.infoseek.it2it").instructions) == 3  # the transcription lacks prompt_4


def test_mbeir_prompts_are_copied_from_tables_12_and_13(index) -> None:
    cirr = index.task("mbeir.cirr.it2i").prompts
    assert cirr["llava_p"] == "[image] <qimg>\nModify this image with <qtxt>\nDesribe modified image in one word:"
    assert cirr["truefalse_rerank"] == (
        "<cimg>\nCaption:<qtxt>\nDoes the above caption describe the modification of the image? True or False"
    )
    nights = index.task("mbeir.nights.i2i").prompts
    assert nights["truefalse_rerank"] == "<qimg>\n<cimg>\nDoes the above two images have the same scene? True or False"
    # Table 13 prints one prompt for OVEN and InfoSeek of task 6.
    assert index.task("mbeir.oven.it2t").prompts == index.task("mbeir.infoseek.it2t").prompts
    for name, _ in MBEIR_NAMES.values():
        assert set(index.task(name).prompts) == {"llava_p", "truefalse_rerank"}, name


def test_mbeir_groups_split_paper_tasks_1_to_5_and_6_to_8(index) -> None:
    single = index.expand(["mbeir.single_modal"])
    multi = index.expand(["mbeir.multi_modal"])
    assert len(single) == 10 and len(multi) == 6
    assert {index.task(n).paper_task for n in single} == {1, 2, 3, 4, 5}
    assert {index.task(n).paper_task for n in multi} == {6, 7, 8}


def test_mteb_tasks_pin_hub_revisions_and_score_ndcg_at_10(index) -> None:
    for name in MTEB_PLAIN | CQADUPSTACK:
        spec = index.task(name)
        assert spec.adapter == "beir" and spec.main_metric == "ndcg@10" and spec.depth == 1000
        assert {"ndcg@10", "recall@100", "map_cut@10", "mrr@10", "recall@10"} <= set(spec.metrics)
        assert spec.hf_dataset.startswith("mteb/"), name
        assert len(spec.revision) == 40 and int(spec.revision, 16) >= 0, name
        assert len(spec.instructions) == 1 and spec.prompts["llava_p"].startswith("[text] <qtxt>\n"), name
    assert index.task("mteb.cqadupstack.gis").data_folder == "cqadupstack/gis"


def test_mteb_ignore_identical_ids_exactly_for_the_five_mteb_tasks(index) -> None:
    flagged = {n for n in MTEB_PLAIN | CQADUPSTACK if index.task(n).ignore_identical_ids}
    assert flagged == {"mteb.arguana", "mteb.fever", "mteb.fiqa2018", "mteb.quora", "mteb.msmarco"}


def test_msmarco_is_evaluated_on_dev(index) -> None:
    spec = index.task("mteb.msmarco")
    assert (spec.split, spec.files["qrels"]) == ("dev", "qrels/dev.tsv")


def test_mteb_instructions_are_table_11(index) -> None:
    assert index.task("mteb.scifact").instructions == [
        "Given a scientific claim, retrieve documents that support or refute the claim"
    ]
    assert index.task("mteb.quora").instructions == ["Find questions that have the same meaning as the input question"]
    assert index.task("mteb.cqadupstack.tex").prompts["llava_p"] == (
        "[text] <qtxt>\nDescribe the StackExchange question in one word:"
    )


def test_mteb_retrieval15_is_table9_with_cqadupstack_as_one_member(index, shared_dir: Path) -> None:
    header = read_reference_csv(shared_dir / "reference/mm-embed-paper/table9_mteb.csv")[0]
    table9_tasks = [c for c in header if c not in ("model", "Avg")]
    group = index.group("mteb.retrieval15")
    assert len(group.tasks) == len(table9_tasks) == 15
    assert "mteb.cqadupstack" in group.tasks
    assert set(index.expand(["mteb.retrieval15"])) == MTEB_PLAIN | CQADUPSTACK


def test_scifact_counts_match_the_shared_beir_copy(index, shared_dir: Path) -> None:
    spec = index.task("mteb.scifact")
    root = shared_dir / "data" / spec.data_folder
    qrels_lines = (root / spec.files["qrels"]).read_text().splitlines()[1:]
    qrels = [line.split("\t") for line in qrels_lines if line.strip()]
    corpus = (root / spec.pools["local"].file).read_text().splitlines()
    assert (root / spec.files["queries"]).is_file()
    assert (spec.n_queries, spec.n_qrels) == (300, 339)
    assert (len({q for q, _, _ in qrels}), len(qrels), len(corpus)) == (300, 339, spec.pools["local"].size)


def test_circo_val_counts_match_the_shared_annotations(index, shared_dir: Path) -> None:
    spec = index.task("circo.val")
    annotations = json.loads((shared_dir / "data/circo" / spec.files["annotations"]).read_text())
    assert (spec.n_queries, spec.n_qrels) == (len(annotations), sum(len(a["gt_img_ids"]) for a in annotations))
    assert (spec.n_queries, spec.n_qrels, spec.main_metric, spec.split) == (220, 916, "map@5", "val")
    assert spec.metrics == [f"map@{k}" for k in (5, 10, 25, 50)] + [f"circo_recall@{k}" for k in (5, 10, 25, 50)]
    assert spec.instructions == index.task("mbeir.cirr.it2i").instructions


def test_circo_test_is_an_unscored_submission_task(index, shared_dir: Path) -> None:
    spec = index.task("circo.test")
    annotations = json.loads((shared_dir / "data/circo" / spec.files["annotations"]).read_text())
    assert (spec.scored, spec.metrics, spec.main_metric) == (False, [], None)
    assert spec.n_queries == len(annotations) == 800
    assert spec.depth == 50
    assert index.expand(["circo"]) == ["circo.val", "circo.test"]
