"""The BEIR adapter: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` (or the same tables
from an ``mteb/<name>`` parquet dataset on the hub) -> TaskData with text-only items.

Document text is ``(title + " " + text).strip()`` as MTEB builds it; queries without judgments
are dropped; with ``ignore_identical_ids`` each query's ``excluded`` entry is the pool index of
the document sharing its id, so that document never counts in its ranking.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mbench.data.common import Problems, check_unique, read_jsonl, require_column
from mbench.data.types import ItemTable, QrelsSource, TaskData
from mbench.errors import MbenchError
from mbench.metrics import Relevance
from mbench.tasks.spec import TaskSpec


def corpus_path(spec: TaskSpec, folder: Path) -> Path:
    """The task's corpus file: ``pools.local.file``, else ``files.corpus``, else ``corpus.jsonl``."""
    local = spec.pools.get("local")
    if local is not None and local.file is not None:
        return folder / local.file
    return folder / spec.files.get("corpus", "corpus.jsonl")


def queries_path(spec: TaskSpec, folder: Path) -> Path:
    """The task's query file."""
    return folder / spec.files.get("queries", "queries.jsonl")


def qrels_path(spec: TaskSpec, folder: Path) -> Path:
    """The task's qrels file for its split."""
    return folder / spec.files.get("qrels", f"qrels/{spec.split}.tsv")


def read_corpus(path: Path) -> pd.DataFrame:
    """``corpus.jsonl`` as a DataFrame (_id, title, text), ids as strings."""
    frame = _read_id_jsonl(path, {"_id": "string", "title": "string", "text": "string"})
    return frame


def read_queries(path: Path) -> pd.DataFrame:
    """``queries.jsonl`` as a DataFrame (_id, text), ids as strings."""
    return _read_id_jsonl(path, {"_id": "string", "text": "string"})


def read_qrels(path: Path) -> pd.DataFrame:
    """A BEIR qrels TSV (header ``query-id corpus-id score``) with a 1-based ``line`` column (the header is line 1)."""
    if not path.is_file():
        raise MbenchError(f"{path}: file not found")
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise MbenchError(f"{path}: not a BEIR qrels TSV (query-id, corpus-id, score): {err}") from None
    if list(frame.columns[:3]) != ["query-id", "corpus-id", "score"] or len(frame.columns) != 3:
        raise MbenchError(f"{path}:1: expected the header 'query-id<TAB>corpus-id<TAB>score', got {list(frame.columns)}")
    return _typed_qrels(frame.rename(columns={"query-id": "qid", "corpus-id": "did"}), path, first_line=2)


def _typed_qrels(frame: pd.DataFrame, path: Path | str, first_line: int) -> pd.DataFrame:
    frame = frame.assign(line=np.arange(first_line, first_line + len(frame)))
    score = pd.to_numeric(frame["score"], errors="coerce")
    if score.isna().any():
        bad = score.isna().to_numpy().nonzero()[0][0]
        raise MbenchError(f"{path}:{frame['line'].iloc[bad]}: score {frame['score'].iloc[bad]!r} is not a number")
    frame["score"] = score.astype(np.int64)
    frame["qid"] = frame["qid"].astype(str)
    frame["did"] = frame["did"].astype(str)
    return frame[["qid", "did", "score", "line"]].reset_index(drop=True)


def load_beir(spec: TaskSpec, folder: Path) -> TaskData:
    """Load a BEIR-layout task from ``folder``."""
    corpus_file, queries_file, qrels_file = corpus_path(spec, folder), queries_path(spec, folder), qrels_path(spec, folder)
    return build_task(
        spec, read_corpus(corpus_file), read_queries(queries_file), read_qrels(qrels_file),
        sources=(str(corpus_file), str(queries_file), str(qrels_file)), provenance=str(folder),
    )


