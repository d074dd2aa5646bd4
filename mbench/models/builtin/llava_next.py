"""LLaVA-Next bi-encoders of the MM-Embed paper: LLaVa-E (`pooling=eos`) and LLaVa-P (`pooling=prompt`).

`--model llava-next [--model-arg name=llava-hf/llava-v1.6-mistral-7b-hf] [--model-arg pooling=eos|prompt]
[--model-arg global_image_only=true]`. Both embed an item as one last-layer hidden state of the
language model, L2-normalised (cosine similarity).

Input formats (MM-Embed paper, Lin et al. 2024, Tables 11 and 12):

* LLaVa-E, Table 11. Query ``Instruct: <instruction>\\nQuery: <query parts><eos>`` with the query
  parts ``<qtxt>``, ``<qimg>`` or ``<qimg>\\n<qtxt>``; candidate ``<cimg>\\n<ctxt><eos>``. Absent parts
  are dropped (no instruction: ``Query: <query parts>``). The ``Instruct: `` prefix is not printed in
  Table 11 but is what MM-Embed's released code feeds its model: ``NVMMEmbedModel.encode`` in
  nvidia/MM-Embed's ``modeling_nvmmembed.py`` builds ``f"Instruct: {instruction}\\n{query_prefix}<image>\\n<text>"``
  with ``query_prefix="Query: "``, and ``f"{query_prefix}<image>\\n<text>"`` without an instruction
  (NV-Embed's convention). LLaVa-E, the paper's other Table 11 bi-encoder, has no released code,
  so it follows the code that was released rather than the table's abbreviation. The embedding
  is the hidden state at the appended end-of-sequence token, appended as a token (what MM-Embed's
  released code does with ``add_eos_token``), not as text after a space.
* LLaVa-P, Table 12. Query: the task's ``llava_p`` prompt (placeholders ``<qimg>``, ``<qtxt>``);
  candidate ``<cimg>\\n<ctxt>\\nDescribe the above in one word:``. A query whose task has no
  ``llava_p`` prompt gets the zero-shot prompts of the paper's footnote 9:
  ``<qtxt>\\nSummary above sentence in one word:`` or ``<qimg>\\nSummary above image in one word:``.
  The embedding is the hidden state of the last prompt token.

No chat template is applied: Tables 11 and 12 give the raw strings the model reads, and MM-Embed's
released encoder tokenizes its prompts without ``[INST] ... [/INST]``. The tokenizer's BOS token
is kept (it is part of every sequence the model was trained on).

Batches are left-padded, so the pooled token sits at the last position of every row, and
position ids restart at 0 after the padding, so an item's embedding does not depend on what it
is batched with.

``global_image_only=true`` feeds only LLaVA-Next's base image (the whole image resized to the
vision tower's resolution, e.g. 336 px: 576 patch tokens) and none of the AnyRes high-resolution
tiles. As in MM-Embed's released code (which keeps ``pixel_values[:, 0:1]``), the features go
through transformers' single-tile branch of ``pack_image_features``, which appends the learnt
``image_newline`` vector: 577 embeddings per image for CLIP ViT-L/14-336. Changing
``image_grid_pinpoints`` to one 336x336 tile would not do this: LLaVA-Next always adds the
tiles of the best grid resolution to the base image.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from mbench.data.types import Item
from mbench.errors import MbenchError
from mbench.models.base import (
    ModelMeta,
    Role,
    check_encode_call,
    directory_digest,
    load_image,
)

# 2: LLaVa-E queries carry MM-Embed's "Instruct: " prefix (cached embeddings of version 1 miss).
PLUGIN_VERSION = "2"
DEFAULT_MODEL = "llava-hf/llava-v1.6-mistral-7b-hf"

QUERY_IMAGE, QUERY_TEXT = "<qimg>", "<qtxt>"
CAND_IMAGE, CAND_TEXT = "<cimg>", "<ctxt>"
# Table 11 (LLaVa-E / NV-Embed-style bi-encoders); the eos token is appended after formatting.
# The instruction line's "Instruct: " follows MM-Embed's modeling_nvmmembed.py (NVMMEmbedModel.encode).
EOS_INSTRUCTION_PREFIX = "Instruct: "
EOS_QUERY_PREFIX = "Query: "
EOS_CANDIDATE_TEMPLATE = f"{CAND_IMAGE}\n{CAND_TEXT}"
# Table 12 (LLaVa-P) candidate prompt.
PROMPT_CANDIDATE_TEMPLATE = f"{CAND_IMAGE}\n{CAND_TEXT}\nDescribe the above in one word:"
# Footnote 9: LLaVa-P queries of tasks without a llava_p prompt.
ZERO_SHOT_TEXT_TEMPLATE = f"{QUERY_TEXT}\nSummary above sentence in one word:"
ZERO_SHOT_IMAGE_TEMPLATE = f"{QUERY_IMAGE}\nSummary above image in one word:"

_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}
ALL_MODALITIES = frozenset({"text", "image", "image,text"})


def resolve_model_dir(name: str, revision: str | None, family: str) -> tuple[Path, str]:
    """A local directory holding ``name`` and the revision pinning it (content digest or hub commit).

    Never downloads: ``name`` is a local directory or a hub id already in the Hugging Face cache.
    """
    local = Path(name).expanduser()
    if local.is_dir():
        return local.resolve(), directory_digest(local)
    if local.is_absolute() or name.startswith(("./", "../", "~")) or name.count("/") > 1:
        raise MbenchError(f"{family} model {name!r}: no such directory")
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(name, revision=revision, local_files_only=True))
    except Exception as err:  # the hub client raises several types for "not cached"
        raise MbenchError(
            f"{family} model {name!r}{f' at revision {revision}' if revision else ''} is not in the local "
            f"Hugging Face cache and mbench never downloads: fetch it with `hf download {name}`, "
            "or pass --model-arg name=/path/to/a/local/copy"
        ) from err
    # A snapshot directory is named after the commit it holds.
    return path, path.name


def resolve_dtype(dtype: str | None, device: str, family: str) -> torch.dtype:
    """The weights' dtype: the one asked for, else bf16 on CUDA and fp32 elsewhere."""
    if dtype is None:
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    if dtype not in _DTYPES:
        raise MbenchError(f"{family}: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


def fill_template(
    template: str,
    *,
    text: str | None,
    has_image: bool,
    image_placeholder: str,
    text_placeholder: str,
    image_token: str,
    where: str,
) -> str:
    """Substitute an item's parts into ``template``; a placeholder the item lacks is dropped with its newline.

    An item part the template has no placeholder for is an error: silently ignoring a query's image
    or text would change the numbers.
    """
    for placeholder, present in ((image_placeholder, has_image), (text_placeholder, text is not None)):
        count = template.count(placeholder)
        if count > 1:
            raise MbenchError(f"{where}: template {template!r} has {placeholder} {count} times; expected at most once")
        if present and count == 0:
            raise MbenchError(
                f"{where}: the item has {'an image' if placeholder == image_placeholder else 'text'} but "
                f"its template {template!r} has no {placeholder} placeholder"
            )
    if text is not None and image_token in text:
        raise MbenchError(f"{where}: the text contains the image token {image_token!r}, which would be read as an image")
    rendered = template
    if not has_image:
        rendered = _drop(rendered, image_placeholder)
    if text is None:
        rendered = _drop(rendered, text_placeholder)
    # One pass, so a placeholder-like string inside the item's text is left as it is.
    mapping = {image_placeholder: image_token, text_placeholder: text or ""}
    pattern = re.compile("|".join(re.escape(p) for p in mapping))
    return pattern.sub(lambda m: mapping[m.group(0)], rendered)


def _drop(template: str, placeholder: str) -> str:
    # "<cimg>\n<ctxt>" without an image is "<ctxt>", not "\n<ctxt>".
    if placeholder + "\n" in template:
        return template.replace(placeholder + "\n", "")
    if "\n" + placeholder in template:
        return template.replace("\n" + placeholder, "")
    return template.replace(placeholder, "")


def eos_query_text(text: str | None, has_image: bool, instruction: str | None, image_token: str, where: str) -> str:
    """Table 11 query (without the eos token): ``Instruct: <instruction>\\nQuery: <qimg>\\n<qtxt>``, absent parts dropped."""
    parts = fill_template(
        f"{QUERY_IMAGE}\n{QUERY_TEXT}",
        text=text,
        has_image=has_image,
        image_placeholder=QUERY_IMAGE,
        text_placeholder=QUERY_TEXT,
        image_token=image_token,
        where=where,
    )
    prefix = f"{EOS_INSTRUCTION_PREFIX}{instruction}\n{EOS_QUERY_PREFIX}" if instruction else EOS_QUERY_PREFIX
    return prefix + parts


class LlavaNextRetriever:
    """LLaVA-Next as a bi-encoder: LLaVa-E (eos-token embedding) or LLaVa-P (one-word-summary prompt)."""

    def __init__(
        self,
        name: str = DEFAULT_MODEL,
        pooling: Literal["eos", "prompt"] = "eos",
        global_image_only: bool = False,
        revision: str | None = None,
        max_text_tokens: int | None = None,
        batch_size: int = 8,
        device: str = "cpu",
        dtype: str | None = None,
    ) -> None:
        if pooling not in ("eos", "prompt"):
            raise MbenchError(f"llava-next: pooling must be 'eos' or 'prompt', got {pooling!r}")
        if batch_size < 1:
            raise MbenchError(f"llava-next: batch_size must be >= 1, got {batch_size}")
        if max_text_tokens is not None and max_text_tokens < 1:
            raise MbenchError(f"llava-next: max_text_tokens must be >= 1, got {max_text_tokens}")
        from transformers import LlavaNextForConditionalGeneration, LlavaNextProcessor

        model_dir, resolved_revision = resolve_model_dir(name, revision, "llava-next")
        self.device = torch.device(device)
        self.torch_dtype = resolve_dtype(dtype, device, "llava-next")
        self.processor = LlavaNextProcessor.from_pretrained(str(model_dir), local_files_only=True)
        self.model = LlavaNextForConditionalGeneration.from_pretrained(
            str(model_dir), dtype=self.torch_dtype, local_files_only=True
        ).to(self.device).eval()
        self.tokenizer = self.processor.tokenizer
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            raise MbenchError(f"llava-next model {name!r}: its tokenizer has no pad token, needed to batch inputs")
        if pooling == "eos" and self.tokenizer.eos_token_id is None:
            raise MbenchError(f"llava-next model {name!r}: its tokenizer has no eos token, needed by pooling=eos")
        self.image_token = self.processor.image_token
        self.image_token_id = self.model.config.image_token_id
        self.pooling = pooling
        self.global_image_only = global_image_only
        self.max_text_tokens = max_text_tokens
        self.batch_size = batch_size
        self.meta = ModelMeta(
            name="llava-e" if pooling == "eos" else "llava-p",
            version=PLUGIN_VERSION,
            revision=resolved_revision,
            query_modalities=ALL_MODALITIES,
            cand_modalities=ALL_MODALITIES,
            dim=self.model.config.text_config.hidden_size,
            similarity="cosine",
            prompt_family="llava_p" if pooling == "prompt" else None,
            uses_instructions=pooling == "eos",
            output_args={
                "model": name if not Path(name).expanduser().is_dir() else Path(name).name,
                "pooling": pooling,
                "global_image_only": global_image_only,
                "max_text_tokens": max_text_tokens,
                "chat_template": False,
            },
        )

    # -- formatting -------------------------------------------------------------------------------

    def render(self, item: Item, *, role: Role, instruction: str | None, prompt: str | None) -> str:
        """The exact input string of ``item`` (one image token per image; eos not included)."""
        text = self._truncate(item.text)
        has_image = item.image is not None
        where = f"llava-next, {role} {item.id!r}"
        if self.pooling == "eos":
            if role == "query":
                return eos_query_text(text, has_image, instruction, self.image_token, where)
            return self._fill(EOS_CANDIDATE_TEMPLATE, text, has_image, role, where)
        if role == "candidate":
            if prompt is not None:
                raise MbenchError(f"{where}: LLaVa-P candidates take the fixed prompt of Table 12, got prompt {prompt!r}")
            return self._fill(PROMPT_CANDIDATE_TEMPLATE, text, has_image, role, where)
        if prompt is None:
            if has_image and text is not None:
                raise MbenchError(
                    f"{where}: the task has no llava_p prompt and the paper gives no zero-shot prompt for "
                    "image,text queries; add a `prompts: {llava_p: ...}` entry to the task"
                )
            prompt = ZERO_SHOT_IMAGE_TEMPLATE if has_image else ZERO_SHOT_TEXT_TEMPLATE
        return self._fill(prompt, text, has_image, role, where)

    def _fill(self, template: str, text: str | None, has_image: bool, role: Role, where: str) -> str:
        image_placeholder, text_placeholder = (QUERY_IMAGE, QUERY_TEXT) if role == "query" else (CAND_IMAGE, CAND_TEXT)
        return fill_template(
            template,
            text=text,
            has_image=has_image,
            image_placeholder=image_placeholder,
            text_placeholder=text_placeholder,
            image_token=self.image_token,
            where=where,
        )

    def _truncate(self, text: str | None) -> str | None:
        # Truncating the item's text, not the whole sequence, keeps the image and the prompt's
        # closing words (LLaVa-P's "in one word:") that the pooled token depends on.
        if text is None or self.max_text_tokens is None:
            return text
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= self.max_text_tokens:
            return text
        return self.tokenizer.decode(ids[: self.max_text_tokens])

    # -- encoding ---------------------------------------------------------------------------------

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
        texts = [
            self.render(item, role=role, instruction=instruction, prompt=prompt)
            for item, instruction, prompt in zip(items, instructions, prompts)
        ]
        if self.pooling == "eos":
            texts = [text + self.tokenizer.eos_token for text in texts]
        out = []
        for start in range(0, len(items), self.batch_size):
            batch = slice(start, start + self.batch_size)
            out.append(self._encode_texts(texts[batch], items[batch]))
        if not out:
            return torch.empty(0, self.meta.dim or 0, dtype=torch.float32, device=self.device)
        return torch.cat(out)

    @torch.inference_mode()
    def _encode_texts(self, texts: list[str], items: Sequence[Item]) -> torch.Tensor:
        images = [load_image(item) for item in items if item.image is not None]
        if self.global_image_only:
            inputs_embeds, attention_mask, input_ids = self._global_inputs(texts, images)
            position_ids = _position_ids(attention_mask)
            hidden = self.model.model(
                inputs_embeds=inputs_embeds, attention_mask=attention_mask, position_ids=position_ids
            ).last_hidden_state
        else:
            batch = self.processor(
                text=texts, images=images or None, padding=True, padding_side="left", return_tensors="pt"
            ).to(self.device)
            input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
            extra = {}
            if images:
                extra = {"pixel_values": batch["pixel_values"].to(self.torch_dtype), "image_sizes": batch["image_sizes"]}
            hidden = self.model.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=_position_ids(attention_mask),
                **extra,
            ).last_hidden_state
        if self.pooling == "eos" and not bool((input_ids[:, -1] == self.tokenizer.eos_token_id).all()):
            raise MbenchError(
                "llava-next: the tokenizer did not map the appended eos token "
                f"{self.tokenizer.eos_token!r} to its id; pooling=eos cannot find the token to pool"
            )
        pooled = hidden[:, -1].float()
        return torch.nn.functional.normalize(pooled, p=2, dim=-1)

    def _global_inputs(self, texts: list[str], images: list[Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input embeddings with only the base image's features in place of the image tokens."""
        features: list[torch.Tensor] = []
        if images:
            pixel_values = self.processor.image_processor(images, return_tensors="pt")["pixel_values"]
            # Index 0 of LLaVA-Next's patches is the whole image resized to the tower's resolution.
            base = pixel_values[:, 0].to(self.device, self.torch_dtype)
            features = self.global_image_features(base)
        per_image = features[0].shape[0] if features else 0
        expanded = [text.replace(self.image_token, self.image_token * per_image) for text in texts]
        batch = self.tokenizer(expanded, padding=True, padding_side="left", return_tensors="pt").to(self.device)
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        inputs_embeds = self.model.get_input_embeddings()(input_ids)
        image_mask = input_ids == self.image_token_id
        if int(image_mask.sum()) != per_image * len(images):
            raise MbenchError(
                f"llava-next: {int(image_mask.sum())} image tokens for {len(images)} images of {per_image} features; "
                f"does the text contain {self.image_token!r}?"
            )
        if images:
            flat = torch.cat(features).to(inputs_embeds.dtype)
            inputs_embeds = inputs_embeds.masked_scatter(image_mask.unsqueeze(-1), flat)
        return inputs_embeds, attention_mask, input_ids

    def global_image_features(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Projected features of base images [n, 3, H, W]: one [patches (+CLS) + newline, dim] tensor each."""
        llava = self.model.model
        config = self.model.config
        tower = llava.vision_tower(pixel_values, output_hidden_states=True)
        layer = config.vision_feature_layer
        if isinstance(layer, int):
            selected = tower.hidden_states[layer]
        else:
            selected = torch.cat([tower.hidden_states[i] for i in layer], dim=-1)
        if config.vision_feature_select_strategy == "default":
            selected = selected[:, 1:]  # drop CLS, as LLaVA-Next does
        projected = llava.multi_modal_projector(selected)
        image_sizes = torch.tensor([list(pixel_values.shape[-2:])] * len(projected), device=projected.device)
        # A one-tile image takes transformers' single-patch branch: the features plus image_newline.
        packed, _ = llava.pack_image_features(
            [one.unsqueeze(0) for one in projected],
            image_sizes,
            vision_feature_select_strategy=config.vision_feature_select_strategy,
            image_newline=llava.image_newline,
        )
        return list(packed)


def _position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    # With left padding, positions count from each row's first real token, as if it were alone.
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
