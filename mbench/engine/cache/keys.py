"""The keys of the cache: digests of everything that can change an embedding or a reranker score.

An embedding matrix is keyed by the model fingerprint (plugin version, weights, output-affecting
arguments), the role, the dtype and every item's content with its instruction and prompt, in
order; a reranker score by the reranker fingerprint, the prompt template and the two items'
content. Images are identified by their path relative to the dataset root and their byte size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from mbench.data.types import Item


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
    precision (``mbench.engine.encode.encode_precision``) and the store dtype (``native`` or ``float16``).
    """
    digest = hashlib.sha256()
    digest.update(f"{model_fingerprint}\x1f{role}\x1f{dtype}\x1f{len(hashes)}\x1f".encode())
    for h in hashes:
        digest.update(h)
    return digest.hexdigest()


def pair_key(reranker_fingerprint: str, prompt: str | None, query_digest: str, cand_digest: str) -> str:
    """The cache key of one pair score."""
    payload = "\x1f".join((reranker_fingerprint, "\x00" if prompt is None else prompt, query_digest, cand_digest))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()
