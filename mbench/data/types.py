"""The in-memory form every adapter produces: items, item tables and a loaded task."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mbench.metrics import Relevance

# M-BEIR's modality strings; a query or candidate is exactly one of these.
MODALITIES = ("text", "image", "image,text")


@dataclass(frozen=True)
class Item:
    """One query or candidate as a plugin sees it: text and/or image (a path, bytes or a PIL image)."""

    id: str
    text: str | None
    image: str | Path | bytes | Any | None
    modality: str


@dataclass
class ItemTable:
    """A column-oriented list of items (the queries or the candidate pool of a task).

    ``images`` hold absolute file paths (decoded lazily by whoever needs pixels). ``source``
    is set on pools assembled from several pools (the M-BEIR global pool): for each item the
    index into ``source_names`` of the pool it came from.
    """

    ids: list[str]
    texts: list[str | None]
    images: list[str | None]
    modalities: list[str]
    source: np.ndarray | None = None
    source_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if not (len(self.texts) == len(self.images) == len(self.modalities) == n):
            raise ValueError("ItemTable columns must have the same length")
        if self.source is not None and len(self.source) != n:
            raise ValueError("ItemTable.source must have one entry per item")

    def __len__(self) -> int:
        return len(self.ids)

    def item(self, index: int) -> Item:
        """The item at ``index``."""
        return Item(self.ids[index], self.texts[index], self.images[index], self.modalities[index])

    def items(self, indices: range | list[int] | np.ndarray) -> list[Item]:
        """The items at ``indices``, in that order."""
        return [self.item(int(i)) for i in indices]

    def index_of(self) -> dict[str, int]:
        """Map from item id to its position."""
        return {item_id: i for i, item_id in enumerate(self.ids)}


@dataclass(frozen=True)
class QrelsSource:
    """The judgment file(s) a task is scored against, and the judgments of them its pool leaves out.

    ``format`` is one of mbench.qrels' formats, so ``mbench score RESULT_DIR`` can read the files
    again. ``outside_pool`` counts judgments naming candidates that are not in the loaded pool by
    the dataset's own rule (M-BEIR OVEN/InfoSeek judgments on the other dataset's candidates,
    whose dids start with ``outside_pool_prefix``): they count in the global pool only.
    """

    files: tuple[str, ...]
    format: str
    outside_pool: int = 0
    outside_pool_prefix: str | None = None


@dataclass
class TaskData:
    """A task ready to evaluate: queries, candidate pool, graded relevance and extras.

    ``relevance`` has one row per query (queries without any judgment are dropped by the
    adapters). ``targets`` (CIRCO) is the pool index of each query's single target, -1 where
    absent. ``excluded`` is, per query, a pool index removed from its ranking before scoring
    (BEIR tasks with ``ignore_identical_ids``), -1 where none. ``source`` says where the data
    came from (a local path, or a hub id with its revision) for the result's provenance;
    ``qrels`` which judgment files the relevance came from.
    """

    name: str
    queries: ItemTable
    pool: ItemTable
    relevance: Relevance | None
    targets: np.ndarray | None = None
    excluded: np.ndarray | None = None
    source: str = ""
    pool_name: str = "local"
    qrels: QrelsSource | None = None
