"""Zero-shot True/False reranking with LLaVA-Next (MM-Embed paper, Table 13): `--reranker llava-next-tf`.

`--reranker llava-next-tf [--reranker-arg name=llava-hf/llava-v1.6-mistral-7b-hf]` (the 34B id
``llava-hf/llava-v1.6-34b-hf`` works the same). Each (query, candidate) pair is scored as

    relevance = softmax([logit("True"), logit("False")])[0]

over the next-token logits after the prompt, i.e. the probability of "True" against "False".

Prompt. The task's ``truefalse_rerank`` template (handed over as ``prompts[i]``) with the
placeholders ``<qtxt>``, ``<qimg>``, ``<ctxt>``, ``<cimg>``: text is put inline, every image
placeholder becomes one image token of the processor (``<image>``), which the processor expands
to the image's patch tokens; images are passed in the order of their placeholders in the
template. A placeholder whose part the item lacks is an error. A part the template does not
name is not shown to the model: that is how Table 13 is written (the CIRR/FashionIQ/CIRCO prompt
shows the candidate image and the query's modification text, not the reference image; task 3
and 8 prompts show the candidate's text only).

Chat template. Where the tokenizer has one, the template is rendered once for a conversation of
one user turn whose content is a sentinel text, with the generation prompt added
(``add_generation_prompt=True``), and the rendered prompt replaces the sentinel. So the model
reads e.g. ``[INST] <image>\\nCaption:...True or False [/INST]`` (llava-v1.6-mistral) or
``<|im_start|>user\\n...<|im_end|><|im_start|>assistant\\n`` (llava-v1.6-34b). Substituting into
the rendered string, instead of passing a list of image and text parts, keeps the images where
the placeholders put them (LLaVA's templates move every image before the text). A template
that already writes the BOS token is tokenized without adding another. Without a chat
template the rendered prompt is used as it is.

Answer tokens. The model's answer would follow the generation prompt, so the token ids are
resolved in that context: the template is rendered a second time with an assistant turn "True"
to see what it puts between the generation prompt and the answer. A space there (Mistral's
``[/INST] True``) means the answer tokens are the space-prefixed words (" True", " False"); no
space (a header ending in a newline, ChatML's ``assistant\\n``) means the bare words. Without a
chat template (or a template whose answer turn cannot be lined up with the generation prompt),
an answer after text that ends in a non-space character is taken to start with a space. Each
word is tokenized right after the generation prompt and must be exactly one token there; a
tokenizer that splits either word is refused, naming the word and its pieces.

Batching. Pairs are sorted by prompt length, scored ``batch_size`` at a time with left
padding and position ids that restart after the padding, so a pair's score does not depend on
what it is batched with. bf16 on CUDA and fp32 on CPU unless ``--dtype`` says otherwise; the
softmax is taken in fp32.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch

from mbench.data.types import Item
from mbench.errors import MbenchError
from mbench.models.base import ModelMeta, load_image
from mbench.models.builtin.hub import resolve_model_dir
from mbench.models.builtin.llava_next import resolve_dtype

PLUGIN_VERSION = "1"
DEFAULT_MODEL = "llava-hf/llava-v1.6-mistral-7b-hf"
PROMPT_FAMILY = "truefalse_rerank"
ANSWER_WORDS = ("True", "False")
QUERY_TEXT, QUERY_IMAGE, CAND_TEXT, CAND_IMAGE = "<qtxt>", "<qimg>", "<ctxt>", "<cimg>"
_PLACEHOLDER_RE = re.compile("|".join(re.escape(p) for p in (QUERY_TEXT, QUERY_IMAGE, CAND_TEXT, CAND_IMAGE)))
# A user-turn stand-in that no chat template rewrites and no prompt contains.
_SENTINEL = "\u2063MBENCH_USER_TURN\u2063"
ALL_MODALITIES = frozenset({"text", "image", "image,text"})


def render_pair(template: str, query: Item, candidate: Item, image_token: str, where: str) -> tuple[str, list[Item]]:
    """Fill ``template`` with the pair's parts: the text, and the items whose images fill it, in placeholder order.

    Every placeholder needs its part (``<qimg>`` a query image, ``<ctxt>`` candidate text, ...);
    a part without a placeholder is left out, as the paper's prompts do.
    """
    parts = {
        QUERY_TEXT: (query, "text"),
        QUERY_IMAGE: (query, "image"),
        CAND_TEXT: (candidate, "text"),
        CAND_IMAGE: (candidate, "image"),
    }
    image_items: list[Item] = []
    for text in (query.text, candidate.text):
        if text is not None and image_token in text:
            raise MbenchError(f"{where}: the text contains the image token {image_token!r}, which would be read as an image")

    def substitute(match: re.Match[str]) -> str:
        item, part = parts[match.group(0)]
        role = "query" if item is query else "candidate"
        if part == "text":
            if item.text is None:
                raise MbenchError(
                    f"{where}: the prompt {template!r} has {match.group(0)} but {role} {item.id!r} ({item.modality}) "
                    "has no text; use a task whose truefalse_rerank prompt matches its modalities"
                )
            return item.text
        if item.image is None:
            raise MbenchError(
                f"{where}: the prompt {template!r} has {match.group(0)} but {role} {item.id!r} ({item.modality}) "
                "has no image; use a task whose truefalse_rerank prompt matches its modalities"
            )
        image_items.append(item)
        return image_token

    # One pass, so placeholder-like strings inside an item's text are left as they are.
    return _PLACEHOLDER_RE.sub(substitute, template), image_items


class ChatFormat:
    """How a user turn is wrapped for the model and which token ids answer "True" and "False"."""

    def __init__(self, tokenizer, use_chat_template: bool, where: str) -> None:
        self.tokenizer = tokenizer
        template = getattr(tokenizer, "chat_template", None) if use_chat_template else None
        self.prefix, self.suffix, answer_gap = "", "", None
        if template:
            self.prefix, self.suffix = _split_on_sentinel(self._render(add_generation_prompt=True), where)
            answer_gap = self._answer_gap()
        self.uses_template = bool(template)
        bos = tokenizer.bos_token
        # Templates that write the BOS themselves (Llama-3) must not get a second one from the tokenizer.
        self.add_special_tokens = not (bos and self.prefix.startswith(bos))
        if answer_gap is not None:
            self.leading_space = " " in answer_gap
        else:
            context = self.prefix + "x" + self.suffix
            self.leading_space = not context[-1:].isspace()
        self.answer_tokens = {word: self._answer_token(word, where) for word in ANSWER_WORDS}

    def wrap(self, rendered: str) -> str:
        """The full model input for one rendered prompt."""
        return self.prefix + rendered + self.suffix

    def _render(self, *, add_generation_prompt: bool, answer: str | None = None) -> str:
        messages = [{"role": "user", "content": [{"type": "text", "text": _SENTINEL}]}]
        if answer is not None:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
        try:
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)
        except Exception:  # a template that only takes string contents
            plain = [{"role": m["role"], "content": m["content"][0]["text"]} for m in messages]
            return self.tokenizer.apply_chat_template(plain, add_generation_prompt=add_generation_prompt, tokenize=False)

    def _answer_gap(self) -> str | None:
        """What the template writes between the generation prompt and the answer, or None if it cannot tell."""
        try:
            with_answer = self._render(add_generation_prompt=False, answer=ANSWER_WORDS[0])
        except Exception:
            return None
        generation = self.prefix + _SENTINEL + self.suffix
        # A template whose assistant turn does not begin with its own generation prompt cannot be lined up.
        if not with_answer.startswith(generation):
            return None
        rest = with_answer[len(generation):]
        at = rest.find(ANSWER_WORDS[0])
        if at < 0 or rest[:at].strip():
            return None
        return rest[:at]

    def _answer_token(self, word: str, where: str) -> int:
        """The single token id of ``word`` as the model's first answer token; refuse a split word."""
        context = self.prefix + "x" + self.suffix
        answer = (" " if self.leading_space else "") + word
        before = self.tokenizer(context, add_special_tokens=self.add_special_tokens)["input_ids"]
        after = self.tokenizer(context + answer, add_special_tokens=self.add_special_tokens)["input_ids"]
        added = after[len(before):]
        if after[: len(before)] != before or len(added) != 1:
            pieces = self.tokenizer.convert_ids_to_tokens(self.tokenizer(answer, add_special_tokens=False)["input_ids"])
            raise MbenchError(
                f"{where}: the answer word {answer!r} is not a single token of this tokenizer after the "
                f"{'chat template' if self.uses_template else 'prompt'} (it is {pieces}); a True/False reranker "
                "needs both 'True' and 'False' to be one token each"
            )
        return int(added[0])


