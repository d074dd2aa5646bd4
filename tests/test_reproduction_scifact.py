"""The CI reproduction of issue 5: `mbench run --model minilm --tasks mteb.scifact` gives MTEB's
published all-MiniLM-L6-v2 numbers to 5 decimals (nDCG@10 0.64508, recall@100 0.925), from the
fp32 embeddings the model emits (the cache keeps them bit for bit)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_minilm_on_scifact_gives_mtebs_published_numbers(minilm_scifact_run: Path, shared_dir: Path) -> None:
    reference = json.loads((shared_dir / "reference/mteb-results/all-MiniLM-L6-v2/SciFact.json").read_text())
    published = next(s for s in reference["scores"]["test"] if s["hf_subset"] == "default")
    [result] = minilm_scifact_run.glob("*/*/mteb.scifact/local/result.json")
    record = json.loads(result.read_text())
    assert record["n_queries"] == 300
    assert record["embeddings"] == {
        "encode_precision": "float32", "store_dtype": "native", "query_dtype": "float32", "candidate_dtype": "float32",
        "search_compute_dtype": "float32", "score_dtype": "float32 (exact: float64 sums, rounded once)",
    }
    assert round(record["metrics"]["ndcg@10"], 5) == pytest.approx(published["ndcg_at_10"], abs=1e-12)
    assert round(record["metrics"]["recall@100"], 5) == pytest.approx(published["recall_at_100"], abs=1e-12)
    assert published["ndcg_at_10"] == pytest.approx(0.64508) and published["recall_at_100"] == pytest.approx(0.925)
