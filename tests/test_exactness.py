"""Exactness: `mbench run` (cold, warm from the embedding cache, and with the faiss backend) equals
an uncached reference pipeline (sentence-transformers + numpy + pytrec_eval, tests/reference_pipeline.py)
on every (query, rank, document) and on every per-query metric, on SciFact and on a generated
BEIR collection. The cache keeps fp32 embeddings bit for bit, so it cannot move a near-tie."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import reference_pipeline as ref

from mbench.cli import main

pytestmark = pytest.mark.slow

SYNTHETIC_TASK = """\
name: test.synthetic
adapter: beir
data_folder: synthetic
split: test
query_modality: text
cand_modality: text
pools: {local: {file: corpus.jsonl}}
depth: 1000
metrics: [ndcg@10, map_cut@10, mrr@10, recall@10, recall@100, recall@1000, precision@10]
main_metric: ndcg@10
"""


def run_mbench(task: str, data_dir: Path, results: Path, cache: Path, *extra: str) -> Path:
    """`mbench run --model minilm` on one task; the result directory."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    argv = ["run", "--model", "minilm", "--tasks", task, "--data-dir", str(data_dir), "--results-dir", str(results),
            "--cache-dir", str(cache), "--no-progress", *extra]
    assert main(argv) == 0
    [directory] = results.glob(f"*/*/{task}/local")
    return directory


def shard_files(cache: Path) -> set[Path]:
    return set((cache / "embeddings").glob("*/shard-*.npy"))


def assert_equal_to_reference(directory: Path, reference: dict, reference_metrics: dict) -> None:
    comparison = ref.compare_runs(reference, ref.read_trec_run(directory / "run.trec.gz"))
    assert comparison.other_differences == []  # only documents tied at fp32 equality may trade places
    assert comparison.identical_queries == comparison.queries  # and the docid rule orders even those alike
    assert comparison.score_mismatches == 0
    assert ref.max_metric_difference(reference_metrics, ref.read_per_query(directory / "per_query.parquet")) <= 1e-12


# ----------------------------------------------------------------------------- SciFact


@pytest.fixture(scope="module")
def scifact_reference(shared_dir: Path) -> tuple[dict, dict]:
    """The reference pipeline's run and per-query metrics on SciFact (one uncached encoding)."""
    collection = ref.load_beir(shared_dir / "data" / "scifact")
    run = ref.reference_run(collection)
    return run, ref.evaluate(run, collection.qrels)


def test_scifact_run_equals_the_uncached_reference_on_every_rank_and_metric(minilm_scifact_run, scifact_reference):
    [directory] = minilm_scifact_run.glob("*/*/mteb.scifact/local")
    assert_equal_to_reference(directory, *scifact_reference)


def test_scifact_warm_run_reads_the_cache_and_writes_the_same_run_file(minilm_scifact_run, shared_dir, tmp_path):
    [cold] = minilm_scifact_run.glob("*/*/mteb.scifact/local")
    cache = minilm_scifact_run.parent / "cache"
    before = shard_files(cache)
    warm = run_mbench("mteb.scifact", shared_dir / "data", tmp_path / "results", cache)
    assert shard_files(cache) == before  # nothing encoded again
    assert (warm / "run.trec.gz").read_bytes() == (cold / "run.trec.gz").read_bytes()
    assert (warm / "per_query.parquet").read_bytes() == (cold / "per_query.parquet").read_bytes()


def test_scifact_faiss_backend_writes_the_same_run_file(minilm_scifact_run, shared_dir, tmp_path):
    pytest.importorskip("faiss", reason="faiss-cpu is the optional `faiss` extra")
    [cold] = minilm_scifact_run.glob("*/*/mteb.scifact/local")
    cache = minilm_scifact_run.parent / "cache"
    faiss_dir = run_mbench("mteb.scifact", shared_dir / "data", tmp_path / "results", cache,
                           "--search-backend", "faiss")
    assert (faiss_dir / "run.trec.gz").read_bytes() == (cold / "run.trec.gz").read_bytes()


# ----------------------------------------------------------------------------- a generated collection


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("synthetic")
    ref.write_synthetic_beir(root / "data" / "synthetic")
    (root / "tasks").mkdir()
    (root / "tasks" / "synthetic.yaml").write_text(SYNTHETIC_TASK)
    return {"data": root / "data", "tasks": root / "tasks", "cache": root / "cache", "root": root}


@pytest.fixture(scope="module")
def synthetic_reference(synthetic: dict[str, Path]) -> tuple[dict, dict, ref.Collection]:
    collection = ref.load_beir(synthetic["data"] / "synthetic")
    run = ref.reference_run(collection)
    return run, ref.evaluate(run, collection.qrels), collection


def run_synthetic(synthetic: dict[str, Path], name: str, *extra: str) -> Path:
    return run_mbench("test.synthetic", synthetic["data"], synthetic["root"] / name, synthetic["cache"],
                      "--tasks-dir", str(synthetic["tasks"]), *extra)


def test_generated_collection_cold_and_warm_runs_equal_the_reference(synthetic, synthetic_reference):
    run, metrics, _ = synthetic_reference
    assert_equal_to_reference(run_synthetic(synthetic, "cold"), run, metrics)
    before = shard_files(synthetic["cache"])
    warm = run_synthetic(synthetic, "warm")
    assert shard_files(synthetic["cache"]) == before
    assert_equal_to_reference(warm, run, metrics)


def test_generated_collection_faiss_run_equals_the_reference(synthetic, synthetic_reference):
    pytest.importorskip("faiss", reason="faiss-cpu is the optional `faiss` extra")
    run, metrics, _ = synthetic_reference
    assert_equal_to_reference(run_synthetic(synthetic, "faiss", "--search-backend", "faiss"), run, metrics)


def test_generated_collection_has_exact_ties_decided_by_docid(synthetic_reference):
    # Duplicated documents score exactly alike; trec_eval's rule puts the larger docid first.
    run, _, collection = synthetic_reference
    tied_pairs = 0
    for ranked in run.values():
        for (doc_a, score_a), (doc_b, score_b) in zip(ranked, ranked[1:]):
            if score_a == score_b:
                tied_pairs += 1
                assert doc_a > doc_b
    assert tied_pairs > 0


def test_a_judged_query_without_relevant_documents_is_averaged_in_as_zero_in_run_and_score(
    synthetic, synthetic_reference, capsys
):
    # Query 8 is judged with grade 0 only. trec_eval (here pytrec_eval) evaluates it, so its mean
    # counts it as 0; `mbench run` keeps it in n_queries and in the mean, and `mbench score` too.
    run, metrics, collection = synthetic_reference
    assert set(collection.qrels["8"].values()) == {0} and "999" not in collection.qrels
    cold = run_synthetic(synthetic, "no-positive")
    record = json.loads((cold / "result.json").read_text())
    assert record["n_queries"] == len(collection.query_ids) == len(metrics)
    assert all(value == 0.0 for value in ref.read_per_query(cold / "per_query.parquet")["8"].values())
    reference_mean = sum(m["ndcg@10"] for m in metrics.values()) / len(metrics)
    assert record["metrics"]["ndcg@10"] == pytest.approx(reference_mean, abs=1e-12)
    capsys.readouterr()
    qrels = synthetic["data"] / "synthetic" / "qrels" / "test.tsv"
    assert main(["score", str(cold / "run.trec.gz"), str(qrels), "--metrics", "ndcg@10", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["all"]["ndcg@10"] == pytest.approx(reference_mean, abs=1e-12)
