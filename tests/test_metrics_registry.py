"""The metric registry (mbench.metrics.METRICS) is what evaluate computes and what the docs show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mbench import metrics
from mbench.metrics import METRICS, MetricFamily, Relevance, evaluate, metrics_table, parse_metric

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_metrics_table_is_the_registry() -> None:
    assert metrics_table() in README.read_text()


def test_every_family_of_the_registry_parses_and_is_computed() -> None:
    relevance = Relevance.from_lists([[1], [0]])
    names = [f"{family}@2" for family in METRICS]
    values = evaluate(np.array([[1, 0], [1, 0]]), relevance, names, cand_modality=["text", "image"],
                      expected_modality="text", targets=[1, 0]).per_query
    assert list(values) == names and all(parse_metric(n).family in METRICS for n in names)
    # Query 0 ranks its relevant candidate first, query 1 second: hit@2 is 1 for both, mrr@2 1 and 1/2.
    assert values["hit@2"].tolist() == [1.0, 1.0] and values["mrr@2"].tolist() == [1.0, 0.5]


def test_a_new_entry_is_a_new_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    # One entry, nothing else: parse_metric accepts the name and evaluate computes it.
    def last_relevant(ranked, k: int) -> np.ndarray:
        return ranked.is_relevant[:, k - 1].astype(np.float64)

    monkeypatch.setitem(metrics.METRICS, "at_rank", MetricFamily("at_rank", "1 if rank k is relevant", last_relevant))
    relevance = Relevance.from_lists([[1]])
    assert evaluate(np.array([[0, 1]]), relevance, ["at_rank@2"]).per_query["at_rank@2"].tolist() == [1.0]
