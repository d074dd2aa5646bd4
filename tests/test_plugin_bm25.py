"""bm25: a LexicalRetriever over bm25s with trec_eval's tie order."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mbench.data.types import Item
from mbench.errors import MbenchError
from mbench.models.base import model_kind
from mbench.models.builtin.bm25 import BM25Retriever
from mbench.models.registry import build_model

CORPUS = [
    Item("d1", "The cat sat on the mat near the window.", None, "text"),
    Item("d2", "Photosynthesis converts sunlight into chemical energy in plants.", None, "text"),
    Item("d3", "Dogs and cats are common household pets.", None, "text"),
    Item("d4", "The stock market fell sharply on Monday.", None, "text"),
    Item("d5", "Chlorophyll absorbs sunlight, driving photosynthesis in green plants.", None, "text"),
]


def _search(model, queries, k):
    return model.search(queries, k, instructions=[None] * len(queries))


def test_relevant_document_ranks_first() -> None:
    model = build_model("bm25", {})
    assert model_kind(model) == "lexical" and model.meta.dim is None
    model.index(CORPUS)
    queries = [
        Item("q1", "what does chlorophyll do in green plants", None, "text"),
        Item("q2", "stock market crash", None, "text"),
        Item("q3", "cat on a mat", None, "text"),
    ]
    scores, indices = _search(model, queries, 3)
    assert scores.dtype == np.float32 and indices.dtype == np.int64 and indices.shape == (3, 3)
    assert [CORPUS[i].id for i in indices[:, 0]] == ["d5", "d4", "d1"]
    assert set(indices[0, :2]) == {1, 4}
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_ties_break_by_candidate_id_descending_and_short_pools_pad() -> None:
    pool = [Item(i, "same words here", None, "text") for i in ("b", "a", "c")] + [Item("z", "unrelated", None, "text")]
    model = BM25Retriever()
    model.index(pool)
    scores, indices = _search(model, [Item("q", "same words", None, "text")], 6)
    assert [pool[i].id for i in indices[0, :4]] == ["c", "b", "a", "z"]
    assert scores[0, 0] == scores[0, 1] == scores[0, 2] > 0 == scores[0, 3]
    assert list(indices[0, 4:]) == [-1, -1] and np.all(np.isneginf(scores[0, 4:]))
    # The partitioned top-k keeps the full tie group before cutting, so k=2 still breaks ties by id.
    _, top2 = _search(model, [Item("q", "same words", None, "text")], 2)
    assert [pool[i].id for i in top2[0]] == ["c", "b"]


def test_query_without_known_terms_scores_zero_everywhere() -> None:
    model = BM25Retriever()
    model.index(CORPUS)
    scores, indices = _search(model, [Item("q", "zebra", None, "text"), Item("e", "", None, "text")], 5)
    assert np.all(scores == 0)
    assert [CORPUS[i].id for i in indices[0]] == ["d5", "d4", "d3", "d2", "d1"]


def test_matches_bm25s_scores() -> None:
    import bm25s

    texts = [c.text for c in CORPUS]
    reference = bm25s.BM25(k1=1.2, b=0.6)
    reference.index(bm25s.tokenize(texts, stopwords="english", show_progress=False), show_progress=False)
    query = "sunlight plants energy"
    ref_docs, ref_scores = reference.retrieve(
        bm25s.tokenize([query], stopwords="english", show_progress=False), k=3, show_progress=False
    )
    model = build_model("bm25", {"k1": "1.2", "b": "0.6"})
    assert model.k1 == 1.2 and model.b == 0.6
    model.index(CORPUS)
    scores, indices = _search(model, [Item("q", query, None, "text")], 3)
    np.testing.assert_allclose(scores[0], ref_scores[0], rtol=1e-6)
    assert list(indices[0]) == list(ref_docs[0])


def test_instructions_are_ignored_and_deterministic() -> None:
    model = BM25Retriever(method="robertson")
    model.index(CORPUS)
    queries = [Item("q", "pets cats dogs", None, "text")]
    first = _search(model, queries, 5)
    instructed = model.search(queries, 5, instructions=["Retrieve a passage."])
    assert np.array_equal(first[1], instructed[1]) and np.array_equal(first[0], instructed[0])
    assert model.meta.uses_instructions is False


def test_refusals_and_argument_errors() -> None:
    model = BM25Retriever()
    with pytest.raises(RuntimeError, match="index\\(\\) must be called"):
        _search(model, [Item("q", "x", None, "text")], 1)
    with pytest.raises(MbenchError, match="cannot encode candidate 'img'"):
        model.index([Item("img", None, "x.jpg", "image")])
    with pytest.raises(MbenchError, match="stopwords='klingon'"):
        build_model("bm25", {"stopwords": "klingon"})
    with pytest.raises(MbenchError, match="is not one of 'lucene'"):
        build_model("bm25", {"method": "okapi"})
    assert build_model("bm25", {"stopwords": "none"}).meta.output_args["stopwords"] is None


@pytest.mark.skipif(importlib.util.find_spec("Stemmer") is not None, reason="PyStemmer is installed")
def test_stemmer_without_pystemmer_says_what_to_install() -> None:
    with pytest.raises(MbenchError, match="pip install PyStemmer"):
        build_model("bm25", {"stemmer": "english"})
