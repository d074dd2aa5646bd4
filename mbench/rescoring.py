"""The judgments a result was scored against, recorded in its result.json, and rescoring from them.

``mbench run`` records the qrels file(s) a task read (path, sha256, format) and how many of their
judgments the pool leaves out by the dataset's rule (M-BEIR OVEN/InfoSeek local pools).
``mbench score RESULT_DIR`` reads them back: the files must be where they were and unchanged,
the same judgments are left out, and the stored run file is scored with any metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mbench.data.types import QrelsSource
from mbench.errors import MbenchError
from mbench.qrels import Qrels

RECORD_KEY = "qrels"


def qrels_record(source: QrelsSource | None) -> dict[str, Any] | None:
    """The ``qrels`` entry of result.json: each file's path and sha256 (None for a hub table), format, left-out count."""
    from mbench.engine.rerank import file_sha256

    if source is None:
        return None
    files = [{"path": path, "sha256": file_sha256(Path(path)) if Path(path).is_file() else None} for path in source.files]
    return {
        "files": files,
        "format": source.format,
        "outside_pool": source.outside_pool,
        "outside_pool_prefix": source.outside_pool_prefix,
    }


def recorded_run(directory: Path) -> tuple[Path, list[str]]:
    """The run file of the result in ``directory`` and the metrics its result.json holds."""
    from mbench.results import RUN_FILE, read_result

    record = read_result(directory)
    run_file = Path(directory) / RUN_FILE
    if not run_file.is_file():
        raise MbenchError(f"{directory}: no {RUN_FILE}; the result folder is incomplete")
    return run_file, list(record.get("metrics") or {})


def recorded_qrels(directory: Path) -> Qrels:
    """The judgments the result in ``directory`` was scored against: its recorded files, verified unchanged."""
    from mbench.results import RESULT_FILE, read_result

    where = Path(directory) / RESULT_FILE
    entry = read_result(directory).get(RECORD_KEY)
    if not entry:
        raise MbenchError(
            f"{where}: records no qrels (an unscored task, or a result written before mbench recorded them): "
            "give the QRELS file as the second argument"
        )
    qrels = _concatenated([_verified(file, entry["format"], where) for file in entry["files"]])
    return _without_outside_pool(qrels, entry, where)


def _verified(file: Mapping[str, Any], format: str, where: Path) -> Qrels:
    from mbench.engine.rerank import file_sha256
    from mbench.qrels import read_qrels

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
    )
