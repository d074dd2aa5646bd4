"""TREC run files (``qid Q0 docid rank score tag``): the one reader and the one writer.

A run read from disk becomes a ``Run``: one row per query with the ranked candidate indices
into the run's docid vocabulary (``-1`` pads shorter rankings), the form
``mbench.metrics.evaluate`` takes. Ordering follows trec_eval, so a file scores the same here
and there: the rank column is ignored, documents are ordered by score descending, and equal
scores by docid descending in string (byte) order.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mbench.errors import MbenchError
from mbench.formats.atomic import atomic_writer
from mbench.formats.columns import Column, bad_row, lines_of_rows, read_columns, read_head

DEDUPE_POLICIES = ("error", "first")
TREC_RUN = "TREC run (qid Q0 docid rank score tag)"
_TREC_RUN_COLUMNS = (
    Column("qid", "str"),
    Column("Q0"),
    Column("docid", "str"),
    Column("rank"),
    Column("score", "float"),
    Column("tag", "str"),
)


@dataclass(frozen=True)
class Run:
    """Ranked candidates per query.

    ``ranking[i]`` holds indices into ``docids`` for query ``qids[i]``, best first, padded
    with -1; ``scores`` has the same shape (NaN on padding). Queries are in string order.
    """

    qids: np.ndarray
    ranking: np.ndarray
    scores: np.ndarray
    docids: np.ndarray
    tag: str | None = None

    @property
    def n_queries(self) -> int:
        """Number of queries (rows)."""
        return int(self.ranking.shape[0])

    @property
    def depth(self) -> int:
        """Columns of the ranking matrix: the longest ranking kept."""
        return int(self.ranking.shape[1])


def detect_run_format(path: str | Path) -> str:
    """"circo" for a CIRCO submission (a JSON object), "trec" otherwise."""
    return "circo" if read_head(path).lstrip().startswith(b"{") else "trec"


def read_run(path: str | Path, *, dedupe: str = "error", depth: int | None = None) -> Run:
    """Read a TREC run file or a CIRCO submission JSON, telling them apart by content."""
    if detect_run_format(path) == "circo":
        from mbench.formats.submission import read_circo_submission

        return read_circo_submission(path, dedupe=dedupe, depth=depth)
    return read_trec_run(path, dedupe=dedupe, depth=depth)


def check_read_options(dedupe: str, depth: int | None) -> None:
    """Refuse an unknown dedupe policy or a negative depth (a programming error, not bad input)."""
    if dedupe not in DEDUPE_POLICIES:
        raise ValueError(f"dedupe must be one of {DEDUPE_POLICIES}, got {dedupe!r}")
    if depth is not None and depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")


def _encode(column) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes (first-appearance order) and the unique values of a string column."""
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(column)
    if encoded.num_chunks == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
    # The chunks of one dictionary_encode call share a single, final dictionary.
    codes = np.concatenate([chunk.indices.to_numpy(zero_copy_only=False) for chunk in encoded.chunks])
    uniques = encoded.chunks[-1].dictionary.to_numpy(zero_copy_only=False).astype(object)
    return codes.astype(np.int64), uniques


