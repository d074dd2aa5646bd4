"""`mbench run` end to end on the mini benchmark with the deterministic hash-embed plugin:
caching, resume after SIGKILL, corruption recovery, batch-size invariance, encode-once pools.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mbench.cli import main
from mbench.formats.runs import read_run

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def env(tmp_path, monkeypatch):
    """An isolated cache and results directory; the mini benchmark is generated into the cache."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MBENCH_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return {"cache": cache, "results": tmp_path / "results", "log": tmp_path / "calls.log", "tmp": tmp_path}


def run_cli(env, *extra: str, log: bool = True) -> int:
    args = ["run", "--model", "hash-embed", "--results-dir", str(env["results"]), "--cache-dir", str(env["cache"]),
            "--no-progress", *extra]
    if log:
        args += ["--model-arg", f"call_log={env['log']}"]
    return main(args)


def encoded_items(env) -> list[tuple[str, str]]:
    """(role, item id) of every item the plugin encoded, across processes."""
    if not env["log"].exists():
        return []
    return [tuple(line.split("\t")[1:]) for line in env["log"].read_text().splitlines()]


def result_of(env, task: str, pool: str = "local") -> dict:
    [path] = env["results"].glob(f"hash-embed/*/{task}/{pool}/result.json")
    return json.loads(path.read_text())


def run_file_lines(env, task: str, pool: str = "local") -> list[str]:
    [path] = env["results"].glob(f"hash-embed/*/{task}/{pool}/run.trec.gz")
    return gzip.open(path, "rt").read().splitlines()


def test_run_writes_result_run_file_and_per_query_scores(env):
    assert run_cli(env, "--tasks", "mini.beir.towns") == 0
    record = result_of(env, "mini.beir.towns")
    assert record["task"] == "mini.beir.towns" and record["pool"] == "local"
    assert record["n_queries"] == 50 and record["depth"] == 100
    assert set(record["metrics"]) >= {"ndcg@10", "recall@100"}
    assert record["model"]["name"] == "hash-embed" and len(record["model"]["fingerprint"]) == 64
    assert set(record["timings"]) >= {"load", "encode_queries", "encode_candidates", "search", "metrics", "write"}
    [directory] = env["results"].glob("hash-embed/*/mini.beir.towns/local")
    assert (directory / "per_query.parquet").is_file()


def test_run_file_scores_the_same_under_mbench_score(env, capsys):
    run_cli(env, "--tasks", "mini.beir.towns")
    record = result_of(env, "mini.beir.towns")
    [directory] = env["results"].glob("hash-embed/*/mini.beir.towns/local")
    qrels = env["cache"] / "data" / "mini-v1" / "beir" / "towns" / "qrels" / "test.tsv"
    capsys.readouterr()
    assert main(["score", str(directory / "run.trec.gz"), str(qrels), "--metrics", ",".join(record["metrics"]),
                 "--format", "json"]) == 0
    scored = json.loads(capsys.readouterr().out)["all"]
    for name, value in record["metrics"].items():
        assert scored[name] == pytest.approx(value, abs=1e-12), name


def test_second_run_encodes_nothing_and_skips_the_existing_result(env):
    run_cli(env, "--tasks", "mini.beir.towns")
    first = len(encoded_items(env))
    assert first == 50 + 200
    run_cli(env, "--tasks", "mini.beir.towns", "--overwrite")
    assert len(encoded_items(env)) == first  # every embedding came from the store


def test_changed_model_arg_misses_the_cache(env):
    run_cli(env, "--tasks", "mini.beir.towns")
    run_cli(env, "--tasks", "mini.beir.towns", "--model-arg", "ngram=4")
    assert len(encoded_items(env)) == 2 * (50 + 200)


def test_changed_checkpoint_file_misses_the_cache_and_an_unchanged_one_hits(env):
    checkpoint = env["tmp"] / "weights.bin"
    checkpoint.write_bytes(b"step-1000")
    run_cli(env, "--tasks", "mini.beir.towns", "--model-arg", f"checkpoint={checkpoint}")
    run_cli(env, "--tasks", "mini.beir.towns", "--model-arg", f"checkpoint={checkpoint}", "--overwrite")
    assert len(encoded_items(env)) == 250
    checkpoint.write_bytes(b"step-2000")
    run_cli(env, "--tasks", "mini.beir.towns", "--model-arg", f"checkpoint={checkpoint}")
    assert len(encoded_items(env)) == 500


