"""The Encoder stores exactly what a model returns: its dtype, its bits, and nothing renormalised."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mbench.data.types import ItemTable
from mbench.engine.encode import EncodeOptions
from mbench.engine.cache.encoder import Encoder
from mbench.engine.cache.store import EmbeddingStore
from mbench.errors import MbenchError
from mbench.models.builtin.hashing import HashingRetriever

TABLE = ItemTable(ids=["a", "b", "c"], texts=["red ball", "blue box", "green cup"], images=[None] * 3,
                  modalities=["text"] * 3)


class Scaled(HashingRetriever):
    """Returns the hashing embedder's unit rows times ``scale``, in ``out_dtype``."""

    def __init__(self, scale: float = 1.0, out_dtype: torch.dtype = torch.float32) -> None:
        super().__init__(dim=16)
        self.scale, self.out_dtype = scale, out_dtype

    def encode(self, items, *, role, instructions, prompts):
        unit = super().encode(items, role=role, instructions=instructions, prompts=prompts)
        return (self.scale * unit).to(self.out_dtype)


def encode(model, tmp_path, store_dtype: str = "native"):  # type: ignore[no-untyped-def]
    encoder = Encoder(model, EmbeddingStore(tmp_path), EncodeOptions(progress=False, batch_size=2), store_dtype)
    return encoder.encode(TABLE, np.arange(3), role="candidate", instructions=[None] * 3, prompts=[None] * 3,
                          data_root=None, label="t")


def test_fp32_rows_are_stored_bit_for_bit(tmp_path) -> None:
    model = Scaled()
    entry = encode(model, tmp_path)
    direct = model.encode(TABLE.items(range(3)), role="candidate", instructions=[None] * 3, prompts=[None] * 3)
    assert entry.dtype == "float32"
    np.testing.assert_array_equal(np.asarray(entry.load()).view(np.uint32), direct.numpy().view(np.uint32))


def test_bfloat16_rows_are_stored_as_bfloat16(tmp_path) -> None:
    model = Scaled(out_dtype=torch.bfloat16)
    entry = encode(model, tmp_path)
    direct = model.encode(TABLE.items(range(3)), role="candidate", instructions=[None] * 3, prompts=[None] * 3)
    assert entry.dtype == "bfloat16"
    np.testing.assert_array_equal(np.asarray(entry.load()), direct.float().numpy())


def test_the_fp16_store_is_another_key_and_rounds_to_fp16(tmp_path) -> None:
    native, half = encode(Scaled(), tmp_path), encode(Scaled(), tmp_path, "float16")
    assert native.key != half.key and (native.dtype, half.dtype) == ("float32", "float16")
    np.testing.assert_array_equal(np.asarray(half.load()), np.asarray(native.load()).astype(np.float16))


def test_a_cosine_model_returning_rows_that_are_not_unit_length_is_refused_naming_the_item(tmp_path) -> None:
    with pytest.raises(MbenchError, match=r"declares cosine similarity but returned a candidate embedding of norm 2 "
                                          r"for item 'a' \(3 such rows"):
        encode(Scaled(scale=2.0), tmp_path)


def test_an_fp16_entry_of_an_earlier_mbench_is_never_reused(tmp_path) -> None:
    # Earlier versions keyed entries by "float32" (CPU) and stored fp16 copies under that key.
    from mbench.engine.cache.keys import embedding_key, item_content_hash
    from mbench.models.base import model_fingerprint

    model = Scaled()
    hashes = [item_content_hash(TABLE.item(i), None, None, None) for i in range(3)]
    old_key = embedding_key(model_fingerprint(model.meta), "candidate", "float32", hashes)
    old = EmbeddingStore(tmp_path).entry(old_key, 3, shard_size=8192, store_dtype="float16")
    old.write_shard(0, np.zeros((3, 16), np.float32))
    entry = encode(model, tmp_path)
    assert entry.key != old_key and entry.dtype == "float32"
    assert np.linalg.norm(np.asarray(entry.load()), axis=1) == pytest.approx(1.0, abs=1e-6)
