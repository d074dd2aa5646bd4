"""The results directory: one folder per (model, fingerprint, task, pool) holding
``result.json`` (metrics and provenance), ``run.trec.gz`` and ``per_query.parquet``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mbench import __version__
from mbench.errors import MbenchError
from mbench.formats.atomic import atomic_write_bytes
from mbench.formats.checked_json import ChecksumError, dumps_checked, loads_checked

RESULT_FILE = "result.json"
RUN_FILE = "run.trec.gz"
PER_QUERY_FILE = "per_query.parquet"
# The files of a result folder that result.json vouches for (by sha256), when present.
DATA_FILES = (RUN_FILE, PER_QUERY_FILE, "submission.json", "rerank_scores.parquet")
# The keys of result.json files written before they carried a checksum.
_LEGACY_RESULT_KEYS = frozenset({
    "mbench_result_version", "task", "task_spec_hash", "pool", "kind", "model", "requested_model", "model_args",
    "depth", "dataset", "instruction_policy", "seed", "instructions", "prompt", "search_backend", "device",
    "world_size", "versions", "git_sha", "created", "rerank", "metrics", "main_metric", "n_queries", "timings",
})


def _safe_component(name: str) -> str:
    """A path component from a model, task or pool name: ``/``, spaces and a leading dot (``..``) would
    nest, break or climb out of the results root."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", name)
    return "_" + safe if not safe or safe.startswith(".") else safe


def result_dir(
    results_root: Path, model_name: str, model_fingerprint: str, task: str, pool: str, variant: str | None = None
) -> Path:
    """``<root>/<model>/<fingerprint[:12]>/<task>/<pool>[.<variant>]/``.

    ``variant`` names a run option that changes results without changing the model, such as a
    non-default instruction policy (``none``, ``seeded-3``), so ablations sit side by side.
    """
    leaf = _safe_component(pool) if not variant else f"{_safe_component(pool)}.{_safe_component(variant)}"
    return Path(results_root) / _safe_component(model_name) / model_fingerprint[:12] / _safe_component(task) / leaf


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


def write_per_query(path: Path, qids: list[str], per_query: Mapping[str, np.ndarray]) -> None:
    """Per-query metric values as a parquet table (``qid`` column plus one column per metric)."""
    import io

    import pandas as pd

    frame = pd.DataFrame({"qid": qids, **{name: np.asarray(v, dtype=np.float64) for name, v in per_query.items()}})
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())


def read_per_query(path: Path) -> Any:
    """The per-query table of a result as a pandas DataFrame."""
    import pandas as pd

    return pd.read_parquet(path)


def write_result_json(path: Path, record: Mapping[str, Any]) -> None:
    """Write ``result.json`` atomically (written last: its presence marks a complete result).

    It records the sha256 of the result's other files (``files``) and its own checksum, so a
    damaged or changed file of the folder is detected when the result is read.
    """
    directory = Path(path).parent
    files = {name: _sha256_of_file(directory / name) for name in DATA_FILES if (directory / name).is_file()}
    atomic_write_bytes(path, dumps_checked({**record, "files": files}))


def read_result(directory: Path) -> dict[str, Any]:
    """Load ``result.json`` of a result directory; a damaged one is an error naming it."""
    path = Path(directory) / RESULT_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MbenchError(f"no result at {directory} (missing {RESULT_FILE})") from None
    try:
        return loads_checked(data, legacy_keys=_LEGACY_RESULT_KEYS)
    except ChecksumError as err:
        raise MbenchError(f"{path}: damaged result: {err}; `mbench run` computes it again (or delete the folder)") from None


def verify_result(directory: Path) -> dict[str, Any]:
    """``read_result``, and every file it lists present with the sha256 it recorded; else an error naming the file."""
    directory = Path(directory)
    record = read_result(directory)
    for name, digest in (record.get("files") or {}).items():
        path = directory / name
        if not path.is_file():
            raise MbenchError(f"{path}: missing, though {directory / RESULT_FILE} lists it")
        if _sha256_of_file(path) != digest:
            raise MbenchError(f"{path}: its bytes differ from the sha256 recorded in {RESULT_FILE} (changed or damaged)")
    return record


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def result_exists(directory: Path) -> bool:
    """Whether a complete result (its ``result.json``) is already in ``directory``."""
    return (Path(directory) / RESULT_FILE).is_file()
