"""The conformance checks behind `mbench check-model`, on hand-made items and tiny PIL images."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from mbench.data.types import Item
from mbench.models.base import ModelMeta, check_items
from mbench.models.builtin.bm25 import BM25Retriever
from mbench.models.builtin.hashing import HashingRetriever
from mbench.models.conformance import (
    FP32_TOLERANCE,
    HALF_TOLERANCE,
    default_tolerance,
    format_report,
    run_conformance,
)

ALL = frozenset({"text", "image", "image,text"})


def _img(i: int) -> Image.Image:
    image = Image.new("RGB", (12, 12), (20 * i % 255, 100, 255 - 20 * i % 255))
    image.putpixel((i % 12, 3), (255, 255, 0))
    return image


def _sample(prefix: str, n: int = 30) -> list[Item]:
    items = []
    for i in range(n):
        modality = ("text", "image", "image,text")[i % 3]
        text = f"{prefix} caption number {i} about a {('red', 'blue', 'green')[i % 3]} thing" if "text" in modality else None
        items.append(Item(f"{prefix}{i}", text, _img(i) if "image" in modality else None, modality))
    return items


QUERIES, CANDIDATES = _sample("q"), _sample("c")


def _by_name(results):
    return {r.name: r for r in results}


def test_hash_embed_conforms() -> None:
    results = run_conformance(HashingRetriever(dim=32), QUERIES, CANDIDATES)
    assert all(r.passed for r in results), format_report(results)
    names = _by_name(results)
    assert "handled ['text', 'image', 'image,text'], refused none" in names["query modalities"].detail
    assert "32" in names["candidate outputs"].detail


class BatchLeak(HashingRetriever):
    """Adds a share of the batch mean to every row, as a model with batch-level normalisation would."""

    def encode(self, items, *, role, instructions, prompts):
        out = super().encode(items, role=role, instructions=instructions, prompts=prompts)
        return out + 0.05 * out.mean(dim=0, keepdim=True)


def test_batch_size_dependence_is_caught() -> None:
    results = _by_name(run_conformance(BatchLeak(dim=32), QUERIES, CANDIDATES))
    assert results["query outputs"].passed
    failed = results["query batch-determinism"]
    assert not failed.passed and "depend on the batch size" in failed.detail and "batch sizes 1 and" in failed.detail


def test_nan_embeddings_are_caught_with_the_item_id() -> None:
    results = _by_name(run_conformance(HashingRetriever(dim=32, nan_ids="c4,c7"), QUERIES, CANDIDATES))
    assert results["query outputs"].passed
    failed = results["candidate outputs"]
    assert not failed.passed and "2 item(s): c4, c7" in failed.detail
    assert not results["candidate batch-determinism"].passed


class Unnormalised(HashingRetriever):
    """Declares cosine similarity but returns rows of norm 2."""

    def encode(self, items, *, role, instructions, prompts):
        return 2 * super().encode(items, role=role, instructions=instructions, prompts=prompts)


def test_cosine_rows_that_are_not_unit_length_are_caught() -> None:
    results = _by_name(run_conformance(Unnormalised(dim=32), QUERIES, CANDIDATES))
    assert results["query outputs"].passed and results["query batch-determinism"].passed
    failed = results["query unit length"]
    assert not failed.passed and "similarity is cosine but 30 row(s) are not unit length" in failed.detail
    assert _by_name(run_conformance(HashingRetriever(dim=32), QUERIES, CANDIDATES))["candidate unit length"].passed


class ClaimsImages:
    """Declares image queries but crashes on them, and encodes undeclared image candidates."""

    def __init__(self) -> None:
        self.meta = ModelMeta("liar", "1", "r", ALL, frozenset({"text"}), 4)

    def encode(self, items, *, role, instructions, prompts):
        if role == "query":
            check_items(self.meta, items, role)
            if any("image" in item.modality for item in items):
                raise RuntimeError("vision tower missing")
        return torch.ones(len(items), 4) / 2


def test_declared_modality_must_be_handled_and_undeclared_refused() -> None:
    results = _by_name(run_conformance(ClaimsImages(), QUERIES, CANDIDATES))
    query = results["query modalities"]
    assert not query.passed and "declared 'image' but item 'q1' failed: RuntimeError: vision tower missing" in query.detail
    cand = results["candidate modalities"]
    assert not cand.passed and "'image' is not declared but item 'c1' was encoded instead of refused" in cand.detail


class WrongShape:
    def __init__(self, dtype=torch.float32, as_numpy=False) -> None:
        self.meta = ModelMeta("shape", "1", "r", ALL, ALL, 8)
        self.dtype, self.as_numpy = dtype, as_numpy

    def encode(self, items, *, role, instructions, prompts):
        out = torch.zeros(len(items), 6, dtype=self.dtype) + 1
        return out.numpy() if self.as_numpy else out


def test_shape_dtype_and_type_are_checked() -> None:
    assert "shape (30, 6), expected (30, 8)" in _by_name(run_conformance(WrongShape(), QUERIES, CANDIDATES))["query outputs"].detail
    assert "dtype torch.int64" in _by_name(run_conformance(WrongShape(torch.int64), QUERIES, CANDIDATES))["query outputs"].detail
    assert "returned ndarray" in _by_name(run_conformance(WrongShape(as_numpy=True), QUERIES, CANDIDATES))["query outputs"].detail


def test_bm25_conforms_as_a_lexical_retriever() -> None:
    results = run_conformance(BM25Retriever(), QUERIES, CANDIDATES)
    assert all(r.passed for r in results), format_report(results)
    names = _by_name(results)
    assert "handled ['text'], refused ['image', 'image,text']" in names["candidate modalities"].detail
    assert "identical" in names["search batch-determinism"].detail


class PairScorer:
    def __init__(self, leak: float = 0.0) -> None:
        self.meta = ModelMeta("rr", "1", "r", ALL, ALL, None)
        self.embed, self.leak = HashingRetriever(dim=16), leak

    def score(self, queries, candidates, *, prompts):
        n = len(queries)
        q = self.embed.encode(queries, role="query", instructions=[None] * n, prompts=[None] * n)
        c = self.embed.encode(candidates, role="candidate", instructions=[None] * n, prompts=[None] * n)
        scores = (q * c).sum(dim=1)
        return scores + self.leak * scores.mean()


def test_reranker_checks() -> None:
    results = run_conformance(PairScorer(), QUERIES, CANDIDATES)
    assert all(r.passed for r in results), format_report(results)
    leaky = _by_name(run_conformance(PairScorer(leak=0.5), QUERIES, CANDIDATES))
    assert not leaky["score batch-determinism"].passed


def test_cuda_checks_with_the_half_precision_tolerance_a_run_there_computes_in() -> None:
    # On CUDA retrievers encode under bf16 autocast and LLaVA-based plugins load bf16 weights by
    # default, so an fp32 tolerance would fail every honest plugin on its batch-size check.
    assert default_tolerance("cuda", None) == HALF_TOLERANCE
    assert default_tolerance("cuda:1", "float32") == HALF_TOLERANCE
    assert default_tolerance("cpu", "bfloat16") == HALF_TOLERANCE
    assert default_tolerance("cpu", None) == FP32_TOLERANCE
    assert default_tolerance("cpu", "float32") == FP32_TOLERANCE


def test_not_a_model() -> None:
    results = run_conformance(object(), QUERIES, CANDIDATES)
    assert len(results) == 1 and not results[0].passed and "no `meta`" in results[0].detail


@pytest.mark.parametrize("batch_sizes", [(1, 64), (3, 5, 7)])
def test_custom_batch_sizes(batch_sizes) -> None:
    results = _by_name(run_conformance(HashingRetriever(dim=8), QUERIES[:10], CANDIDATES[:10], batch_sizes=batch_sizes))
    assert ", ".join(map(str, batch_sizes)) in results["query batch-determinism"].detail


# ----------------------------------------------------------------- `mbench check-model` on mini data

MINI_TASK_YAML = """\
name: {name}
adapter: mbeir
generator: mini
data_folder: mbeir
query_modality: "{query_modality}"
cand_modality: "{cand_modality}"
files:
  queries: {query_file}
  qrels: {qrels_file}
  instructions: instructions/query_instructions.tsv
