"""The worst queries of a result: the query, its top retrieved items and its gold items, with text and
image thumbnails where the task's data is on disk (ids only where it is not, saying why).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mbench.data.types import Item, TaskData
from mbench.errors import MbenchError
from mbench.reporting.result_index import FoundResult

THUMBNAIL_PX = 96
TEXT_CHARS = 240


@dataclass(frozen=True)
class ShownItem:
    """A query or candidate as the page shows it."""

    id: str
    text: str | None = None
    thumbnail: str | None = None  # a data: URI
    note: str | None = None  # why something is not shown
    relevant: bool = False


@dataclass(frozen=True)
class QueryView:
    """One of the worst queries: its value of the metric, the query, what was retrieved, what is gold."""

    qid: str
    value: float
    query: ShownItem
    retrieved: list[ShownItem]
    gold: list[ShownItem]


@dataclass
class Drilldown:
    """The worst queries of one result by its main metric."""

    metric: str
    n_queries: int
    queries: list[QueryView] = field(default_factory=list)
    note: str | None = None


class Thumbnails:
    """JPEG thumbnails as data URIs, made once per image file."""

    def __init__(self, size: int = THUMBNAIL_PX) -> None:
        self.size = size
        self._made: dict[str, tuple[str | None, str | None]] = {}

    def of(self, path: str) -> tuple[str | None, str | None]:
        """(data URI, None), or (None, why not) for a missing or unreadable image."""
        if path not in self._made:
            self._made[path] = self._make(path)
        return self._made[path]

    def _make(self, path: str) -> tuple[str | None, str | None]:
        from PIL import Image

        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                image.thumbnail((self.size, self.size))
                buffer = io.BytesIO()
                image.save(buffer, format="JPEG", quality=80)
        except FileNotFoundError:
            return None, f"image not on disk: {path}"
        except Exception as err:  # PIL raises many types for a broken file; the page says which
            return None, f"image unreadable: {path}: {type(err).__name__}"
        return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode(), None


class TaskDataCache:
    """Each task's data, loaded once for all the results that show it (or the reason it cannot be)."""

    def __init__(self, data_dir: Path | None, cache_dir: Path | None, tasks_dirs: Sequence[Path] = ()) -> None:
        self.data_dir, self.cache_dir, self.tasks_dirs = data_dir, cache_dir, tasks_dirs
        self._loaded: dict[tuple, tuple[TaskData | None, str | None]] = {}
        self._positions: dict[int, dict[str, int]] = {}

    def of(self, found: FoundResult) -> tuple[TaskData | None, str | None]:
        """(data as the result saw it, None) or (None, why it is not shown)."""
        record = found.record
        key = (found.task, found.pool, record.dataset.get("source"), record.limit_variant)
        if key not in self._loaded:
            self._loaded[key] = self._load(found)
        return self._loaded[key]

    def pool_position(self, data: TaskData) -> dict[str, int]:
        """Candidate id -> pool index of ``data``."""
        if id(data) not in self._positions:
            self._positions[id(data)] = data.pool.index_of()
        return self._positions[id(data)]

    def _load(self, found: FoundResult) -> tuple[TaskData | None, str | None]:
        from mbench.data.limit import limited_like
        from mbench.data.loader import data_dir_from_source, load_task
        from mbench.tasks.index import get_index

        try:
            spec = get_index(self.tasks_dirs).task(found.task)
            source = found.record.dataset.get("source")
            data_dir = self.data_dir if self.data_dir is not None else data_dir_from_source(source, spec.data_folder)
            data = load_task(spec, data_dir=data_dir, pool=found.pool, cache_dir=self.cache_dir, check_images=False)
            return limited_like(data, found.record), None
        except MbenchError as err:
            return None, f"the task's data is not available here, so ids only ({str(err).splitlines()[0]})"


