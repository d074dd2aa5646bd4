"""What the reliability campaign found about full disks, killed writers, damaged files and `cache gc`,
each pinned by a test of its own (the campaign itself: tests/test_reliability_campaign.py).

Faults are injected through ``mbench.faults`` in this process (``configure``), exactly where the
``MBENCH_FAULT`` environment variable puts them in a real run.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mbench import faults
from mbench.cli import main
from mbench.engine.cache import store_root
from mbench.engine.cache.store import EmbeddingStore
from mbench.errors import MbenchError
from mbench.formats.checked_json import ChecksumError, dumps_checked, loads_checked
from mbench.results import read_result, result_dir, verify_result


@pytest.fixture()
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield {"cache": tmp_path / "cache", "results": tmp_path / "results", "tmp": tmp_path}
    faults.configure("")


def run(env, *extra: str) -> int:
    return main(["run", "--model", "hash-embed", "--tasks", "mini.beir.towns", "--results-dir", str(env["results"]),
                 "--cache-dir", str(env["cache"]), "--no-progress", "--device", "cpu", "--shard-size", "50", *extra])


def result_folder(env) -> Path:
    [path] = env["results"].glob("hash-embed/*/mini.beir.towns/local")
    return path


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


STRERROR = {"enospc": "No space left on device", "eio": "Input/output error"}


@pytest.mark.parametrize("kind, writer", [("enospc", "shard"), ("eio", "shard_record"), ("enospc", "manifest"),
                                          ("eio", "run"), ("enospc", "per_query"), ("eio", "result")])
def test_a_failing_write_is_an_error_naming_the_file_and_the_rerun_completes(env, capsys, kind, writer):
    strerror = STRERROR[kind]
    faults.configure(f"{kind}:write.{writer}:1")
    assert run(env) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and strerror in err and f"error: cannot write {env['tmp']}" in err
    faults.configure("")
    assert run(env) == 0
    assert main(["cache", "verify", "--cache-dir", str(env["cache"])]) == 0


def test_a_full_disk_in_the_rerank_score_cache_is_an_error_naming_it(env, capsys):
    faults.configure("enospc:write.score_cache:1")
    code = run(env, "--reranker", "campaign.plugins:pair_reranker", "--rerank-top-k", "3")
    err = capsys.readouterr().err
    assert code == 2 and "scores.sqlite" in err and "No space left on device" in err


def test_a_killed_writers_temp_file_is_cleared_from_the_result_folder(env):
    assert run(env) == 0
    folder = result_folder(env)
    host = __import__("socket").gethostname()
    leftover = folder / f".result.json.{host}.{dead_pid()}.abc123.tmp"
    leftover.write_bytes(b'{"half": ')
    assert run(env, "--overwrite") == 0
    assert not leftover.exists()


def test_a_flipped_bit_anywhere_in_a_checked_json_file_is_detected():
    data = dumps_checked({"n_items": 200, "created": "2024-01-01T00:00:00+00:00", "meta": {"model": "m"}})
    assert loads_checked(data) == {"n_items": 200, "created": "2024-01-01T00:00:00+00:00", "meta": {"model": "m"}}
    for bit in range(len(data) * 8):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(ChecksumError):
            loads_checked(bytes(flipped), legacy=lambda record: set(record) <= {"n_items", "created", "meta"})


def test_a_flipped_metric_in_result_json_is_detected_and_the_run_computes_it_again(env, capsys):
    assert run(env) == 0
    path = result_folder(env) / "result.json"
    good = json.loads(path.read_text())["metrics"]
    text = path.read_text()
    path.write_text(text.replace(f'"ndcg@10": {good["ndcg@10"]}', f'"ndcg@10": {good["ndcg@10"] / 2}'))
    with pytest.raises(MbenchError, match="result.json: damaged result"):
        read_result(path.parent)
    assert run(env) == 0
    assert "computing this result again" in capsys.readouterr().err
    assert json.loads(path.read_text())["metrics"] == good


def test_a_changed_run_file_is_detected_by_the_result_it_belongs_to(env):
    assert run(env) == 0
    folder = result_folder(env)
    lines = gzip.open(folder / "run.trec.gz", "rt").read().splitlines()
    with gzip.open(folder / "run.trec.gz", "wt") as handle:
        handle.write("\n".join(lines[:-1]) + "\n")
    with pytest.raises(MbenchError, match=r"run\.trec\.gz: its bytes differ from the sha256"):
        verify_result(folder)


def test_a_result_folder_name_cannot_climb_out_of_the_results_root(tmp_path):
    path = result_dir(tmp_path, "..", "0123456789abcdef", "t", "..")
    assert path.resolve().is_relative_to(tmp_path.resolve()) and ".." not in path.relative_to(tmp_path).parts


def test_a_pool_name_that_is_a_path_is_refused(env, capsys):
    assert run(env, "--pool", "../../elsewhere") == 2
    assert "--pool '../../elsewhere'" in capsys.readouterr().err


def test_remote_code_is_not_a_model_argument(env, capsys):
    assert run(env, "--model-arg", "trust_remote_code=true") == 2
    assert "only with the --trust-remote-code flag" in capsys.readouterr().err


def _store_with_entry(cache: Path) -> tuple[EmbeddingStore, str]:
    store = EmbeddingStore(store_root(cache))
    key = "ab" * 32
    entry = store.entry(key, 4, shard_size=2, meta={"model": "m", "role": "query"})
    entry.write_shard(0, np.ones((2, 3), np.float32))
    entry.write_shard(1, np.zeros((2, 3), np.float32))
    return store, key


def test_a_flipped_timestamp_in_a_shard_record_makes_the_shard_recomputed(tmp_path):
    store, key = _store_with_entry(tmp_path)
    record = store.root / key / "shard-000001.json"
    record.write_bytes(record.read_bytes().replace(b'"written": "2', b'"written": "3'))
    assert store.open(key).check_shard(1).status == "corrupt"
    assert store.open(key).missing_shards() == [1]


def test_a_damaged_manifest_is_rebuilt_by_the_next_user_keeping_the_good_shards(tmp_path, capsys):
    store, key = _store_with_entry(tmp_path)
    manifest = store.root / key / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"n_items": 4', b'"n_items": 5'))
    assert main(["cache", "verify", "--cache-dir", str(tmp_path)]) == 2
    assert key[:12] in capsys.readouterr().out
    entry = store.reuse_or_create(key, 4, shard_size=2, meta={"model": "m", "role": "query"})
    assert entry.missing_shards() == []
    assert np.asarray(entry.load()).tolist() == [[1.0] * 3, [1.0] * 3, [0.0] * 3, [0.0] * 3]
    assert main(["cache", "verify", "--cache-dir", str(tmp_path)]) == 0


def test_a_rebuilt_manifest_takes_its_dim_and_dtype_from_the_good_shards_it_keeps(tmp_path):
    # The campaign found a run over a rebuilt manifest recording `candidate_dtype: None` in
    # result.json: no shard was rewritten, so nothing filled in the new manifest's layout.
    store, key = _store_with_entry(tmp_path)
    manifest = store.root / key / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:40])
    entry = store.reuse_or_create(key, 4, shard_size=2, meta={"model": "m", "role": "query"})
    assert entry.missing_shards() == []
    assert (entry.dim, entry.dtype) == (3, "float32")
    assert (store.open(key).dim, store.open(key).dtype) == (3, "float32")


def test_cache_gc_leaves_an_entry_a_running_process_uses(tmp_path, capsys):
    store, key = _store_with_entry(tmp_path)
    incomplete = store.entry("cd" * 32, 4, shard_size=2)
    incomplete.write_shard(0, np.ones((2, 3), np.float32))
    store.reuse_or_create("cd" * 32, 4, shard_size=2)  # this process now uses it, as a run does
    temp = store.root / ("cd" * 32) / f".shard-000001-00000000.npy.{__import__('socket').gethostname()}.{os.getpid()}.x.tmp"
    temp.write_bytes(b"being written")
    argv = ["cache", "gc", "--cache-dir", str(tmp_path), "--older-than-days", "0", "--tmp-grace-minutes", "0"]
    assert main(argv) == 0
    assert (store.root / ("cd" * 32) / "manifest.json").exists() and temp.exists()
    assert main(argv + ["--all"]) == 0
    assert "kept" in capsys.readouterr().out
    assert (store.root / ("cd" * 32)).exists() and not (store.root / key).exists()


def test_rewriting_a_result_keeps_the_old_result_json_until_the_new_one_replaces_it(env, monkeypatch):
    # A second run writing the same folder used to delete result.json first, so a run reading the
    # folder at that moment (two runs at once on one results root) failed with "no result".
    from mbench.formats import runs as runfiles

    assert run(env, "--reranker", "campaign.plugins:pair_reranker", "--rerank-top-k", "3") == 0
    seen = []
    write = runfiles.write_trec_run

    def watching(path, *args, **kwargs):
        seen.append((Path(path).parent / "result.json").exists())
        return write(path, *args, **kwargs)

    monkeypatch.setattr(runfiles, "write_trec_run", watching)
    assert run(env, "--reranker", "campaign.plugins:pair_reranker", "--rerank-top-k", "3", "--overwrite") == 0
    assert seen == [True, True]  # the first stage's folder, then the rerank's


def test_a_damaged_rerank_result_is_computed_again_with_a_notice(env, capsys):
    argv = ("--reranker", "campaign.plugins:pair_reranker", "--rerank-top-k", "3")
    assert run(env, *argv) == 0
    [scores] = env["results"].glob("hash-embed/*/mini.beir.towns/local/rerank-*/rerank_scores.parquet")
    good = scores.read_bytes()
    scores.write_bytes(good[: len(good) // 2])
    assert run(env, *argv) == 0
    assert "rerank_scores.parquet: its bytes differ" in capsys.readouterr().err
    assert scores.read_bytes() == good
