"""Hand-worked cases for every metric definition of DESIGN section 7, and CIRCO's official
formula on the real validation submission.

Expected values are worked out by hand in the comments; the CIRCO and UniIR references are
plain-Python transcriptions of the published definitions, one query at a time.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from mbench.metrics import Relevance, evaluate, parse_metric, required_depth

CIRCO_RANKS = (5, 10, 25, 50)


def scores(ranking: list[list[int]], relevance: Relevance, metric: str, **kwargs) -> list[float]:
    """Per-query values of one metric for a small hand-written ranking."""
    return evaluate(np.array(ranking, dtype=np.int64), relevance, [metric], **kwargs).per_query[metric].tolist()


# --- CIRCO: map@k and circo_recall@k -------------------------------------------------------


def circo_official_ap_at_k(predictions: list[int], gt_img_ids: list[int], k: int) -> float:
    """CIRCO's AP@k: sum over i <= k of P@i x rel_i, divided by min(|GT|, k)."""
    hits, total = 0, 0.0
    for i, image in enumerate(predictions[:k], start=1):
        if image in gt_img_ids:
            hits += 1
            total += hits / i
    return total / min(len(gt_img_ids), k)


def circo_official_recall_at_k(predictions: list[int], target_img_id: int, k: int) -> float:
    """CIRCO's Recall@k: how often the single target image is among the top k predictions."""
    return float(sum(image == target_img_id for image in predictions[:k]))


# Query 0: three ground truths (target 10), retrieved at ranks 1, 3 and 5.
# Query 1: eight ground truths (target 30); 31 and 32 at ranks 1 and 3, the target at rank 6.
# Query 2: nothing relevant retrieved.
CIRCO_GT = [[10, 11, 12], [30, 31, 32, 33, 34, 35, 36, 37], [50]]
CIRCO_TARGETS = [10, 30, 50]
CIRCO_RANKING = [
    [10, 20, 11, 21, 12, 22, -1, -1, -1, -1],
    [31, 40, 32, 41, 42, 30, 43, 44, 45, 46],
    [60, 61, -1, -1, -1, -1, -1, -1, -1, -1],
]


def test_circo_map_at_k_divides_by_ground_truth_count_when_below_k() -> None:
    # (1/1 + 2/3 + 3/5) / min(3, 5) = (34/15) / 3 = 34/45
    values = scores(CIRCO_RANKING, Relevance.from_lists(CIRCO_GT), "map@5")
    assert values[0] == pytest.approx(34 / 45, abs=1e-12)


def test_circo_map_at_k_divides_by_k_when_ground_truths_exceed_k() -> None:
    # map@5: (1/1 + 2/3) / min(8, 5) = 1/3; map@10 adds the target at rank 6: (1 + 2/3 + 3/6) / 8 = 13/48
    relevance = Relevance.from_lists(CIRCO_GT)
    assert scores(CIRCO_RANKING, relevance, "map@5")[1] == pytest.approx(1 / 3, abs=1e-12)
    assert scores(CIRCO_RANKING, relevance, "map@10")[1] == pytest.approx(13 / 48, abs=1e-12)


def test_circo_map_differs_from_trec_eval_map_cut_only_in_the_denominator() -> None:
    # map_cut@5 divides the same sum by all 8 relevant: (5/3) / 8 = 5/24
    relevance = Relevance.from_lists(CIRCO_GT)
    assert scores(CIRCO_RANKING, relevance, "map_cut@5")[1] == pytest.approx(5 / 24, abs=1e-12)
    assert scores(CIRCO_RANKING, relevance, "map_cut@5")[0] == scores(CIRCO_RANKING, relevance, "map@5")[0]


def test_circo_map_without_relevant_retrieved_is_zero() -> None:
    assert scores(CIRCO_RANKING, Relevance.from_lists(CIRCO_GT), "map@10")[2] == 0.0


