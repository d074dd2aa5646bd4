"""E5-V: one-word-summary prompts in a Llama-3 turn, last-token embedding, on a tiny random LLaVA-Next."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from mbench.data.types import Item  # noqa: E402
from mbench.errors import MbenchError  # noqa: E402
from tiny_models import LLAVA_HIDDEN_SIZE, build_tiny_llava_next  # noqa: E402  (tests/ is on sys.path)

os.environ["HF_HUB_OFFLINE"] = "1"

# kongds/E5-V README / retrieval.py, typed out by hand.
TURN_START = "<|start_header_id|>user<|end_header_id|>\n\n"
TURN_END = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n \n"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_tiny_llava_next(tmp_path_factory.mktemp("e5v"), chat_format="llama3")


@pytest.fixture(scope="module")
def plugin(model_dir):
    from mbench.models.builtin.e5v import E5V

    return E5V(name=str(model_dir))


def _image(color: tuple[int, int, int], size=(60, 50)) -> Image.Image:
    image = Image.new("RGB", size, color)
    image.putpixel((7, 9), (255, 255, 255))
    return image


def test_default_prompts_are_e5vs():
    from mbench.models.builtin.e5v import e5v_user_prompt

    picture = _image((1, 2, 3))
    assert e5v_user_prompt(Item("t", "A dog.", None, "text"), "candidate", None) == (
        "A dog.\nSummary above sentence in one word: "
    )
    assert e5v_user_prompt(Item("i", None, picture, "image"), "candidate", None) == (
        "<image>\nSummary above image in one word: "
    )
    assert e5v_user_prompt(Item("q", "is red", picture, "image,text"), "query", None) == (
        '<image>Modify this image with "is red", desribe modified image in one word: '
    )


def test_task_prompts_use_mbench_placeholders_and_must_match_the_item():
    from mbench.models.builtin.e5v import e5v_user_prompt

    picture = _image((1, 2, 3))
    query = Item("q", "is red", picture, "image,text")
    template = "<qimg>\nChange the style of this dress to <qtxt>\nDescribe it in one word: "
    assert e5v_user_prompt(query, "query", template) == (
        "<image>\nChange the style of this dress to is red\nDescribe it in one word: "
    )
    assert e5v_user_prompt(Item("c", None, picture, "image"), "candidate", "<cimg>\nOne word: ") == "<image>\nOne word: "
    with pytest.raises(MbenchError, match="'q'"):
        e5v_user_prompt(query, "query", "<qtxt>\nSummary above sentence in one word: ")
    with pytest.raises(MbenchError, match="'t'"):
        e5v_user_prompt(Item("t", "a dog", None, "text"), "query", "<qimg>\n<qtxt>")


def test_meta(plugin):
    meta = plugin.meta
    assert (meta.name, meta.dim, meta.similarity, meta.prompt_family) == ("e5v", LLAVA_HIDDEN_SIZE, "cosine", "e5v")
    assert not meta.uses_instructions
    assert meta.query_modalities == {"text", "image", "image,text"} and meta.cand_modalities == {"text", "image"}
    assert meta.revision.startswith("sha256:")


def test_model_input_is_the_llama3_turn_with_left_padding(plugin):
    items = [Item("long", "A dog runs on the beach with a cat.", None, "text"), Item("short", "A cat.", None, "text")]
    inputs = plugin.model_inputs(items, "candidate", [None, None])
    tokenizer = plugin.processor.tokenizer
    expected = "<|begin_of_text|>" + TURN_START + "A cat.\nSummary above sentence in one word: " + TURN_END
    mask = inputs["attention_mask"][1].bool()
    assert tokenizer.decode(inputs["input_ids"][1][mask]) == expected
    # Left padding: the short row's pads come first and its last position is a real token.
    assert not bool(mask[0]) and bool(mask[-1])
    assert inputs["position_ids"][1][mask].tolist() == list(range(int(mask.sum())))


def test_embedding_is_normalised_last_hidden_state_as_in_e5vs_readme(plugin, model_dir):
    from transformers import LlavaNextForConditionalGeneration, LlavaNextProcessor

    processor = LlavaNextProcessor.from_pretrained(str(model_dir))
    model = LlavaNextForConditionalGeneration.from_pretrained(str(model_dir)).eval()
    picture = _image((200, 10, 10))
    text_prompt = TURN_START + "<sent>\nSummary above sentence in one word: " + TURN_END
    image_prompt = TURN_START + "<image>\nSummary above image in one word: " + TURN_END
    with torch.no_grad():
        text_inputs = processor(text=[text_prompt.replace("<sent>", "A dog sitting in the grass.")], return_tensors="pt")
        text_emb = model(**text_inputs, output_hidden_states=True, return_dict=True).hidden_states[-1][:, -1, :]
        image_inputs = processor(text=[image_prompt], images=[picture], return_tensors="pt")
        image_emb = model(**image_inputs, output_hidden_states=True, return_dict=True).hidden_states[-1][:, -1, :]
    expected = torch.nn.functional.normalize(torch.cat([text_emb, image_emb]), dim=-1)
    got = plugin.encode(
        [Item("t", "A dog sitting in the grass.", None, "text"), Item("i", None, picture, "image")],
        role="candidate",
        instructions=[None, None],
        prompts=[None, None],
    )
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got.norm(dim=-1), torch.ones(2))


def test_batch_composition_does_not_change_embeddings(plugin):
    items = [
        Item("a", "A dog runs on the beach and the cat sleeps on the sofa.", None, "text"),
        Item("b", None, _image((10, 200, 10), size=(120, 50)), "image"),
        Item("c", "is blue", _image((10, 10, 200)), "image,text"),
        Item("d", "A cat.", None, "text"),
    ]
    args = {"role": "query", "instructions": [None] * 4, "prompts": [None] * 4}
    batch = plugin.encode(items, **args)
    single = torch.cat([plugin.encode([i], role="query", instructions=[None], prompts=[None]) for i in items])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(batch[0], batch[3], atol=1e-3)


def test_uncached_hub_id_says_how_to_fetch(monkeypatch, tmp_path):
    from mbench.models.builtin.e5v import E5V

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MbenchError, match=r"hf download mbench-test/no-such-e5v"):
        E5V(name="mbench-test/no-such-e5v")
