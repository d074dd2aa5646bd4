"""BM25 through the `bm25s` package (`--model bm25`): a lexical retriever for text-only tasks.

The pool is indexed in memory; every query is scored against the whole pool and ranked by
score descending with ties broken by candidate id descending (trec_eval's rule, the engine's
ordering), so the ranking never depends on hash seeds or thread counts. Instructions are
ignored: BM25 has no use for them. Stemming needs the optional PyStemmer package (offline).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from mbench.data.types import Item
from mbench.errors import MbenchError
from mbench.models.base import ModelMeta, check_items

PLUGIN_VERSION = "1"


def _bm25s_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("bm25s")


class BM25Retriever:
    """Okapi BM25 (and the variants bm25s implements) over lower-cased, stopword-filtered word tokens."""

    def __init__(
        self,
        k1: float = 1.5,
        b: float = 0.75,
        method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"] = "lucene",
        delta: float = 0.5,
        stopwords: str = "english",
        stemmer: str | None = None,
        lower: bool = True,
    ) -> None:
        self.k1, self.b, self.method, self.delta = k1, b, method, delta
        self.stopwords = None if stopwords.lower() in ("none", "") else stopwords
        self.lower = lower
        self._stem = _load_stemmer(stemmer)
        if self.stopwords is not None:
            self._tokenize(["probe"])  # an unknown stopword language fails now, not after indexing
        self._bm25 = None
        self._cand_id_rank: np.ndarray | None = None
        self.meta = ModelMeta(
            name="bm25",
            version=PLUGIN_VERSION,
            revision=f"bm25s-{_bm25s_version()}",
            query_modalities=frozenset({"text"}),
            cand_modalities=frozenset({"text"}),
            dim=None,
            similarity="dot",
            output_args={
                "k1": k1,
                "b": b,
                "method": method,
                "delta": delta,
                "stopwords": self.stopwords,
                "stemmer": stemmer,
                "lower": lower,
            },
        )

    def _tokenize(self, texts: list[str]) -> list[list[str]]:
        import bm25s

        try:
            return bm25s.tokenize(
                texts,
                lower=self.lower,
                stopwords=self.stopwords,
                stemmer=self._stem,
                return_ids=False,
                show_progress=False,
            )
        except ValueError as err:
            raise MbenchError(f"bm25: --model-arg stopwords={self.stopwords!r}: {err}") from err

    def index(self, candidates: Sequence[Item]) -> None:
        """Index the pool; positions in ``candidates`` are the indices ``search`` returns."""
        import bm25s

        check_items(self.meta, candidates, "candidate")
        self._bm25 = bm25s.BM25(k1=self.k1, b=self.b, delta=self.delta, method=self.method)
        self._bm25.index(self._tokenize([c.text or "" for c in candidates]), show_progress=False)
        ids = np.array([c.id for c in candidates], dtype=object)
        # Rank of each candidate id in string order, so ties can break by id descending in O(1) per pair.
        rank = np.empty(len(ids), dtype=np.int64)
        rank[np.argsort(ids, kind="stable")] = np.arange(len(ids))
        self._cand_id_rank = rank

    def search(
        self, queries: Sequence[Item], k: int, *, instructions: Sequence[str | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k per query: scores float32 [nq, k] and pool indices int64 [nq, k], -1 / -inf padding."""
        if self._bm25 is None or self._cand_id_rank is None:
            raise RuntimeError("bm25: index() must be called before search()")
        if len(instructions) != len(queries):
            raise ValueError("search needs exactly one instruction per query")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        check_items(self.meta, queries, "query")
        n_cands = len(self._cand_id_rank)
        depth = min(k, n_cands)
        scores_out = np.full((len(queries), k), -np.inf, dtype=np.float32)
        index_out = np.full((len(queries), k), -1, dtype=np.int64)
        for row, tokens in enumerate(self._tokenize([q.text or "" for q in queries])):
            token_ids = self._bm25.get_tokens_ids(tokens)
            if token_ids:
                scores = np.asarray(self._bm25.get_scores_from_ids(token_ids), dtype=np.float32)
            else:
                scores = np.zeros(n_cands, dtype=np.float32)
            top = _top_k(scores, self._cand_id_rank, depth)
            scores_out[row, :depth] = scores[top]
            index_out[row, :depth] = top
        return scores_out, index_out


def _top_k(scores: np.ndarray, id_rank: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best scores, score descending then candidate id descending."""
    if k < len(scores):
        threshold = np.partition(scores, len(scores) - k)[len(scores) - k]
        # Everything tied with the k-th score competes, so the id tie-break is exact.
        shortlist = np.flatnonzero(scores >= threshold)
    else:
        shortlist = np.arange(len(scores))
    order = np.lexsort((-id_rank[shortlist], -scores[shortlist]))
    return shortlist[order[:k]].astype(np.int64)


def _load_stemmer(language: str | None):
    if language is None or language.lower() == "none":
        return None
    try:
        import Stemmer
    except ImportError as err:
        raise MbenchError(f"bm25: --model-arg stemmer={language!r} needs the PyStemmer package: pip install PyStemmer") from err
    try:
        return Stemmer.Stemmer(language).stemWords
    except KeyError as err:
        raise MbenchError(f"bm25: unknown stemmer language {language!r}; PyStemmer knows {Stemmer.algorithms()}") from err
