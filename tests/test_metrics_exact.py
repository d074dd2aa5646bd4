"""The trec_eval-family metrics equal pytrec_eval to 1e-9 on randomised runs (hypothesis).

Each case is a small run and qrels in trec_eval's own terms (string docids, float scores that
often tie, graded judgments including 0 and negative grades, unjudged retrieved documents,
empty rankings, queries with nothing relevant retrieved). The harness ranking is derived from
it with trec_eval's rule, score descending and ties by docid descending in string order, and
padded with -1, sometimes far beyond the longest ranking, so k ranges past every ranking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import pytrec_eval
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mbench.metrics import Relevance, evaluate, ranked_grades

TOLERANCE = 1e-9
CUTOFFS = (1, 2, 3, 5, 10, 30)
# Ids d0..d29 sort differently as strings and as numbers ("d10" < "d9"), which a tie exposes.
N_DOCS = 30
# One fixed measure set for every evaluator: pytrec_eval keeps measure parameters in trec_eval's
# global state, and evaluators asking for different cut-offs in one process can crash it
# (cvangysel/pytrec_eval#38 and the terrier fork's fix only cover repeated evaluations).
_CUTS = ",".join(map(str, CUTOFFS))
MEASURES = {f"{m}.{_CUTS}" for m in ("P", "recall", "ndcg_cut", "map_cut", "success")} | {"recip_rank"}
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass
class Case:
    """One randomised run with its qrels, in trec_eval's terms and in the harness's arrays."""

    qrels: dict[str, dict[str, int]]
    run: dict[str, dict[str, float]]
    ranking: np.ndarray
    relevance: Relevance
    qids: list[str]

    def trec_eval(self) -> dict[str, dict[str, float]]:
        """pytrec_eval's per-query values of every measure in MEASURES."""
        return pytrec_eval.RelevanceEvaluator(self.qrels, MEASURES).evaluate(self.run)

    def reported_rows(self, measured: dict[str, dict[str, float]]) -> list[int]:
        """Rows pytrec_eval reports: every query that has judgments (the run holds every query)."""
        judged = [row for row, qid in enumerate(self.qids) if self.qrels.get(qid)]
        assert sorted(measured) == sorted(self.qids[row] for row in judged)
        return judged


def trec_eval_order(scored: dict[str, float]) -> list[str]:
    """trec_eval's ranking: score descending, ties broken by docid descending (string order)."""
    return sorted(scored, key=lambda docid: (scored[docid], docid), reverse=True)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A run and qrels over a few queries; see the module docstring for what varies."""
    n_queries = draw(st.integers(1, 6))
    # Narrow grades make the ideal DCG go level by level; wide ones (more than 8 distinct
    # positive levels) make it sort gains, so both ways are checked against trec_eval. The
    # negative grade is -1: trec_eval indexes its relevance-level table with the grade and
    # crashes pytrec_eval on grades below -1, so those are checked in our own terms below.
    grade = st.integers(-1, 3) if draw(st.booleans()) else st.integers(-1, 12)
    # A few score values produce many ties; floats produce a few.
    score = st.sampled_from([0.0, 0.5, 1.0, 2.0]) if draw(st.booleans()) else st.floats(-5, 5, width=32)
    docs = st.sets(st.integers(0, N_DOCS - 1), max_size=N_DOCS)
    qids = [f"q{i}" for i in range(n_queries)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for qid in qids:
        judged = sorted(draw(docs))
        if judged:
            qrels[qid] = {f"d{doc}": draw(grade) for doc in judged}
        run[qid] = {f"d{doc}": float(draw(score)) for doc in sorted(draw(docs))}
    orders = [trec_eval_order(run[qid]) for qid in qids]
    depth = max(len(order) for order in orders) + draw(st.integers(0, 5))
    ranking = np.full((n_queries, depth), -1, dtype=np.int64)
    for row, order in enumerate(orders):
        ranking[row, : len(order)] = [int(docid[1:]) for docid in order]
    cand_lists = [[int(docid[1:]) for docid in qrels.get(qid, {})] for qid in qids]
    grade_lists = [list(qrels.get(qid, {}).values()) for qid in qids]
    return Case(qrels, run, ranking, Relevance.from_lists(cand_lists, grade_lists), qids)


def assert_matches(case: Case, ours: str, theirs: str) -> None:
    """Our metric ``ours`` equals pytrec_eval's ``theirs`` on every query pytrec_eval reports."""
    measured = case.trec_eval()
    values = evaluate(case.ranking, case.relevance, [ours]).per_query[ours]
    for row in case.reported_rows(measured):
        assert values[row] == pytest.approx(measured[case.qids[row]][theirs], abs=TOLERANCE), (ours, row)


@SETTINGS
@given(cases(), st.sampled_from(CUTOFFS))
def test_recall_at_k_equals_trec_eval_recall_k(case: Case, k: int) -> None:
    assert_matches(case, f"recall@{k}", f"recall_{k}")


@SETTINGS
@given(cases(), st.sampled_from(CUTOFFS))
def test_precision_at_k_equals_trec_eval_p_k(case: Case, k: int) -> None:
    assert_matches(case, f"precision@{k}", f"P_{k}")


@SETTINGS
@given(cases(), st.sampled_from(CUTOFFS))
def test_ndcg_at_k_equals_trec_eval_ndcg_cut_k(case: Case, k: int) -> None:
    assert_matches(case, f"ndcg@{k}", f"ndcg_cut_{k}")


@SETTINGS
@given(cases(), st.sampled_from(CUTOFFS))
def test_map_cut_at_k_equals_trec_eval_map_cut_k(case: Case, k: int) -> None:
    assert_matches(case, f"map_cut@{k}", f"map_cut_{k}")


