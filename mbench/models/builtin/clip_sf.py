"""UniIR's CLIP score fusion (CLIP_SF) on ``transformers``' CLIPModel (`--model clip-sf`).

As in TIGER-AI-Lab/UniIR ``src/models/uniir_clip/clip_scorefusion/clip_sf.py``
(``encode_multimodal_input``): an item's embedding is the sum of the *unnormalised* projected
text features and image features, each multiplied by a 0/1 presence mask (text present = its
normalised text is non-empty; image present = it has one). UniIR stores these raw sums and
L2-normalises queries and candidates right before the faiss inner-product search
(``src/common/mbeir_retriever.py``); this plugin returns the normalised vectors, which ranks
identically, and declares cosine similarity.

Texts go through UniIR's ``format_string``, queries with UniIR's instruction composition
(``mbench.models.text``), then OpenAI CLIP's text cleaning (ftfy + HTML unescaping, as
``clip.simple_tokenizer.basic_clean``) and the CLIP tokenizer truncated to 77 tokens with the
end-of-text token kept last (``clip.tokenize(..., truncate=True)``).

``checkpoint=`` loads a UniIR training checkpoint (``{"model": state_dict}``, OpenAI CLIP
parameter names under ``clip_model.``) into the CLIPModel given by ``name`` after renaming
every parameter; unknown, missing or mis-shaped parameters are refused with a list.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from mbench.data.types import Item
from mbench.errors import MbenchError
from mbench.models.base import (
    ModelMeta,
    Role,
    check_encode_call,
    file_digest,
    load_image,
)
from mbench.models.builtin.hub import resolve_model_dir
from mbench.models.text import uniir_format_string, uniir_query_text

PLUGIN_VERSION = "1"
DEFAULT_MODEL = "openai/clip-vit-large-patch14"
CONTEXT_LENGTH = 77  # CLIP's text context; UniIR tokenizes with context_length=77, truncate=True

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Integers OpenAI's JIT archives carry beside the weights; clip.build_model drops them too.
_OPENAI_METADATA_KEYS = frozenset({"input_resolution", "context_length", "vocab_size"})
# Prefixes a wrapper adds in front of the OpenAI names: UniIR's CLIPScoreFusion, DDP.
_WRAPPER_PREFIXES = ("module.", "clip_model.")

_BLOCK = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")
_BLOCK_PARTS = {
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}
_TOP_LEVEL = {
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}
# OpenAI keeps projections as [width, embed] matrices applied as x @ proj; nn.Linear stores the transpose.
_PROJECTIONS = {"visual.proj": "visual_projection.weight", "text_projection": "text_projection.weight"}


def openai_to_hf_state_dict(openai: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename an OpenAI-CLIP state dict to ``transformers`` CLIPModel names; also return the keys it cannot map.

    Attention ``in_proj_weight``/``in_proj_bias`` are split into q, k and v (in that order, as
    ``nn.MultiheadAttention`` packs them); projections are transposed.
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in openai.items():
        if key in _OPENAI_METADATA_KEYS:
            continue
        if key in _TOP_LEVEL:
            out[_TOP_LEVEL[key]] = value
            continue
        if key in _PROJECTIONS:
            out[_PROJECTIONS[key]] = value.t().contiguous()
            continue
        match = _BLOCK.match(key)
        if match is None:
            unknown.append(key)
            continue
        tower = "vision_model" if match.group(1) else "text_model"
        layer, part = match.group(2), match.group(3)
        prefix = f"{tower}.encoder.layers.{layer}."
        if part in ("attn.in_proj_weight", "attn.in_proj_bias"):
            kind = "weight" if part.endswith("weight") else "bias"
            if value.shape[0] % 3:
                unknown.append(key)
                continue
            for name, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{prefix}self_attn.{name}.{kind}"] = chunk.contiguous()
        elif part in _BLOCK_PARTS:
            out[prefix + _BLOCK_PARTS[part]] = value
        else:
            unknown.append(key)
    return out, unknown


def load_uniir_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The OpenAI-named CLIP state dict inside a UniIR checkpoint (``{"model": ...}`` or flat, wrapper prefix removed)."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as err:
        raise MbenchError(f"clip-sf: checkpoint {str(path)!r} does not exist") from err
    except Exception as err:  # weights_only refuses pickled objects (an OmegaConf config, an optimizer...)
        raise MbenchError(
            f"clip-sf: cannot load checkpoint {str(path)!r} as tensors only ({type(err).__name__}: {err}). "
            "mbench never unpickles code; if it is a UniIR training checkpoint with its config, extract the "
            "weights once: torch.save({'model': torch.load(p, weights_only=False)['model']}, 'clip_sf_weights.pth')"
        ) from err
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else loaded
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise MbenchError(f"clip-sf: checkpoint {str(path)!r} holds no state dict of tensors (under 'model' or at the top)")
    for prefix in _WRAPPER_PREFIXES:
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    return state


def apply_checkpoint(model: torch.nn.Module, openai_state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load OpenAI-named weights into a CLIPModel; unknown, missing or mis-shaped parameters are an error listing them."""
    mapped, unknown = openai_to_hf_state_dict(openai_state)
    expected = model.state_dict()
    unknown += sorted(set(mapped) - set(expected))
    missing = sorted(set(expected) - set(mapped))
    mismatched = sorted(
        f"{key}: checkpoint {tuple(mapped[key].shape)} vs model {tuple(expected[key].shape)}"
        for key in set(mapped) & set(expected)
        if mapped[key].shape != expected[key].shape
    )
    problems = []
    if unknown:
        problems.append(f"unknown keys ({len(unknown)}): {', '.join(sorted(unknown))}")
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
    if mismatched:
        problems.append(f"shape mismatches ({len(mismatched)}): {'; '.join(mismatched)}")
    if problems:
        raise MbenchError(
            f"clip-sf: checkpoint {source!r} does not fit the CLIP model given by --model-arg name "
            f"(is it the same CLIP size?): " + " | ".join(problems)
        )
    model.load_state_dict({key: value.to(expected[key].dtype) for key, value in mapped.items()}, strict=True)


