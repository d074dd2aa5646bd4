"""`mbench run --skip-bad-items`: leave out the queries and candidates whose image cannot be decoded.

Off by default: a bad image stops the run with an error naming the item and file. With the
option, every image of the task is decoded once before encoding; the items that fail are left
out and listed (with the reason) in ``result.json``. A left-out query is not scored; a left-out
candidate cannot be retrieved, but its judgments still count as relevant, so recall and nDCG
say what was lost instead of pretending it was never there.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mbench.data.types import ItemTable, TaskData
from mbench.errors import MbenchError
from mbench.metrics import Relevance


def unreadable_rows(table: ItemTable) -> dict[int, str]:
    """Row -> reason for every item of ``table`` whose image cannot be decoded."""
    from mbench.models.base import load_image

    bad = {}
    for row, image in enumerate(table.images):
        if image is None:
            continue
        try:
            load_image(table.item(row))
        except MbenchError as err:
            bad[row] = str(err)
    return bad


def drop_unreadable_items(data: TaskData) -> tuple[TaskData, dict[str, list[dict[str, str]]]]:
    """``data`` without its items whose image cannot be decoded, and the items left out (id and reason)."""
    bad_queries, bad_candidates = unreadable_rows(data.queries), unreadable_rows(data.pool)
    skipped = {
        "queries": [{"id": data.queries.ids[r], "reason": why} for r, why in sorted(bad_queries.items())],
        "candidates": [{"id": data.pool.ids[r], "reason": why} for r, why in sorted(bad_candidates.items())],
    }
    if not bad_queries and not bad_candidates:
        return data, skipped
    keep_queries = np.asarray([r for r in range(len(data.queries)) if r not in bad_queries], dtype=np.int64)
    keep_pool = np.asarray([r for r in range(len(data.pool)) if r not in bad_candidates], dtype=np.int64)
    # Old pool index -> new; a dropped candidate gets an index past the pool: judged, never retrieved.
    new_index = np.full(len(data.pool), -1, dtype=np.int64)
    new_index[keep_pool] = np.arange(keep_pool.size)
    dropped = np.flatnonzero(new_index < 0)
    new_index[dropped] = keep_pool.size + np.arange(dropped.size)

    relevance = data.relevance
    if relevance is not None:
        relevance = relevance.subset(keep_queries)
        relevance = Relevance.from_pairs(relevance.row_ids(), new_index[relevance.indices], relevance.grades,
                                         relevance.n_queries)
    targets = None if data.targets is None else _remap(data.targets[keep_queries], new_index)
    excluded = None if data.excluded is None else _remap(data.excluded[keep_queries], new_index)
    return replace(
        data,
        queries=_rows(data.queries, keep_queries),
        pool=_rows(data.pool, keep_pool),
        relevance=relevance,
        targets=targets,
        excluded=excluded,
    ), skipped


def _remap(indices: np.ndarray, new_index: np.ndarray) -> np.ndarray:
    return np.where(indices >= 0, new_index[np.maximum(indices, 0)], -1)


def _rows(table: ItemTable, rows: np.ndarray) -> ItemTable:
    picked = rows.tolist()
    return ItemTable(
        ids=[table.ids[r] for r in picked],
        texts=[table.texts[r] for r in picked],
        images=[table.images[r] for r in picked],
        modalities=[table.modalities[r] for r in picked],
        source=None if table.source is None else table.source[rows],
        source_names=list(table.source_names),
    )
