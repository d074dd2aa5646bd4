"""The results directory: one folder per (model, fingerprint, task, pool) holding
``result.json`` (metrics and provenance), ``run.trec.gz`` and ``per_query.parquet``.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mbench import __version__
from mbench.formats.atomic import atomic_write_bytes

RESULT_FILE = "result.json"
RUN_FILE = "run.trec.gz"
PER_QUERY_FILE = "per_query.parquet"


def _safe_component(name: str) -> str:
    """A path component from a model or task name (``/`` and spaces would nest or break paths)."""
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
    """Write ``result.json`` atomically (written last: its presence marks a complete result)."""
    atomic_write_bytes(path, (json.dumps(record, indent=2, sort_keys=False) + "\n").encode())


def read_result(directory: Path) -> dict[str, Any]:
    """Load ``result.json`` of a result directory."""
    path = Path(directory) / RESULT_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        from mbench.errors import MbenchError

        raise MbenchError(f"no result at {directory} (missing {RESULT_FILE})") from None


def result_exists(directory: Path) -> bool:
    """Whether a complete result (its ``result.json``) is already in ``directory``."""
    return (Path(directory) / RESULT_FILE).is_file()
