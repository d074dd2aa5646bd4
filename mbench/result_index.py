"""Finding results in a results directory and picking the one a table cell or a comparison means.

Every complete result is a folder holding `result.json` (see `mbench.results`). When several
results fit one selection (two fingerprints of one model, say), the newest `created` wins and
the choice is reported, never made silently.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mbench.errors import MbenchError
from mbench.results import PER_QUERY_FILE, RESULT_FILE


@dataclass(frozen=True)
class FoundResult:
    """One complete result: its folder and its parsed `result.json`."""

    directory: Path
    record: dict[str, Any]

    @property
    def task(self) -> str:
        """The task name."""
        return str(self.record["task"])

    @property
    def pool(self) -> str:
        """The candidate pool."""
        return str(self.record["pool"])

    @property
    def kind(self) -> str:
        """`retrieval` or `rerank`."""
        return str(self.record.get("kind", "retrieval"))

    @property
    def model_name(self) -> str:
        """The retriever's name as recorded."""
        return str(self.record["model"]["name"])

    @property
    def fingerprint(self) -> str:
        """The retriever's fingerprint (hex)."""
        return str(self.record["model"].get("fingerprint", ""))

    @property
    def reranker_name(self) -> str | None:
        """The reranker's name for a rerank result, else None."""
        rerank = self.record.get("rerank") or {}
        reranker = rerank.get("reranker") or {}
        return reranker.get("name")

    @property
    def rerank_top_k(self) -> int | None:
        """How many first-stage candidates were reranked, else None."""
        rerank = self.record.get("rerank") or {}
        return rerank.get("top_k")

    @property
    def variant(self) -> str:
        """`retrieval`, or `rerank:<reranker>@top<k>`: what distinguishes results of one model on one task."""
        if self.kind != "rerank":
            return "retrieval"
        return f"rerank:{self.reranker_name}@top{self.rerank_top_k}"

    @property
    def created(self) -> datetime:
        """When the result was written (timezone-aware; results without a date sort first)."""
        return _parse_created(self.record.get("created"))

    @property
    def main_metric(self) -> str:
        """The task's main metric as recorded."""
        return str(self.record["main_metric"])

    @property
    def per_query_path(self) -> Path:
        """Where this result's per-query scores are."""
        return self.directory / PER_QUERY_FILE

    def describe(self) -> str:
        """A short human-readable name: model, fingerprint prefix, task, pool, variant."""
        return f"{self.model_name}/{self.fingerprint[:12]} {self.task} [{self.pool}, {self.variant}]"


def _parse_created(value: Any) -> datetime:
    if not value:
        return datetime.min.replace(tzinfo=datetime.now().astimezone().tzinfo)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.min.replace(tzinfo=datetime.now().astimezone().tzinfo)
    return parsed if parsed.tzinfo else parsed.astimezone()


def load_found(directory: Path) -> FoundResult:
    """The result in `directory` (which must hold a `result.json`)."""
    path = Path(directory) / RESULT_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        raise MbenchError(f"no result at {directory} (missing {RESULT_FILE})") from None
    except json.JSONDecodeError as err:
        raise MbenchError(f"{path}: not valid JSON ({err}); delete the folder and rerun") from None
    for key in ("task", "pool", "model", "metrics", "main_metric"):
        if key not in record:
            raise MbenchError(f"{path}: missing key {key!r}; not an mbench result.json")
    return FoundResult(Path(directory), record)


def scan_results(root: Path) -> list[FoundResult]:
    """Every complete result under `root` (recursively), sorted by folder."""
    root = Path(root)
    if not root.exists():
        return []
    return [load_found(path.parent) for path in sorted(root.rglob(RESULT_FILE))]


def results_at(path: Path) -> list[FoundResult]:
    """The result of a result folder (not the rerank results nested below it), or every result under a folder."""
    if (Path(path) / RESULT_FILE).is_file():
        return [load_found(path)]
    return scan_results(path)


def model_dir_name(found: FoundResult, root: Path) -> str | None:
    """The first path component under `root` (the model's folder name), or None outside `root`."""
    try:
        relative = found.directory.resolve().relative_to(Path(root).resolve())
    except ValueError:
        return None
    return relative.parts[0] if relative.parts else None


def filter_results(
    results: Iterable[FoundResult],
    *,
    root: Path,
    task: str,
    pool: str | None,
    kind: str = "retrieval",
    model: str | None = None,
    fingerprint: str | None = None,
    reranker: str | None = None,
    top_k: int | None = None,
) -> list[FoundResult]:
    """The results that match every given selector (None selects anything)."""
    matched = []
    for found in results:
        if found.task != task or (pool is not None and found.pool != pool) or found.kind != kind:
            continue
        # A run is found by the plugin's own name, its folder, or the name the user ran it with
        # (an alias such as `minilm`).
        if model is not None and model not in (found.model_name, model_dir_name(found, root),
                                               found.record.get("requested_model")):
            continue
        if fingerprint is not None and not found.fingerprint.startswith(fingerprint):
            continue
        if reranker is not None and found.reranker_name != reranker:
            continue
        if top_k is not None and found.rerank_top_k != top_k:
            continue
        matched.append(found)
    return matched


def newest(results: Sequence[FoundResult]) -> FoundResult:
    """The result with the latest `created` (ties: the last folder in sorted order)."""
    if not results:
        raise ValueError("newest() of no results")
    return max(enumerate(results), key=lambda pair: (pair[1].created, pair[0]))[1]
