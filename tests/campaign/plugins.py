"""A reranker for the campaign: deterministic scores for any modality, and a log of every pair it scores."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import torch

from mbench.models.base import ModelMeta

ALL = frozenset({"text", "image", "image,text"})


class PairReranker:
    """Score = a crc32 of the two item ids (stable across processes); each scored pair is appended to ``pair_log``."""

    def __init__(self, pair_log: str = "", batch_size: int = 8, device: str = "cpu") -> None:
        self.meta = ModelMeta(name="pair-crc", version="1", revision="r1", query_modalities=ALL, cand_modalities=ALL,
                              dim=None)
        self.pair_log = Path(pair_log) if pair_log else None

    def score(self, queries, candidates, *, prompts) -> torch.Tensor:
        """One score per (query, candidate) pair."""
        if self.pair_log is not None:
            # One write per batch, appended: lines of processes killed mid-run stay whole.
            text = "".join(f"{os.getpid()}\t{q.id}\t{c.id}\n" for q, c in zip(queries, candidates))
            with open(self.pair_log, "a", encoding="utf-8") as log:
                log.write(text)
        return torch.tensor([zlib.crc32(f"{q.id}|{c.id}".encode()) % 1000 / 1000 for q, c in zip(queries, candidates)])


def pair_reranker(pair_log: str = "", batch_size: int = 8, device: str = "cpu") -> PairReranker:
    """The campaign reranker (``--reranker campaign.plugins:pair_reranker``)."""
    return PairReranker(pair_log=pair_log, batch_size=batch_size, device=device)
