"""Encoding item tables through the embedding store: what is stored is reused, what is missing is
computed, and under torchrun each rank computes its own share of the missing shards.

The key of an entry comes from ``keys``; candidates' keys and other values derived from a shared
pool (the M-BEIR global pool is one object across 16 tasks) are remembered in ``POOL_MEMO`` while
that object lives. What a model returns is stored as it is, bit for bit (``store_dtype="native"``),
or, only when asked, as float16; the key holds the encode precision and the store dtype, so an
entry of another precision (such as the fp16 copies of earlier mbench versions) is never reused.
A cosine model must return unit rows (search is then a plain inner product on the stored values);
renormalising them here would rewrite the model's numbers, so a row that is not unit length is an
error naming its item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mbench.data.types import ItemTable
from mbench.engine.cache.keys import embedding_key, item_content_hash
from mbench.engine.distributed import World
from mbench.engine.encode import EncodeOptions, encode_precision, encode_rows
from mbench.errors import MbenchError
from mbench.models.base import UNIT_NORM_TOLERANCE
from mbench.progress import progress


def pool_segments(pool: ItemTable) -> list[tuple[str, np.ndarray]]:
    """The pool split into the pools it was assembled from (one segment for a plain pool).

    The M-BEIR global pool is the 16 local pools concatenated; encoding per segment makes the
    global pool reuse the local pools' stored embeddings, so no candidate is encoded twice.
    """
    if pool.source is None or not pool.source_names:
        return [("pool", np.arange(len(pool), dtype=np.int64))]
    segments = []
    for index, name in enumerate(pool.source_names):
        rows = np.flatnonzero(pool.source == index)
        if rows.size:
            segments.append((name, rows))
    return segments


class TableMemo:
    """Values derived from one item table (keys, tie ranks), kept while the table object lives.

    The M-BEIR global pool is one shared object across the 16 tasks of a run; hashing its 5.6M
    items or sorting its ids once per task would be wasted work.
    """

    def __init__(self) -> None:
        self._table: ItemTable | None = None
        self._values: dict[Any, Any] = {}

    def get(self, table: ItemTable, name: Any, compute: Callable[[], Any]) -> Any:
        """``compute()`` for ``table``, or the value computed before for this very object."""
        if self._table is not table:
            self._table, self._values = table, {}
        if name not in self._values:
            self._values[name] = compute()
        return self._values[name]


POOL_MEMO = TableMemo()


class Encoder:
    """Encodes item tables through the embedding store: stored shards are reused, missing ones computed."""

    def __init__(
        self, model: Any, store: Any, options: EncodeOptions, store_dtype: str = "native", world: World = World()
    ) -> None:
        from mbench.models.base import model_fingerprint

        self.world = world
        self.model = model
        self.store = store
        self.options = options
        self.store_dtype = store_dtype
        self.precision = f"encode={encode_precision(options.device)};store={store_dtype}"
        self.fingerprint = model_fingerprint(model.meta)

    def encode(
        self,
        table: ItemTable,
        rows: np.ndarray,
        *,
        role: str,
        instructions: Sequence[str | None],
        prompts: Sequence[str | None],
        data_root: Path | None,
        label: str,
    ) -> Any:
        """The stored embedding entry of ``table[rows]`` (computed for the shards not yet stored)."""
        from mbench.models.base import check_items

        def key_of() -> str:
            hashes = [
                item_content_hash(table.item(int(r)), instructions[int(r)], prompts[int(r)], data_root) for r in rows
            ]
            return embedding_key(self.fingerprint, role, self.precision, hashes)

        if role == "candidate":  # candidates carry no instruction or prompt: the key depends on content only
            key = POOL_MEMO.get(table, ("key", self.fingerprint, self.precision, label, len(rows)), key_of)
        else:
            key = key_of()
        meta = {
            "model": self.model.meta.name,
            "fingerprint": self.fingerprint,
            "role": role,
            "label": label,
            "precision": self.precision,
        }
        # An existing entry keeps the shard layout it was created with (a later --shard-size only
        # applies to new entries), so changing it never throws away stored embeddings.
        if key in self.store:
            entry = self.store.open(key)
        else:
            entry = self.store.entry(key, n_items=len(rows), shard_size=self.options.shard_size, meta=meta,
                                     store_dtype=self.store_dtype)
        # Under torchrun each rank computes the missing shards of its residue class; every rank
        # then waits for the others and checks that the entry is complete.
        missing = entry.missing_shards_for_rank(self.world.rank, self.world.size)
        if missing:
            check_items(self.model.meta, table.items(rows[: min(len(rows), 64)]), role)  # fail fast on modality
            total = sum(len(entry.shard_range(s)) for s in missing)
            bar = progress(total, f"encode {'queries' if role == 'query' else 'candidates'} {label}", "items",
                           enabled=self.options.progress)
            try:
                for shard in missing:
                    shard_rows = rows[np.asarray(entry.shard_range(shard), dtype=np.int64)]
                    vectors = encode_rows(
                        self.model.encode,
                        table,
                        shard_rows,
                        role=role,
                        instructions=instructions,
                        prompts=prompts,
                        options=self.options,
                        on_batch=bar.update,
                    )
                    if self.model.meta.similarity == "cosine":
                        _check_unit_rows(vectors, table, shard_rows, self.model.meta.name, role)
                    entry.write_shard(shard, vectors)
            finally:
                bar.close()
        if self.world.size > 1:
            self.world.barrier()
            left = entry.missing_shards()
            if left:
                raise MbenchError(f"{role} embeddings {label}: shards {left[:10]} were not computed by their ranks")
        return entry




def _check_unit_rows(vectors: Any, table: ItemTable, rows: np.ndarray, model_name: str, role: str) -> None:
    """A cosine model's rows must be unit length (an error naming the first item that is not)."""
    norms = vectors.double().norm(dim=1).numpy()
    bad = np.flatnonzero(np.abs(norms - 1.0) > UNIT_NORM_TOLERANCE)
    if bad.size:
        item = table.ids[int(rows[bad[0]])]
        raise MbenchError(
            f"model {model_name!r} declares cosine similarity but returned a {role} embedding of norm "
            f"{norms[bad[0]]:.6g} for item {item!r} ({bad.size} such rows in this shard): a cosine model must "
            "return L2-normalised rows (mbench stores and searches exactly what the model returns), or declare "
            "similarity 'dot'"
        )