def openai_clean_text(text: str) -> str:
    """OpenAI CLIP's ``basic_clean``: ftfy's fixes, HTML unescaped twice, stripped (lowercasing is the tokenizer's)."""
    import ftfy

    return html.unescape(html.unescape(ftfy.fix_text(text))).strip()


class CLIPScoreFusion:
    """UniIR CLIP_SF: unit-length (text features + image features) per item, UniIR's instruction prefix."""

    def __init__(
        self,
        name: str = DEFAULT_MODEL,
        checkpoint: Path | None = None,
        revision: str | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> None:
        if dtype not in _DTYPES:
            raise MbenchError(f"clip-sf: dtype must be one of {list(_DTYPES)}, got {dtype!r}")
        try:
            import ftfy  # noqa: F401  (OpenAI's tokenizer cleans text with it; without it tokens differ)
        except ImportError as err:
            raise MbenchError("clip-sf needs the ftfy package, as OpenAI CLIP's tokenizer does: pip install ftfy") from err
        from transformers import CLIPModel, CLIPProcessor

        model_dir, model_revision = resolve_model_dir(name, revision, plugin="clip-sf")
        self.processor = CLIPProcessor.from_pretrained(str(model_dir), local_files_only=True)
        model = CLIPModel.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)
        weights_revision = model_revision
        if checkpoint is not None:
            checkpoint = Path(checkpoint).expanduser()
            if not checkpoint.is_file():
                raise MbenchError(f"clip-sf: checkpoint {str(checkpoint)!r} does not exist")
            apply_checkpoint(model, load_uniir_checkpoint(checkpoint), str(checkpoint))
            # The checkpoint replaces every weight, so its digest pins the outputs (with the
            # processor config from `name`, recorded in output_args).
            weights_revision = file_digest(checkpoint)
        self.device = torch.device(device)
        self.model = model.to(self.device, _DTYPES[dtype]).eval()
        self.tokenizer = self.processor.tokenizer
        self.image_processor = self.processor.image_processor
        self.meta = ModelMeta(
            name="clip-sf",
            version=PLUGIN_VERSION,
            revision=weights_revision,
            query_modalities=frozenset({"text", "image", "image,text"}),
            cand_modalities=frozenset({"text", "image", "image,text"}),
            dim=int(model.config.projection_dim),
            similarity="cosine",
            prompt_family=None,
            uses_instructions=True,
            # Content digests only (not paths), so a moved model directory still hits the cache;
            # with a checkpoint, model_revision pins the tokenizer and image-processor configs.
            output_args={"model_revision": model_revision, "weights_dtype": dtype},
        )

    def texts_for(self, items: Sequence[Item], role: Role, instructions: Sequence[str | None]) -> list[str]:
        """The strings UniIR would tokenize: format_string'd, with the instruction prefix on queries."""
        if role == "query":
            return [uniir_query_text(instruction, item.text) for item, instruction in zip(items, instructions)]
        return [uniir_format_string(item.text) for item in items]

    @torch.inference_mode()
    def encode(
        self,
        items: Sequence[Item],
        *,
        role: Role,
        instructions: Sequence[str | None],
        prompts: Sequence[str | None],
    ) -> torch.Tensor:
        """Unit-length fused embeddings [len(items), projection_dim]."""
        check_encode_call(self.meta, items, role, instructions, prompts)
        texts = self.texts_for(items, role, instructions)
        fused = self.fused_features(texts, [item.image is not None for item in items], items)
        return F.normalize(fused.float(), dim=-1)

    def fused_features(self, texts: Sequence[str], has_image: Sequence[bool], items: Sequence[Item]) -> torch.Tensor:
        """UniIR's ``encode_multimodal_input`` before normalisation: masked text features + masked image features."""
        dim = self.meta.dim or 0
        fused = torch.zeros(len(texts), dim, device=self.device, dtype=torch.float32)
        # Absent parts are skipped rather than encoded and multiplied by 0 (UniIR's padding):
        # the sum is the same and no work is spent on empty strings or black images.
        text_rows = [i for i, text in enumerate(texts) if text]
        if text_rows:
            fused[text_rows] += self.text_features([texts[i] for i in text_rows]).float()
        image_rows = [i for i, present in enumerate(has_image) if present]
        if image_rows:
            fused[image_rows] += self.image_features([items[i] for i in image_rows]).float()
        return fused

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """Unnormalised projected text features (``get_text_features``), 77-token truncation."""
        batch = self.tokenizer(
            [openai_clean_text(text) for text in texts],
            padding=True,
            truncation=True,
            max_length=CONTEXT_LENGTH,
            return_tensors="pt",
        ).to(self.device)
        return _pooled(self.model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))

    def image_features(self, items: Sequence[Item]) -> torch.Tensor:
        """Unnormalised projected image features (``get_image_features``)."""
        images = [load_image(item) for item in items]
        pixels = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        pixels = pixels.to(self.device, next(self.model.parameters()).dtype)
        return _pooled(self.model.get_image_features(pixel_values=pixels))


def _pooled(output: object) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output holds the projection; 4.x a tensor.
    return output if isinstance(output, torch.Tensor) else output.pooler_output  # type: ignore[attr-defined]
