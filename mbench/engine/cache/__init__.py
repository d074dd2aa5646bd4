"""The embedding cache: everything that decides whether an encoding is computed or reused.

``keys`` makes the content-addressed keys (model fingerprint, role, precision, every item's
content, instruction and prompt; the reranker's pair keys likewise), ``store`` keeps the sharded,
checksummed matrices on disk exactly as the encoder emitted them, ``encoder`` encodes an item
table through the store (the memo of keys derived from a shared pool, each rank's share of the
missing shards, the unit-row check of cosine models), and ``scores`` caches reranker pair scores. All of it lives under one cache root,
``cache_root()``: ``--cache-dir``, else ``$MBENCH_CACHE``, else ``~/.cache/mbench``.

Nothing heavy is imported here: `mbench cache` and the data loader (which generates the mini
benchmark into the cache) use these paths without torch.
"""

from __future__ import annotations

import os
from pathlib import Path

EMBEDDINGS_SUBDIR = "embeddings"
RERANK_SCORES_FILE = Path("rerank") / "scores.sqlite"


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$MBENCH_CACHE``, else ``~/.cache/mbench``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("MBENCH_CACHE") or "~/.cache/mbench").expanduser()


def store_root(cache_dir: Path | str | None = None) -> Path:
    """Where the embedding store lives inside the cache (``<cache>/embeddings``)."""
    return cache_root(cache_dir) / EMBEDDINGS_SUBDIR


def scores_path(cache_dir: Path | str | None = None) -> Path:
    """The reranker's pair-score database inside the cache (``<cache>/rerank/scores.sqlite``)."""
    return cache_root(cache_dir) / RERANK_SCORES_FILE
