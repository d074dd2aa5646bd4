"""The plugin contract: model metadata, the Retriever / LexicalRetriever / Reranker protocols.

Plugins format their inputs but never look anything up: the harness resolves the task's
instructions and prompt templates and hands them over explicitly, one per item. This module
imports neither torch nor model code, so light commands (`mbench ls`, validation) can use the
metadata helpers without paying for them.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from mbench.data.types import MODALITIES, Item
from mbench.errors import MbenchError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

Role = Literal["query", "candidate"]
SIMILARITIES = ("cosine", "dot")
# A cosine model returns L2-normalised rows, to this tolerance (loose enough for bf16 rounding):
# mbench stores and searches exactly what a model returns and never renormalises it.
UNIT_NORM_TOLERANCE = 1e-2


@dataclass
class ModelMeta:
    """What the harness needs to know about a plugin: identity, modalities, output space, prompts.

    ``version`` is the plugin's own version (bump it when its outputs change for the same
    weights); ``revision`` pins the weights: a hub commit, a checkpoint file's sha256 or a
    digest of a local model directory. ``output_args`` are the constructor arguments that
    change embeddings or scores (not batch size or device); they enter the cache key.
    ``prompt_family`` names the task-YAML ``prompts:`` key the plugin consumes (None: it takes
    no prompt template); ``uses_instructions`` says whether it consumes task instructions.
    """

    name: str
    version: str
    revision: str
    query_modalities: frozenset[str]
    cand_modalities: frozenset[str]
    dim: int | None
    similarity: Literal["cosine", "dot"] = "cosine"
    prompt_family: str | None = None
    uses_instructions: bool = False
    output_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.query_modalities = frozenset(self.query_modalities)
        self.cand_modalities = frozenset(self.cand_modalities)
        for role, declared in (("query", self.query_modalities), ("candidate", self.cand_modalities)):
            unknown = sorted(declared - set(MODALITIES))
            if unknown or not declared:
                raise ValueError(
                    f"model {self.name!r}: {role} modalities must be a non-empty subset of "
                    f"{list(MODALITIES)}, got {sorted(declared)}"
                )
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"model {self.name!r}: similarity must be one of {SIMILARITIES}, got {self.similarity!r}")
        if self.dim is not None and self.dim < 1:
            raise ValueError(f"model {self.name!r}: dim must be positive or None, got {self.dim}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (modalities as sorted lists) for result files."""
        out = asdict(self)
        out["query_modalities"] = sorted(self.query_modalities)
        out["cand_modalities"] = sorted(self.cand_modalities)
        out["output_args"] = json.loads(json.dumps(self.output_args, sort_keys=True, default=str))
        out["fingerprint"] = model_fingerprint(self)
        return out


@runtime_checkable
class Retriever(Protocol):
    """A dense bi-encoder: one vector per item, compared by ``meta.similarity``.

    ``cosine`` models return unit-length rows (within ``UNIT_NORM_TOLERANCE``); mbench then ranks
    by inner product on the values returned, kept bit for bit.
    """

    meta: ModelMeta

    def encode(
        self,
        items: Sequence[Item],
        *,
        role: Role,
        instructions: Sequence[str | None],
        prompts: Sequence[str | None],
    ) -> torch.Tensor:
        """Embed ``items`` as a float tensor [len(items), meta.dim]; one instruction and prompt per item."""
        ...


