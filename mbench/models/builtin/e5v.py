"""E5-V (`--model e5v`, ``royokong/e5-v``): a LLaVA-Next on Llama-3-8B prompted to summarise in one word.

As in kongds/E5-V (README example and ``retrieval.py``): the input is a Llama-3 user turn
``<|start_header_id|>user<|end_header_id|>\\n\\n{prompt}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\\n\\n \\n``
where ``{prompt}`` is ``<sent>\\nSummary above sentence in one word: `` for a text (``<sent>``
replaced by the text) and ``<image>\\nSummary above image in one word: `` for an image; the
embedding is the last layer's hidden state (after the final norm) at the last token, L2-normalised.
An image+text query defaults to E5-V's composed-retrieval (CIRR) prompt
``<image>Modify this image with "<sent>", desribe modified image in one word: `` (sic).

Task prompts (``prompts: e5v:`` in a task YAML) replace the default: the user-turn text with
``<qimg>``/``<qtxt>`` (queries) or ``<cimg>``/``<ctxt>`` (candidates) placeholders, or E5-V's own
``<image>``/``<sent>``; the plugin wraps it in the Llama-3 turn above.

Differences from E5-V's script, none of which changes a single-item embedding: padding is forced
to the left (E5-V sets it too) and position ids count real tokens only, so an item's embedding
does not depend on what it is batched with.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mbench.data.types import Item
from mbench.errors import MbenchError
from mbench.models.base import (
    ModelMeta,
    Role,
    check_encode_call,
    load_image,
)
from mbench.models.builtin.hub import resolve_model_dir

PLUGIN_VERSION = "1"
DEFAULT_MODEL = "royokong/e5-v"

LLAMA3_TURN = "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n \n"
TEXT_PROMPT = "<sent>\nSummary above sentence in one word: "
IMAGE_PROMPT = "<image>\nSummary above image in one word: "
COMPOSED_PROMPT = '<image>Modify this image with "<sent>", desribe modified image in one word: '
DEFAULT_PROMPTS = {"text": TEXT_PROMPT, "image": IMAGE_PROMPT, "image,text": COMPOSED_PROMPT}

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_PLACEHOLDERS = {"query": ("<qimg>", "<qtxt>"), "candidate": ("<cimg>", "<ctxt>")}


def e5v_user_prompt(item: Item, role: Role, template: str | None) -> str:
    """The user-turn text for ``item``: its modality's E5-V prompt or ``template``, with the text filled in.

    A template must name exactly the parts the item has (an image placeholder iff it has an
    image, a text placeholder iff it has text); anything else is an error naming the item.
    """
    has_image, has_text = item.image is not None, bool(item.text)
    if template is None:
        modality = "image,text" if has_image and has_text else "image" if has_image else "text"
        template = DEFAULT_PROMPTS[modality]
    image_mark, text_mark = _PLACEHOLDERS[role]
    template = template.replace(image_mark, "<image>").replace(text_mark, "<sent>")
    wants_image, wants_text = template.count("<image>"), template.count("<sent>")
    if wants_image != int(has_image) or (wants_text > 0) != has_text:
        raise MbenchError(
            f"e5v: the prompt for {role} {item.id!r} ({item.modality}) must hold {int(has_image)} image placeholder(s) "
            f"and {'a' if has_text else 'no'} text placeholder ({image_mark}/<image>, {text_mark}/<sent>); "
            f"got {template!r}"
        )
    # E5-V fills the text in last, so a literal "<image>" in a caption cannot add an image slot.
    return template.replace("<sent>", item.text or "")


class E5V:
    """E5-V embeddings: last-token hidden state of the one-word-summary prompt, unit length."""

    def __init__(
        self,
        name: str = DEFAULT_MODEL,
        revision: str | None = None,
        device: str = "cpu",
        dtype: str | None = None,
    ) -> None:
        dtype = dtype or ("bfloat16" if str(device).startswith("cuda") else "float32")
        if dtype not in _DTYPES:
            raise MbenchError(f"e5v: dtype must be one of {list(_DTYPES)}, got {dtype!r}")
        from transformers import LlavaNextForConditionalGeneration, LlavaNextProcessor

        model_dir, model_revision = resolve_model_dir(name, revision, plugin="e5v")
        self.processor = LlavaNextProcessor.from_pretrained(str(model_dir), local_files_only=True)
        # Last-token pooling needs every sequence to end at the last position.
        self.processor.tokenizer.padding_side = "left"
        if self.processor.tokenizer.pad_token is None:
            # E5-V's script pads with the end-of-sequence token; pads are masked out either way.
            self.processor.tokenizer.pad_token = self.processor.tokenizer.eos_token
        self.device = torch.device(device)
        model = LlavaNextForConditionalGeneration.from_pretrained(
            str(model_dir), local_files_only=True, dtype=_DTYPES[dtype]
        )
        self.model = model.to(self.device).eval()
        self.meta = ModelMeta(
            name="e5v",
            version=PLUGIN_VERSION,
            revision=model_revision,
            query_modalities=frozenset({"text", "image", "image,text"}),
            cand_modalities=frozenset({"text", "image"}),
            dim=int(model.config.text_config.hidden_size),
            similarity="cosine",
            prompt_family="e5v",
            uses_instructions=False,
            output_args={"weights_dtype": dtype},
        )

    def model_inputs(self, items: Sequence[Item], role: Role, prompts: Sequence[str | None]) -> dict[str, torch.Tensor]:
        """Tokenised Llama-3 turns (left-padded) with pixel values for the items that have images."""
        texts = [LLAMA3_TURN.format(e5v_user_prompt(item, role, prompt)) for item, prompt in zip(items, prompts)]
        images = [load_image(item) for item in items if item.image is not None]
        inputs = self.processor(text=texts, images=images or None, return_tensors="pt", padding=True)
        mask = inputs["attention_mask"]
        inputs["position_ids"] = (mask.cumsum(dim=-1) - 1).clamp(min=0)
        return {key: value.to(self.device) for key, value in inputs.items()}

    @torch.inference_mode()
    def encode(
        self,
        items: Sequence[Item],
        *,
        role: Role,
        instructions: Sequence[str | None],
        prompts: Sequence[str | None],
    ) -> torch.Tensor:
        """Unit-length embeddings [len(items), hidden_size]; instructions are not used by E5-V."""
        check_encode_call(self.meta, items, role, instructions, prompts)
        inputs = self.model_inputs(items, role, prompts)
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        # The backbone alone: its last_hidden_state is hidden_states[-1] of the full model, and
        # skipping the language-model head avoids [batch, length, 128k] logits.
        hidden = self.model.model(**inputs).last_hidden_state
        return F.normalize(hidden[:, -1, :].float(), dim=-1)