def test_changed_instruction_misses_the_query_cache_only(env):
    # webqa.t2t carries four instructions: `first` and `none` hand different text to the queries.
    run_cli(env, "--tasks", "mini.mbeir.webqa.t2t")
    run_cli(env, "--tasks", "mini.mbeir.webqa.t2t", "--instruction-policy", "none")
    calls = encoded_items(env)
    assert sum(role == "query" for role, _ in calls) == 2 * 20
    assert sum(role == "candidate" for role, _ in calls) == 60


def test_instruction_policies_of_an_ablation_get_results_side_by_side(env):
    for policy in ("first", "none"):
        assert run_cli(env, "--tasks", "mini.mbeir.webqa.t2t", "--instruction-policy", policy) == 0
    assert run_cli(env, "--tasks", "mini.mbeir.webqa.t2t", "--instruction-policy", "seeded", "--seed", "3") == 0
    assert result_of(env, "mini.mbeir.webqa.t2t", "local")["instruction_policy"] == "first"
    assert result_of(env, "mini.mbeir.webqa.t2t", "local.none")["instruction_policy"] == "none"
    assert result_of(env, "mini.mbeir.webqa.t2t", "local.seeded-3")["seed"] == 3


def test_result_records_the_instructions_handed_to_the_model(env):
    from mbench.tasks import load_task_spec

    run_cli(env, "--tasks", "mini.mbeir.webqa.t2t", "--instruction-policy", "seeded", "--seed", "7")
    record = result_of(env, "mini.mbeir.webqa.t2t", "local.seeded-7")
    spec = load_task_spec("mini.mbeir.webqa.t2t")
    assert record["instruction_policy"] == "seeded" and record["seed"] == 7
    assert set(record["instructions"]) <= set(spec.instructions) and len(record["instructions"]) > 1


@pytest.mark.parametrize("batch_size", ["7", "64"])
def test_rankings_are_identical_for_batch_sizes_1_7_and_64(env, batch_size):
    run_cli(env, "--tasks", "mini.mbeir.cirr.it2i", "--batch-size", "1", "--results-dir", str(env["tmp"] / "r1"))
    reference = (env["tmp"] / "r1").glob("hash-embed/*/mini.mbeir.cirr.it2i/local/run.trec.gz")
    reference_lines = gzip.open(next(reference), "rt").read()
    # A fresh cache, so the embeddings are really recomputed with the other batch size.
    env2 = {**env, "cache": env["tmp"] / f"cache{batch_size}", "results": env["tmp"] / f"r{batch_size}"}
    run_cli(env2, "--tasks", "mini.mbeir.cirr.it2i", "--batch-size", batch_size)
    assert "\n".join(run_file_lines(env2, "mini.mbeir.cirr.it2i")) + "\n" == reference_lines


def test_global_pool_of_the_16_mini_mbeir_tasks_encodes_each_candidate_once(env):
    assert run_cli(env, "--tasks", "mini.mbeir", "--pool", "global") == 0
    candidates = [item for role, item in encoded_items(env) if role == "candidate"]
    assert len(candidates) == len(set(candidates)) == 834
    # The local pools are the same content: running them afterwards encodes no candidate again.
    run_cli(env, "--tasks", "mini.mbeir", "--pool", "local")
    assert len([1 for role, _ in encoded_items(env) if role == "candidate"]) == 834


def test_non_finite_embedding_is_an_error_naming_the_item_and_keeps_earlier_shards(env, capsys):
    args = ("--tasks", "mini.beir.towns", "--shard-size", "64", "--model-arg", "nan_ids=doc150")
    assert run_cli(env, *args) == 2
    assert "'doc150'" in capsys.readouterr().err
    # The queries and the candidate shards finished before the bad one are stored: running the
    # same command again encodes only (part of) the shard that holds doc150.
    before = len(encoded_items(env))
    assert run_cli(env, *args) == 2
    again = encoded_items(env)[before:]
    assert not [1 for role, _ in again if role == "query"]
    assert 0 < len(again) <= 64


def _corrupt_first_shard(cache: Path, how: str) -> Path:
    shards = sorted(cache.glob("embeddings/*/shard-000000-*.npy"))
    victim = max(shards, key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-3] ^= 0x10
    victim.write_bytes(bytes(data))
    return victim