def test_circo_recall_counts_only_the_target_image() -> None:
    # Query 1 has ground truths at ranks 1 and 3 but its target only at rank 6.
    relevance = Relevance.from_lists(CIRCO_GT)
    targets = np.array(CIRCO_TARGETS)
    assert scores(CIRCO_RANKING, relevance, "circo_recall@1", targets=targets) == [1.0, 0.0, 0.0]
    assert scores(CIRCO_RANKING, relevance, "circo_recall@5", targets=targets) == [1.0, 0.0, 0.0]
    assert scores(CIRCO_RANKING, relevance, "circo_recall@6", targets=targets) == [1.0, 1.0, 0.0]


def test_circo_recall_of_a_query_without_target_is_zero() -> None:
    # Padding (-1) in the ranking must not match a missing target (-1).
    values = scores([[-1, -1]], Relevance.from_lists([[]]), "circo_recall@2", targets=np.array([-1]))
    assert values == [0.0]


def test_circo_recall_needs_one_target_per_query() -> None:
    with pytest.raises(ValueError, match="targets"):
        scores(CIRCO_RANKING, Relevance.from_lists(CIRCO_GT), "circo_recall@5")
    with pytest.raises(ValueError, match="one candidate index per query"):
        scores(CIRCO_RANKING, Relevance.from_lists(CIRCO_GT), "circo_recall@5", targets=np.array([10]))


def circo_arrays(annotations: list[dict], predictions: dict[str, list[int]]):
    """The harness's arrays for CIRCO: image ids mapped to candidate indices."""
    images = sorted(
        {image for query in annotations for image in query["gt_img_ids"]}
        | {image for ranked in predictions.values() for image in ranked}
    )
    index = {image: i for i, image in enumerate(images)}
    depth = max(len(ranked) for ranked in predictions.values())
    ranking = np.full((len(annotations), depth), -1, dtype=np.int64)
    for row, query in enumerate(annotations):
        ranked = predictions[str(query["id"])]
        ranking[row, : len(ranked)] = [index[image] for image in ranked]
    relevance = Relevance.from_lists([[index[image] for image in query["gt_img_ids"]] for query in annotations])
    targets = np.array([index[query["target_img_id"]] for query in annotations])
    return ranking, relevance, targets


def assert_circo_official(annotations: list[dict], predictions: dict[str, list[int]]) -> None:
    """evaluate's map@k and circo_recall@k equal CIRCO's formula per query and on average."""
    ranking, relevance, targets = circo_arrays(annotations, predictions)
    names = [f"map@{k}" for k in CIRCO_RANKS] + [f"circo_recall@{k}" for k in CIRCO_RANKS]
    results = evaluate(ranking, relevance, names, targets=targets)
    for k in CIRCO_RANKS:
        official_ap = [
            circo_official_ap_at_k(predictions[str(q["id"])], q["gt_img_ids"], k) for q in annotations
        ]
        official_recall = [
            circo_official_recall_at_k(predictions[str(q["id"])], q["target_img_id"], k) for q in annotations
        ]
        np.testing.assert_allclose(results.per_query[f"map@{k}"], official_ap, rtol=0, atol=1e-12)
        np.testing.assert_allclose(results.per_query[f"circo_recall@{k}"], official_recall, rtol=0, atol=1e-12)
        means = results.mean()
        assert means[f"map@{k}"] == pytest.approx(float(np.mean(official_ap)), abs=1e-12)
        assert means[f"circo_recall@{k}"] == pytest.approx(float(np.mean(official_recall)), abs=1e-12)


@pytest.fixture(scope="module")
def circo_val(shared_dir: Path) -> tuple[list[dict], dict[str, list[int]]]:
    """CIRCO's validation annotations and its example validation submission."""
    circo = shared_dir / "data" / "circo"
    annotations = json.loads((circo / "annotations" / "val.json").read_text())
    predictions = json.loads((circo / "submission_examples" / "submission_val.json").read_text())
    # The official scorer assumes what its server enforces: every query, no repeated image.
    assert sorted(predictions) == sorted(str(q["id"]) for q in annotations)
    assert all(len(set(ranked)) == len(ranked) for ranked in predictions.values())
    return annotations, predictions


def test_circo_metrics_equal_official_formula_on_val_submission(circo_val) -> None:
    annotations, predictions = circo_val
    assert_circo_official(annotations, predictions)