def worst_queries(
    found: FoundResult, cache: TaskDataCache, thumbnails: Thumbnails, *, worst: int = 5, top: int = 5
) -> Drilldown:
    """The ``worst`` queries of ``found`` by its main metric (ties: by qid), each with its top ``top`` and gold items."""
    from mbench.results import RUN_FILE, read_per_query
    from mbench.formats.runs import read_run

    metric = found.record.main_metric
    view = Drilldown(metric=metric, n_queries=0)
    if not found.per_query_path.is_file() or not (found.directory / RUN_FILE).is_file():
        view.note = f"no per-query scores or run file in {found.directory}"
        return view
    frame = read_per_query(found.per_query_path)
    if metric not in frame.columns:
        view.note = f"{found.per_query_path} has no column {metric}"
        return view
    frame = frame.assign(qid=frame["qid"].astype(str)).sort_values([metric, "qid"], kind="stable")
    view.n_queries = len(frame)
    run = read_run(found.directory / RUN_FILE, depth=top)
    run_row = {str(qid): row for row, qid in enumerate(run.qids.tolist())}
    data, view.note = cache.of(found)
    gold_of = _gold_from_data(data) if data is not None else _gold_from_qrels(found)
    for qid, value in zip(frame["qid"].tolist()[:worst], frame[metric].tolist()[:worst]):
        gold = gold_of(qid)
        ranked = [] if qid not in run_row else [str(run.docids[i]) for i in run.ranking[run_row[qid]] if i >= 0]
        view.queries.append(QueryView(
            qid=qid,
            value=float(value),
            query=_query_item(qid, data, thumbnails),
            retrieved=[_pool_item(did, data, cache, thumbnails, did in gold) for did in ranked],
            gold=[_pool_item(did, data, cache, thumbnails, True) for did in sorted(gold)],
        ))
    return view


def _gold_from_data(data: TaskData) -> Any:
    rows = {qid: row for row, qid in enumerate(data.queries.ids)}

    def gold(qid: str) -> set[str]:
        if data.relevance is None or qid not in rows:
            return set()
        row = rows[qid]
        start, stop = data.relevance.indptr[row], data.relevance.indptr[row + 1]
        positive = data.relevance.grades[start:stop] > 0
        return {data.pool.ids[int(i)] for i in data.relevance.indices[start:stop][positive]}

    return gold


def _gold_from_qrels(found: FoundResult) -> Any:
    """Gold ids from the qrels files the result records (when its data cannot be loaded)."""
    from mbench.results import recorded_qrels

    try:
        qrels = recorded_qrels(found.directory)
    except MbenchError:
        return lambda qid: set()
    positive = qrels.grades > 0
    by_query: dict[str, set[str]] = {}
    for qid, did in zip(qrels.qids[positive].tolist(), qrels.docids[positive].tolist()):
        by_query.setdefault(str(qid), set()).add(str(did))
    return lambda qid: by_query.get(qid, set())


def _query_item(qid: str, data: TaskData | None, thumbnails: Thumbnails) -> ShownItem:
    if data is None:
        return ShownItem(qid)
    try:
        row = data.queries.ids.index(qid)
    except ValueError:
        return ShownItem(qid, note="not among the task's queries")
    return _shown(data.queries.item(row), thumbnails, relevant=False)


def _pool_item(did: str, data: TaskData | None, cache: TaskDataCache, thumbnails: Thumbnails, relevant: bool) -> ShownItem:
    if data is None:
        return ShownItem(did, relevant=relevant)
    position = cache.pool_position(data).get(did)
    if position is None:
        return ShownItem(did, note="not in the loaded pool", relevant=relevant)
    return _shown(data.pool.item(position), thumbnails, relevant=relevant)


def _shown(item: Item, thumbnails: Thumbnails, *, relevant: bool) -> ShownItem:
    text = item.text
    if text is not None and len(text) > TEXT_CHARS:
        text = text[: TEXT_CHARS - 1].rstrip() + "…"
    thumbnail, note = (None, None)
    if isinstance(item.image, (str, Path)):
        thumbnail, note = thumbnails.of(str(item.image))
    return ShownItem(item.id, text=text, thumbnail=thumbnail, note=note, relevant=relevant)
