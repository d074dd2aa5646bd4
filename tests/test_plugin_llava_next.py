"""LLaVA-Next bi-encoders (LLaVa-E, LLaVa-P) on a tiny random LLaVA-Next loaded through from_pretrained."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch
from PIL import Image

from mbench.data.types import Item
from mbench.errors import MbenchError
from mbench.models.builtin.llava_next import LlavaNextRetriever
from tiny_models import LLAVA_HIDDEN_SIZE, build_tiny_llava_next

CIRR_PROMPT = "[image] <qimg>\nModify this image with <qtxt>\nDesribe modified image in one word:"
COCO_T2I_PROMPT = "[image] <qtxt>\nDescribe the everyday caption in one word:"
INSTRUCTION = "Retrieve a day-to-day image that aligns with the modification instructions of the provided image."


def _image(seed: int, size: tuple[int, int] = (70, 40)) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


TEXT_Q = Item("q-text", "a dog runs on the beach", None, "text")
IMAGE_Q = Item("q-image", None, _image(1), "image")
BOTH_Q = Item("q-both", "a red car", _image(2), "image,text")
QUERIES = [TEXT_Q, IMAGE_Q, BOTH_Q]
CANDIDATES = [
    Item("c-text", "A cat sleeps.", None, "text"),
    Item("c-image", None, _image(3, (40, 40)), "image"),
    Item("c-both", "The dog.", _image(4, (90, 30)), "image,text"),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory):
    return build_tiny_llava_next(tmp_path_factory.mktemp("tiny-llava-next"))


_CACHE: dict[tuple, LlavaNextRetriever] = {}


@pytest.fixture(scope="module")
def retriever(model_dir):
    """A loader that builds each (pooling, global_image_only) variant once per module."""

    def get(pooling: str = "eos", global_image_only: bool = False) -> LlavaNextRetriever:
        key = (str(model_dir), pooling, global_image_only)
        if key not in _CACHE:
            _CACHE[key] = LlavaNextRetriever(str(model_dir), pooling=pooling, global_image_only=global_image_only)
        return _CACHE[key]

    return get


def test_eos_formats_follow_table_11(retriever):
    model = retriever("eos")
    rendered = [model.render(item, role="query", instruction=INSTRUCTION, prompt=None) for item in QUERIES]
    # "Instruct: " as in MM-Embed's released encode() (modeling_nvmmembed.py), which Table 11 omits.
    assert rendered == [
        f"Instruct: {INSTRUCTION}\nQuery: a dog runs on the beach",
        f"Instruct: {INSTRUCTION}\nQuery: <image>",
        f"Instruct: {INSTRUCTION}\nQuery: <image>\na red car",
    ]
    assert model.render(TEXT_Q, role="query", instruction=None, prompt=None) == "Query: a dog runs on the beach"
    # Candidates never take the instruction: <cimg>\n<ctxt>, absent parts dropped.
    assert [model.render(c, role="candidate", instruction=None, prompt=None) for c in CANDIDATES] == [
        "A cat sleeps.",
        "<image>",
        "<image>\nThe dog.",
    ]


def test_prompt_formats_follow_table_12(retriever):
    model = retriever("prompt")
    assert model.render(BOTH_Q, role="query", instruction=INSTRUCTION, prompt=CIRR_PROMPT) == (
        "[image] <image>\nModify this image with a red car\nDesribe modified image in one word:"
    )
    assert model.render(TEXT_Q, role="query", instruction=None, prompt=COCO_T2I_PROMPT) == (
        "[image] a dog runs on the beach\nDescribe the everyday caption in one word:"
    )
    assert [model.render(c, role="candidate", instruction=None, prompt=None) for c in CANDIDATES] == [
        "A cat sleeps.\nDescribe the above in one word:",
        "<image>\nDescribe the above in one word:",
        "<image>\nThe dog.\nDescribe the above in one word:",
    ]
    # Footnote 9 zero-shot prompts for tasks without a llava_p prompt.
    assert model.render(TEXT_Q, role="query", instruction=None, prompt=None) == (
        "a dog runs on the beach\nSummary above sentence in one word:"
    )
    assert model.render(IMAGE_Q, role="query", instruction=None, prompt=None) == (
        "<image>\nSummary above image in one word:"
    )
    with pytest.raises(MbenchError, match="no zero-shot prompt for image,text"):
        model.render(BOTH_Q, role="query", instruction=None, prompt=None)
    with pytest.raises(MbenchError, match="has no <qimg> placeholder"):
        model.render(BOTH_Q, role="query", instruction=None, prompt=COCO_T2I_PROMPT)


def test_max_text_tokens_cuts_the_text_and_keeps_the_prompt(model_dir, retriever):
    model = LlavaNextRetriever(str(model_dir), pooling="prompt", max_text_tokens=2)
    kept = model.tokenizer.decode(model.tokenizer("a dog runs on the beach", add_special_tokens=False)["input_ids"][:2])
    assert kept == "a dog"
    assert model.render(TEXT_Q, role="query", instruction=None, prompt=COCO_T2I_PROMPT) == (
        "[image] a dog\nDescribe the everyday caption in one word:"
    )
    assert model.meta.output_args["max_text_tokens"] == 2
    assert model.meta.output_args != retriever("prompt").meta.output_args


def test_meta_declares_family_and_space(retriever):
    eos, prompt = retriever("eos").meta, retriever("prompt").meta
    assert (eos.name, eos.prompt_family, eos.uses_instructions) == ("llava-e", None, True)
    assert (prompt.name, prompt.prompt_family, prompt.uses_instructions) == ("llava-p", "llava_p", False)
    assert eos.dim == prompt.dim == LLAVA_HIDDEN_SIZE
    assert eos.similarity == "cosine"
    assert eos.revision.startswith("sha256:")
    assert eos.cand_modalities == frozenset({"text", "image", "image,text"})


def test_cpu_runs_in_fp32_and_returns_unit_vectors(retriever):
    model = retriever("eos")
    assert next(model.model.parameters()).dtype == torch.float32
    out = model.encode(QUERIES, role="query", instructions=[INSTRUCTION] * 3, prompts=[None] * 3)
    assert out.dtype == torch.float32 and out.shape == (3, LLAVA_HIDDEN_SIZE)
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.isfinite(out).all()


def test_eos_pooling_is_the_hidden_state_at_the_appended_eos(retriever):
    model = retriever("eos")
    tokenizer = model.tokenizer
    # By hand: the Table 11 string, BOS + its tokens + the eos id, one forward, last position.
    text = f"Instruct: {INSTRUCTION}\nQuery: a dog runs on the beach"
    ids = tokenizer(text)["input_ids"] + [tokenizer.eos_token_id]
    assert ids[0] == tokenizer.bos_token_id
    with torch.no_grad():
        hidden = model.model.model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    expected = torch.nn.functional.normalize(hidden[-1], dim=0)
    got = model.encode([TEXT_Q], role="query", instructions=[INSTRUCTION], prompts=[None])[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # And not the state one position earlier (the last text token).
    assert not torch.allclose(got, torch.nn.functional.normalize(hidden[-2], dim=0), atol=1e-3)

    # With an image: the processor's image-token expansion, eos appended by hand, same pooling.
    batch = model.processor(text=[f"Instruct: {INSTRUCTION}\nQuery: <image>\na red car"], images=[BOTH_Q.image],
                            return_tensors="pt")
    ids = torch.cat([batch["input_ids"], torch.tensor([[tokenizer.eos_token_id]])], dim=1)
    assert int((ids == model.image_token_id).sum()) > 16  # the base image alone has 16 patches
    with torch.no_grad():
        hidden = model.model.model(
            input_ids=ids, pixel_values=batch["pixel_values"], image_sizes=batch["image_sizes"]
        ).last_hidden_state[0]
    got = model.encode([BOTH_Q], role="query", instructions=[INSTRUCTION], prompts=[None])[0]
    torch.testing.assert_close(got, torch.nn.functional.normalize(hidden[-1], dim=0), atol=1e-5, rtol=1e-5)


def test_prompt_pooling_is_the_last_prompt_token(retriever):
    model = retriever("prompt")
    text = "[image] a dog runs on the beach\nDescribe the everyday caption in one word:"
    ids = model.tokenizer(text)["input_ids"]
    assert model.tokenizer.convert_ids_to_tokens(ids[-1]) == ":"
    with torch.no_grad():
        hidden = model.model.model(input_ids=torch.tensor([ids])).last_hidden_state[0, -1]
    got = model.encode([TEXT_Q], role="query", instructions=[None], prompts=[COCO_T2I_PROMPT])[0]
    torch.testing.assert_close(got, torch.nn.functional.normalize(hidden, dim=0), atol=1e-5, rtol=1e-5)


def test_global_image_only_uses_the_base_image_and_newline(retriever):
    model = retriever("eos", global_image_only=True)
    pixel_values = model.processor.image_processor([BOTH_Q.image], return_tensors="pt")["pixel_values"]
    features = model.global_image_features(pixel_values[:, 0])
    # (56 px / 14 px)^2 = 16 patch tokens (CLS dropped by the "default" strategy) + image_newline.
    assert [f.shape for f in features] == [torch.Size([17, LLAVA_HIDDEN_SIZE])]
    torch.testing.assert_close(features[0][-1], model.model.model.image_newline.detach())
    anyres = retriever("eos")
    # Text-only items are identical; image items differ because AnyRes adds the high-resolution tiles.
    args = {"role": "query", "instructions": [INSTRUCTION], "prompts": [None]}
    torch.testing.assert_close(model.encode([TEXT_Q], **args), anyres.encode([TEXT_Q], **args))
    assert not torch.allclose(model.encode([BOTH_Q], **args), anyres.encode([BOTH_Q], **args), atol=1e-3)


@pytest.mark.parametrize("pooling,global_image_only", [("eos", False), ("prompt", False), ("eos", True)])
@pytest.mark.parametrize("role", ["query", "candidate"])
def test_batch_size_does_not_change_embeddings(retriever, pooling, global_image_only, role):
    model = retriever(pooling, global_image_only)
    items = QUERIES if role == "query" else CANDIDATES
    if role == "query":
        instructions = [INSTRUCTION] * 3
        prompts = [COCO_T2I_PROMPT, None, CIRR_PROMPT] if pooling == "prompt" else [None] * 3
    else:
        instructions, prompts = [None] * 3, [None] * 3
    together = model.encode(items, role=role, instructions=instructions, prompts=prompts)
    alone = torch.cat(
        [model.encode([it], role=role, instructions=[i], prompts=[p]) for it, i, p in zip(items, instructions, prompts)]
    )
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)


def test_registry_builds_the_paper_variants(model_dir):
    from mbench.models.registry import build_model

    model = build_model("llava-p", {"name": str(model_dir)}, device="cpu")
    assert isinstance(model, LlavaNextRetriever)
    assert model.meta.prompt_family == "llava_p"
    with pytest.raises(MbenchError, match="pooling"):
        build_model("llava-next", {"name": str(model_dir), "pooling": "mean"}, device="cpu")