@SETTINGS
@given(cases(), st.sampled_from(CUTOFFS))
def test_hit_at_k_equals_trec_eval_success_k(case: Case, k: int) -> None:
    assert_matches(case, f"hit@{k}", f"success_{k}")


@SETTINGS
@given(cases())
def test_mrr_at_depth_equals_trec_eval_recip_rank(case: Case) -> None:
    # With k at least the ranking's length, the cut-off never applies.
    assert_matches(case, f"mrr@{max(case.ranking.shape[1], 1)}", "recip_rank")


@SETTINGS
@given(cases(), st.sampled_from(CUTOFFS))
def test_mrr_at_k_is_recip_rank_when_the_first_relevant_is_within_k(case: Case, k: int) -> None:
    measured = case.trec_eval()
    values = evaluate(case.ranking, case.relevance, [f"mrr@{k}"]).per_query[f"mrr@{k}"]
    for row in case.reported_rows(measured):
        reciprocal_rank = measured[case.qids[row]]["recip_rank"]
        expected = reciprocal_rank if reciprocal_rank >= 1.0 / k else 0.0
        assert values[row] == pytest.approx(expected, abs=TOLERANCE)


@SETTINGS
@given(cases())
def test_queries_without_judgments_score_zero(case: Case) -> None:
    names = [f"{family}@{k}" for family in ("recall", "precision", "ndcg", "map_cut", "mrr", "hit") for k in (1, 10)]
    results = evaluate(case.ranking, case.relevance, names)
    unjudged = case.relevance.num_relevant() == 0
    for name in names:
        assert np.all(results.per_query[name][unjudged] == 0.0), name


@SETTINGS
@given(cases(), st.integers(-50, -2))
def test_any_negative_grade_scores_like_grade_zero(case: Case, negative: int) -> None:
    relevance = case.relevance
    lowered = Relevance(relevance.indptr, relevance.indices, np.where(relevance.grades < 0, negative, relevance.grades))
    zeroed = Relevance(relevance.indptr, relevance.indices, np.maximum(relevance.grades, 0))
    names = [f"{family}@{k}" for family in ("recall", "precision", "ndcg", "map", "map_cut", "mrr", "hit") for k in CUTOFFS]
    np.testing.assert_equal(
        evaluate(case.ranking, lowered, names).per_query, evaluate(case.ranking, zeroed, names).per_query
    )


@SETTINGS
@given(cases(), st.randoms(use_true_random=False))
def test_relevance_order_of_judgments_does_not_matter(case: Case, rng) -> None:
    relevance = case.relevance
    rows = relevance.row_ids()
    shuffled = list(range(rows.size))
    rng.shuffle(shuffled)
    from_shuffled_pairs = Relevance.from_pairs(
        rows[shuffled], relevance.indices[shuffled], relevance.grades[shuffled], relevance.n_queries
    )
    # A CSR built directly with each row's judgments out of order is sorted before the lookup.
    reversed_rows = np.concatenate(
        [np.arange(relevance.indptr[q + 1] - 1, relevance.indptr[q] - 1, -1) for q in range(relevance.n_queries)]
    ).astype(np.int64)
    unsorted_csr = Relevance(relevance.indptr, relevance.indices[reversed_rows], relevance.grades[reversed_rows])
    expected = ranked_grades(case.ranking, relevance)
    np.testing.assert_array_equal(ranked_grades(case.ranking, from_shuffled_pairs), expected)
    np.testing.assert_array_equal(ranked_grades(case.ranking, unsorted_csr), expected)


def test_trec_eval_breaks_ties_by_docid_descending_in_string_order() -> None:
    # The ordering rule the cases above rely on: "d9" > "d10" > "d1" as strings.
    qrels = {"q": {"d9": 1}}
    run = {"q": {"d1": 1.0, "d10": 1.0, "d9": 1.0}}
    measured = pytrec_eval.RelevanceEvaluator(qrels, MEASURES).evaluate(run)
    assert measured["q"]["recip_rank"] == 1.0
    assert trec_eval_order(run["q"]) == ["d9", "d10", "d1"]
    measured = pytrec_eval.RelevanceEvaluator({"q": {"d1": 1}}, MEASURES).evaluate(run)
    assert measured["q"]["recip_rank"] == pytest.approx(1 / 3)


def test_ranking_deeper_than_every_cutoff_scores_like_its_top_k() -> None:
    relevance = Relevance.from_lists([[4, 7], [1]], [[2, 1], [3]])
    deep = np.array([[7, 0, 4, 9, 2, 6], [3, 5, 8, 1, -1, -1]])
    names = ["recall@3", "ndcg@3", "map_cut@3", "map@3", "mrr@3", "hit@3", "precision@3"]
    np.testing.assert_equal(
        evaluate(deep, relevance, names).per_query, evaluate(deep[:, :3], relevance, names).per_query
    )


def test_repeated_judgment_is_an_error() -> None:
    with pytest.raises(ValueError, match="judged twice"):
        Relevance.from_pairs([0, 0], [5, 5], [1, 2], n_queries=1)
    unsorted_with_repeat = Relevance(np.array([0, 3]), np.array([5, 2, 5]), np.array([1, 1, 1]))
    with pytest.raises(ValueError, match="twice"):
        ranked_grades(np.array([[5]]), unsorted_with_repeat)


def test_ranking_value_below_padding_is_an_error() -> None:
    with pytest.raises(ValueError, match="-1"):
        evaluate(np.array([[3, -2]]), Relevance.from_lists([[3]]), ["hit@1"])