def load_beir_hub(spec: TaskSpec, cache_dir: Path | None = None) -> TaskData:
    """Load an ``mteb/<name>`` dataset from the hub (configs corpus, queries, default=qrels) at the pinned revision."""
    import datasets  # lazy: heavy, and only needed when the data is not on disk

    def table(config: str, split: str | None) -> pd.DataFrame:
        loaded = datasets.load_dataset(
            spec.hf_dataset, config, revision=spec.revision, cache_dir=None if cache_dir is None else str(cache_dir)
        )
        name = split if split is not None else next(iter(loaded))
        if name not in loaded:
            raise MbenchError(f"{spec.hf_dataset}@{spec.revision}: config {config!r} has no split {name!r} ({list(loaded)})")
        return loaded[name].to_pandas()

    hub = f"{spec.hf_dataset}@{spec.revision}"
    corpus = table("corpus", None)
    queries = table("queries", None)
    qrels = table("default", spec.split).rename(columns={"query-id": "qid", "corpus-id": "did"})
    for frame in (corpus, queries):
        frame["_id"] = frame["_id"].astype(str)
    if "title" not in corpus:
        corpus["title"] = ""
    return build_task(
        spec, corpus, queries, _typed_qrels(qrels, f"{hub}:default/{spec.split}", first_line=1),
        sources=(f"{hub}:corpus", f"{hub}:queries", f"{hub}:default/{spec.split}"), provenance=f"hf://{hub}",
    )


def build_task(
    spec: TaskSpec,
    corpus: pd.DataFrame,
    queries: pd.DataFrame,
    qrels: pd.DataFrame,
    *,
    sources: tuple[str, str, str],
    provenance: str,
) -> TaskData:
    """Join the three BEIR tables into TaskData, listing every unknown or repeated id at once."""
    corpus_src, queries_src, qrels_src = sources
    problems = Problems()
    check_unique(corpus["_id"], Path(corpus_src), "doc id", problems)
    check_unique(queries["_id"], Path(queries_src), "query id", problems)
    doc_index = pd.Index(corpus["_id"])
    query_index = pd.Index(queries["_id"].drop_duplicates())
    row = query_index.get_indexer(qrels["qid"])
    cand = doc_index.get_indexer(qrels["did"]) if doc_index.is_unique else pd.Index(
        corpus["_id"].drop_duplicates()).get_indexer(qrels["did"])
    for line, qid in zip(qrels["line"][row < 0].tolist(), qrels["qid"][row < 0].tolist()):
        problems.add("unknown query id", f"{qrels_src}:{line}: query id {qid!r} is not in {queries_src}")
    for line, did in zip(qrels["line"][cand < 0].tolist(), qrels["did"][cand < 0].tolist()):
        problems.add("unknown doc id", f"{qrels_src}:{line}: corpus id {did!r} is not in {corpus_src}")
    repeated = qrels.duplicated(["qid", "did"]).to_numpy()
    for line in qrels["line"][repeated].tolist():
        problems.add("repeated judgment", f"{qrels_src}:{line}: the same (query-id, corpus-id) is judged twice")
    problems.raise_if_any(f"task {spec.name} ({provenance})")

    judged = np.unique(row)
    new_row = np.full(len(query_index), -1, dtype=np.int64)
    new_row[judged] = np.arange(judged.size)
    relevance = Relevance.from_pairs(new_row[row], cand, qrels["score"].to_numpy(), judged.size)
    kept = queries.drop_duplicates("_id").iloc[judged]
    titles = corpus["title"].fillna("").astype(str)
    texts = corpus["text"].fillna("").astype(str)
    doc_texts = (titles + " " + texts).str.strip().tolist()
    pool = ItemTable(
        ids=corpus["_id"].tolist(), texts=doc_texts, images=[None] * len(corpus), modalities=["text"] * len(corpus)
    )
    query_table = ItemTable(
        ids=kept["_id"].tolist(), texts=kept["text"].fillna("").astype(str).tolist(),
        images=[None] * len(kept), modalities=["text"] * len(kept),
    )
    excluded = None
    if spec.ignore_identical_ids:
        excluded = doc_index.get_indexer(query_table.ids).astype(np.int64)
    qrels_file = Path(qrels_src).absolute() if Path(qrels_src).is_file() else qrels_src  # else a hub id
    return TaskData(
        name=spec.name, queries=query_table, pool=pool, relevance=relevance, excluded=excluded, source=provenance,
        qrels=QrelsSource(files=(str(qrels_file),), format="beir"),
    )


def _read_id_jsonl(path: Path, columns: dict[str, str]) -> pd.DataFrame:
    """Read a BEIR JSONL file; ids written as JSON numbers (some conversions do that) become strings."""
    try:
        frame = read_jsonl(path, columns)
    except MbenchError:
        if not path.is_file():
            raise
        try:
            frame = pd.read_json(path, lines=True, dtype=False)
        except ValueError as err:
            raise MbenchError(f"{path}: not JSON lines: {err}") from None
        for name in columns:
            if name not in frame:
                frame[name] = None
        frame = frame[list(columns)]
        frame["_id"] = frame["_id"].map(lambda v: None if v is None or v != v else str(v))
    require_column(frame, "_id", path)
    return frame
