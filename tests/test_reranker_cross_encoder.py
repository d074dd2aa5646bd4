"""The cross-encoder reranker on a tiny BERT built here (random weights, a WordPiece vocabulary written
by the test), saved with save_pretrained and loaded through the same offline path a user's model takes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from mbench.data.types import Item
from mbench.errors import MbenchError

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = ["the", "dog", "cat", "runs", "sleeps", "red", "car", "what", "who", "is", "a", "answer", "?", "."]


def build_tiny_cross_encoder(directory: Path, *, num_labels: int = 1, seed: int = 0) -> Path:
    """A 2-layer BERT sequence classifier with a 14-word WordPiece vocabulary, written to ``directory``."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, num_labels=num_labels,
    )
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.5 * torch.randn_like(param))  # large enough that different pairs score clearly apart
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny_ce(tmp_path_factory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("ce") / "tiny-ce")


def _text(i: str, text: str) -> Item:
    return Item(i, text, None, "text")


def test_scores_are_the_manual_logits_in_input_order(tiny_ce: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from mbench.models.builtin.cross_encoder import CrossEncoderReranker

    reranker = CrossEncoderReranker(str(tiny_ce), batch_size=2)
    queries = [_text("q1", "who runs ?"), _text("q1", "who runs ?"), _text("q2", "what is red ?")]
    cands = [_text("d1", "the dog runs ."), _text("d2", "a cat sleeps"), _text("d3", "the red car is a car .")]
    scores = reranker.score(queries, cands, prompts=[None] * 3)
    assert scores.dtype == torch.float32 and scores.shape == (3,)

    tokenizer = AutoTokenizer.from_pretrained(tiny_ce)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_ce).eval()
    expected = []
    for q, c in zip(queries, cands):
        batch = tokenizer(q.text, c.text, return_tensors="pt")
        # The pair is [CLS] query [SEP] candidate [SEP]: the cross-encoder reads both texts together.
        assert tokenizer.convert_ids_to_tokens(batch["input_ids"][0])[0] == "[CLS]"
        with torch.no_grad():
            expected.append(float(model(**batch).logits[0, 0]))
    assert scores.tolist() == pytest.approx(expected, abs=1e-5)
    # The pairs score differently, so a permuted output would be caught above.
    assert len({round(s, 4) for s in expected}) == 3
    assert reranker.meta.revision.startswith("sha256:") and reranker.meta.prompt_family is None


def test_built_through_the_registry(tiny_ce: Path) -> None:
    from mbench.models.registry import build_model

    reranker = build_model("cross-encoder", {"name": str(tiny_ce), "batch_size": "4"})
    assert reranker.batch_size == 4 and reranker.meta.name == "cross-encoder"


def test_refuses_images_prompts_and_multi_label_models(tiny_ce: Path, tmp_path: Path) -> None:
    from mbench.models.builtin.cross_encoder import CrossEncoderReranker

    reranker = CrossEncoderReranker(str(tiny_ce))
    with pytest.raises(MbenchError, match="modality 'image'"):
        reranker.score([_text("q", "who")], [Item("d", None, "x.jpg", "image")], prompts=[None])
    with pytest.raises(MbenchError, match="takes no prompt"):
        reranker.score([_text("q", "who")], [_text("d", "the dog")], prompts=["<qtxt>"])
    nli = build_tiny_cross_encoder(tmp_path / "nli", num_labels=3)
    with pytest.raises(MbenchError, match="3 output labels"):
        CrossEncoderReranker(str(nli))


def test_uncached_hub_id_says_how_to_fetch() -> None:
    from mbench.models.builtin.cross_encoder import CrossEncoderReranker

    with pytest.raises(MbenchError, match="hf download cross-encoder/not-a-cached-model"):
        CrossEncoderReranker("cross-encoder/not-a-cached-model")
