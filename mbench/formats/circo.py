"""CIRCO annotation files (``annotations/<split>.json``): the one reader and the one writer.

An annotation file is a JSON list of queries: ``id``, ``reference_img_id``, ``relative_caption``
and, on the validation split only, ``target_img_id`` and ``gt_img_ids`` (every ground-truth image
is relevant with grade 1). Image ids are COCO's integer ids. The CIRCO adapter reads the queries
from it, `mbench score` the judgments (``read_circo_qrels``), both through ``read_circo_annotations``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mbench.errors import MbenchError
from mbench.formats.atomic import atomic_write_bytes
from mbench.formats.columns import read_json
from mbench.formats.qrels import Qrels


@dataclass(frozen=True)
class CircoQuery:
    """One CIRCO annotation: a reference image, a relative caption and (val only) the ground truth.

    ``has_ground_truth`` is False for the test split's queries, which carry neither
    ``gt_img_ids`` nor ``target_img_id``; ``entry`` is the query's position in the file.
    """

    id: str
    reference_img_id: int | None
    relative_caption: str | None
    target_img_id: int | None
    gt_img_ids: tuple[int, ...]
    has_ground_truth: bool
    entry: int


def _image_id(value: object, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise MbenchError(f"{where}: {key!r} holds {value!r}; CIRCO image ids are integers (COCO ids)")
    return int(value)


def read_circo_annotations(path: str | Path) -> list[CircoQuery]:
    """The queries of a CIRCO annotation file; a malformed entry is an error naming query and entry."""
    entries = read_json(path)
    if not isinstance(entries, list):
        raise MbenchError(f"{path}: CIRCO annotations are a JSON list of queries, got {type(entries).__name__}")
    queries: list[CircoQuery] = []
    seen: set[str] = set()
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry:
            raise MbenchError(f"{path}: entry {position}: expected an object with an 'id'")
        qid = str(entry["id"])
        where = f"{path}: query {qid} (entry {position})"
        if qid in seen:
            raise MbenchError(f"{where}: query id {qid} appears twice")
        seen.add(qid)
        relevant = entry.get("gt_img_ids")
        if relevant is not None and not isinstance(relevant, list):
            raise MbenchError(f"{where}: 'gt_img_ids' must be a list of image ids")
        gt = tuple(_image_id(image, where, "gt_img_ids") for image in relevant or ())
        if len(set(gt)) != len(gt):
            twice = next(image for image in gt if gt.count(image) > 1)
            raise MbenchError(f"{where}: image {twice} is listed twice in 'gt_img_ids'")
        reference, target, caption = entry.get("reference_img_id"), entry.get("target_img_id"), entry.get("relative_caption")
        queries.append(CircoQuery(
            id=qid,
            reference_img_id=None if reference is None else _image_id(reference, where, "reference_img_id"),
            relative_caption=None if caption is None else str(caption),
            target_img_id=None if target is None else _image_id(target, where, "target_img_id"),
            gt_img_ids=gt,
            has_ground_truth="gt_img_ids" in entry and "target_img_id" in entry,
            entry=position,
        ))
    return queries


def read_circo_qrels(path: str | Path) -> Qrels:
    """The judgments of a CIRCO annotation file: ``gt_img_ids`` relevant (grade 1), ``target_img_id`` the target.

    Query ids are ``str(id)``. The test split has no ground truth and is refused.
    """
    qids: list[str] = []
    docids: list[str] = []
    targets: dict[str, str] = {}
    query_ids: list[str] = []
    for query in read_circo_annotations(path):
        if not query.has_ground_truth:
            raise MbenchError(
                f"{path}: query {query.id} (entry {query.entry}): no 'gt_img_ids'/'target_img_id': the CIRCO test split "
                "has no public ground truth; score it by submitting the run to the CIRCO evaluation server"
            )
        query_ids.append(query.id)
        qids.extend([query.id] * len(query.gt_img_ids))
        docids.extend(str(image) for image in query.gt_img_ids)
        targets[query.id] = str(query.target_img_id)
    return Qrels(
        qids=np.array(qids, dtype=object),
        docids=np.array(docids, dtype=object),
        grades=np.ones(len(docids), dtype=np.int64),
        query_ids=np.array(query_ids, dtype=object),
        format="circo",
        targets=targets,
        source=str(path),
    )


def write_circo_annotations(path: str | Path, entries: Sequence[Mapping[str, object]]) -> None:
    """Write annotation entries (the keys CIRCO's files have) as CIRCO's JSON list, one key per line."""
    atomic_write_bytes(path, json.dumps(list(entries), indent=1).encode("utf-8"))
