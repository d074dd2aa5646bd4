"""Running a plugin's encoder over items: length-sorted batches, images decoded in DataLoader
workers, autocast on CUDA, and a non-finite check per item. (What is stored, and under which
key, is the embedding cache's business: ``mbench.engine.cache``.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mbench.data.types import Item, ItemTable
from mbench.engine.cache.store import DEFAULT_SHARD_SIZE
from mbench.errors import MbenchError


@dataclass(frozen=True)
class EncodeOptions:
    """How to run a plugin's encoder: batch size, image-decoding workers, device and progress."""

    batch_size: int = 64
    num_workers: int = 0
    device: str = "cpu"
    shard_size: int = DEFAULT_SHARD_SIZE
    progress: bool = True


class _ItemDataset:
    """Indexable view that loads each item's image (path -> PIL) inside DataLoader workers."""

    def __init__(self, table: ItemTable, order: np.ndarray) -> None:
        self.table = table
        self.order = order

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, position: int) -> tuple[int, Item]:
        index = int(self.order[position])
        item = self.table.item(index)
        if isinstance(item.image, (str, Path)):
            from mbench.models.base import load_image

            item = Item(item.id, item.text, load_image(item), item.modality)
        return position, item


def _collate(batch: list[tuple[int, Item]]) -> list[tuple[int, Item]]:
    return batch


def length_sorted(table: ItemTable, indices: np.ndarray) -> np.ndarray:
    """``indices`` ordered by text length, longest first, so batches pad little."""
    lengths = np.fromiter((len(table.texts[i] or "") for i in indices), dtype=np.int64, count=len(indices))
    return indices[np.argsort(-lengths, kind="stable")]


def autocast_context(device: str) -> Any:
    """bf16 autocast on CUDA (fp16 where bf16 is unsupported); a no-op on CPU, which stays fp32."""
    import contextlib

    import torch

    if device.startswith("cuda"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


def encode_rows(
    encode: Callable[..., Any],
    table: ItemTable,
    indices: np.ndarray,
    *,
    role: str,
    instructions: Sequence[str | None],
    prompts: Sequence[str | None],
    options: EncodeOptions,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Encode the items at ``indices`` (in that order) and return float32 [len(indices), dim].

    ``instructions`` and ``prompts`` are indexed like ``table``. A non-finite embedding is an
    error naming the item.
    """
    import torch
    from torch.utils.data import DataLoader

    order = length_sorted(table, np.asarray(indices, dtype=np.int64))
    position_of = {int(index): pos for pos, index in enumerate(indices)}
    loader = DataLoader(
        _ItemDataset(table, order),
        batch_size=options.batch_size,
        shuffle=False,
        num_workers=options.num_workers,
        collate_fn=_collate,
        # Bounded prefetch keeps decoded images from piling up in memory.
        prefetch_factor=2 if options.num_workers > 0 else None,
        persistent_workers=False,
    )
    out: np.ndarray | None = None
    with torch.inference_mode(), autocast_context(options.device):
        for batch in loader:
            rows = [int(order[pos]) for pos, _ in batch]
            items = [item for _, item in batch]
            embeddings = encode(
                items,
                role=role,
                instructions=[instructions[i] for i in rows],
                prompts=[prompts[i] for i in rows],
            )
            embeddings = torch.as_tensor(embeddings).detach().float().cpu()
            if embeddings.ndim != 2 or embeddings.shape[0] != len(items):
                raise MbenchError(
                    f"encoder returned shape {tuple(embeddings.shape)} for a batch of {len(items)} {role} items"
                )
            finite = torch.isfinite(embeddings).all(dim=1)
            if not bool(finite.all()):
                bad = items[int((~finite).nonzero()[0])]
                raise MbenchError(f"non-finite (NaN or inf) embedding for {role} item {bad.id!r}")
            if out is None:
                out = np.empty((len(indices), embeddings.shape[1]), dtype=np.float32)
            out[[position_of[r] for r in rows]] = embeddings.numpy()
            if on_batch is not None:
                on_batch(len(items))
    if out is None:
        return np.empty((0, 0), dtype=np.float32)
    return out
