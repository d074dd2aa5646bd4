"""A deterministic, dependency-light embedder for tests and demos (`--model hash-embed`).

Text: signed character n-gram counts hashed (crc32, stable across processes, unlike ``hash``)
into ``dim`` buckets. Images: the RGB pixels of a ``image_size`` x ``image_size`` downsample
projected by a fixed seeded Gaussian matrix. An image,text item sums the two unit vectors.
Every row is computed on its own, so outputs are bit-identical for any batch size.

Test hooks that leave outputs unchanged: ``encode_calls`` / ``items_encoded`` counters,
``call_log`` (one line per encoded item, for counting across processes) and ``delay`` (seconds
per item, so a run can be killed mid-encoding). ``nan_ids`` changes outputs on purpose: those
items embed to NaN, to exercise the harness's NaN check.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from mbench.data.types import MODALITIES, Item
from mbench.errors import MbenchError
from mbench.models.base import (
    ModelMeta,
    Role,
    check_encode_call,
    load_image,
)

PLUGIN_VERSION = "1"

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_modalities(spec: str, arg: str) -> frozenset[str]:
    """``"text|image|image,text"`` -> a set of modalities (``|`` separates: ``image,text`` is one modality)."""
    found = frozenset(part.strip() for part in spec.split("|") if part.strip())
    unknown = sorted(found - set(MODALITIES))
    if unknown or not found:
        raise MbenchError(f"hash-embed --model-arg {arg}={spec!r}: expected '|'-separated modalities from {list(MODALITIES)}")
    return found


class HashingRetriever:
    """Character n-gram hashing for text, a fixed random projection of downsampled pixels for images."""

    def __init__(
        self,
        dim: int = 256,
        ngram: int = 3,
        image_size: int = 16,
        seed: int = 0,
        query_modalities: str = "text|image|image,text",
        cand_modalities: str = "text|image|image,text",
        uses_instructions: bool = True,
        prompt_family: str | None = None,
        nan_ids: str = "",
        call_log: Path | None = None,
        delay: float = 0.0,
        checkpoint: Path | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        if dim < 2 or ngram < 1 or image_size < 1:
            raise MbenchError("hash-embed: dim must be >= 2, ngram >= 1 and image_size >= 1")
        if dtype not in _DTYPES:
            raise MbenchError(f"hash-embed: dtype must be one of {list(_DTYPES)}, got {dtype!r}")
        self.dim, self.ngram, self.image_size = dim, ngram, image_size
        self.device = torch.device(device)
        self.dtype = _DTYPES[dtype]
        self.uses_instructions = uses_instructions
        self.nan_ids = frozenset(i for i in nan_ids.split(",") if i)
        self.call_log = Path(call_log) if call_log else None
        self.delay = delay
        self.encode_calls = 0
        self.items_encoded = 0
        # A "weights" file: its bytes seed the projection and its digest is the revision, so the
        # harness's checkpoint handling (a changed file misses the cache) can be tested end to end.
        revision = f"seed-{seed}"
        if checkpoint is not None:
            from mbench.models.base import file_digest

            if not Path(checkpoint).is_file():
                raise MbenchError(f"hash-embed: checkpoint file not found: {checkpoint}")
            revision = file_digest(checkpoint)
            seed = int(revision.split(":")[1][:12], 16) ^ seed
        generator = torch.Generator().manual_seed(seed)
        projection = torch.randn(3 * image_size * image_size, dim, generator=generator, dtype=torch.float32)
        self._projection = projection.to(self.device, self.dtype)
        self.meta = ModelMeta(
            name="hash-embed",
            version=PLUGIN_VERSION,
            revision=revision,
            query_modalities=parse_modalities(query_modalities, "query_modalities"),
            cand_modalities=parse_modalities(cand_modalities, "cand_modalities"),
            dim=dim,
            similarity="cosine",
            prompt_family=prompt_family,
            uses_instructions=uses_instructions,
            output_args={
                "dim": dim,
                "ngram": ngram,
                "image_size": image_size,
                "uses_instructions": uses_instructions,
                "nan_ids": sorted(self.nan_ids),
            },
        )

    def encode(
        self,
        items: Sequence[Item],
        *,
        role: Role,
        instructions: Sequence[str | None],
        prompts: Sequence[str | None],
    ) -> torch.Tensor:
        """Unit vectors [len(items), dim] (float32); NaN rows for the ids in ``nan_ids``."""
        check_encode_call(self.meta, items, role, instructions, prompts)
        self.encode_calls += 1
        rows = []
        for item, instruction, prompt in zip(items, instructions, prompts):
            if self.delay:
                time.sleep(self.delay)
            rows.append(self._embed_one(item, instruction, prompt))
        self.items_encoded += len(items)
        if self.call_log is not None:
            with open(self.call_log, "a", encoding="utf-8") as log:
                log.write("".join(f"{os.getpid()}\t{role}\t{item.id}\n" for item in items))
        if not rows:
            return torch.empty(0, self.dim, dtype=torch.float32, device=self.device)
        return torch.stack(rows)

    def _embed_one(self, item: Item, instruction: str | None, prompt: str | None) -> torch.Tensor:
        if item.id in self.nan_ids:
            return torch.full((self.dim,), float("nan"), device=self.device)
        text_parts = []
        if prompt is not None:
            text_parts.append(prompt)
        if instruction is not None and self.uses_instructions:
            text_parts.append(instruction)
        if item.text is not None and "text" in item.modality.split(","):
            text_parts.append(item.text)
        vector = torch.zeros(self.dim, dtype=torch.float32, device=self.device)
        if text_parts:
            vector += _unit(self._text_vector("\n".join(text_parts)))
        if "image" in item.modality.split(","):
            vector += _unit(self._image_vector(item))
        return _unit(vector)

    def _text_vector(self, text: str) -> torch.Tensor:
        padded = f"\x02{text.lower()}\x03"
        counts = np.zeros(self.dim, dtype=np.float32)
        n = self.ngram
        for start in range(max(1, len(padded) - n + 1)):
            code = zlib.crc32(padded[start : start + n].encode("utf-8"))
            # The top bit picks the sign so colliding n-grams cancel on average instead of piling up.
            counts[code % self.dim] += 1.0 if code & 0x80000000 else -1.0
        return torch.from_numpy(counts).to(self.device)

    def _image_vector(self, item: Item) -> torch.Tensor:
        from PIL import Image

        image = load_image(item).resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        pixels = torch.from_numpy(np.asarray(image, dtype=np.float32).reshape(-1) / 255.0 - 0.5)
        pixels = pixels.to(self.device, self.dtype)
        return (pixels[None, :] @ self._projection)[0].float()


def _unit(vector: torch.Tensor) -> torch.Tensor:
    norm = torch.linalg.vector_norm(vector)
    return vector / norm if norm > 0 else vector
