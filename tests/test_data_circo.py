"""The CIRCO adapter on the real annotations (../shared/data/circo) and on a small image folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mbench.data.circo import count_relevant
from mbench.data.loader import load_task
from mbench.errors import MbenchError
from mbench.formats.circo import read_circo_annotations
from mbench.tasks.spec import TaskSpec


def _spec(split: str = "val", **extra) -> TaskSpec:
    scored = {"metrics": ["map@5"], "main_metric": "map@5"} if split == "val" else {"scored": False}
    return TaskSpec(
        name=f"test.circo.{split}", adapter="circo", data_folder="circo", split=split,
        query_modality="image,text", cand_modality="image", **scored, **extra,
    )


def test_val_annotations_count(shared_dir: Path) -> None:
    assert count_relevant(_spec(), shared_dir / "data" / "circo") == (220, 916)


def test_test_annotations_have_no_ground_truth(shared_dir: Path) -> None:
    queries = read_circo_annotations(shared_dir / "data/circo/annotations/test.json")
    assert len(queries) == 800
    assert all(q.target_img_id is None and q.gt_img_ids == () for q in queries)


def test_full_load_without_images_names_the_missing_folder(shared_dir: Path) -> None:
    with pytest.raises(MbenchError, match=r"CIRCO images missing: no folder .*circo/unlabeled2017.*unlabeled2017.zip"):
        load_task(_spec(), data_dir=shared_dir / "data")


def _circo_folder(root: Path, ids: list[int], annotations: list[dict], split: str = "val") -> Path:
    folder = root / "circo"
    (folder / "unlabeled2017").mkdir(parents=True)
    for image_id in ids:
        Image.new("RGB", (4, 4), (image_id % 256, 0, 0)).save(folder / "unlabeled2017" / f"{image_id:012d}.jpg")
    (folder / "annotations").mkdir()
    (folder / "annotations" / f"{split}.json").write_text(json.dumps(annotations))
    return folder


def test_relevance_and_target_are_pool_indices(tmp_path: Path) -> None:
    annotations = [
        {"id": 0, "reference_img_id": 5, "relative_caption": "is red", "target_img_id": 30, "gt_img_ids": [30, 7]},
        {"id": 1, "reference_img_id": 7, "relative_caption": "is blue", "target_img_id": 5, "gt_img_ids": [5]},
    ]
    _circo_folder(tmp_path, [30, 5, 7, 1000], annotations)  # no image info file: the JPEGs are the corpus
    data = load_task(_spec(), data_dir=tmp_path)
    assert data.pool.ids == ["5", "7", "30", "1000"]
    assert data.queries.texts == ["is red", "is blue"]
    assert data.queries.images[0].endswith("unlabeled2017/000000000005.jpg")
    assert data.relevance.indices.tolist() == [1, 2, 0]  # query 0: ids 7 and 30; query 1: id 5
    assert data.targets.tolist() == [2, 0]


def test_image_info_file_lists_the_corpus(tmp_path: Path) -> None:
    annotations = [{"id": 0, "reference_img_id": 5, "relative_caption": "c", "target_img_id": 7, "gt_img_ids": [7]}]
    folder = _circo_folder(tmp_path, [5, 7, 9], annotations)
    (folder / "image_info_unlabeled2017.json").write_text(json.dumps({"images": [{"id": 7}, {"id": 5}]}))
    assert load_task(_spec(), data_dir=tmp_path).pool.ids == ["5", "7"]


def test_gt_id_outside_the_corpus_is_named(tmp_path: Path) -> None:
    annotations = [{"id": 3, "reference_img_id": 5, "relative_caption": "c", "target_img_id": 7, "gt_img_ids": [7, 8]}]
    _circo_folder(tmp_path, [5, 7], annotations)
    with pytest.raises(MbenchError, match=r"val.json: query 3: gt image 8 is not in the corpus"):
        load_task(_spec(), data_dir=tmp_path)


def test_test_split_has_no_relevance(tmp_path: Path) -> None:
    _circo_folder(tmp_path, [5, 6], [{"id": 0, "reference_img_id": 6, "relative_caption": "c"}], split="test")
    data = load_task(_spec("test"), data_dir=tmp_path)
    assert data.relevance is None and data.targets is None and data.queries.ids == ["0"]


def test_the_reference_image_stays_a_candidate_of_its_own_query(tmp_path: Path) -> None:
    # CIRCO's official scorer (src/evaluation.py) and its authors' submission code (SEARLE's
    # circo_generate_test_dict) rank the whole corpus, reference image included: no exclusion.
    import numpy as np

    from mbench.cli import main

    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "circo"
    (folder / "unlabeled2017").mkdir(parents=True)
    for image_id in range(1, 9):  # noise images: unrelated to each other under any embedding
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"unlabeled2017/{image_id:012d}.jpg")
    (folder / "annotations").mkdir()
    (folder / "annotations" / "val.json").write_text(json.dumps([
        {"id": 0, "reference_img_id": 3, "relative_caption": "", "target_img_id": 5, "gt_img_ids": [5]},
    ]))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "circo_ref.yaml").write_text(
        "name: test.circo.reference\nadapter: circo\ndata_folder: circo\nsplit: val\n"
        "query_modality: 'image,text'\ncand_modality: image\nmetrics: [map@5]\nmain_metric: map@5\ndepth: 8\n"
    )
    assert load_task(_spec(), data_dir=tmp_path / "data").excluded is None
    argv = ["run", "--model", "hash-embed", "--tasks", "test.circo.reference", "--tasks-dir", str(tasks),
            "--data-dir", str(tmp_path / "data"), "--results-dir", str(tmp_path / "results"),
            "--cache-dir", str(tmp_path / "cache"), "--no-progress"]
    assert main(argv) == 0
    [run_file] = (tmp_path / "results").glob("*/*/test.circo.reference/local/run.trec.gz")
    import gzip

    ranked = [line.split()[2] for line in gzip.open(run_file, "rt")]
    # The query is the reference image with an empty caption: its own image is the best match.
    assert ranked[0] == "3" and len(ranked) == 8
