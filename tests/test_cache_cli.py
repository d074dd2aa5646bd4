"""`mbench cache ls|verify|gc` on a real store in a temporary cache directory."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mbench.cli import main
from mbench.engine.cache import store_root as default_store_root
from mbench.engine.cache.store import EmbeddingStore

REPO = Path(__file__).resolve().parents[1]


def key_of(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


@pytest.fixture()
def cache(tmp_path: Path) -> Path:
    """A cache with one complete entry (3 shards) and one incomplete entry (1 of 2 shards)."""
    store = EmbeddingStore(default_store_root(tmp_path))
    done = store.entry(key_of("done"), 6, shard_size=2, meta={"model": "clip-sf", "role": "candidate"})
    for i in range(3):
        done.write_shard(i, np.full((2, 4), i, np.float32))
    half = store.entry(key_of("half"), 4, shard_size=2, meta={"model": "e5-v", "role": "query"})
    half.write_shard(0, np.ones((2, 4), np.float32))
    return tmp_path


def shard_path(cache: Path, name: str, index: int) -> Path:
    entry_dir = default_store_root(cache) / key_of(name)
    return entry_dir / json.loads((entry_dir / f"shard-{index:06d}.json").read_text())["file"]


def test_ls_lists_model_role_items_dim_dtype_and_shards(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "ls", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    done_line = next(line for line in out.splitlines() if line.startswith(key_of("done")[:12]))
    assert done_line.split()[1:7] == ["clip-sf", "candidate", "6", "4", "float32", "3/3"]
    half_line = next(line for line in out.splitlines() if line.startswith(key_of("half")[:12]))
    assert half_line.split()[1:7] == ["e5-v", "query", "4", "4", "float32", "1/2"]
    assert "2 entries" in out


def test_verify_passes_on_a_healthy_cache(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "verify", "--cache-dir", str(cache)]) == 0
    assert "4 shard(s) verified, 0 corrupted" in capsys.readouterr().out


def test_verify_reports_truncated_and_bit_flipped_shards_and_exits_2(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truncated = shard_path(cache, "done", 1)
    truncated.write_bytes(truncated.read_bytes()[:100])
    flipped = shard_path(cache, "done", 2)
    raw = bytearray(flipped.read_bytes())
    raw[-1] ^= 0x01
    flipped.write_bytes(bytes(raw))
    assert main(["cache", "verify", "--cache-dir", str(cache)]) == 2
    out = capsys.readouterr().out
    assert f"{key_of('done')[:12]} shard 1: " in out and "truncated" in out
    assert f"{key_of('done')[:12]} shard 2: " in out and "sha256" in out
    assert truncated.exists()  # without --repair nothing is touched


def test_verify_repair_deletes_corrupted_shards_so_they_are_recomputed(cache: Path) -> None:
    flipped = shard_path(cache, "done", 0)
    raw = bytearray(flipped.read_bytes())
    raw[-2] ^= 0x40
    flipped.write_bytes(bytes(raw))
    assert main(["cache", "verify", "--repair", "--cache-dir", str(cache)]) == 0
    assert not flipped.exists()
    entry = EmbeddingStore(default_store_root(cache)).open(key_of("done"))
    assert entry.missing_shards() == [0]
    assert main(["cache", "verify", "--cache-dir", str(cache)]) == 0


def test_gc_removes_stale_temp_files_and_old_incomplete_entries(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = default_store_root(cache)
    stale = root / key_of("done") / ".shard-000000-0a0b0c0d.npy.otherhost.123.abc.tmp"
    stale.write_bytes(b"partial")
    old = time.time() - 3 * 86400
    os.utime(stale, (old, old))
    for path in (root / key_of("half")).iterdir():
        os.utime(path, (old, old))
    assert main(["cache", "gc", "--older-than-days", "2", "--cache-dir", str(cache)]) == 0
    assert not stale.exists()
    assert not (root / key_of("half")).exists()
    assert (root / key_of("done") / "manifest.json").exists()  # complete entries are kept
    assert "removed 2 path(s)" in capsys.readouterr().out


def test_gc_key_prefix_and_all_drop_entries(cache: Path) -> None:
    root = default_store_root(cache)
    assert main(["cache", "gc", "--key", key_of("half")[:12], "--cache-dir", str(cache)]) == 0
    assert not (root / key_of("half")).exists() and (root / key_of("done")).exists()
    assert main(["cache", "gc", "--all", "--dry-run", "--cache-dir", str(cache)]) == 0
    assert (root / key_of("done")).exists()
    assert main(["cache", "gc", "--all", "--cache-dir", str(cache)]) == 0
    assert EmbeddingStore(root).entry_dirs() == []


def test_gc_dtype_removes_the_entries_stored_in_that_dtype(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = default_store_root(cache)
    old = EmbeddingStore(root).entry(key_of("fp16"), 2, shard_size=2, store_dtype="float16")
    old.write_shard(0, np.ones((2, 4), np.float32))
    assert main(["cache", "gc", "--dtype", "float16", "--cache-dir", str(cache)]) == 0
    assert not (root / key_of("fp16")).exists()
    assert (root / key_of("done")).exists() and (root / key_of("half")).exists()
    assert f"removed {root / key_of('fp16')}" in capsys.readouterr().out


def test_gc_unknown_key_is_an_error(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "gc", "--key", "ffffffffffff", "--cache-dir", str(cache)]) == 2
    assert "no entry" in capsys.readouterr().err


def test_cache_command_uses_mbench_cache_and_imports_no_torch(cache: Path) -> None:
    code = "import sys; from mbench.cli import main; rc = main(['cache', 'ls']); assert 'torch' not in sys.modules; sys.exit(rc)"
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True, env={**os.environ, "MBENCH_CACHE": str(cache)}
    )
    assert proc.returncode == 0, proc.stderr
    assert "clip-sf" in proc.stdout