def test_circo_metrics_equal_official_formula_with_ground_truths_planted(circo_val) -> None:
    # The example submission retrieves few ground truths; planting each at a seeded rank
    # exercises every term of the formula on the real queries.
    annotations, predictions = circo_val
    rng = np.random.default_rng(0)
    planted = {}
    for query in annotations:
        ranked = [image for image in predictions[str(query["id"])] if image not in query["gt_img_ids"]]
        for image in query["gt_img_ids"]:
            if rng.random() < 0.7:
                ranked.insert(int(rng.random() ** 2 * 50), image)  # skewed to the top
        planted[str(query["id"])] = ranked[:50]
    hits_in_top5 = sum(len(set(planted[str(q["id"])][:5]) & set(q["gt_img_ids"])) for q in annotations)
    assert hits_in_top5 > len(annotations) // 2  # 185 with this seed, against 27 in all 50 before
    assert_circo_official(annotations, planted)


# --- hit@k: UniIR's compute_recall_at_k ----------------------------------------------------


def uniir_compute_recall_at_k(relevant_docs: list[int], retrieved: list[int], k: int) -> float:
    """UniIR's M-BEIR "Recall@k": 1 if any relevant doc is in the top k; 0 without relevant docs."""
    if not relevant_docs:
        return 0.0
    return 1.0 if set(relevant_docs) & set(retrieved[:k]) else 0.0


@pytest.mark.parametrize(
    ("relevant", "retrieved", "k", "expected"),
    [
        ([3, 7], [5, 7, 1], 1, 0.0),  # the relevant 7 is at rank 2
        ([3, 7], [5, 7, 1], 2, 1.0),
        ([3, 7], [5, 7, 1], 10, 1.0),  # k past the ranking
        ([9], [1, 2, 3], 3, 0.0),  # nothing relevant retrieved
        ([], [1, 2, 3], 5, 0.0),  # no relevant docs at all
        ([4, 5, 6], [6, 5, 4], 1, 1.0),  # several relevant count once
    ],
)
def test_hit_at_k_matches_uniir_compute_recall_at_k(relevant, retrieved, k, expected) -> None:
    assert uniir_compute_recall_at_k(relevant, retrieved, k) == expected
    assert scores([retrieved], Relevance.from_lists([relevant]), f"hit@{k}") == [expected]


def test_hit_at_k_ignores_judged_non_relevant_candidates() -> None:
    relevance = Relevance.from_lists([[1, 2]], [[0, -1]])
    assert scores([[1, 2]], relevance, "hit@2") == [0.0]


# --- trec_eval family, hand-worked ---------------------------------------------------------


def test_recall_at_k_divides_by_all_relevant() -> None:
    # 2 of the 4 relevant in the top 3; the grade-0 judgment (5) is not relevant.
    relevance = Relevance.from_lists([[1, 2, 3, 4, 5]], [[1, 1, 2, 1, 0]])
    assert scores([[1, 9, 3, 2, 5]], relevance, "recall@3") == [0.5]


def test_precision_at_k_divides_by_k_when_the_ranking_is_shorter() -> None:
    assert scores([[7, -1]], Relevance.from_lists([[7]]), "precision@5") == [pytest.approx(1 / 5)]


def test_ndcg_uses_linear_gains_and_log2_discounts() -> None:
    # grades a=3, b=2, c=1; ranking c, x, a: DCG@3 = 1/log2(2) + 3/log2(4) = 2.5,
    # ideal 3, 2, 1: 3 + 2/log2(3) + 1/log2(4)
    relevance = Relevance.from_lists([[0, 1, 2]], [[3, 2, 1]])
    expected = 2.5 / (3 + 2 / math.log2(3) + 0.5)
    assert scores([[2, 9, 0]], relevance, "ndcg@3") == [pytest.approx(expected, abs=1e-12)]


def test_ndcg_ideal_comes_from_all_judgments_cut_at_k() -> None:
    # Only the grade-1 candidate is retrieved, at rank 1; the ideal puts grades 3 and 2 first.
    relevance = Relevance.from_lists([[0, 1, 2]], [[3, 2, 1]])
    assert scores([[2]], relevance, "ndcg@2") == [pytest.approx(1 / (3 + 2 / math.log2(3)), abs=1e-12)]


