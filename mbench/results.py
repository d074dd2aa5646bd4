"""The results directory: the typed result record and the only writer and reader of a result folder.

One folder per (model, fingerprint, task, pool[, variant]) holds ``result.json`` (the record:
metrics and provenance; written last, so its presence marks a complete result), ``run.trec.gz``
(the ranking), ``per_query.parquet`` (every query's metric values), for a task without public
qrels CIRCO's ``submission.json``, and for a rerank result ``rerank_scores.parquet``. A rerank
result lives inside its first stage's folder, in ``rerank-<reranker>-top<k>/``.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import os
import platform
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mbench import __version__
from mbench.errors import MbenchError
from mbench.formats.atomic import atomic_write_bytes

if TYPE_CHECKING:
    import pandas as pd

    from mbench.formats.qrels import Qrels
    from mbench.formats.runs import Run

RESULT_FILE = "result.json"
RUN_FILE = "run.trec.gz"
PER_QUERY_FILE = "per_query.parquet"
SUBMISSION_FILE = "submission.json"
RERANK_SCORES_FILE = "rerank_scores.parquet"
RESULT_VERSION = 1


@dataclass(kw_only=True)
class RerankInfo:
    """How a rerank result was made: the reranker, its depth and prompt, and the first stage it reranked."""

    reranker: dict[str, Any]
    top_k: int
    first_stage: dict[str, Any]
    reranker_name: str | None = None
    reranker_args: dict[str, str] = field(default_factory=dict)
    prompt: str | None = None
    batch_size: int | None = None
    score_order: str | None = None
    pairs_scored: int | None = None
    pairs_cached: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class ResultRecord:
    """``result.json``: what was evaluated (task, pool, model), the metrics, and how they came about.

    Fields are written in declaration order; keys this version does not know are kept in
    ``extra`` and written back, so reading and writing a record loses nothing.
    """

    mbench_result_version: int = RESULT_VERSION
    task: str
    task_spec_hash: str | None = None
    pool: str
    kind: str = "retrieval"
    model: dict[str, Any] = field(default_factory=dict)
    requested_model: str | None = None
    model_args: dict[str, str] = field(default_factory=dict)
    depth: int | None = None
    dataset: dict[str, Any] = field(default_factory=dict)
    # The judgment files scored against: {"files": [{"path", "sha256"}], "format", "outside_pool", ...}
    qrels: dict[str, Any] | None = None
    pool_modalities: dict[str, int] = field(default_factory=dict)  # candidates per modality
    partial: bool = False  # a `mbench run --limit` smoke result: never read as a full one
    limit: dict[str, Any] | None = None  # its sample: queries, seed, pool, variant, query_ids, sizes
    instruction_policy: str | None = None
    seed: int | None = None
    instructions: list[str] = field(default_factory=list)
    prompt: str | None = None
    search_backend: str | None = None
    # Precision provenance of a dense run: encode precision, store dtype, stored query/candidate
    # dtypes, the search's compute dtype and the final scores' (None for lexical runs).
    embeddings: dict[str, str] | None = None
    device: str | None = None
    world_size: int = 1
    versions: dict[str, str | None] = field(default_factory=dict)
    git_sha: str | None = None
    created: str | None = None
    rerank: RerankInfo | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    main_metric: str | None = None
    n_queries: int | None = None
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def model_name(self) -> str:
        """The retriever's name as recorded (empty when the record names none)."""
        return str(self.model.get("name", ""))

    @property
    def fingerprint(self) -> str:
        """The retriever's fingerprint (hex; empty when not recorded)."""
        return str(self.model.get("fingerprint", ""))

    @property
    def reranker_name(self) -> str | None:
        """The reranker's name for a rerank result, else None."""
        return None if self.rerank is None else self.rerank.reranker.get("name")

    @property
    def rerank_top_k(self) -> int | None:
        """How many first-stage candidates were reranked, else None."""
        return None if self.rerank is None else self.rerank.top_k

    @property
    def limit_queries(self) -> int | None:
        """N of a partial result of `mbench run --limit N`; None for a full result."""
        return int(self.limit["queries"]) if self.limit else None

    @property
    def limit_variant(self) -> str | None:
        """The sample a partial result was computed on (``limit-5``, ``limit-5-pool-all``); None when full."""
        return str(self.limit.get("variant") or f"limit-{self.limit['queries']}") if self.limit else None

    @property
    def variant(self) -> str:
        """``retrieval``, or ``rerank:<reranker>@top<k>``, plus `` [limit-N]`` for a partial result: what tells
        results of one model on one task apart (a partial result pairs only with one of the same sample)."""
        base = "retrieval" if self.kind != "rerank" else f"rerank:{self.reranker_name}@top{self.rerank_top_k}"
        return base if self.limit is None else f"{base} [{self.limit_variant}]"

    def to_json(self) -> dict[str, Any]:
        """The JSON object written to ``result.json``."""
        return _to_json(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str) -> ResultRecord:
        """A record from a parsed ``result.json``; ``where`` names the file in errors."""
        for key in ("task", "pool"):
            if key not in data:
                raise MbenchError(f"{where}: missing key {key!r}; not an mbench result.json")
        values = _known_fields(cls, data)
        rerank = values.get("rerank")
        if rerank is not None:
            if not isinstance(rerank, Mapping) or not {"reranker", "top_k", "first_stage"} <= set(rerank):
                raise MbenchError(f"{where}: 'rerank' needs reranker, top_k and first_stage; not an mbench result.json")
            values["rerank"] = RerankInfo(**_known_fields(RerankInfo, rerank))
        return cls(**values)


