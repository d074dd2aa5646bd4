"""NVIDIA's MM-Embed (`--model mm-embed`) and NV-Embed-v1 (`--model nv-embed-v1`) through their own encode APIs.

Both checkpoints ship their modeling code (``modeling_nvmmembed.py``, ``modeling_nvembed.py``)
and only load with ``trust_remote_code``, which runs that code on this machine. mbench loads
them only when the user passes ``--trust-remote-code`` (factory argument ``trust_remote_code``).

The adapter calls each model's documented API (model cards of nvidia/MM-Embed and
nvidia/NV-Embed-v1), with the instructions of the paper's Table 11 handed over by the harness:

* MM-Embed: ``model.encode(inputs, is_query=..., instruction=..., max_length=...)["hidden_states"]``
  where each input is a dict with ``"txt"`` and/or ``"img"`` (a PIL image). The model formats
  ``Instruct: <instruction>\\nQuery: <image>\\n<text>`` itself, so the instruction is passed
  as it is; candidates get no instruction (``is_query=False``).
* NV-Embed-v1 (text only): ``model.encode(texts, instruction=prefix, max_length=...)`` with the
  card's query prefix ``Instruct: <instruction>\\nQuery: `` and the empty prefix for passages.

One ``instruction`` per call, so queries are grouped by instruction. Both models return
unnormalised latent-attention embeddings; their cards compare them by cosine, so they are
L2-normalised here.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mbench.data.types import Item
from mbench.errors import MbenchError
from mbench.models.base import (
    ModelMeta,
    Role,
    check_encode_call,
    load_image,
)
from mbench.models.builtin.llava_next import resolve_dtype, resolve_model_dir

PLUGIN_VERSION = "1"
DEFAULT_MODEL = "nvidia/MM-Embed"
NV_EMBED_QUERY_PREFIX = "Instruct: {instruction}\nQuery: "


def remote_code_refusal(name: str) -> MbenchError:
    """The error for a model that needs its own code when the user has not opted in."""
    return MbenchError(
        f"model {name!r} ships its own Python code (a modeling_*.py file named in its config's auto_map) "
        "that runs on this machine when the model loads; mbench runs such code only when you opt in. "
        "Review the code, then pass --trust-remote-code."
    )


class MMEmbedRetriever:
    """MM-Embed (text, image and interleaved items) or NV-Embed-v1 (text) through the model's encode()."""

    def __init__(
        self,
        name: str = DEFAULT_MODEL,
        trust_remote_code: bool = False,
        revision: str | None = None,
        max_length: int = 4096,
        batch_size: int = 8,
        device: str = "cpu",
        dtype: str | None = None,
    ) -> None:
        if not trust_remote_code:
            raise remote_code_refusal(name)
        if batch_size < 1:
            raise MbenchError(f"mm-embed: batch_size must be >= 1, got {batch_size}")
        from transformers import AutoModel

        model_dir, resolved_revision = resolve_model_dir(name, revision, "mm-embed")
        self.device = torch.device(device)
        torch_dtype = resolve_dtype(dtype, device, "mm-embed")
        try:
            model = AutoModel.from_pretrained(
                str(model_dir), trust_remote_code=True, dtype=torch_dtype, local_files_only=True
            )
        except OSError as err:
            raise MbenchError(
                f"mm-embed: loading {name!r} failed: {err}. MM-Embed's code also loads nvidia/NV-Embed-v1 "
                "(its config's `retriever`); both must be in the local Hugging Face cache."
            ) from err
        self.model = model.to(self.device).eval()
        encode = getattr(self.model, "encode", None)
        if not callable(encode):
            raise MbenchError(f"mm-embed: model {name!r} ({type(self.model).__name__}) has no encode() method")
        params = inspect.signature(encode).parameters
        # MM-Embed's encode takes dicts and an is_query flag; NV-Embed's takes strings ("prompts").
        self.api = "mm-embed" if "is_query" in params else "nv-embed"
        self.max_length = max_length
        self.batch_size = batch_size
        modalities = frozenset({"text", "image", "image,text"}) if self.api == "mm-embed" else frozenset({"text"})
        self.meta = ModelMeta(
            name=name if not Path(name).expanduser().is_dir() else Path(name).name,
            version=PLUGIN_VERSION,
            revision=resolved_revision,
            query_modalities=modalities,
            cand_modalities=modalities,
            dim=_hidden_size(self.model.config),
            similarity="cosine",
            prompt_family=None,
            uses_instructions=True,
            output_args={"api": self.api, "max_length": max_length},
        )

    def encode(
        self,
        items: Sequence[Item],
        *,
        role: Role,
        instructions: Sequence[str | None],
        prompts: Sequence[str | None],
    ) -> torch.Tensor:
        """Unit-length float32 embeddings [len(items), dim]."""
        check_encode_call(self.meta, items, role, instructions, prompts)
        # Candidates never take an instruction (Table 11).
        keys = list(instructions) if role == "query" else [None] * len(items)
        groups: dict[str | None, list[int]] = {}
        for i, instruction in enumerate(keys):
            groups.setdefault(instruction, []).append(i)
        out: torch.Tensor | None = None
        for instruction, rows in groups.items():
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                embeddings = self._call(items, chunk, role, instruction).float()
                if out is None:
                    out = torch.empty(len(items), embeddings.shape[1], dtype=torch.float32, device=embeddings.device)
                out[chunk] = torch.nn.functional.normalize(embeddings, p=2, dim=-1)
        if out is None:
            return torch.empty(0, self.meta.dim or 0, dtype=torch.float32, device=self.device)
        if self.meta.dim is not None and out.shape[1] != self.meta.dim:
            raise MbenchError(f"mm-embed: the model returned {out.shape[1]}-d embeddings, its config says {self.meta.dim}")
        return out

    @torch.inference_mode()
    def _call(self, items: Sequence[Item], rows: list[int], role: Role, instruction: str | None) -> torch.Tensor:
        if self.api == "nv-embed":
            prefix = ""
            if role == "query":
                # Without an instruction, "Query: " alone, as MM-Embed's own encode() does.
                prefix = NV_EMBED_QUERY_PREFIX.format(instruction=instruction) if instruction else "Query: "
            return self.model.encode([items[i].text for i in rows], instruction=prefix, max_length=self.max_length)
        inputs: list[dict[str, Any]] = []
        for i in rows:
            entry: dict[str, Any] = {}
            if items[i].text is not None:
                entry["txt"] = items[i].text
            if items[i].image is not None:
                entry["img"] = load_image(items[i])
            inputs.append(entry)
        output = self.model.encode(
            inputs, is_query=role == "query", instruction=instruction, max_length=self.max_length
        )
        return output["hidden_states"]


def _hidden_size(config: Any) -> int | None:
    text_config = getattr(config, "text_config", None)
    for source in (text_config, config):
        size = getattr(source, "hidden_size", None) if source is not None else None
        if isinstance(size, int):
            return size
    return None
