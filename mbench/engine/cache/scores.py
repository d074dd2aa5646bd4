"""Reranker pair scores in one SQLite file, keyed by ``keys.pair_key``: a rerun scores nothing.

Scores are committed after every batch, so an interrupted rerank resumes where it stopped; a
changed template, checkpoint or dtype (all in the key) misses.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from mbench.engine.cache import scores_path
from mbench.errors import MbenchError


class ScoreCache:
    """Pair scores in one SQLite file (no pickle): ``key -> score``; safe for several processes."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, score REAL NOT NULL)")
            self._db.commit()
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise MbenchError(f"rerank score cache {self.path} is not a readable SQLite file ({err}); delete it") from err

    @classmethod
    def in_cache_dir(cls, cache_dir: Path | str | None) -> ScoreCache:
        """The score cache of the cache root (``cache_root(cache_dir)/rerank/scores.sqlite``)."""
        return cls(scores_path(cache_dir))

    def get_many(self, keys: Sequence[str]) -> dict[str, float]:
        """The stored scores of those ``keys`` that are stored."""
        found: dict[str, float] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):  # SQLite limits the number of bound parameters
            chunk = unique[start: start + 500]
            marks = ",".join("?" * len(chunk))
            for key, score in self._db.execute(f"SELECT key, score FROM scores WHERE key IN ({marks})", chunk):
                found[key] = float(score)
        return found

    def put_many(self, scores: dict[str, float]) -> None:
        """Store ``scores`` (one transaction)."""
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO scores (key, score) VALUES (?, ?)", list(scores.items()))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM scores").fetchone()[0])

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()
