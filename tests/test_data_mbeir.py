"""The M-BEIR adapter on real M-BEIR rows (../shared/data/mbeir-samples) laid out as M-BEIR does."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from mbench.data.common import DataWarning
from mbench.data.loader import load_task
from mbench.errors import MbenchError
from mbench.tasks.spec import TaskSpec

T2I_POOL = "cand_pool/local/mbeir_mscoco_task0_test_cand_pool.jsonl"
I2T_POOL = "cand_pool/local/mbeir_mscoco_task3_test_cand_pool.jsonl"


def _spec(name: str, task: int, pool_file: str, **extra) -> TaskSpec:
    modalities = {0: ("text", "image"), 3: ("image", "text")}[task]
    return TaskSpec(
        name=name, adapter="mbeir", data_folder="M-BEIR", query_modality=modalities[0], cand_modality=modalities[1],
        metrics=["hit@1"], main_metric="hit@1", dataset_id=9, uniir_task_id=task,
        files={"queries": f"query/test/mbeir_mscoco_task{task}_test.jsonl",
               "qrels": f"qrels/test/mbeir_mscoco_task{task}_test_qrels.txt"},
        pools={"local": {"file": pool_file}, "global": {"union_of": "test.mscoco"}}, **extra,
    )


T2I = _spec("test.mscoco.t2i", 0, T2I_POOL)
I2T = _spec("test.mscoco.i2t", 3, I2T_POOL)


@pytest.fixture()
def mbeir_root(tmp_path: Path, shared_dir: Path) -> Path:
    """An M-BEIR layout built from the real sample rows: images in the t2i pool, captions in the i2t pool."""
    samples = shared_dir / "data" / "mbeir-samples"
    root = tmp_path / "M-BEIR"
    (root / "query" / "test").mkdir(parents=True)
    (root / "cand_pool" / "local").mkdir(parents=True)
    (root / "qrels" / "test").mkdir(parents=True)
    for task in (0, 3):
        shutil.copy(samples / f"query_mscoco_task{task}_test.sample.jsonl",
                    root / "query" / "test" / f"mbeir_mscoco_task{task}_test.jsonl")
    rows = (samples / "cand_pool.sample.jsonl").read_text().splitlines(keepends=True)
    (root / T2I_POOL).write_text("".join(r for r in rows if '"modality": "image"' in r))
    (root / I2T_POOL).write_text("".join(r for r in rows if '"modality": "text"' in r))
    qrels = (samples / "qrels_mscoco.derived.txt").read_text().splitlines(keepends=True)
    for task in (0, 3):
        (root / "qrels" / "test" / f"mbeir_mscoco_task{task}_test_qrels.txt").write_text(
            "".join(line for line in qrels if line.split()[4] == str(task)))
    for row in rows:  # the image folders the rows point into (files are validate's business)
        if '"img_path": "' in row:
            (root / row.split('"img_path": "')[1].split('"')[0]).parent.mkdir(parents=True, exist_ok=True)
    return root


def test_local_pool_loads_sample_rows_with_absolute_image_paths(mbeir_root: Path) -> None:
    data = load_task(T2I, data_dir=mbeir_root.parent)
    assert data.queries.ids == ["9:1", "9:2"]
    # 4 image rows in the sample pool: 9:1, 9:24464, 0:888364, 1:2
    assert data.pool.ids == ["9:1", "9:24464", "0:888364", "1:2"]
    assert data.pool.images[0] == str(mbeir_root.absolute() / "mbeir_images/mscoco_images/val2014/COCO_val2014_000000391895.jpg")
    assert data.queries.images == [None, None] and data.queries.texts[0].startswith("A man with a red helmet")
    # both captions are judged relevant to image 9:1 (pool index 0); qid "9:1" = did "9:1" is kept
    assert data.relevance.indptr.tolist() == [0, 1, 2]
    assert data.relevance.indices.tolist() == [0, 0]


def test_qrels_did_missing_from_local_pool_names_file_line_and_id(mbeir_root: Path) -> None:
    # The derived task-3 qrels judge caption 9:4, which the sample pool lacks (3rd line of the file).
    with pytest.raises(MbenchError, match=r"mbeir_mscoco_task3_test_qrels.txt:3: did '9:4' is not in the local pool"):
        load_task(I2T, data_dir=mbeir_root.parent)


def test_global_pool_records_the_local_pool_of_each_candidate(mbeir_root: Path) -> None:
    data = load_task(T2I, data_dir=mbeir_root.parent, pool="global", group_members=lambda group: [T2I, I2T])
    assert len(data.pool) == 4 + 10  # 4 image rows, 10 text rows
    assert data.pool.source_names == ["test.mscoco.t2i", "test.mscoco.i2t"]
    assert data.pool.source.tolist() == [0] * 4 + [1] * 10
    assert data.pool.ids[4] == "9:2" and data.pool.modalities[4] == "text"
    assert data.relevance.indices.tolist() == [0, 0]


def test_did_in_two_local_pools_is_an_error_naming_both(mbeir_root: Path) -> None:
    with (mbeir_root / I2T_POOL).open("a") as handle:
        handle.write('{"txt": null, "img_path": null, "modality": "text", "did": "9:24464"}\n')
    with pytest.raises(MbenchError, match=r"did '9:24464' is in two local pools: .*task0_test_cand_pool.jsonl and .*task3_test_cand_pool.jsonl"):
        load_task(T2I, data_dir=mbeir_root.parent, pool="global", group_members=lambda group: [T2I, I2T])


def test_oven_cross_dataset_dids_are_left_out_of_the_local_pool_and_counted_without_a_warning(mbeir_root: Path) -> None:
    oven = T2I.model_copy(update={"dataset_id": 5})
    with (mbeir_root / "qrels/test/mbeir_mscoco_task0_test_qrels.txt").open("a") as handle:
        handle.write("9:1 0 6:77 1 0\n9:2 0 6:78 1 0\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # M-BEIR's documented rule: expected, so no warning
        data = load_task(oven, data_dir=mbeir_root.parent)
    assert data.relevance.indices.tolist() == [0, 0]
    assert (data.qrels.outside_pool, data.qrels.outside_pool_prefix) == (2, "6:")
    assert data.qrels.files == (str(mbeir_root.absolute() / "qrels/test/mbeir_mscoco_task0_test_qrels.txt"),)


def test_the_global_pool_keeps_the_cross_dataset_judgments(mbeir_root: Path) -> None:
    oven = T2I.model_copy(update={"dataset_id": 5})
    with (mbeir_root / "qrels/test/mbeir_mscoco_task0_test_qrels.txt").open("a") as handle:
        handle.write("9:1 0 9:3 1 0\n")  # caption 9:3 is in the i2t pool: part of the global pool
    data = load_task(oven, data_dir=mbeir_root.parent, pool="global", group_members=lambda group: [oven, I2T])
    assert data.qrels.outside_pool == 0
    assert data.relevance.indices.tolist() == [0, 5, 0]  # 9:1 (image) and 9:3 (5th row: 4 images, then 9:2, 9:3)


def test_other_unknown_dids_of_oven_stay_errors(mbeir_root: Path) -> None:
    oven = T2I.model_copy(update={"dataset_id": 5})
    with (mbeir_root / "qrels/test/mbeir_mscoco_task0_test_qrels.txt").open("a") as handle:
        handle.write("9:1 0 5:404 1 0\n")
    with pytest.raises(MbenchError, match=r"_qrels.txt:3: did '5:404'"):
        load_task(oven, data_dir=mbeir_root.parent)


def test_queries_without_qrels_are_dropped(mbeir_root: Path) -> None:
    (mbeir_root / "qrels/test/mbeir_mscoco_task0_test_qrels.txt").write_text("9:2 0 9:1 1 0\n")
    data = load_task(T2I, data_dir=mbeir_root.parent)
    assert data.queries.ids == ["9:2"]
    assert data.relevance.n_queries == 1


def test_instruction_file_differences_are_warned(mbeir_root: Path, shared_dir: Path) -> None:
    (mbeir_root / "instructions").mkdir()
    shutil.copy(shared_dir / "data/mbeir-samples/query_instructions.RECONSTRUCTED.tsv",
                mbeir_root / "instructions/query_instructions.tsv")
    same = T2I.model_copy(update={"instructions": [
        "Find me an everyday image that matches the given caption.",
        "Identify the image showcasing the described everyday scene.",
        "I want to retrieve an image of this daily life description.",
        "Show me an image that best captures the following common scene description.",
    ]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        load_task(same, data_dir=mbeir_root.parent)
    changed = same.model_copy(update={"instructions": ["Find an image.", *same.instructions[1:]]})
    with pytest.warns(DataWarning, match=r"prompt_1: task YAML 'Find an image.' vs query_instructions.tsv"):
        load_task(changed, data_dir=mbeir_root.parent)


def test_missing_image_folder_is_a_clear_error(mbeir_root: Path) -> None:
    shutil.rmtree(mbeir_root / "mbeir_images")
    with pytest.raises(MbenchError, match=r"M-BEIR images missing: no folder .*mscoco_images/val2014"):
        load_task(T2I, data_dir=mbeir_root.parent)


def test_not_found_offline_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = T2I.model_copy(update={"hf_dataset": "TIGER-Lab/M-BEIR"})
    with pytest.raises(MbenchError) as err:
        load_task(spec, data_dir=tmp_path)
    message = str(err.value)
    assert f"looked for {(tmp_path / 'M-BEIR').absolute()}" in message
    assert "huggingface-cli download TIGER-Lab/M-BEIR" in message and "HF_HUB_OFFLINE is set" in message


def test_relevance_grades_come_from_the_qrels_file(mbeir_root: Path) -> None:
    (mbeir_root / "qrels/test/mbeir_mscoco_task0_test_qrels.txt").write_text("9:1 0 9:1 1 0\n9:1 0 1:2 0 0\n")
    data = load_task(T2I, data_dir=mbeir_root.parent)
    assert data.relevance.indices.tolist() == [0, 3]
    assert data.relevance.grades.tolist() == [1, 0]
    assert np.array_equal(data.relevance.num_relevant(), [1])
