"""The BEIR adapter: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv`` (or the same tables
from an ``mteb/<name>`` parquet dataset on the hub) -> TaskData with text-only items.

Document text is ``(title + " " + text).strip()`` as MTEB builds it; queries without judgments
are dropped; with ``ignore_identical_ids`` each query's ``excluded`` entry is the pool index of
the document sharing its id, so that document never counts in its ranking.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mbench.data.adapter import HUB_EXTRA_HINT, FileAdapter, FilesSchema, LoadRequest
from mbench.data.common import Problems, check_unique, require_column
from mbench.data.types import ItemTable, QrelsSource, TaskData
from mbench.errors import MbenchError
from mbench.formats.jsonl import read_jsonl
from mbench.formats.qrels import Qrels, qrels_from_columns, read_beir_qrels
from mbench.metrics import Relevance
from mbench.tasks.spec import TaskSpec

if TYPE_CHECKING:
    import pandas as pd


class BeirFiles(FilesSchema):
    """A BEIR task's files, relative to its folder."""

    corpus: str | None = None
    queries: str = "queries.jsonl"
    qrels: str | None = None


class BeirAdapter(FileAdapter):
    """BEIR's layout on disk, or an ``mteb/<name>`` dataset at a pinned revision on the hub."""

    name = "beir"
    files = BeirFiles
    options = frozenset({"ignore_identical_ids", "hf_dataset", "revision"})
    downloads = True

    def load(self, spec: TaskSpec, request: LoadRequest) -> TaskData:
        """The task from its folder, or from the hub when there is none."""
        if request.folder is None:
            return request.from_hub(spec, lambda: load_beir_hub(spec))
        return load_beir(spec, request.folder)

    def count_file(self, spec: TaskSpec, folder: Path) -> int:
        """Lines of the split's qrels TSV (after its header)."""
        return len(read_beir_qrels(qrels_path(spec, folder)))

    def how_to_get(self, spec: TaskSpec) -> str:
        """Where BEIR data comes from."""
        return (f"download the BEIR dataset into ROOT/{spec.data_folder} (corpus.jsonl, queries.jsonl, "
                f"qrels/{spec.split}.tsv)"
                + (f", or let mbench fetch {spec.hf_dataset}@{spec.revision} from the hub (needs {HUB_EXTRA_HINT})"
                   if spec.hf_dataset else ""))


def corpus_path(spec: TaskSpec, folder: Path) -> Path:
    """The task's corpus file: ``pools.local.file``, else ``files.corpus``, else ``corpus.jsonl``."""
    local = spec.pools.get("local")
    if local is not None and local.file is not None:
        return folder / local.file
    return folder / (BeirAdapter().files_of(spec).corpus or "corpus.jsonl")


def queries_path(spec: TaskSpec, folder: Path) -> Path:
    """The task's query file."""
    return folder / BeirAdapter().files_of(spec).queries


def qrels_path(spec: TaskSpec, folder: Path) -> Path:
    """The task's qrels file for its split."""
    return folder / (BeirAdapter().files_of(spec).qrels or f"qrels/{spec.split}.tsv")


def read_corpus(path: Path) -> pd.DataFrame:
    """``corpus.jsonl`` as a DataFrame (_id, title, text), ids as strings."""
    frame = _read_id_jsonl(path, {"_id": "string", "title": "string", "text": "string"})
    return frame


def read_queries(path: Path) -> pd.DataFrame:
    """``queries.jsonl`` as a DataFrame (_id, text), ids as strings."""
    return _read_id_jsonl(path, {"_id": "string", "text": "string"})


def load_beir(spec: TaskSpec, folder: Path) -> TaskData:
    """Load a BEIR-layout task from ``folder``."""
    corpus_file, queries_file, qrels_file = corpus_path(spec, folder), queries_path(spec, folder), qrels_path(spec, folder)
    return build_task(
        spec, read_corpus(corpus_file), read_queries(queries_file), read_beir_qrels(qrels_file),
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
    qrels_table = table("default", spec.split)
    for frame in (corpus, queries):
        frame["_id"] = frame["_id"].astype(str)
    if "title" not in corpus:
        corpus["title"] = ""
    qrels = qrels_from_columns(
        qrels_table["query-id"].astype(str).to_numpy(dtype=object), qrels_table["corpus-id"].astype(str).to_numpy(dtype=object),
        qrels_table["score"].to_numpy(), format="beir", source=f"{hub}:default/{spec.split}",
    )
    return build_task(
        spec, corpus, queries, qrels,
        sources=(f"{hub}:corpus", f"{hub}:queries", f"{hub}:default/{spec.split}"), provenance=f"hf://{hub}",
    )


def build_task(
    spec: TaskSpec,
    corpus: pd.DataFrame,
    queries: pd.DataFrame,
    qrels: Qrels,
    *,
    sources: tuple[str, str, str],
    provenance: str,
) -> TaskData:
    """Join the three BEIR tables into TaskData, listing every unknown id at once."""
    import pandas as pd

    corpus_src, queries_src, qrels_src = sources
    problems = Problems()
    check_unique(corpus["_id"], Path(corpus_src), "doc id", problems)
    check_unique(queries["_id"], Path(queries_src), "query id", problems)
    doc_index = pd.Index(corpus["_id"])
    query_index = pd.Index(queries["_id"].drop_duplicates())
    row = query_index.get_indexer(qrels.qids)
    cand = doc_index.get_indexer(qrels.docids) if doc_index.is_unique else pd.Index(
        corpus["_id"].drop_duplicates()).get_indexer(qrels.docids)
    unknown_query, unknown_doc = np.flatnonzero(row < 0), np.flatnonzero(cand < 0)
    bad = np.union1d(unknown_query, unknown_doc).tolist()
    lines = dict(zip(bad, qrels.line_numbers(bad)))
    for judgment in unknown_query.tolist():
        problems.add("unknown query id",
                     f"{qrels_src}:{lines[judgment]}: query id {qrels.qids[judgment]!r} is not in {queries_src}")
    for judgment in unknown_doc.tolist():
        problems.add("unknown doc id",
                     f"{qrels_src}:{lines[judgment]}: corpus id {qrels.docids[judgment]!r} is not in {corpus_src}")
    problems.raise_if_any(f"task {spec.name} ({provenance})")

    judged = np.unique(row)
    new_row = np.full(len(query_index), -1, dtype=np.int64)
    new_row[judged] = np.arange(judged.size)
    relevance = Relevance.from_pairs(new_row[row], cand, qrels.grades, judged.size)
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
    import pandas as pd

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