pools:
  local:
    file: {pool_file}
metrics: [hit@1]
main_metric: hit@1
instructions: ["Retrieve the matching candidate."]
prompts:
  toy_family: "<qtxt> in one word:"
"""


@pytest.fixture(scope="module")
def mini_tasks(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """Three mini M-BEIR tasks covering every modality on both sides, and a cache to generate them into."""
    from mbench.data.mini import MBEIR_TASKS

    tasks_dir = tmp_path_factory.mktemp("tasks")
    wanted = {"mini.mbeir.cirr.it2i", "mini.mbeir.webqa.t2it", "mini.mbeir.visualnews.i2t"}
    for task in MBEIR_TASKS:
        if task.name in wanted:
            (tasks_dir / f"{task.name.replace('.', '_')}_check.yaml").write_text(
                MINI_TASK_YAML.format(
                    name=task.name + ".check", query_modality=task.query_modality, cand_modality=task.cand_modality,
                    query_file=task.query_file, qrels_file=task.qrels_file, pool_file=task.pool_file,
                )
            )
    return str(tasks_dir), str(tmp_path_factory.mktemp("cache"))


def _check_model(capsys, mini_tasks, *argv: str) -> tuple[int, str, str]:
    from mbench.cli import main

    tasks_dir, cache_dir = mini_tasks
    code = main(["check-model", *argv, "--tasks-dir", tasks_dir, "--cache-dir", cache_dir, "--per-modality", "9"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_model_command_passes_conforming_plugins(capsys, mini_tasks) -> None:
    code, out, _ = _check_model(capsys, mini_tasks, "hash-embed", "--model-arg", "dim=16")
    assert code == 0, out
    assert "FAIL" not in out and "handled ['text', 'image', 'image,text']" in out
    code, out, _ = _check_model(capsys, mini_tasks, "bm25")
    assert code == 0, out
    assert "refused ['image', 'image,text']" in out


def test_check_model_command_reports_failures(capsys, mini_tasks) -> None:
    # CIRR's first query and first candidate are both '8:1' (separate namespaces) and both sampled.
    code, out, _ = _check_model(capsys, mini_tasks, "hash-embed", "--model-arg", "nan_ids=8:1")
    assert code == 1
    assert "FAIL  query outputs" in out and "FAIL  candidate outputs" in out and "8:1" in out
    assert "failed: query outputs, query batch-determinism, candidate outputs" in out
    code, _, err = _check_model(capsys, mini_tasks, "hash-embed", "--batch-sizes", "1")
    assert code == 2 and "give at least two positive sizes" in err
