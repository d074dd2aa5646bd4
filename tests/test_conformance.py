"""The conformance checks behind `mbench check-model`, on hand-made items and tiny PIL images."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from mbench.data.types import Item
from mbench.models.base import ModelMeta, check_items
from mbench.models.builtin.bm25 import BM25Retriever
from mbench.models.builtin.hashing import HashingRetriever
from mbench.models.conformance import format_report, run_conformance

ALL = frozenset({"text", "image", "image,text"})


def _img(i: int) -> Image.Image:
    image = Image.new("RGB", (12, 12), (20 * i % 255, 100, 255 - 20 * i % 255))
    image.putpixel((i % 12, 3), (255, 255, 0))
    return image


def _sample(prefix: str, n: int = 30) -> list[Item]:
    items = []
    for i in range(n):
        modality = ("text", "image", "image,text")[i % 3]
        text = f"{prefix} caption number {i} about a {('red', 'blue', 'green')[i % 3]} thing" if "text" in modality else None
        items.append(Item(f"{prefix}{i}", text, _img(i) if "image" in modality else None, modality))
    return items


QUERIES, CANDIDATES = _sample("q"), _sample("c")


def _by_name(results):
    return {r.name: r for r in results}


def test_hash_embed_conforms() -> None:
    results = run_conformance(HashingRetriever(dim=32), QUERIES, CANDIDATES)
    assert all(r.passed for r in results), format_report(results)
    names = _by_name(results)
    assert "handled ['text', 'image', 'image,text'], refused none" in names["query modalities"].detail
    assert "32" in names["candidate outputs"].detail


class BatchLeak(HashingRetriever):
    """Adds a share of the batch mean to every row, as a model with batch-level normalisation would."""

    def encode(self, items, *, role, instructions, prompts):
        out = super().encode(items, role=role, instructions=instructions, prompts=prompts)
        return out + 0.05 * out.mean(dim=0, keepdim=True)


def test_batch_size_dependence_is_caught() -> None:
    results = _by_name(run_conformance(BatchLeak(dim=32), QUERIES, CANDIDATES))
    assert results["query outputs"].passed
    failed = results["query batch-determinism"]
    assert not failed.passed and "depend on the batch size" in failed.detail and "batch sizes 1 and" in failed.detail


def test_nan_embeddings_are_caught_with_the_item_id() -> None:
    results = _by_name(run_conformance(HashingRetriever(dim=32, nan_ids="c4,c7"), QUERIES, CANDIDATES))
    assert results["query outputs"].passed
    failed = results["candidate outputs"]
    assert not failed.passed and "2 item(s): c4, c7" in failed.detail
    assert not results["candidate batch-determinism"].passed


class ClaimsImages:
    """Declares image queries but crashes on them, and encodes undeclared image candidates."""

    def __init__(self) -> None:
        self.meta = ModelMeta("liar", "1", "r", ALL, frozenset({"text"}), 4)

    def encode(self, items, *, role, instructions, prompts):
        if role == "query":
            check_items(self.meta, items, role)
            if any("image" in item.modality for item in items):
                raise RuntimeError("vision tower missing")
        return torch.ones(len(items), 4) / 2


def test_declared_modality_must_be_handled_and_undeclared_refused() -> None:
    results = _by_name(run_conformance(ClaimsImages(), QUERIES, CANDIDATES))
    query = results["query modalities"]
    assert not query.passed and "declared 'image' but item 'q1' failed: RuntimeError: vision tower missing" in query.detail
    cand = results["candidate modalities"]
    assert not cand.passed and "'image' is not declared but item 'c1' was encoded instead of refused" in cand.detail


class WrongShape:
    def __init__(self, dtype=torch.float32, as_numpy=False) -> None:
        self.meta = ModelMeta("shape", "1", "r", ALL, ALL, 8)
        self.dtype, self.as_numpy = dtype, as_numpy

    def encode(self, items, *, role, instructions, prompts):
        out = torch.zeros(len(items), 6, dtype=self.dtype) + 1
        return out.numpy() if self.as_numpy else out


def test_shape_dtype_and_type_are_checked() -> None:
    assert "shape (30, 6), expected (30, 8)" in _by_name(run_conformance(WrongShape(), QUERIES, CANDIDATES))["query outputs"].detail
    assert "dtype torch.int64" in _by_name(run_conformance(WrongShape(torch.int64), QUERIES, CANDIDATES))["query outputs"].detail
    assert "returned ndarray" in _by_name(run_conformance(WrongShape(as_numpy=True), QUERIES, CANDIDATES))["query outputs"].detail


def test_bm25_conforms_as_a_lexical_retriever() -> None:
    results = run_conformance(BM25Retriever(), QUERIES, CANDIDATES)
    assert all(r.passed for r in results), format_report(results)
    names = _by_name(results)
    assert "handled ['text'], refused ['image', 'image,text']" in names["candidate modalities"].detail
    assert "identical" in names["search batch-determinism"].detail


class PairScorer:
    def __init__(self, leak: float = 0.0) -> None:
        self.meta = ModelMeta("rr", "1", "r", ALL, ALL, None)
        self.embed, self.leak = HashingRetriever(dim=16), leak

    def score(self, queries, candidates, *, prompts):
        n = len(queries)
        q = self.embed.encode(queries, role="query", instructions=[None] * n, prompts=[None] * n)
        c = self.embed.encode(candidates, role="candidate", instructions=[None] * n, prompts=[None] * n)
        scores = (q * c).sum(dim=1)
        return scores + self.leak * scores.mean()


def test_reranker_checks() -> None:
    results = run_conformance(PairScorer(), QUERIES, CANDIDATES)
    assert all(r.passed for r in results), format_report(results)
    leaky = _by_name(run_conformance(PairScorer(leak=0.5), QUERIES, CANDIDATES))
    assert not leaky["score batch-determinism"].passed


def test_not_a_model() -> None:
    results = run_conformance(object(), QUERIES, CANDIDATES)
    assert len(results) == 1 and not results[0].passed and "no `meta`" in results[0].detail


@pytest.mark.parametrize("batch_sizes", [(1, 64), (3, 5, 7)])
def test_custom_batch_sizes(batch_sizes) -> None:
    results = _by_name(run_conformance(HashingRetriever(dim=8), QUERIES[:10], CANDIDATES[:10], batch_sizes=batch_sizes))
    assert ", ".join(map(str, batch_sizes)) in results["query batch-determinism"].detail