def read_trec_run(path: str | Path, *, dedupe: str = "error", depth: int | None = None) -> Run:
    """Read a TREC run file (gzip or not), keeping at most ``depth`` documents per query.

    A (qid, docid) pair listed twice is an error naming the line, unless ``dedupe="first"``
    (the first occurrence in the file is kept).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    check_read_options(dedupe, depth)
    table = read_columns(path, _TREC_RUN_COLUMNS, what=TREC_RUN)
    scores = table["score"].to_numpy()
    nan_rows = np.flatnonzero(np.isnan(scores))
    if nan_rows.size:
        raise bad_row(path, int(nan_rows[0]), "score is NaN")
    tag = table["tag"][0].as_py() if table.num_rows else None
    q_code, q_uniques = _encode(table["qid"])
    d_code, docids = _encode(table["docid"])

    key = q_code * max(len(docids), 1) + d_code
    repeated = _repeated_rows(key)
    if repeated.size:
        if dedupe == "error":
            raise _duplicate_error(path, key, int(repeated[0]), q_uniques[q_code[repeated[0]]], docids[d_code[repeated[0]]])
        keep = np.ones(key.size, dtype=bool)
        keep[repeated] = False
        table, scores, q_code, d_code = table.filter(pa.array(keep)), scores[keep], q_code[keep], d_code[keep]

    # Queries in string order; within a query trec_eval's order: score, then docid, descending.
    q_order = np.argsort(q_uniques, kind="stable")
    q_rank = np.empty(len(q_uniques), dtype=np.int64)
    q_rank[q_order] = np.arange(len(q_uniques), dtype=np.int64)
    q_row = q_rank[q_code]
    order = pc.sort_indices(
        pa.table({"q": q_row, "score": scores, "docid": table["docid"]}),
        sort_keys=[("q", "ascending"), ("score", "descending"), ("docid", "descending")],
    ).to_numpy()
    ranking, ranked_scores = _rows_to_matrix(q_row[order], d_code[order], scores[order], len(q_uniques), depth)
    return Run(q_uniques[q_order], ranking, ranked_scores, docids, tag)


def _repeated_rows(key: np.ndarray) -> np.ndarray:
    """Rows, in file order, whose key appeared on an earlier row (empty when every key is unique)."""
    sorted_key = np.sort(key)
    twice = np.unique(sorted_key[1:][sorted_key[1:] == sorted_key[:-1]])
    if twice.size == 0:
        return np.zeros(0, dtype=np.int64)
    # Only the few rows holding a repeated key are examined further.
    involved = np.flatnonzero(twice[np.minimum(np.searchsorted(twice, key), twice.size - 1)] == key)
    _, first = np.unique(key[involved], return_index=True)
    return np.setdiff1d(involved, involved[first])


def _duplicate_error(path: str | Path, key: np.ndarray, row: int, qid: str, docid: str) -> MbenchError:
    """The error for a (qid, docid) pair repeated on ``row``, naming both lines."""
    first = int(np.flatnonzero(key == key[row])[0])
    lines = lines_of_rows(path, [first, row])
    return MbenchError(
        f"{path}:{lines[row][0]}: document {docid!r} is listed twice for query {qid!r} (first at line "
        f"{lines[first][0]}): {lines[row][1].strip()!r}; pass --dedupe first to keep the first occurrence"
    )


def _rows_to_matrix(
    q_row: np.ndarray, d_code: np.ndarray, scores: np.ndarray, n_queries: int, depth: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """Scatter entries sorted by query row into -1 / NaN padded (n_queries x depth) matrices."""
    counts = np.bincount(q_row, minlength=n_queries)
    width = int(counts.max(initial=0))
    if depth is not None:
        width = min(width, depth)
    position = np.arange(q_row.size, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = position < width
    ranking = np.full((n_queries, width), -1, dtype=np.int64)
    ranked_scores = np.full((n_queries, width), np.nan, dtype=np.float64)
    ranking[q_row[keep], position[keep]] = d_code[keep]
    ranked_scores[q_row[keep], position[keep]] = scores[keep]
    return ranking, ranked_scores


def write_trec_run(
    path: str | Path,
    qids: Sequence[str] | np.ndarray,
    ranked_docids: Sequence[Sequence[str | None]] | np.ndarray,
    scores: Sequence[Sequence[float]] | np.ndarray,
    tag: str = "mbench",
) -> None:
    """Write a TREC run (``qid Q0 docid rank score tag``), gzip when ``path`` ends with .gz.

    ``ranked_docids`` and ``scores`` are (n_queries x depth), best first; a None docid is
    padding and is skipped. Ranks are written 1-based in the given order, scores at full
    (round-trip) precision, and the file appears atomically.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    qids = np.asarray(qids, dtype=object)
    docs = np.asarray(ranked_docids, dtype=object)
    values = np.asarray(scores)
    if docs.ndim != 2 or docs.shape[0] != qids.shape[0] or values.shape != docs.shape:
        raise ValueError(
            f"expected ranked_docids and scores of shape (n_queries, depth) with n_queries = {qids.shape[0]}, "
            f"got {docs.shape} and {values.shape}"
        )
    if values.dtype.kind != "f":
        values = values.astype(np.float64)
    present = docs != None  # noqa: E711 - elementwise comparison on an object array
    if np.isnan(values[present]).any():
        raise ValueError("a ranked document has a NaN score")
    ranked = _checked_ids("document id", docs[present])
    _checked_ids("query id", qids)
    _checked_ids("tag", np.array([tag], dtype=object))
    table = pa.table(
        {
            "qid": pa.array(np.repeat(qids, present.sum(axis=1)), type=pa.string()),
            "Q0": pa.array(np.full(int(present.sum()), "Q0", dtype=object), type=pa.string()),
            "docid": ranked,
            "rank": np.cumsum(present, axis=1)[present],
            "score": values[present],
            "tag": pa.array(np.full(int(present.sum()), tag, dtype=object), type=pa.string()),
        }
    )
    options = pa_csv.WriteOptions(include_header=False, delimiter=" ", quoting_style="none")
    with atomic_writer(path) as raw:
        if Path(path).name.endswith(".gz"):
            # mtime=0 and no file name in the header keep the bytes reproducible for a given run.
            with gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=6, mtime=0) as stream:
                pa_csv.write_csv(table, stream, options)
        else:
            pa_csv.write_csv(table, raw, options)


def _checked_ids(label: str, ids: np.ndarray):
    """``ids`` as an arrow string array; they must be non-empty and whitespace-free, or the file cannot be read back."""
    import pyarrow as pa
    import pyarrow.compute as pc

    rule = "ids must be non-empty strings without whitespace"
    try:
        array = pa.array(ids, type=pa.string())
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        bad = next(value for value in ids if not isinstance(value, str))
        raise MbenchError(f"cannot write {label} {bad!r} to a TREC run: {rule}") from None
    invalid = pc.or_(pc.match_substring_regex(array, r"\s"), pc.equal(pc.utf8_length(array), 0))
    if pc.any(invalid).as_py():
        bad = ids[int(np.argmax(invalid.to_numpy(zero_copy_only=False)))]
        raise MbenchError(f"cannot write {label} {bad!r} to a TREC run: {rule}")
    return array
