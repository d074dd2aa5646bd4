"""The LLaVA-Next True/False reranker (MM-Embed Table 13) on tiny LLaVA-Next models built locally.

The decisive test (`test_marker_candidates_move_to_the_top_in_the_predicted_order`) sets the
weights of a tiny model by hand so that P("True") is known in advance:

* every token embedding is random with coordinate 0 set to 0, except the marker word "dog"
  (" dog" and "dog"), whose coordinate 0 is 3;
* in layer 0, q_proj = 0, so every attention score is 0 and each position attends uniformly
  to its causal prefix (padding masked); v_proj reads only coordinate 0 of the normed input and
  o_proj writes 20 x that average into coordinate 0 of the residual stream;
* every MLP's down_proj and layer 1's o_proj are 0, so nothing else ever writes coordinate 0.

So the last position's coordinate 0 is 20 x (the mean of the normed marker values over the
prompt): exactly 0 without a marker and growing with the marker count at equal prompt
length. lm_head's " True" row is e_0 and " False" row 0, so logit(" True") - logit(" False") is
that coordinate after the final norm: P = 0.5 exactly for unmarked candidates and strictly
increasing in the number of markers. The bare "True" row is -e_0: a reranker that picked the
wrong answer token (no leading space after Mistral's "[/INST]") would sink the marked candidates.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import tiny_models
from mbench.data.types import Item, ItemTable
from mbench.errors import MbenchError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QA_PROMPT = "Question: <qtxt>\nAnswer: <ctxt>\nDoes the answer correctly answer the question? True or False"
CIRR_PROMPT = "<cimg>\nCaption:<qtxt>\nDoes the above caption describe the modification of the image? True or False"
NIGHTS_PROMPT = "<qimg>\n<cimg>\nDoes the above two images have the same scene? True or False"


@pytest.fixture(scope="module")
def tiny_mistral(tmp_path_factory) -> Path:
    return tiny_models.build_tiny_llava_next(tmp_path_factory.mktemp("tf") / "mistral", seed=3)


@pytest.fixture(scope="module")
def marker_model(tmp_path_factory) -> Path:
    from transformers import LlavaNextForConditionalGeneration, LlavaNextProcessor

    directory = tiny_models.build_tiny_llava_next(tmp_path_factory.mktemp("tf") / "marker", seed=4)
    tokenizer = LlavaNextProcessor.from_pretrained(directory).tokenizer
    model = LlavaNextForConditionalGeneration.from_pretrained(directory).eval()
    assert not model.config.text_config.tie_word_embeddings  # lm_head rows must not move the embeddings
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("dog", "\u0120dog", "True", "\u0120True", "False", "\u0120False")}
    language = model.model.language_model
    torch.manual_seed(0)
    with torch.no_grad():
        embed = language.embed_tokens.weight
        embed.copy_(torch.randn_like(embed))
        embed[:, 0] = 0.0
        embed[[ids["dog"], ids["\u0120dog"]], 0] = 3.0
        for layer in language.layers:
            layer.self_attn.q_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
            layer.input_layernorm.weight.fill_(1.0)
        first, second = language.layers
        first.self_attn.v_proj.weight.zero_()
        first.self_attn.v_proj.weight[0, 0] = 1.0
        first.self_attn.o_proj.weight.zero_()
        first.self_attn.o_proj.weight[0, 0] = 20.0
        second.self_attn.o_proj.weight.zero_()
        language.norm.weight.fill_(1.0)
        head = model.lm_head.weight
        for token in ("True", "\u0120True", "False", "\u0120False"):
            head[ids[token]] = 0.0
        head[ids["\u0120True"], 0] = 1.0
        head[ids["True"], 0] = -1.0
    model.save_pretrained(directory)
    return directory


def _text(i: str, text: str) -> Item:
    return Item(i, text, None, "text")


def _image(color: tuple[int, int, int], size: tuple[int, int]) -> Image.Image:
    image = Image.new("RGB", size, color)
    image.paste((255 - color[0], color[1] // 2, 40), (0, 0, size[0] // 2, size[1] // 3))
    return image


def test_marker_candidates_move_to_the_top_in_the_predicted_order(marker_model: Path) -> None:
    from mbench.engine.rerank import rerank_ranking
    from mbench.models.builtin.truefalse_reranker import TrueFalseReranker

    reranker = TrueFalseReranker(str(marker_model), batch_size=4)
    # Every answer is three words (three tokens after "Answer:"), so prompt lengths are equal and
    # P(True) orders the candidates by their number of "dog"s.
    texts = ["cat cat cat", "dog cat cat", "cat the cat", "dog dog cat", "dog dog dog", "the cat cat"]
    pool = ItemTable(ids=[f"c{i}" for i in range(6)], texts=texts, images=[None] * 6, modalities=["text"] * 6)
    queries = ItemTable(ids=["q"], texts=["which one is it ?"], images=[None], modalities=["text"])
    out = rerank_ranking(np.arange(6)[None, :], queries, pool, reranker, [QA_PROMPT], 6)
    assert [pool.ids[i] for i in out.ranking[0]] == ["c4", "c3", "c1", "c0", "c2", "c5"]
    p3, p2, p1, *unmarked = out.rerank_scores[0].tolist()
    assert unmarked == [0.5, 0.5, 0.5]  # exactly: logit(" True") = logit(" False") = 0
    assert p3 > p2 > p1 > 0.5
    assert out.first_stage_rank[0].tolist() == [5, 4, 2, 1, 3, 6]


def test_probability_is_the_softmax_of_a_manual_forward(tiny_mistral: Path) -> None:
    from transformers import LlavaNextForConditionalGeneration, LlavaNextProcessor

    from mbench.models.builtin.truefalse_reranker import TrueFalseReranker

    reranker = TrueFalseReranker(str(tiny_mistral), batch_size=3)
    red, blue = _image((200, 30, 30), (84, 56)), _image((20, 40, 220), (56, 112))
    queries = [_text("q1", "who runs ?"), Item("q2", "make the sky green", blue, "image,text"),
               _text("q3", "a much longer question about the dog and the cat in one word ?"), Item("q4", None, red, "image")]
    cands = [_text("c1", "the dog"), Item("c2", None, red, "image"),
             _text("c3", "a cat"), Item("c4", None, blue, "image")]
    prompts = [QA_PROMPT, CIRR_PROMPT, QA_PROMPT, NIGHTS_PROMPT]
    scores = reranker.score(queries, cands, prompts=prompts)

    # The inputs written out by hand: Mistral's [INST] turn around the filled prompt.
    by_hand = [
        ("[INST] Question: who runs ?\nAnswer: the dog\nDoes the answer correctly answer the question? True or False [/INST]", []),
        ("[INST] <image>\nCaption:make the sky green\nDoes the above caption describe the modification of the image? "
         "True or False [/INST]", [red]),
        ("[INST] Question: a much longer question about the dog and the cat in one word ?\nAnswer: a cat\n"
         "Does the answer correctly answer the question? True or False [/INST]", []),
        ("[INST] <image>\n<image>\nDoes the above two images have the same scene? True or False [/INST]", [red, blue]),
    ]
    assert [reranker.render(q, c, p)[0] for q, c, p in zip(queries, cands, prompts)] == [t for t, _ in by_hand]
    processor = LlavaNextProcessor.from_pretrained(tiny_mistral)
    model = LlavaNextForConditionalGeneration.from_pretrained(tiny_mistral).eval()
    true_id = processor.tokenizer.convert_tokens_to_ids("\u0120True")
    false_id = processor.tokenizer.convert_tokens_to_ids("\u0120False")

    def manual(text: str, images: list[Image.Image]) -> float:
        inputs = processor(text=[text], images=images or None, return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0, -1]
        l_true, l_false = float(logits[true_id]), float(logits[false_id])
        return float(np.exp(l_true) / (np.exp(l_true) + np.exp(l_false)))

    expected = [manual(text, images) for text, images in by_hand]
    assert scores.tolist() == pytest.approx(expected, abs=1e-5)
    # Images go in placeholder order: the swapped order gives another probability.
    swapped = manual(by_hand[3][0], [blue, red])
    assert abs(swapped - expected[3]) > 1e-4
    assert len({round(e, 5) for e in expected}) == 4


def test_answer_tokens_follow_the_chat_template(tiny_mistral: Path, tmp_path: Path) -> None:
    from mbench.models.builtin.truefalse_reranker import TrueFalseReranker

    mistral = TrueFalseReranker(str(tiny_mistral))
    # "[INST] ... [/INST] True</s>": the template puts a space before the answer.
    assert mistral.meta.output_args["answer_tokens"] == ["\u0120True", "\u0120False"]
    assert mistral.format.add_special_tokens  # the template writes no BOS; the tokenizer adds it

    llama = TrueFalseReranker(str(tiny_models.build_tiny_llava_next(tmp_path / "llama", chat_format="llama3")))
    # Llama-3: the answer follows "<|start_header_id|>assistant<|end_header_id|>\n\n" directly.
    assert llama.meta.output_args["answer_tokens"] == ["True", "False"]
    text, _ = llama.render(_text("q", "who ?"), _text("c", "the dog"), QA_PROMPT)
    assert text.startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nQuestion: who ?")
    assert text.endswith("True or False<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    ids = llama.processor(text=[text], add_special_tokens=llama.format.add_special_tokens)["input_ids"][0]
    assert list(ids).count(llama.tokenizer.bos_token_id) == 1  # the template's BOS, not a second one

    raw = TrueFalseReranker(str(tiny_mistral), chat_template=False)
    assert raw.render(_text("q", "who ?"), _text("c", "the dog"), QA_PROMPT)[0] == QA_PROMPT.replace(
        "<qtxt>", "who ?").replace("<ctxt>", "the dog")
    assert raw.meta.output_args["answer_tokens"] == ["\u0120True", "\u0120False"]


def test_refuses_a_tokenizer_that_splits_true(tmp_path: Path, monkeypatch) -> None:
    from mbench.models.builtin.truefalse_reranker import TrueFalseReranker

    monkeypatch.setattr(tiny_models, "_WORDS", [w for w in tiny_models._WORDS if w != "True"])
    directory = tiny_models.build_tiny_llava_next(tmp_path / "split")
    with pytest.raises(MbenchError, match=r"answer word ' True' is not a single token .*\['Ġ', 'T', 'r', 'u', 'e'\]"):
        TrueFalseReranker(str(directory))


def test_prompt_errors_name_the_pair(tiny_mistral: Path) -> None:
    from mbench.models.builtin.truefalse_reranker import TrueFalseReranker

    reranker = TrueFalseReranker(str(tiny_mistral))
    with pytest.raises(MbenchError, match=r"has <qimg> but query 'q' \(text\) has no image"):
        reranker.score([_text("q", "who")], [_text("c", "dog")], prompts=[NIGHTS_PROMPT])
    with pytest.raises(MbenchError, match="truefalse_rerank"):
        reranker.score([_text("q", "who")], [_text("c", "dog")], prompts=[None])
    # A placeholder-like string inside an item's text is text, not a slot.
    text, images = reranker.render(_text("q", "what is <ctxt> ?"), _text("c", "a dog"), QA_PROMPT)
    assert "Question: what is <ctxt> ?\nAnswer: a dog" in text and images == []


def test_built_through_the_registry(tiny_mistral: Path) -> None:
    from mbench.models.base import model_kind
    from mbench.models.registry import build_model

    reranker = build_model("llava-next-tf", {"name": str(tiny_mistral), "batch_size": "2"})
    assert model_kind(reranker) == "reranker" and reranker.batch_size == 2
    assert reranker.meta.prompt_family == "truefalse_rerank" and reranker.meta.revision.startswith("sha256:")
    assert reranker.torch_dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (bf16 reranking); none on this machine")
def test_cuda_bf16_gives_the_cpu_fp32_order(marker_model: Path) -> None:
    from mbench.models.builtin.truefalse_reranker import TrueFalseReranker

    texts = ["cat cat cat", "dog cat cat", "cat the cat", "dog dog cat", "dog dog dog", "the cat cat"]
    queries = [_text("q", "which one is it ?")] * len(texts)
    cands = [_text(f"c{i}", t) for i, t in enumerate(texts)]
    cpu = TrueFalseReranker(str(marker_model)).score(queries, cands, prompts=[QA_PROMPT] * 6)
    gpu_reranker = TrueFalseReranker(str(marker_model), device="cuda")
    assert gpu_reranker.torch_dtype == torch.bfloat16
    gpu = gpu_reranker.score(queries, cands, prompts=[QA_PROMPT] * 6)
    marked = [1, 3, 4]
    assert sorted(np.argsort(-gpu.numpy(), kind="stable")[:3].tolist()) == marked
    assert np.argsort(-gpu.numpy(), kind="stable")[:3].tolist() == np.argsort(-cpu.numpy(), kind="stable")[:3].tolist()
    assert gpu.tolist() == pytest.approx(cpu.tolist(), abs=2e-2)