def _known_fields(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    values = {key: value for key, value in data.items() if key in names}
    values["extra"] = {key: value for key, value in data.items() if key not in names}
    return values


def _to_json(record: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in dataclasses.fields(record):
        if item.name == "extra":
            continue
        value = getattr(record, item.name)
        out[item.name] = _to_json(value) if dataclasses.is_dataclass(value) else value
    out.update(record.extra)
    return out


def _safe_component(name: str) -> str:
    """A path component from a model or reranker name (``/`` and spaces would nest or break paths)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "_", name)


def result_dir(
    results_root: Path, model_name: str, model_fingerprint: str, task: str, pool: str, variant: str | None = None
) -> Path:
    """``<root>/<model>/<fingerprint[:12]>/<task>/<pool>[.<variant>]/``.

    ``variant`` names a run option that changes results without changing the model, such as a
    non-default instruction policy (``none``, ``seeded-3``), so ablations sit side by side.
    """
    leaf = pool if not variant else f"{pool}.{_safe_component(variant)}"
    return Path(results_root) / _safe_component(model_name) / model_fingerprint[:12] / task / leaf


def rerank_dir_name(reranker_name: str, top_k: int) -> str:
    """``rerank-<reranker>-top<k>``: the folder of a rerank result inside its first stage's folder."""
    return f"rerank-{_safe_component(reranker_name)}-top{top_k}"


def rerank_dir(first_stage_dir: Path, reranker_name: str, top_k: int) -> Path:
    """Where the rerank of ``first_stage_dir`` by ``reranker_name`` at depth ``top_k`` is written."""
    return Path(first_stage_dir) / rerank_dir_name(reranker_name, top_k)


def default_results_dir() -> Path:
    """``$MBENCH_RESULTS`` or ``./results``."""
    return Path(os.environ.get("MBENCH_RESULTS", "results"))


@functools.lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The commit of the mbench checkout in use, or None for an installed wheel."""
    package_dir = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=package_dir, capture_output=True, text=True, timeout=5, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def library_versions() -> dict[str, str | None]:
    """Versions of the libraries that can change numbers (imported ones only; None if absent)."""
    import importlib.metadata as metadata

    versions: dict[str, str | None] = {"python": platform.python_version(), "mbench": __version__}
    for dist in ("numpy", "torch", "transformers", "sentence-transformers", "faiss-cpu", "bm25s"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return versions


def now_iso() -> str:
    """The current UTC time as a result's ``created`` stamp (ISO 8601, seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- writing


def write_result(
    directory: Path,
    record: ResultRecord,
    *,
    query_ids: Sequence[str],
    ranking: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    pool_ids: Sequence[str] = (),
    tag: str = "mbench",
    per_query: Mapping[str, np.ndarray] | None = None,
    submission: bool = False,
    rerank_scores: pd.DataFrame | None = None,
) -> None:
    """Write a complete result folder: its data files, then ``result.json`` last.

    ``ranking`` (pool indices [n_queries, depth], -1 padded) and ``scores`` become the run
    file; ``per_query`` (metric -> one value per query) the per-query table; ``submission``
    adds CIRCO's submission of the ranking. A ``result.json`` already there is removed first,
    so a folder being rewritten never looks complete. The seconds spent writing the data
    files are added to ``record.timings["write"]``.
    """
    from mbench.formats.runs import write_trec_run

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / RESULT_FILE).unlink(missing_ok=True)
    started = time.perf_counter()
    if ranking is not None:
        ranked_ids = _ranked_ids(ranking, pool_ids)
        present = ranking >= 0
        write_trec_run(directory / RUN_FILE, query_ids, ranked_ids, np.where(present, scores, 0.0), tag=tag)
        if submission:
            from mbench.formats.submission import write_circo_submission

            write_circo_submission(directory / SUBMISSION_FILE, query_ids,
                                   [row[keep].tolist() for row, keep in zip(ranked_ids, present)])
    if rerank_scores is not None:
        _write_parquet(directory / RERANK_SCORES_FILE, rerank_scores)
    if per_query:
        import pandas as pd

        columns = {name: np.asarray(values, dtype=np.float64) for name, values in per_query.items()}
        _write_parquet(directory / PER_QUERY_FILE, pd.DataFrame({"qid": list(query_ids), **columns}))
    record.timings["write"] = round(record.timings.get("write", 0.0) + time.perf_counter() - started, 4)
    atomic_write_bytes(directory / RESULT_FILE, (json.dumps(record.to_json(), indent=2) + "\n").encode())


def _ranked_ids(ranking: np.ndarray, pool_ids: Sequence[str]) -> np.ndarray:
    """Pool ids of a ranking matrix, None where it is padded (-1)."""
    ids = np.asarray(pool_ids, dtype=object)
    return np.where(ranking >= 0, ids[np.maximum(ranking, 0)] if ids.size else None, None)


def _write_parquet(path: Path, frame: pd.DataFrame) -> None:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


# ---------------------------------------------------------------- reading


def result_exists(directory: Path) -> bool:
    """Whether a complete result (its ``result.json``) is already in ``directory``."""
    return (Path(directory) / RESULT_FILE).is_file()


def read_result(directory: Path) -> ResultRecord:
    """The record of the result in ``directory``; a missing or malformed ``result.json`` is a clear error."""
    path = Path(directory) / RESULT_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise MbenchError(f"no result at {directory} (missing {RESULT_FILE})") from None
    except json.JSONDecodeError as err:
        raise MbenchError(f"{path}: not valid JSON ({err}); delete the folder and rerun") from None
    if not isinstance(data, dict):
        raise MbenchError(f"{path}: not a JSON object; not an mbench result.json")
    return ResultRecord.from_json(data, str(path))


def read_result_run(directory: Path) -> Run:
    """The run file of the result in ``directory``."""
    from mbench.formats.runs import read_trec_run

    return read_trec_run(Path(directory) / RUN_FILE)


def read_per_query(path: Path) -> pd.DataFrame:
    """A per-query table (``qid`` plus one column per metric) as a pandas DataFrame."""
    import pandas as pd

    return pd.read_parquet(path)


# ---------------------------------------------------------------- the judgments a result was scored against


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def qrels_entry(source: Any) -> dict[str, Any] | None:
    """The record's ``qrels`` of a task's ``data.types.QrelsSource``: each file's path and sha256 (None for a
    table on the hub), the format (``formats.qrels``), and the judgments the pool leaves out."""
    if source is None:
        return None
    files = [{"path": path, "sha256": file_sha256(Path(path)) if Path(path).is_file() else None} for path in source.files]
    return {
        "files": files,
        "format": source.format,
        "outside_pool": source.outside_pool,
        "outside_pool_prefix": source.outside_pool_prefix,
    }


def recorded_qrels(directory: Path) -> Qrels:
    """The judgments the result in ``directory`` was scored against: its recorded files, checked unchanged
    (sha256), less the judgments its pool left out (M-BEIR's cross-dataset rule, their count checked)."""
    where = Path(directory) / RESULT_FILE
    entry = read_result(directory).qrels
    if not entry:
        raise MbenchError(
            f"{where}: records no qrels (an unscored task, or a result written before mbench recorded them): "
            "give the QRELS file as the second argument"
        )
    qrels = _concatenated([_verified_qrels(file, entry["format"], where) for file in entry["files"]])
    return _without_outside_pool(qrels, entry, where)


def _verified_qrels(file: Mapping[str, Any], format: str, where: Path) -> Qrels:
    from mbench.formats.qrels import read_qrels

    path, digest = Path(file["path"]), file.get("sha256")
    if digest is None:
        raise MbenchError(f"{where}: the qrels came from {file['path']} (not a local file): give a local copy as QRELS")
    if not path.is_file():
        raise MbenchError(f"{where}: its qrels file {path} is gone (moved or deleted): give it as QRELS")
    if file_sha256(path) != digest:
        raise MbenchError(
            f"{where}: its qrels file {path} changed since the run (sha256 differs): the stored scores no longer "
            "match it; rerun the task, or give a qrels file as QRELS to score against it anyway"
        )
    return read_qrels(path, format)


def _concatenated(parts: list[Qrels]) -> Qrels:
    from mbench.formats.qrels import Qrels

    if len(parts) == 1:
        return parts[0]
    if any(p.targets is not None for p in parts):
        raise MbenchError("CIRCO annotations are one file per split; a result naming several cannot be rescored")
    query_ids = list(dict.fromkeys(q for p in parts for q in p.query_ids.tolist()))
    return Qrels(
        qids=np.concatenate([p.qids for p in parts]), docids=np.concatenate([p.docids for p in parts]),
        grades=np.concatenate([p.grades for p in parts]), query_ids=np.asarray(query_ids, dtype=object),
        format=parts[0].format,
    )


def _without_outside_pool(qrels: Qrels, entry: Mapping[str, Any], where: Path) -> Qrels:
    """Leave out the judgments the task's pool leaves out (M-BEIR's cross-dataset rule), checking their count."""
    from mbench.formats.qrels import Qrels

    prefix, expected = entry.get("outside_pool_prefix"), int(entry.get("outside_pool") or 0)
    if not prefix:
        return qrels
    outside = np.char.startswith(qrels.docids.astype(str), prefix)
    if int(outside.sum()) != expected:
        raise MbenchError(
            f"{where}: the run left out {expected} judgment(s) on dids starting {prefix!r}, the qrels file now has "
            f"{int(outside.sum())}: give QRELS explicitly"
        )
    keep = ~outside
    # A query judged only on left-out dids was dropped by the run too.
    query_ids = np.asarray(list(dict.fromkeys(qrels.qids[keep].tolist())), dtype=object)
    return Qrels(
        qids=qrels.qids[keep], docids=qrels.docids[keep], grades=qrels.grades[keep], query_ids=query_ids,
        format=qrels.format, task_ids=None if qrels.task_ids is None else qrels.task_ids[keep], targets=qrels.targets,
        source=qrels.source,
    )
