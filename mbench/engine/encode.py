"""Encoding items into the embedding store: content-addressed keys, length-sorted batches,
images decoded in DataLoader workers, autocast on CUDA, and a non-finite check per item.

Embeddings leave this module in the dtype the plugin returned (float32 on CPU; on CUDA
whatever the plugin emits under autocast), so the store can keep them bit for bit.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mbench.data.types import Item, ItemTable
from mbench.engine.store import DEFAULT_SHARD_SIZE
from mbench.errors import MbenchError


@dataclass(frozen=True)
class EncodeOptions:
    """How to run a plugin's encoder: batch size, image-decoding workers, device and progress."""

    batch_size: int = 64
    num_workers: int = 0
    device: str = "cpu"
    shard_size: int = DEFAULT_SHARD_SIZE
    progress: bool = True


def item_digest(item: Item, data_root: Path | str | None = None) -> str:
    """Hex digest of an item's content: modality, text and image.

    Images are identified by their path relative to the dataset root and their byte size:
    re-reading every image of a 5.6M pool just to build a key would double the I/O of a run,
    while a moved dataset folder must not miss the cache. Bytes and in-memory images are hashed.
    """
    digest = hashlib.sha256()
    image_part = ""
    if item.image is not None:
        if isinstance(item.image, (str, Path)):
            path = Path(item.image)
            rel = os.path.relpath(path, data_root) if data_root is not None else str(path)
            size = path.stat().st_size if path.exists() else -1
            image_part = f"path:{rel}\x1e{size}"
        elif isinstance(item.image, (bytes, bytearray)):
            image_part = "bytes:" + hashlib.sha256(item.image).hexdigest()
        else:  # a PIL image held in memory
            image_part = f"pixels:{item.image.mode}:{item.image.size}:" + hashlib.sha256(item.image.tobytes()).hexdigest()
    for part in (item.modality, "\x00" if item.text is None else item.text, image_part):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x1f")
    return digest.hexdigest()


def item_content_hash(item: Item, instruction: str | None, prompt: str | None, data_root: Path | None) -> bytes:
    """A digest of everything about an item that can change its embedding: content, instruction, prompt."""
    payload = "\x1f".join((item_digest(item, data_root), "\x00" if instruction is None else instruction,
                           "\x00" if prompt is None else prompt))
    return hashlib.sha256(payload.encode("utf-8")).digest()


def embedding_key(model_fingerprint: str, role: str, dtype: str, hashes: Sequence[bytes]) -> str:
    """The store key of one embedding matrix: model, role, dtype and the ordered item contents.

    ``dtype`` names everything about precision that can change the stored numbers: the encode
    precision (``encode_precision``) and the store dtype (``native`` or ``float16``).
    """
    digest = hashlib.sha256()
    digest.update(f"{model_fingerprint}\x1f{role}\x1f{dtype}\x1f{len(hashes)}\x1f".encode())
    for h in hashes:
        digest.update(h)
    return digest.hexdigest()


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
