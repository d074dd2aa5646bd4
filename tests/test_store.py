"""The embedding store: lossless round trips, resume, corruption never served, atomic and concurrent writes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from mbench.engine.cache import cache_root as default_cache_dir
from mbench.engine.cache import store_root as default_store_root
from mbench.engine.cache.store import (
    EmbeddingStore,
    NonFiniteEmbeddingError,
    RowConcat,
    concat_entries,
)
from mbench.errors import MbenchError

REPO = Path(__file__).resolve().parents[1]


def key_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def matrix(n: int, dim: int = 4, offset: float = 0.0) -> np.ndarray:
    # Values exactly representable in fp16 too, so the explicit fp16 store compares exactly.
    return (np.arange(n * dim, dtype=np.float32).reshape(n, dim) / 8 + offset).astype(np.float32)


def fp32_only(n: int, dim: int = 4) -> np.ndarray:
    # Values with all 24 mantissa bits in use: any rounding on the way would show.
    return (1.0 + np.arange(1, n * dim + 1, dtype=np.float64).reshape(n, dim) * 2.0**-23 * 3).astype(np.float32)


def shard_file(entry, index: int) -> Path:  # type: ignore[no-untyped-def]
    record = json.loads((entry.path / f"shard-{index:06d}.json").read_text())
    return entry.path / record["file"]


def test_default_cache_dir_follows_mbench_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MBENCH_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    assert default_store_root() == tmp_path / "c" / "embeddings"
    assert EmbeddingStore().root == tmp_path / "c" / "embeddings"


def test_write_then_load_round_trips_fp32_rows_bit_for_bit_in_order(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    entry = store.entry(key_of("a"), 10, shard_size=4, meta={"model": "m", "role": "candidate"})
    assert entry.n_shards == 3 and [entry.shard_range(i) for i in range(3)] == [range(4), range(4, 8), range(8, 10)]
    data = fp32_only(10)
    assert not np.array_equal(data.astype(np.float16).astype(np.float32), data)  # fp16 would change them
    for i in (2, 0, 1):
        entry.write_shard(i, data[entry.shard_range(i).start : entry.shard_range(i).stop])
    assert entry.complete()
    loaded = entry.load()
    assert loaded.shape == (10, 4) and loaded.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(loaded).view(np.uint32), data.view(np.uint32))
    manifest = json.loads((entry.path / "manifest.json").read_text())
    assert (manifest["n_items"], manifest["dim"], manifest["shard_size"], manifest["meta"]["model"]) == (10, 4, 4, "m")
    assert (manifest["dtype"], manifest["store_dtype"]) == ("float32", "native")
    reopened = EmbeddingStore(tmp_path).open(key_of("a"))
    assert reopened.dtype == "float32"
    np.testing.assert_array_equal(np.asarray(reopened.load(mmap=False)), data)


def test_bfloat16_tensors_are_stored_as_their_bit_patterns_and_read_back_exactly(tmp_path: Path) -> None:
    import torch

    values = torch.tensor([[1.0, -2.5, 3.140625], [1e-3, 65504.0, 1e30]]).to(torch.bfloat16)
    entry = EmbeddingStore(tmp_path).entry(key_of("bf16"), 2, shard_size=2)
    entry.write_shard(0, values)
    record = json.loads((entry.path / "shard-000000.json").read_text())
    on_disk = np.load(shard_file(entry, 0), allow_pickle=False)
    assert record["dtype"] == "bfloat16" and entry.dtype == "bfloat16" and on_disk.dtype == np.uint16
    np.testing.assert_array_equal(on_disk, values.view(torch.int16).numpy().view(np.uint16))
    loaded = EmbeddingStore(tmp_path).open(key_of("bf16")).load()
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(loaded), values.float().numpy())
    np.testing.assert_array_equal(loaded[1:], values[1:].float().numpy())


def test_float16_rows_stay_float16(tmp_path: Path) -> None:
    entry = EmbeddingStore(tmp_path).entry(key_of("half"), 3, shard_size=4)
    entry.write_shard(0, matrix(3).astype(np.float16))
    loaded = entry.load()
    assert entry.dtype == "float16" and loaded.dtype == np.float16
    np.testing.assert_array_equal(np.asarray(loaded), matrix(3).astype(np.float16))


def test_explicit_float16_store_converts_every_shard(tmp_path: Path) -> None:
    entry = EmbeddingStore(tmp_path).entry(key_of("fp16"), 4, shard_size=2, store_dtype="float16")
    assert entry.dtype == "float16"
    entry.write_shard(0, fp32_only(2))
    entry.write_shard(1, matrix(2))
    loaded = np.asarray(entry.load())
    assert loaded.dtype == np.float16
    np.testing.assert_array_equal(loaded, np.concatenate([fp32_only(2), matrix(2)]).astype(np.float16))


def test_an_entry_is_opened_only_with_the_store_dtype_it_was_created_with(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    store.entry(key_of("pol"), 2, shard_size=2, store_dtype="float16")
    with pytest.raises(MbenchError, match="stores float16 embeddings, asked for native"):
        store.entry(key_of("pol"), 2, shard_size=2)


def test_a_shard_of_another_dtype_than_the_entry_holds_is_refused(tmp_path: Path) -> None:
    entry = EmbeddingStore(tmp_path).entry(key_of("mix"), 4, shard_size=2)
    entry.write_shard(0, matrix(2))
    with pytest.raises(MbenchError, match="holds float32 embeddings, shard 1 is float16"):
        entry.write_shard(1, matrix(2).astype(np.float16))
    assert entry.missing_shards() == [1]


@pytest.mark.parametrize("bad", [np.zeros((2, 2), np.float64), np.zeros((2, 2), np.int32)])
def test_dtypes_the_store_cannot_keep_exactly_are_refused(tmp_path: Path, bad: np.ndarray) -> None:
    entry = EmbeddingStore(tmp_path).entry(key_of("f64"), 2, shard_size=2)
    with pytest.raises(MbenchError, match=f"float32, float16 or bfloat16, got a numpy {bad.dtype}"):
        entry.write_shard(0, bad)


def test_a_format_1_fp16_entry_stays_readable_for_ls_and_gc(tmp_path: Path) -> None:
    entry = EmbeddingStore(tmp_path).entry(key_of("old"), 2, shard_size=2, store_dtype="float16")
    entry.write_shard(0, matrix(2))
    manifest_path = entry.path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["format"] = "mbench-embeddings/1"  # what mbench wrote before the lossless store
    del manifest["store_dtype"]
    manifest_path.write_text(json.dumps(manifest))
    old = EmbeddingStore(tmp_path).open(key_of("old"))
    assert (old.dtype, old.store_dtype, old.missing_shards()) == ("float16", "float16", [])


def test_resume_reports_only_the_shards_not_written(tmp_path: Path) -> None:
    entry = EmbeddingStore(tmp_path).entry(key_of("b"), 25, shard_size=5)
    entry.write_shard(0, matrix(5))
    entry.write_shard(3, matrix(5))
    again = EmbeddingStore(tmp_path).entry(key_of("b"), 25, shard_size=5)
    assert again.missing_shards() == [1, 2, 4]
    assert again.missing_shards_for_rank(0, 2) == [2, 4] and again.missing_shards_for_rank(1, 2) == [1]
    with pytest.raises(MbenchError, match="not complete"):
        again.load()


def test_reopening_with_another_item_count_is_refused(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    store.entry(key_of("c"), 10, shard_size=4)
    with pytest.raises(MbenchError, match="n_items=10"):
        store.entry(key_of("c"), 11, shard_size=4)


def test_truncated_shard_is_missing_and_never_served(tmp_path: Path) -> None:
    entry = EmbeddingStore(tmp_path).entry(key_of("d"), 8, shard_size=4)
    entry.write_shard(0, matrix(4))
    entry.write_shard(1, matrix(4, offset=1))
    path = shard_file(entry, 1)
    path.write_bytes(path.read_bytes()[:-7])
    fresh = EmbeddingStore(tmp_path).open(key_of("d"))
    assert fresh.check_shard(1).status == "corrupt" and "truncated" in fresh.check_shard(1).reason
    with pytest.raises(MbenchError, match="shard 1"):
        fresh.load()
    assert fresh.missing_shards() == [1]
    assert not path.exists()  # quarantined
    fresh.write_shard(1, matrix(4, offset=1))
    np.testing.assert_array_equal(np.asarray(fresh.load())[4:], matrix(4, offset=1))


def test_bit_flipped_shard_fails_its_checksum_and_is_recomputed(tmp_path: Path) -> None:
    entry = EmbeddingStore(tmp_path).entry(key_of("e"), 8, shard_size=4)
    entry.write_shard(0, matrix(4))
    entry.write_shard(1, matrix(4))
    path = shard_file(entry, 0)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x10  # same size, same header: only the checksum can tell
    path.write_bytes(bytes(raw))
    fresh = EmbeddingStore(tmp_path).open(key_of("e"))
    assert fresh.check_shard(0).reason.endswith("fails its sha256 checksum")
    assert fresh.missing_shards() == [0]
    assert (fresh.path / "quarantine").is_dir() and len(list((fresh.path / "quarantine").iterdir())) == 1


def test_shard_with_wrong_shape_is_missing(tmp_path: Path) -> None:
    entry = EmbeddingStore(tmp_path).entry(key_of("f"), 8, shard_size=4)
    entry.write_shard(0, matrix(4))
    record_path = entry.path / "shard-000000.json"
    record = json.loads(record_path.read_text())
    np.save(entry.path / record["file"], matrix(3), allow_pickle=False)
    fresh = EmbeddingStore(tmp_path).open(key_of("f"))
    assert fresh.check_shard(0, verify=False).status == "corrupt"
    assert fresh.missing_shards(verify=False) == [0, 1]


def test_nan_is_rejected_naming_the_row_and_nothing_is_stored(tmp_path: Path) -> None:
    entry = EmbeddingStore(tmp_path).entry(key_of("g"), 8, shard_size=4)
    data = matrix(4)
    data[2, 1] = np.nan
    with pytest.raises(NonFiniteEmbeddingError, match="row 6 ") as info:
        entry.write_shard(1, data)
    assert info.value.row == 6
    assert entry.missing_shards() == [0, 1]
    assert not list(entry.path.glob("shard-*"))


def test_values_overflowing_an_explicit_fp16_store_are_rejected(tmp_path: Path) -> None:
    entry = EmbeddingStore(tmp_path).entry(key_of("h"), 2, shard_size=2, store_dtype="float16")
    with pytest.raises(NonFiniteEmbeddingError, match="float16"):
        entry.write_shard(0, np.array([[1.0, 2.0], [7e4, 0.0]], dtype=np.float32))


def test_shape_mismatch_on_write_is_an_error(tmp_path: Path) -> None:
    entry = EmbeddingStore(tmp_path).entry(key_of("i"), 8, shard_size=4)
    entry.write_shard(0, matrix(4, dim=4))
    with pytest.raises(MbenchError, match="4-d"):
        entry.write_shard(1, matrix(4, dim=5))
    with pytest.raises(MbenchError, match=r"\(4, dim\)"):
        entry.write_shard(1, matrix(3, dim=4))


def test_killed_writer_leaves_a_temp_file_that_is_ignored_and_collected(tmp_path: Path) -> None:
    # The child dies (SIGKILL) after its temp file is written and fsynced, before the rename.
    script = textwrap.dedent(
        f"""
        import os, signal, numpy as np
        from mbench.engine.cache import store as s
        entry = s.EmbeddingStore({str(tmp_path)!r}).entry({key_of("j")!r}, 8, shard_size=4)
        entry.write_shard(0, np.ones((4, 3), np.float32))
        s.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        entry.write_shard(1, np.ones((4, 3), np.float32))
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    store = EmbeddingStore(tmp_path)
    entry = store.open(key_of("j"))
    temps = list(entry.path.glob(".*.tmp"))
    assert len(temps) == 1
    assert entry.missing_shards() == [1]
    removed = store.gc(tmp_grace_s=3600)  # young, but its writer is dead
    assert removed == temps and not temps[0].exists()
    assert entry.missing_shards() == [1]