@runtime_checkable
class LexicalRetriever(Protocol):
    """A sparse/lexical retriever (BM25-like) that indexes the pool itself instead of embedding it."""

    meta: ModelMeta

    def index(self, candidates: Sequence[Item]) -> None:
        """Build the index over the candidate pool (positions in ``candidates`` are the result indices)."""
        ...

    def search(
        self, queries: Sequence[Item], k: int, *, instructions: Sequence[str | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query: scores float32 [nq, k] and pool indices int64 [nq, k] (-1 pads short rankings)."""
        ...


@runtime_checkable
class Reranker(Protocol):
    """A cross-scorer of (query, candidate) pairs: ``queries[i]`` is scored against ``candidates[i]``."""

    meta: ModelMeta

    def score(self, queries: Sequence[Item], candidates: Sequence[Item], *, prompts: Sequence[str | None]) -> torch.Tensor:
        """Relevance scores, a float tensor [len(queries)], higher is better."""
        ...


ModelKind = Literal["retriever", "lexical", "reranker"]


def model_kind(model: object) -> ModelKind:
    """Which protocol ``model`` implements; the engine branches on this."""
    if not isinstance(getattr(model, "meta", None), ModelMeta):
        raise MbenchError(f"{type(model).__name__} is not an mbench model: it has no `meta` of type ModelMeta")
    # Checked most specific first: a lexical retriever must not be mistaken for a dense one.
    if callable(getattr(model, "index", None)) and callable(getattr(model, "search", None)):
        return "lexical"
    if callable(getattr(model, "encode", None)):
        return "retriever"
    if callable(getattr(model, "score", None)):
        return "reranker"
    raise MbenchError(
        f"model {model.meta.name!r} ({type(model).__name__}) implements none of the plugin protocols: "
        "it needs encode() (Retriever), index() and search() (LexicalRetriever) or score() (Reranker)"
    )


def check_modalities(meta: ModelMeta, query_modality: str, cand_modality: str, task_name: str) -> None:
    """Refuse a task whose query or candidate modality the model does not declare."""
    problems = []
    if query_modality not in meta.query_modalities:
        problems.append(f"its queries are {query_modality!r} but the model encodes queries of {_fmt(meta.query_modalities)}")
    if cand_modality not in meta.cand_modalities:
        problems.append(
            f"its candidates are {cand_modality!r} but the model encodes candidates of {_fmt(meta.cand_modalities)}"
        )
    if problems:
        raise MbenchError(
            f"model {meta.name!r} cannot run task {task_name!r}: " + "; ".join(problems)
            + ". Choose a model that declares these modalities or leave this task out."
        )


def check_items(meta: ModelMeta, items: Iterable[Item], role: Role) -> None:
    """Refuse items whose modality ``meta`` does not declare for ``role``, or whose content contradicts it."""
    declared = meta.query_modalities if role == "query" else meta.cand_modalities
    for item in items:
        if item.modality not in declared:
            raise MbenchError(
                f"model {meta.name!r} cannot encode {role} {item.id!r}: modality {item.modality!r} "
                f"is not one of the declared {role} modalities {_fmt(declared)}"
            )
        needs_text = "text" in item.modality.split(",")
        needs_image = "image" in item.modality.split(",")
        if needs_text and item.text is None:
            raise MbenchError(f"{role} {item.id!r} has modality {item.modality!r} but no text")
        if needs_image and item.image is None:
            raise MbenchError(f"{role} {item.id!r} has modality {item.modality!r} but no image")


def check_encode_call(
    meta: ModelMeta, items: Sequence[Item], role: Role, instructions: Sequence[str | None], prompts: Sequence[str | None]
) -> None:
    """The checks every ``encode`` starts with: one instruction and one prompt per item, declared modalities."""
    if len(instructions) != len(items) or len(prompts) != len(items):
        raise ValueError("encode needs exactly one instruction and one prompt per item")
    check_items(meta, items, role)


def load_image(item: Item) -> Image.Image:
    """The item's image as an RGB PIL image (from a path, bytes or a PIL image); a missing file is an error."""
    from PIL import Image

    image = item.image
    if image is None:
        raise MbenchError(f"item {item.id!r} has no image")
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        if isinstance(image, (bytes, bytearray)):
            opened = Image.open(io.BytesIO(image))
        else:
            opened = Image.open(Path(image))
        opened.load()
    except FileNotFoundError as err:
        raise MbenchError(f"image of item {item.id!r} not found: {image}") from err
    except OSError as err:
        raise MbenchError(f"image of item {item.id!r} cannot be decoded ({err}): {image if not isinstance(image, bytes) else '<bytes>'}") from err
    return opened.convert("RGB")


def model_fingerprint(meta: ModelMeta) -> str:
    """sha256 (hex) of what makes outputs reproducible: name, plugin version, revision, output args."""
    payload = {
        "name": meta.name,
        "version": meta.version,
        "revision": meta.revision,
        "output_args": meta.output_args,
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def directory_digest(path: str | Path, *, skip: Sequence[str] = ("README.md",)) -> str:
    """``sha256:<hex>`` over the relative paths and bytes of every file under ``path`` (dotfiles skipped).

    Used as the revision of a local model directory, so a changed checkpoint changes the
    model fingerprint and misses the embedding cache.
    """
    root = Path(path)
    digest = hashlib.sha256()
    files = sorted(
        p for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts) and p.name not in skip
    )
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode("utf-8") + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def file_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of one checkpoint file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _fmt(modalities: Iterable[str]) -> str:
    return "{" + ", ".join(repr(m) for m in sorted(modalities)) + "}"
