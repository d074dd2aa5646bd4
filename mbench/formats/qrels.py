"""Relevance judgments on disk: TREC qrels, M-BEIR qrels, BEIR qrels TSV and CIRCO annotations.

Every reader takes a path and returns a ``Qrels``: one entry per judgment (query id, document
id, integer grade), plus what a format carries beyond that (M-BEIR task ids, CIRCO targets).
A document judged twice for the same query is an error naming the line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mbench.columnfile import Column, lines_of_rows, read_bytes, read_columns, read_head
from mbench.errors import MbenchError

QRELS_FORMATS = ("trec", "mbeir", "beir", "circo")
_DESCRIPTIONS = {
    "trec": "TREC qrels (qid iter docid rel)",
    "mbeir": "M-BEIR qrels (qid 0 did rel task_id)",
    "beir": "BEIR qrels TSV (query-id corpus-id score)",
    "circo": "CIRCO annotations JSON",
}
_BEIR_HEADER = ("query-id", "corpus-id", "score")


@dataclass(frozen=True)
class Qrels:
    """Judgments as parallel arrays, one entry per (query, document) pair.

    ``query_ids`` lists every query of the file in first-appearance order (a CIRCO query
    with an empty ground truth has no judgment but is still a query). ``task_ids`` is the
    M-BEIR task id of each judgment; ``targets`` maps a CIRCO query id to its target image.
    """

    qids: np.ndarray
    docids: np.ndarray
    grades: np.ndarray
    query_ids: np.ndarray
    format: str
    task_ids: np.ndarray | None = None
    targets: dict[str, str] | None = None

    def __len__(self) -> int:
        return int(self.grades.shape[0])


def detect_qrels_format(path: str | Path) -> str:
    """The qrels format of ``path`` from its content: "trec", "mbeir", "beir" or "circo"."""
    head = read_head(path, 65536)
    if head.lstrip().startswith((b"[", b"{")):
        return "circo"
    for number, raw_line in enumerate(head.split(b"\n"), start=1):
        line = raw_line.decode("utf-8", errors="replace").rstrip("\r")
        if not line.strip():
            continue
        if tuple(line.split("\t")) == _BEIR_HEADER:
            return "beir"
        fields = len(line.split())
        if fields in (4, 5):
            return "trec" if fields == 4 else "mbeir"
        raise MbenchError(
            f"{path}:{number}: cannot tell the qrels format from {line.strip()[:200]!r}: expected 4 fields "
            "(TREC: qid iter docid rel), 5 (M-BEIR: qid 0 did rel task_id), the BEIR header "
            "'query-id<TAB>corpus-id<TAB>score' or CIRCO annotations JSON; or pass the format explicitly"
        )
    raise MbenchError(f"{path}: empty qrels file")


def read_qrels(path: str | Path, format: str = "auto") -> Qrels:
    """Read qrels in any supported format; ``format="auto"`` detects it from the content."""
    if format == "auto":
        format = detect_qrels_format(path)
    readers = {"trec": read_trec_qrels, "mbeir": read_mbeir_qrels, "beir": read_beir_qrels, "circo": read_circo_annotations}
    if format not in readers:
        raise ValueError(f"qrels format must be 'auto' or one of {QRELS_FORMATS}, got {format!r}")
    return readers[format](path)


def read_trec_qrels(path: str | Path) -> Qrels:
    """Read TREC qrels: ``qid iter docid rel`` per line, whitespace-separated, integer grades."""
    columns = (Column("qid", "str"), Column("iter"), Column("docid", "str"), Column("rel", "int"))
    table = read_columns(path, columns, what=_DESCRIPTIONS["trec"])
    return _tabular_qrels(path, table, "trec", header=False)


def read_mbeir_qrels(path: str | Path) -> Qrels:
    """Read M-BEIR qrels: ``qid 0 did rel task_id`` per line (the task id is kept in ``task_ids``)."""
    columns = (Column("qid", "str"), Column("iter"), Column("did", "str"), Column("rel", "int"), Column("task_id", "int"))
    table = read_columns(path, columns, what=_DESCRIPTIONS["mbeir"]).rename_columns(["qid", "docid", "rel", "task_id"])
    return _tabular_qrels(path, table, "mbeir", header=False)


def read_beir_qrels(path: str | Path) -> Qrels:
    """Read a BEIR qrels TSV: the header ``query-id corpus-id score``, then tab-separated rows."""
    columns = (Column("qid", "str"), Column("docid", "str"), Column("rel", "int"))
    table = read_columns(path, columns, what=_DESCRIPTIONS["beir"], delimiter="\t", header=_BEIR_HEADER)
    return _tabular_qrels(path, table, "beir", header=True)


def _tabular_qrels(path: str | Path, table, format: str, header: bool) -> Qrels:
    """Qrels from a parsed table, rejecting a document judged twice for one query."""
    import pandas as pd

    qids = table["qid"].to_numpy(zero_copy_only=False).astype(object)
    docids = table["docid"].to_numpy(zero_copy_only=False).astype(object)
    repeated = pd.DataFrame({"q": qids, "d": docids}).duplicated(keep="first").to_numpy()
    if repeated.any():
        row = int(np.argmax(repeated))
        first = int(np.flatnonzero((qids == qids[row]) & (docids == docids[row]))[0])
        lines = lines_of_rows(path, [first, row], header)
        raise MbenchError(
            f"{path}:{lines[row][0]}: document {docids[row]!r} is judged twice for query {qids[row]!r} "
            f"(first at line {lines[first][0]}): {lines[row][1].strip()!r}"
        )
    task_ids = table["task_id"].to_numpy() if "task_id" in table.column_names else None
    return Qrels(
        qids=qids,
        docids=docids,
        grades=table["rel"].to_numpy().astype(np.int64),
        query_ids=pd.unique(qids) if qids.size else np.zeros(0, dtype=object),
        format=format,
        task_ids=task_ids,
    )


def read_circo_annotations(path: str | Path) -> Qrels:
    """Read CIRCO annotations: ``gt_img_ids`` are relevant (grade 1), ``target_img_id`` is the target.

    Query ids are ``str(id)``. The test split has no ground truth and is refused.
    """
    try:
        entries = json.loads(read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MbenchError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(entries, list):
        raise MbenchError(f"{path}: CIRCO annotations are a JSON list of queries, got {type(entries).__name__}")
    qids: list[str] = []
    docids: list[str] = []
    targets: dict[str, str] = {}
    query_ids: list[str] = []
    for position, entry in enumerate(entries):
        where = f"{path}: entry {position}"
        if not isinstance(entry, dict) or "id" not in entry:
            raise MbenchError(f"{where}: expected an object with an 'id'")
        qid = str(entry["id"])
        where = f"{path}: query {qid} (entry {position})"
        if qid in targets:
            raise MbenchError(f"{where}: query id {qid} appears twice")
        if "gt_img_ids" not in entry or "target_img_id" not in entry:
            raise MbenchError(
                f"{where}: no 'gt_img_ids'/'target_img_id': the CIRCO test split has no public ground truth; "
                "score it by submitting the run to the CIRCO evaluation server"
            )
        relevant = entry["gt_img_ids"]
        if not isinstance(relevant, list):
            raise MbenchError(f"{where}: 'gt_img_ids' must be a list of image ids")
        relevant = [str(image) for image in relevant]
        if len(set(relevant)) != len(relevant):
            twice = next(image for image in relevant if relevant.count(image) > 1)
            raise MbenchError(f"{where}: image {twice} is listed twice in 'gt_img_ids'")
        query_ids.append(qid)
        qids.extend([qid] * len(relevant))
        docids.extend(relevant)
        targets[qid] = str(entry["target_img_id"])
    return Qrels(
        qids=np.array(qids, dtype=object),
        docids=np.array(docids, dtype=object),
        grades=np.ones(len(docids), dtype=np.int64),
        query_ids=np.array(query_ids, dtype=object),
        format="circo",
        targets=targets,
    )