@pytest.mark.parametrize("how", ["truncate", "bitflip"])
def test_corrupted_shard_is_recomputed_by_the_next_run_not_served(env, how):
    run_cli(env, "--tasks", "mini.beir.towns")
    expected = run_file_lines(env, "mini.beir.towns")
    _corrupt_first_shard(env["cache"], how)
    assert main(["cache", "verify", "--cache-dir", str(env["cache"])]) == 2
    before = len(encoded_items(env))
    run_cli(env, "--tasks", "mini.beir.towns", "--overwrite")
    assert len(encoded_items(env)) - before == 200  # exactly the corrupted shard (the whole pool)
    assert run_file_lines(env, "mini.beir.towns") == expected


def test_run_killed_during_encoding_resumes_without_reencoding_finished_shards(env):
    """SIGKILL a real `mbench run` mid-encoding, rerun, and compare with an uninterrupted run."""
    command = [sys.executable, "-m", "mbench", "run", "--model", "hash-embed", "--tasks", "mini.beir.towns",
               "--results-dir", str(env["results"]), "--cache-dir", str(env["cache"]), "--no-progress",
               "--shard-size", "20", "--batch-size", "5", "--model-arg", f"call_log={env['log']}",
               "--model-arg", "delay=0.01"]
    child = subprocess.Popen(command, env={**os.environ}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # Kill once some candidate shards are stored (after the 50 queries, 3 shards of 20).
    while time.monotonic() < deadline:
        if sum(role == "candidate" for role, _ in encoded_items(env)) >= 70:
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not list(env["results"].glob("hash-embed/*/mini.beir.towns/local/result.json"))
    killed = encoded_items(env)
    done_candidates = {item for role, item in killed if role == "candidate"}
    assert 0 < len(done_candidates) < 200

    subprocess.run(command[:-2] + ["--model-arg", "delay=0"], check=True, env={**os.environ},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resumed = [item for role, item in encoded_items(env)[len(killed):] if role == "candidate"]
    # Stored shards (whole multiples of 20) were not encoded again; at most the shard in flight was.
    stored = len(done_candidates) // 20 * 20
    assert len(resumed) == 200 - stored
    assert len(set(resumed) & done_candidates) == len(done_candidates) - stored

    uninterrupted = {**env, "cache": env["tmp"] / "fresh-cache", "results": env["tmp"] / "fresh-results"}
    run_cli(uninterrupted, "--tasks", "mini.beir.towns", "--shard-size", "20", log=False)
    assert run_file_lines(env, "mini.beir.towns") == run_file_lines(uninterrupted, "mini.beir.towns")
    assert result_of(env, "mini.beir.towns")["metrics"] == result_of(uninterrupted, "mini.beir.towns")["metrics"]


def test_model_refused_on_a_task_whose_modality_it_lacks(env, capsys):
    code = run_cli(env, "--tasks", "mini.mbeir.cirr.it2i", "--model-arg", "query_modalities=text", log=False)
    assert code == 2
    assert "cannot run task 'mini.mbeir.cirr.it2i'" in capsys.readouterr().err


def test_read_back_run_has_the_depth_of_the_task(env):
    run_cli(env, "--tasks", "mini.mbeir.webqa.t2t")
    [path] = env["results"].glob("hash-embed/*/mini.mbeir.webqa.t2t/local/run.trec.gz")
    run = read_run(path)
    # depth 100 requested, 60 candidates in the pool: every query ranks the whole pool.
    assert run.n_queries == 20 and run.depth == 60
    assert np.all(run.ranking >= 0)


def test_run_with_reranker_writes_the_rerank_result_beside_the_retrieval_one(env, capsys):
    # OverlapReranker (tests/test_rerank_engine.py) scores shared words: a plugin given as module:factory.
    code = run_cli(env, "--tasks", "mini.mbeir.webqa.t2t", "--reranker", "test_rerank_engine:OverlapReranker",
                   "--rerank-top-k", "5", log=False)
    assert code == 0
    [first] = env["results"].glob("hash-embed/*/mini.mbeir.webqa.t2t/local")
    candidates = [p for p in first.iterdir() if p.is_dir() and p.name.startswith("rerank-")]
    assert len(candidates) == 1
    record = json.loads((candidates[0] / "result.json").read_text())
    assert record["kind"] == "rerank" and record["rerank"]["top_k"] == 5
    assert record["rerank"]["first_stage"]["path"] == str(first.resolve())
    out = capsys.readouterr().out
    assert "mini.mbeir.webqa.t2t (rerank)" in out


def _circo_test_split(env) -> tuple[Path, Path]:
    """A CIRCO test split (no ground truth) beside the mini CIRCO images, and its task YAML."""
    import shutil

    from mbench.data.mini import ensure_mini
    from mbench.engine.cache import cache_root

    mini = ensure_mini(cache_root(env["cache"])) / "circo"
    root = env["tmp"] / "data"
    shutil.copytree(mini, root / "circo")
    val = json.loads((root / "circo" / "annotations" / "val.json").read_text())
    test = [{k: v for k, v in q.items() if k not in ("target_img_id", "gt_img_ids")} for q in val]
    (root / "circo" / "annotations" / "test.json").write_text(json.dumps(test))
    tasks = env["tmp"] / "tasks"
    tasks.mkdir()
    spec = (REPO_ROOT / "tasks" / "mini" / "circo_val.yaml").read_text()
    spec = (spec.replace("name: mini.circo.val", "name: local.circo.test").replace("generator: mini\n", "")
            .replace("split: val", "split: test").replace("annotations/val.json", "annotations/test.json"))
    spec = spec.split("n_queries:")[0] + "depth: 50\nscored: false\n" + spec[spec.index("instructions:"):]
    (tasks / "circo_test.yaml").write_text(spec)
    return root, tasks


def test_unscored_circo_test_split_writes_the_submission_file(env):
    data, tasks = _circo_test_split(env)
    code = run_cli(env, "--tasks", "local.circo.test", "--data-dir", str(data), "--tasks-dir", str(tasks),
                   "--reranker", "test_rerank_engine:KeywordReranker", log=False)
    assert code == 0
    [first] = env["results"].glob("hash-embed/*/local.circo.test/local")
    query_ids = [str(q["id"]) for q in json.loads((data / "circo/annotations/test.json").read_text())]
    for directory in (first, next(first.glob("rerank-*"))):
        submission = json.loads((directory / "submission.json").read_text())
        assert list(submission) == query_ids
        assert all(len(ids) == 50 == len(set(ids)) for ids in submission.values())
        assert json.loads((directory / "result.json").read_text())["metrics"] == {}


def test_faiss_backend_writes_the_same_run_file_as_torch(env):
    pytest.importorskip("faiss", reason="faiss-cpu is the optional `faiss` extra")
    run_cli(env, "--tasks", "mini.beir.towns")
    torch_lines = run_file_lines(env, "mini.beir.towns")
    run_cli(env, "--tasks", "mini.beir.towns", "--search-backend", "faiss", "--overwrite")
    # The two BLAS kernels round their fp32 sums differently, but the kept candidates are
    # rescored exactly, so ranks, documents and even the printed scores agree.
    assert run_file_lines(env, "mini.beir.towns") == torch_lines


def test_identical_id_is_dropped_and_the_ranking_refilled_from_below():
    from mbench.engine.ranking import drop_excluded as _drop_excluded

    # Query 0 excludes pool index 7 (its own id); query 1 excludes nothing; depth 3.
    indices = np.array([[5, 7, 2, 9], [1, 3, -1, -1]])
    scores = np.array([[0.9, 0.8, 0.7, 0.6], [0.5, 0.4, -np.inf, -np.inf]], dtype=np.float32)
    kept_scores, kept = _drop_excluded(scores, indices, np.array([7, -1]), 3)
    assert kept.tolist() == [[5, 2, 9], [1, 3, -1]]
    assert kept_scores[0].tolist() == pytest.approx([0.9, 0.7, 0.6])


def test_ranking_shorter_than_the_depth_is_padded():
    from mbench.engine.ranking import drop_excluded as _drop_excluded

    scores, indices = _drop_excluded(np.array([[0.5, 0.25]], dtype=np.float32), np.array([[4, 0]]), None, 4)
    assert indices.tolist() == [[4, 0, -1, -1]] and scores[0, 2:].tolist() == [-np.inf, -np.inf]
