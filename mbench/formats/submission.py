"""CIRCO submission files (``{query_id: [image ids, best first]}``): the one reader and the one writer.

CIRCO's evaluation server takes exactly the top 50 image ids of every query; the writer cuts
there, so no caller has to know the depth.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mbench.errors import MbenchError
from mbench.formats.atomic import atomic_write_bytes
from mbench.formats.columns import read_json
from mbench.formats.runs import Run, check_read_options

CIRCO_SUBMISSION_DEPTH = 50


def write_circo_submission(path: str | Path, qids: Sequence[str], ranked_ids: Sequence[Sequence[str]]) -> None:
    """CIRCO's submission JSON: exactly these query ids -> their top-50 image ids (ints), no duplicates; atomic."""
    if len(set(qids)) != len(qids):
        raise MbenchError("CIRCO submission: repeated query ids")
    if len(ranked_ids) != len(qids):
        raise ValueError("write_circo_submission needs one ranking per query id")
    out: dict[str, list[int | str]] = {}
    for qid, ids in zip(qids, ranked_ids):
        top = list(ids)[:CIRCO_SUBMISSION_DEPTH]
        if len(top) < CIRCO_SUBMISSION_DEPTH:
            raise MbenchError(
                f"CIRCO submission: query {qid} has {len(top)} ranked images; the server needs {CIRCO_SUBMISSION_DEPTH}"
            )
        if len(set(top)) != len(top):
            raise MbenchError(f"CIRCO submission: query {qid} lists an image twice in its top {CIRCO_SUBMISSION_DEPTH}")
        # CIRCO's server and its example submissions use integer COCO image ids.
        out[str(qid)] = [int(i) if str(i).isdigit() else str(i) for i in top]
    atomic_write_bytes(Path(path), (json.dumps(out) + "\n").encode("utf-8"))


def read_circo_submission(path: str | Path, *, dedupe: str = "error", depth: int | None = None) -> Run:
    """Read a CIRCO submission (JSON object: query id -> image ids, best first); ranks come from list order.

    Scores are synthetic (list length down to 1) so that the TREC order equals the list order.
    """
    check_read_options(dedupe, depth)
    data = read_json(path)
    if not isinstance(data, dict):
        raise MbenchError(f"{path}: a CIRCO submission is a JSON object {{query_id: [image ids]}}, got {type(data).__name__}")
    qids = np.array(sorted(data), dtype=object)
    vocabulary: dict[str, int] = {}
    rows: list[list[int]] = []
    for qid in qids:
        ranked = data[qid]
        if not isinstance(ranked, list) or not all(isinstance(x, (int, str)) and not isinstance(x, bool) for x in ranked):
            raise MbenchError(f"{path}: query {qid!r}: expected a list of image ids (integers or strings)")
        seen: dict[str, int] = {}
        row = []
        for position, image in enumerate(map(str, ranked), start=1):
            if image in seen:
                if dedupe == "first":
                    continue
                raise MbenchError(
                    f"{path}: query {qid!r}: image id {image} is listed twice (positions {seen[image]} and {position}); "
                    "pass --dedupe first to keep the first occurrence"
                )
            seen[image] = position
            row.append(vocabulary.setdefault(image, len(vocabulary)))
        rows.append(row[:depth] if depth is not None else row)
    width = max((len(r) for r in rows), default=0)
    ranking = np.full((len(rows), width), -1, dtype=np.int64)
    scores = np.full((len(rows), width), np.nan, dtype=np.float64)
    for i, row in enumerate(rows):
        ranking[i, : len(row)] = row
        scores[i, : len(row)] = np.arange(len(row), 0, -1, dtype=np.float64)
    return Run(qids, ranking, scores, np.array(list(vocabulary), dtype=object), None)