def test_concurrent_writers_of_different_shards_end_consistent(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, numpy as np
        from mbench.engine.cache.store import EmbeddingStore
        rank, root, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        entry = EmbeddingStore(root).entry(key, 40 * 3, shard_size=3, meta={"model": "m"})
        for i in entry.missing_shards_for_rank(rank, 2):
            entry.write_shard(i, np.full((3, 5), i, np.float32))
        """
    )
    key = key_of("k")
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(rank), str(tmp_path), key], cwd=REPO) for rank in range(2)
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    entry = EmbeddingStore(tmp_path).open(key)
    assert entry.dim == 5 and entry.missing_shards() == []
    loaded = np.asarray(entry.load(trust_verified=False))
    np.testing.assert_array_equal(loaded[:, 0], np.repeat(np.arange(40), 3).astype(np.float32))
    assert len(list(entry.path.glob("shard-*.npy"))) == 40


def test_rewriting_a_shard_replaces_the_old_file(tmp_path: Path) -> None:
    entry = EmbeddingStore(tmp_path).entry(key_of("l"), 4, shard_size=4)
    entry.write_shard(0, matrix(4))
    first = shard_file(entry, 0)
    entry.write_shard(0, matrix(4, offset=2))
    assert not first.exists() and len(list(entry.path.glob("shard-*.npy"))) == 1
    np.testing.assert_array_equal(np.asarray(entry.load()), matrix(4, offset=2))


def test_concat_entries_equals_the_materialised_concatenation(tmp_path: Path) -> None:
    store = EmbeddingStore(tmp_path)
    parts = []
    for j, n in enumerate((5, 1, 7)):
        entry = store.entry(key_of(f"pool{j}"), n, shard_size=2)
        for i in range(entry.n_shards):
            r = entry.shard_range(i)
            entry.write_shard(i, matrix(n, offset=10 * j)[r.start : r.stop])
        parts.append(entry)
    view = concat_entries(parts)
    expected = np.concatenate([matrix(n, offset=10 * j) for j, n in enumerate((5, 1, 7))])
    assert view.shape == (13, 4) and len(view.parts) == 3 + 1 + 4
    np.testing.assert_array_equal(np.asarray(view), expected)
    np.testing.assert_array_equal(view[3:9], expected[3:9])
    np.testing.assert_array_equal(view[[12, 0, 5, 5]], expected[[12, 0, 5, 5]])
    np.testing.assert_array_equal(view[-1], expected[-1])
    nested = RowConcat([view, np.zeros((2, 4), np.float32)])
    assert nested.shape == (15, 4) and len(nested.parts) == 9


def test_load_without_trust_rehashes_a_shard_flipped_behind_its_back(tmp_path: Path) -> None:
    entry = EmbeddingStore(tmp_path).entry(key_of("m"), 4, shard_size=4)
    entry.write_shard(0, matrix(4))
    path = shard_file(entry, 0)
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    stat = path.stat()
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # a flip that keeps size and mtime
    with pytest.raises(MbenchError, match="checksum"):
        entry.load(trust_verified=False)
