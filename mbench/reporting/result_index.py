"""Finding results in a results directory and picking the one a table cell or a comparison means.

Every complete result is a folder holding `result.json` (read by `mbench.results`). When several
results fit one selection (two fingerprints of one model, say), the newest `created` wins and
the choice is reported, never made silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mbench.results import PER_QUERY_FILE, RESULT_FILE, ResultRecord, read_result, result_exists


@dataclass(frozen=True)
class FoundResult:
    """One complete result: its folder and its record (``record.task``, ``record.variant``, ...)."""

    directory: Path
    record: ResultRecord

    @property
    def task(self) -> str:
        """The task name."""
        return self.record.task

    @property
    def pool(self) -> str:
        """The candidate pool."""
        return self.record.pool

    @property
    def created(self) -> datetime:
        """When the result was written (timezone-aware; results without a date sort first)."""
        return _parse_created(self.record.created)

    @property
    def per_query_path(self) -> Path:
        """Where this result's per-query scores are."""
        return self.directory / PER_QUERY_FILE

    def describe(self) -> str:
        """A short human-readable name: model, fingerprint prefix, task, pool, variant."""
        record = self.record
        return f"{record.model_name}/{record.fingerprint[:12]} {record.task} [{record.pool}, {record.variant}]"


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
    return FoundResult(Path(directory), read_result(directory))


def scan_results(root: Path) -> list[FoundResult]:
    """Every complete result under `root` (recursively), sorted by folder."""
    root = Path(root)
    if not root.exists():
        return []
    return [load_found(path.parent) for path in sorted(root.rglob(RESULT_FILE))]


def results_at(path: Path) -> list[FoundResult]:
    """The result of a result folder (not the rerank results nested below it), or every result under a folder."""
    if result_exists(path):
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
    limit: int | None = None,
) -> list[FoundResult]:
    """The results that match every given selector (None selects anything, except ``limit``: None
    selects full results only, N the partial results of `mbench run --limit N`: the two never mix)."""
    matched = []
    for found in results:
        record = found.record
        if record.task != task or (pool is not None and record.pool != pool) or record.kind != kind:
            continue
        if record.limit_queries != limit:
            continue
        # A run is found by the plugin's own name, its folder, or the name the user ran it with
        # (an alias such as `minilm`).
        if model is not None and model not in (record.model_name, model_dir_name(found, root), record.requested_model):
            continue
        if fingerprint is not None and not record.fingerprint.startswith(fingerprint):
            continue
        if reranker is not None and record.reranker_name != reranker:
            continue
        if top_k is not None and record.rerank_top_k != top_k:
            continue
        matched.append(found)
    return matched


def newest(results: Sequence[FoundResult]) -> FoundResult:
    """The result with the latest `created` (ties: the last folder in sorted order)."""
    if not results:
        raise ValueError("newest() of no results")
    return max(enumerate(results), key=lambda pair: (pair[1].created, pair[0]))[1]
