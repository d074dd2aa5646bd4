"""Running a plugin's encoder over items: length-sorted batches, images decoded in DataLoader
workers, autocast on CUDA, and a non-finite check per item. (What is stored, and under which
key, is the embedding cache's business: ``mbench.engine.cache``.) Embeddings leave this module in
the dtype the plugin returned (float32 on CPU; on CUDA whatever it emits under autocast), so the
store can keep them bit for bit.
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
    """``indices`` ordered by text length, longest first, so batches pad little.

    Equal lengths keep sentence-transformers' order (``np.argsort`` of the negated character
    lengths with numpy's default sort, as its ``encode()`` does): a batch's padding length moves
    the last bits of its embeddings, so forming the very batches upstream forms (same batch size,
    one store shard holding the whole table) gives upstream's embeddings bit for bit.
    """
    lengths = np.fromiter((len(table.texts[i] or "") for i in indices), dtype=np.int64, count=len(indices))
    return indices[np.argsort(-lengths)]


def autocast_dtype(device: str) -> Any:
    """The autocast dtype of encoding on ``device``: bf16 on CUDA (fp16 where bf16 is unsupported), None on CPU."""
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def encode_precision(device: str) -> str:
    """How encoding computes on ``device``: ``float32`` (CPU) or ``autocast-bfloat16`` / ``autocast-float16`` (CUDA)."""
    dtype = autocast_dtype(device)
    return "float32" if dtype is None else "autocast-" + str(dtype).removeprefix("torch.")


def autocast_context(device: str) -> Any:
    """The autocast of ``autocast_dtype(device)`` on CUDA; a no-op on CPU, which stays fp32."""
    import contextlib

    import torch

    dtype = autocast_dtype(device)
    return contextlib.nullcontext() if dtype is None else torch.autocast("cuda", dtype=dtype)


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
) -> Any:
    """Encode the items at ``indices`` (in that order): a CPU tensor [len(indices), dim] in the dtype
    the encoder returned, its values untouched.

    ``instructions`` and ``prompts`` are indexed like ``table``. A non-finite embedding, or
    batches of different dtypes, are errors naming the item.
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
    out: torch.Tensor | None = None
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
            embeddings = torch.as_tensor(embeddings).detach().cpu()
            if embeddings.ndim != 2 or embeddings.shape[0] != len(items):
                raise MbenchError(
                    f"encoder returned shape {tuple(embeddings.shape)} for a batch of {len(items)} {role} items"
                )
            if not embeddings.is_floating_point():
                raise MbenchError(f"encoder returned {embeddings.dtype} embeddings for {role} items; expected floats")
            finite = torch.isfinite(embeddings).all(dim=1)
            if not bool(finite.all()):
                bad = items[int((~finite).nonzero()[0])]
                raise MbenchError(f"non-finite (NaN or inf) embedding for {role} item {bad.id!r}")
            if out is None:
                out = torch.empty((len(indices), embeddings.shape[1]), dtype=embeddings.dtype)
            elif embeddings.dtype != out.dtype:
                raise MbenchError(
                    f"encoder returned {embeddings.dtype} embeddings for {role} item {items[0].id!r} after "
                    f"{out.dtype} ones: one run must emit one dtype"
                )
            out[[position_of[r] for r in rows]] = embeddings
            if on_batch is not None:
                on_batch(len(items))
    if out is None:
        return torch.empty((0, 0), dtype=torch.float32)
    return out