def _split_on_sentinel(rendered: str, where: str) -> tuple[str, str]:
    if rendered.count(_SENTINEL) != 1:
        raise MbenchError(f"{where}: the chat template does not write the user turn verbatim; pass chat_template=false")
    prefix, suffix = rendered.split(_SENTINEL)
    return prefix, suffix


class TrueFalseReranker:
    """LLaVA-Next asked "True or False" about each (query, candidate) pair; score = P(True)."""

    def __init__(
        self,
        name: str = DEFAULT_MODEL,
        revision: str | None = None,
        chat_template: bool = True,
        batch_size: int = 8,
        device: str = "cpu",
        dtype: str | None = None,
    ) -> None:
        if batch_size < 1:
            raise MbenchError(f"llava-next-tf: batch_size must be >= 1, got {batch_size}")
        from transformers import LlavaNextForConditionalGeneration, LlavaNextProcessor

        model_dir, resolved_revision = resolve_model_dir(name, revision, plugin="llava-next-tf")
        torch_dtype = resolve_dtype(dtype, str(device), "llava-next-tf")
        processor = LlavaNextProcessor.from_pretrained(str(model_dir), local_files_only=True)
        # The tokenizer is checked before the (large) weights are loaded: a refusal is instant.
        ChatFormat(processor.tokenizer, chat_template, f"llava-next-tf model {name!r}")
        model = LlavaNextForConditionalGeneration.from_pretrained(
            str(model_dir), dtype=torch_dtype, local_files_only=True
        ).to(torch.device(device))
        self._setup(model, processor, name=name, revision=resolved_revision, chat_template=chat_template,
                    batch_size=batch_size)

    @classmethod
    def from_loaded(
        cls,
        model,
        processor,
        *,
        name: str,
        revision: str,
        chat_template: bool = True,
        batch_size: int = 8,
    ) -> TrueFalseReranker:
        """A reranker around an already built model and processor (benchmarks of configs with random weights)."""
        self = cls.__new__(cls)
        self._setup(model, processor, name=name, revision=revision, chat_template=chat_template, batch_size=batch_size)
        return self

    def _setup(self, model, processor, *, name: str, revision: str, chat_template: bool, batch_size: int) -> None:
        if batch_size < 1:
            raise MbenchError(f"llava-next-tf: batch_size must be >= 1, got {batch_size}")
        self.processor = processor
        self.tokenizer = processor.tokenizer
        if self.tokenizer.pad_token_id is None:
            raise MbenchError(f"llava-next-tf model {name!r}: its tokenizer has no pad token, needed to batch pairs")
        self.format = ChatFormat(self.tokenizer, chat_template, f"llava-next-tf model {name!r}")
        self.true_id = self.format.answer_tokens["True"]
        self.false_id = self.format.answer_tokens["False"]
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.torch_dtype = next(model.parameters()).dtype
        self.image_token = processor.image_token
        self.batch_size = batch_size
        self.meta = ModelMeta(
            name="llava-next-tf",
            version=PLUGIN_VERSION,
            revision=revision,
            query_modalities=ALL_MODALITIES,
            cand_modalities=ALL_MODALITIES,
            dim=None,
            prompt_family=PROMPT_FAMILY,
            output_args={
                "model": name if not Path(name).expanduser().is_dir() else Path(name).name,
                "chat_template": self.format.uses_template,
                "answer_tokens": self.tokenizer.convert_ids_to_tokens([self.true_id, self.false_id]),
                "dtype": str(self.torch_dtype).removeprefix("torch."),
            },
        )

    def render(self, query: Item, candidate: Item, prompt: str | None) -> tuple[str, list[Item]]:
        """The exact model input of one pair (chat template applied) and the items whose images it shows."""
        where = f"llava-next-tf, pair ({query.id!r}, {candidate.id!r})"
        if prompt is None:
            raise MbenchError(
                f"{where}: no prompt; the True/False reranker needs the task's `prompts: {{{PROMPT_FAMILY}: ...}}` "
                "template (MM-Embed Table 13)"
            )
        rendered, image_items = render_pair(prompt, query, candidate, self.image_token, where)
        return self.format.wrap(rendered), image_items

    def score(self, queries: Sequence[Item], candidates: Sequence[Item], *, prompts: Sequence[str | None]) -> torch.Tensor:
        """P("True") of every pair, float32 [len(queries)] on the CPU."""
        if not (len(queries) == len(candidates) == len(prompts)):
            raise ValueError("score needs one candidate and one prompt per query")
        rendered = [self.render(q, c, p) for q, c, p in zip(queries, candidates, prompts)]
        # Similar lengths together waste less compute on padding; scores go back to input order.
        order = sorted(range(len(rendered)), key=lambda i: (len(rendered[i][1]), len(rendered[i][0])))
        out = torch.empty(len(rendered), dtype=torch.float32)
        for start in range(0, len(order), self.batch_size):
            chosen = order[start: start + self.batch_size]
            out[chosen] = self._score_batch([rendered[i] for i in chosen])
        return out

    @torch.inference_mode()
    def _score_batch(self, batch: list[tuple[str, list[Item]]]) -> torch.Tensor:
        texts = [text for text, _ in batch]
        images = [load_image(item) for _, items in batch for item in items]
        inputs = self.processor(
            text=texts,
            images=images or None,
            padding=True,
            padding_side="left",
            add_special_tokens=self.format.add_special_tokens,
            return_tensors="pt",
        ).to(self.device)
        extra = {}
        if images:
            extra = {"pixel_values": inputs["pixel_values"].to(self.torch_dtype), "image_sizes": inputs["image_sizes"]}
        attention_mask = inputs["attention_mask"]
        # With left padding, positions count from each row's first real token, as if it were alone.
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        logits = self.model(
            input_ids=inputs["input_ids"],
            attention_mask=attention_mask,
            position_ids=position_ids,
            logits_to_keep=1,
            **extra,
        ).logits[:, -1]
        pair = logits[:, [self.true_id, self.false_id]].float()
        return torch.softmax(pair, dim=-1)[:, 0].cpu()
