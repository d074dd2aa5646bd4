"""The CIRCO adapter: ``annotations/<split>.json`` plus the COCO 2017 unlabeled images -> TaskData.

A query is the reference image with its relative caption; the corpus is every COCO 2017
unlabeled image (ids from ``image_info_unlabeled2017.json`` when present, else the JPEG files
of ``unlabeled2017/``). Every ``gt_img_ids`` entry is relevant (grade 1) and ``targets`` holds
the pool index of ``target_img_id``. The test split has no ground truth: relevance is None.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mbench.data.adapter import FileAdapter, FilesSchema, LoadRequest
from mbench.data.common import Problems
from mbench.data.types import ItemTable, QrelsSource, TaskData
from mbench.errors import MbenchError
from mbench.formats.circo import read_circo_annotations
from mbench.metrics import Relevance
from mbench.tasks.spec import TaskSpec

IMAGES_HINT = (
    "download the COCO 2017 unlabeled images (http://images.cocodataset.org/zips/unlabeled2017.zip) and "
    "their image info (http://images.cocodataset.org/annotations/image_info_unlabeled2017.zip) and unzip "
    "them so that these exist:"
)


class CircoFiles(FilesSchema):
    """A CIRCO task's files, relative to its folder."""

    annotations: str | None = None
    images: str = "unlabeled2017"
    image_info: str = "image_info_unlabeled2017.json"


class CircoAdapter(FileAdapter):
    """CIRCO's repository layout with the COCO 2017 unlabeled images beside it (nothing to download)."""

    name = "circo"
    files = CircoFiles

    def load(self, spec: TaskSpec, request: LoadRequest) -> TaskData:
        """The split's queries, the image corpus and (val) the judgments."""
        if request.folder is None:
            raise MbenchError(request.not_found(spec))
        return load_circo(spec, request.folder)

    def count_file(self, spec: TaskSpec, folder: Path) -> int:
        """The ground-truth images of every query of the annotation file."""
        return count_relevant(spec, folder)[1]

    def how_to_get(self, spec: TaskSpec) -> str:
        """Where CIRCO data comes from."""
        return (f"clone https://github.com/miccunifi/CIRCO into ROOT/{spec.data_folder} (annotations/) and unzip the "
                "COCO 2017 unlabeled images (unlabeled2017/) and image_info_unlabeled2017.json there")


def annotations_path(spec: TaskSpec, folder: Path) -> Path:
    """The task's annotation file."""
    return folder / (CircoAdapter().files_of(spec).annotations or f"annotations/{spec.split}.json")


def images_folder(spec: TaskSpec, folder: Path) -> Path:
    """The folder of the COCO 2017 unlabeled JPEGs."""
    return folder / CircoAdapter().files_of(spec).images


def image_info_path(spec: TaskSpec, folder: Path) -> Path:
    """COCO's ``image_info_unlabeled2017.json`` (optional: lists the corpus ids)."""
    return folder / CircoAdapter().files_of(spec).image_info


def image_file_name(image_id: int) -> str:
    """COCO's file name for an image id: 12 zero-padded digits."""
    return f"{image_id:012d}.jpg"


def count_relevant(spec: TaskSpec, folder: Path) -> tuple[int, int]:
    """(number of queries, number of relevant image ids) of the task's annotation file."""
    queries = read_circo_annotations(annotations_path(spec, folder))
    return len(queries), sum(len(q.gt_img_ids) for q in queries)


def corpus_ids(spec: TaskSpec, folder: Path) -> tuple[list[int], list[str]]:
    """The corpus image ids and absolute file paths, in ascending id order."""
    images = images_folder(spec, folder)
    if not images.is_dir():
        raise MbenchError(
            f"CIRCO images missing: no folder {images.absolute()}; {IMAGES_HINT} {images.absolute()}/<12-digit id>.jpg "
            f"and {image_info_path(spec, folder).absolute()}"
        )
    info = image_info_path(spec, folder)
    if info.is_file():
        try:
            entries = json.loads(info.read_text(encoding="utf-8"))["images"]
            pairs = sorted((int(e["id"]), str(e.get("file_name") or image_file_name(int(e["id"])))) for e in entries)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise MbenchError(f"{info}: not a COCO image info file (expected images[].id): {err}") from None
    else:
        pairs = []
        for path in images.glob("*.jpg"):
            if path.stem.isdigit():
                pairs.append((int(path.stem), path.name))
        pairs.sort()
    base = images.absolute()
    return [i for i, _ in pairs], [str(base / name) for _, name in pairs]


def load_circo(spec: TaskSpec, folder: Path) -> TaskData:
    """Load a CIRCO split with its image corpus; every unknown image id is listed in one error."""
    import pandas as pd

    path = annotations_path(spec, folder)
    queries = read_circo_annotations(path)
    for query in queries:
        missing = [key for key, value in (("reference_img_id", query.reference_img_id),
                                          ("relative_caption", query.relative_caption)) if value is None]
        if missing:
            raise MbenchError(f"{path}: query {query.id} (entry {query.entry}): no {' or '.join(map(repr, missing))}")
    ids, files = corpus_ids(spec, folder)
    position = pd.Index(ids)
    problems = Problems()
    if not position.is_unique:
        problems.add("duplicate image id", f"{image_info_path(spec, folder)}: repeated image ids in the corpus")
    references = position.get_indexer([q.reference_img_id for q in queries]) if position.is_unique else None
    has_truth = any(q.gt_img_ids for q in queries)
    if references is not None:
        for query, ref in zip(queries, references.tolist()):
            if ref < 0:
                problems.add("unknown image id", f"{path}: query {query.id}: reference image {query.reference_img_id} "
                                                 f"is not in the corpus")
    relevance, targets = None, None
    if has_truth and position.is_unique:
        cand_lists, target_list = [], []
        for query in queries:
            found = position.get_indexer(list(query.gt_img_ids))
            for image_id, index in zip(query.gt_img_ids, found.tolist()):
                if index < 0:
                    problems.add("unknown image id", f"{path}: query {query.id}: gt image {image_id} is not in the corpus")
            cand_lists.append(sorted(set(int(i) for i in found if i >= 0)))
            target = -1 if query.target_img_id is None else int(position.get_indexer([query.target_img_id])[0])
            if query.target_img_id is not None and target < 0:
                problems.add("unknown image id", f"{path}: query {query.id}: target image {query.target_img_id} "
                                                 f"is not in the corpus")
            target_list.append(target)
        if not problems:
            relevance = Relevance.from_lists(cand_lists)
            targets = np.asarray(target_list, dtype=np.int64)
    problems.raise_if_any(f"task {spec.name} ({folder})")
    assert references is not None
    if relevance is not None:
        # Queries without judgments are dropped, as for every task.
        keep = np.flatnonzero(np.diff(relevance.indptr) > 0)
        if keep.size < len(queries):
            relevance, targets = relevance.subset(keep), targets[keep]
            queries = [queries[i] for i in keep.tolist()]
            references = references[keep]
    query_table = ItemTable(
        ids=[q.id for q in queries], texts=[q.relative_caption for q in queries],
        images=[files[i] for i in references.tolist()], modalities=["image,text"] * len(queries),
    )
    pool = ItemTable(ids=[str(i) for i in ids], texts=[None] * len(ids), images=files, modalities=["image"] * len(ids))
    return TaskData(
        name=spec.name, queries=query_table, pool=pool, relevance=relevance, targets=targets, source=str(folder),
        qrels=QrelsSource(files=(str(path.absolute()),), format="circo") if relevance is not None else None,
    )
