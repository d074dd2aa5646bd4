"""Relevance judgments on disk: TREC qrels, M-BEIR qrels, BEIR qrels TSV (and CIRCO annotations,
whose reader lives in ``mbench.formats.circo``): the one reader and the one writer of each.

Every reader takes a path and returns a ``Qrels``: one entry per judgment (query id, document
id, integer grade), plus what a format carries beyond that (M-BEIR task ids, CIRCO targets).
A document judged twice for the same query is an error naming the line. `mbench score` and the
data adapters read judgments through these functions alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mbench.errors import MbenchError
from mbench.formats.atomic import atomic_write_bytes
from mbench.formats.columns import Column, lines_of_rows, read_columns, read_head

QRELS_FORMATS = ("trec", "mbeir", "beir", "circo")
_DESCRIPTIONS = {
    "trec": "TREC qrels (qid iter docid rel)",
    "mbeir": "M-BEIR qrels (qid 0 did rel task_id)",
    "beir": "BEIR qrels TSV (query-id corpus-id score)",
    "circo": "CIRCO annotations JSON",
}
_BEIR_HEADER = ("query-id", "corpus-id", "score")
_TABULAR = ("trec", "mbeir", "beir")


@dataclass(frozen=True)
class Qrels:
    """Judgments as parallel arrays, one entry per (query, document) pair.

    ``query_ids`` lists every query of the file in first-appearance order (a CIRCO query
    with an empty ground truth has no judgment but is still a query). ``task_ids`` is the
    M-BEIR task id of each judgment; ``targets`` maps a CIRCO query id to its target image.
    ``source`` names where the judgments came from (a file, or a table on the hub).
    """

    qids: np.ndarray
    docids: np.ndarray
    grades: np.ndarray
    query_ids: np.ndarray
    format: str
    task_ids: np.ndarray | None = None
    targets: dict[str, str] | None = None
    source: str = ""

    def __len__(self) -> int:
        return int(self.grades.shape[0])

    def line_numbers(self, rows: Sequence[int]) -> list[int]:
        """The 1-based line of each given judgment in its file (a scan of the file: for messages only).

        Judgments that did not come from a file are numbered by their row, starting at 1.
        """
        rows = [int(r) for r in rows]
        if self.format not in _TABULAR or not Path(self.source).is_file():
            return [r + 1 for r in rows]
        found = lines_of_rows(self.source, rows, header=self.format == "beir")
        return [found[r][0] for r in rows]


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
    from mbench.formats.circo import read_circo_qrels

    readers = {"trec": read_trec_qrels, "mbeir": read_mbeir_qrels, "beir": read_beir_qrels, "circo": read_circo_qrels}
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
    task_ids = table["task_id"].to_numpy() if "task_id" in table.column_names else None
    return qrels_from_columns(
        table["qid"].to_numpy(zero_copy_only=False),
        table["docid"].to_numpy(zero_copy_only=False),
        table["rel"].to_numpy(),
        format=format,
        source=str(path),
        task_ids=task_ids,
    )


def qrels_from_columns(
    qids: Sequence[str] | np.ndarray,
    docids: Sequence[str] | np.ndarray,
    grades: Sequence[int] | np.ndarray,
    *,
    format: str,
    source: str,
    task_ids: np.ndarray | None = None,
) -> Qrels:
    """Qrels from parallel columns of id strings (a parsed file, or a table downloaded from the hub).

    Grades must be integers and a document judged twice for one query is an error, both naming
    the line of ``source``.
    """
    import pandas as pd

    qids = np.asarray(qids, dtype=object)
    docids = np.asarray(docids, dtype=object)
    grades = _integer_grades(np.asarray(grades), qids, docids, format, source)
    partial = Qrels(qids=qids, docids=docids, grades=grades, query_ids=np.zeros(0, dtype=object), format=format,
                    source=source)
    repeated = pd.DataFrame({"q": qids, "d": docids}).duplicated(keep="first").to_numpy()
    if repeated.any():
        row = int(np.argmax(repeated))
        first = int(np.flatnonzero((qids == qids[row]) & (docids == docids[row]))[0])
        first_line, line = partial.line_numbers([first, row])
        raise MbenchError(
            f"{source}:{line}: document {docids[row]!r} is judged twice for query {qids[row]!r} "
            f"(first at line {first_line}){_line_text(partial, row)}"
        )
    return Qrels(
        qids=qids,
        docids=docids,
        grades=grades,
        query_ids=pd.unique(qids) if qids.size else np.zeros(0, dtype=object),
        format=format,
        task_ids=task_ids,
        source=source,
    )


def _integer_grades(values: np.ndarray, qids: np.ndarray, docids: np.ndarray, format: str, source: str) -> np.ndarray:
    """``values`` as int64; a grade that is not an integer is an error naming its line."""
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    import pandas as pd

    numbers = pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(numbers) | (numbers != np.round(numbers))
    if bad.any():
        row = int(np.argmax(bad))
        partial = Qrels(qids=qids, docids=docids, grades=np.zeros(0, dtype=np.int64),
                        query_ids=np.zeros(0, dtype=object), format=format, source=source)
        [line] = partial.line_numbers([row])
        raise MbenchError(f"{source}:{line}: rel {values[row]!r} is not an integer{_line_text(partial, row)}")
    return numbers.astype(np.int64)


def _line_text(qrels: Qrels, row: int) -> str:
    """``: '<the line>'`` when the judgment came from a file, else nothing."""
    if qrels.format not in _TABULAR or not Path(qrels.source).is_file():
        return ""
    return f": {lines_of_rows(qrels.source, [row], header=qrels.format == 'beir')[row][1].strip()!r}"


def write_qrels(
    path: str | Path,
    qids: Sequence[str],
    docids: Sequence[str],
    grades: Sequence[int],
    *,
    format: str,
    task_ids: Sequence[int] | None = None,
) -> None:
    """Write judgments as TREC (``qid 0 docid rel``), M-BEIR (``qid 0 did rel task_id``) or BEIR TSV (with header)."""
    if format not in _TABULAR:
        raise ValueError(f"write_qrels writes one of {_TABULAR}, got {format!r}; CIRCO annotations: mbench.formats.circo")
    if format == "mbeir" and (task_ids is None or len(task_ids) != len(qids)):
        raise ValueError("M-BEIR qrels need one task id per judgment")
    if format == "beir":
        lines = ["\t".join(_BEIR_HEADER) + "\n"] + [f"{q}\t{d}\t{g}\n" for q, d, g in zip(qids, docids, grades)]
    elif format == "mbeir":
        lines = [f"{q} 0 {d} {g} {t}\n" for q, d, g, t in zip(qids, docids, grades, task_ids)]  # type: ignore[arg-type]
    else:
        lines = [f"{q} 0 {d} {g}\n" for q, d, g in zip(qids, docids, grades)]
    atomic_write_bytes(path, "".join(lines).encode("utf-8"))
