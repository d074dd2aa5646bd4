"""The generated mini benchmark: deterministic, quick, complete, in the real formats, and partly solvable."""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from mbench.data.loader import load_task
from mbench.data.mini import MINI_VERSION, ensure_mini, generate
from mbench.tasks.index import get_index


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("cache")
    ensure_mini(cache)
    return cache


def test_generation_is_byte_identical_and_quick(tmp_path: Path) -> None:
    start = time.perf_counter()
    generate(tmp_path / "one")
    elapsed = time.perf_counter() - start
    generate(tmp_path / "two")
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")
    assert elapsed < 5.0


def test_ensure_mini_renames_a_complete_tree_into_place(cache: Path) -> None:
    root = cache / "data" / MINI_VERSION
    assert sorted(p.name for p in (cache / "data").iterdir()) == [MINI_VERSION]  # no staging folder left
    before = (root / "mbeir" / "instructions" / "query_instructions.tsv").stat().st_mtime_ns
    assert ensure_mini(cache) == root
    assert (root / "mbeir" / "instructions" / "query_instructions.tsv").stat().st_mtime_ns == before


def test_mini_mirrors_the_sixteen_mbeir_tasks() -> None:
    index = get_index()
    mini = [name.removeprefix("mini.") for name in index.expand(["mini.mbeir"])]
    assert mini == index.expand(["mbeir"])
    for name in index.expand(["mini.mbeir"]):
        spec, real = index.task(name), index.task(name.removeprefix("mini."))
        assert (spec.dataset_id, spec.uniir_task_id, spec.query_modality, spec.cand_modality, spec.metrics) == (
            real.dataset_id, real.uniir_task_id, real.query_modality, real.cand_modality, real.metrics)
    assert index.expand(["mini"])[-2:] == ["mini.beir.towns", "mini.circo.val"]


def test_loader_generates_the_data_on_first_use(tmp_path: Path) -> None:
    data = load_task(get_index().task("mini.circo.val"), data_dir=None, cache_dir=tmp_path)
    assert (tmp_path / "data" / MINI_VERSION / "circo" / "annotations" / "val.json").is_file()
    assert len(data.queries) == 20 and len(data.pool) == 120
    assert all(Path(p).is_file() for p in data.pool.images)


def test_every_mini_task_matches_its_declared_counts(cache: Path) -> None:
    from mbench.data.validation import validate_task

    index = get_index()
    checks = [(name, "local") for name in index.expand(["mini"])] + [("mini.mbeir.cirr.it2i", "global")]
    for name, pool in checks:
        problems, _, _ = validate_task(index.task(name), data_dir=None, pool=pool, cache_dir=cache)
        assert problems == [], (name, pool)


def test_global_pool_holds_the_cross_dataset_oven_judgments(cache: Path) -> None:
    spec = get_index().task("mini.mbeir.oven.it2t")
    data = load_task(spec, data_dir=None, pool="global", cache_dir=cache)
    assert len(data.pool) == 834
    first = data.relevance.indices[data.relevance.indptr[0]:data.relevance.indptr[1]]
    assert sorted(data.pool.source_names[data.pool.source[i]] for i in first) == [
        "mini.mbeir.infoseek.it2t", "mini.mbeir.oven.it2t"]


def _bm25_hit_at_1(queries: list[str], docs: list[str], relevant: list[set[int]]) -> float:
    """Plain BM25 (k1=1.2, b=0.75) over lower-cased word tokens: the share of queries whose top doc is relevant."""
    tokenize = lambda text: re.findall(r"[a-z0-9]+", text.lower())  # noqa: E731
    doc_terms = [Counter(tokenize(d)) for d in docs]
    lengths = np.array([sum(t.values()) for t in doc_terms], dtype=float)
    df = Counter(term for terms in doc_terms for term in terms)
    n = len(docs)
    hits = 0
    for query, rel in zip(queries, relevant):
        scores = np.zeros(n)
        for term in set(tokenize(query)):
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            tf = np.array([terms[term] for terms in doc_terms], dtype=float)
            scores += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * lengths / lengths.mean()))
        hits += int(np.argmax(scores)) in rel
    return hits / len(queries)


@pytest.mark.parametrize("task", ["mini.beir.towns", "mini.mbeir.webqa.t2t"])
def test_bm25_solves_the_text_tasks_far_above_chance(cache: Path, task: str) -> None:
    data = load_task(get_index().task(task), data_dir=None, cache_dir=cache)
    rel = data.relevance
    relevant = [set(rel.indices[rel.indptr[q]:rel.indptr[q + 1]].tolist()) for q in range(rel.n_queries)]
    score = _bm25_hit_at_1(data.queries.texts, data.pool.texts, relevant)
    assert score >= 0.5  # chance is 1/200 (towns) and 1/60 (webqa)