def test_ndcg_negative_grades_gain_nothing() -> None:
    # The grade -2 candidate at rank 1 adds 0, not -2; the grade 1 at rank 2 gives 1/log2(3).
    relevance = Relevance.from_lists([[0, 1]], [[-2, 1]])
    assert scores([[0, 1]], relevance, "ndcg@2") == [pytest.approx(1 / math.log2(3), abs=1e-12)]


def test_map_cut_at_k_sums_precision_at_relevant_ranks_over_all_relevant() -> None:
    # relevant at ranks 2 and 3 of 4 relevant: (1/2 + 2/3) / 4 = 7/24
    relevance = Relevance.from_lists([[1, 2, 3, 4]])
    assert scores([[9, 1, 2, 8]], relevance, "map_cut@3") == [pytest.approx(7 / 24, abs=1e-12)]


def test_mrr_at_k_is_reciprocal_rank_of_first_relevant_within_k() -> None:
    relevance = Relevance.from_lists([[4], [4], [4]])
    ranking = [[9, 4, 1], [9, 8, 4], [9, -1, -1]]
    assert scores(ranking, relevance, "mrr@2") == [0.5, 0.0, 0.0]
    # A ranking shorter than k with nothing relevant still scores 0.
    assert scores(ranking, relevance, "mrr@10") == [0.5, pytest.approx(1 / 3), 0.0]


def test_query_without_relevant_candidate_scores_zero_everywhere() -> None:
    names = ["hit@1", "recall@1", "precision@1", "ndcg@1", "map@1", "map_cut@1", "mrr@1"]
    results = evaluate(np.array([[3]]), Relevance.from_lists([[3]], [[0]]), names)
    assert {name: values.tolist() for name, values in results.per_query.items()} == {n: [0.0] for n in names}


# --- modality_acc@k ------------------------------------------------------------------------

MODALITIES = np.array(["image", "text", "image", "image,text"])


def test_modality_acc_is_the_share_of_the_top_k_with_the_task_modality() -> None:
    # top 3 of query 0: image, text, image -> 2/3; query 1: image,text, image, text -> 1/3
    values = scores(
        [[0, 1, 2], [3, 0, 1]], Relevance.from_lists([[], []]), "modality_acc@3",
        cand_modality=MODALITIES, expected_modality="image",
    )
    assert values == [pytest.approx(2 / 3), pytest.approx(1 / 3)]


def test_modality_acc_counts_padding_as_wrong_and_divides_by_k() -> None:
    # one image among 2 retrieved, k = 4: 1/4
    values = scores(
        [[2, 1, -1]], Relevance.from_lists([[]]), "modality_acc@4",
        cand_modality=MODALITIES, expected_modality="image",
    )
    assert values == [0.25]


def test_modality_acc_needs_candidate_modalities() -> None:
    with pytest.raises(ValueError, match="cand_modality"):
        scores([[0]], Relevance.from_lists([[]]), "modality_acc@1")


# --- names ---------------------------------------------------------------------------------


def test_metric_names_parse_into_family_and_k() -> None:
    assert parse_metric("map_cut@10").family == "map_cut"
    assert parse_metric(" ndcg@5 ").name == "ndcg@5"
    assert required_depth(["hit@5", "recall@100", "mrr@10"]) == 100


@pytest.mark.parametrize("name", ["recall_10", "ndcg@0", "bleu@5", "map@"])
def test_malformed_metric_name_is_an_error(name: str) -> None:
    with pytest.raises(ValueError, match="metric"):
        parse_metric(name)


def test_mean_over_selected_rows() -> None:
    # Averages run over the queries the caller selects (DESIGN: those with a relevant candidate).
    relevance = Relevance.from_lists([[1], [1], []])
    results = evaluate(np.array([[1], [2], [1]]), relevance, ["hit@1"])
    assert results.mean()["hit@1"] == pytest.approx(1 / 3)
    assert results.mean(np.flatnonzero(relevance.num_relevant() > 0))["hit@1"] == 0.5
