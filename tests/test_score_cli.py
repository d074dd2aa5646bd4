"""`mbench score RUN QRELS` end to end: trec_eval's own test files, CIRCO's formula, averaging, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mbench.cli import main
from mbench.commands.score import CIRCO_METRICS, DEFAULT_METRICS

# trec_eval measure -> the mbench metric with the same definition (results.test has 500
# documents per query, so map over the whole ranking is map_cut@1000 and recip_rank is mrr@1000;
# ndcg, with its ideal over every judged document, is ndcg@1000). The measures of trec_eval's
# output that mbench does not compute: num_q, num_ret, num_rel, num_rel_ret, gm_map, Rprec,
# Rprec_mult_*, bpref, gm_bpref, infAP, iprec_at_recall_*, 11pt_avg, utility, G, binG, ndcg_rel,
# Rndcg, relative_P_*, set_*, num_nonrel_judged_ret, rbp, rbp_resid, unj_*, relstring_20, runid.
TREC_EVAL_CUTOFFS = (5, 10, 15, 20, 30, 100, 200, 500, 1000)
TREC_EVAL_NAMES = {
    "map": "map_cut@1000",
    "recip_rank": "mrr@1000",
    "ndcg": "ndcg@1000",
    **{f"P_{k}": f"precision@{k}" for k in TREC_EVAL_CUTOFFS},
    **{f"recall_{k}": f"recall@{k}" for k in TREC_EVAL_CUTOFFS},
    **{f"ndcg_cut_{k}": f"ndcg@{k}" for k in TREC_EVAL_CUTOFFS},
    **{f"map_cut_{k}": f"map_cut@{k}" for k in TREC_EVAL_CUTOFFS},
    **{f"success_{k}": f"hit@{k}" for k in (1, 5, 10)},
}


def score(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["score", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def score_json(capsys, *args: str) -> dict:
    code, out, err = score(capsys, *args, "--format", "json")
    assert code == 0, err
    return json.loads(out)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def printed_trec_eval_values(path: Path) -> dict[str, dict[str, str]]:
    """{qid or "all": {trec_eval measure: value as trec_eval printed it}} for the shared measures."""
    expected: dict[str, dict[str, str]] = {}
    for line in path.read_text().splitlines():
        measure, qid, value = line.split()  # "measure <TAB> qid-or-all <TAB> value", 4 decimals
        if measure in TREC_EVAL_NAMES:
            expected.setdefault(qid, {})[measure] = value
    return expected


def mismatches_with_trec_eval(capsys, run: Path, qrels: Path, expected: dict, *options: str) -> dict:
    result = score_json(capsys, run, qrels, "--per-query", "--metrics", ",".join(TREC_EVAL_NAMES.values()), *options)
    got = {"all": result["all"], **result["per_query"]}
    assert set(got) == set(expected)
    return {
        (qid, measure): (f"{got[qid][TREC_EVAL_NAMES[measure]]:.4f}", printed)
        for qid, values in expected.items()
        for measure, printed in values.items()
        if f"{got[qid][TREC_EVAL_NAMES[measure]]:.4f}" != printed
    }


def test_reproduces_trec_eval_published_per_query_and_summary_values(capsys, shared_dir):
    folder = shared_dir / "data" / "trec_eval-test"
    expected = printed_trec_eval_values(folder / "out.test.aq")
    assert set(expected) == {"301", "302", "303", "all"}
    assert all(len(v) == len(TREC_EVAL_NAMES) == 42 for v in expected.values())
    assert not mismatches_with_trec_eval(capsys, folder / "results.test", folder / "qrels.test", expected)


@pytest.mark.parametrize("flag", ["-l", "--relevance-level"])
def test_relevance_level_2_reproduces_trec_eval_out_test_aql(capsys, shared_dir, flag):
    # qrels.rel_level grades run from -1 to 4: with -l 2 only grades >= 2 count for the binary
    # measures, while nDCG keeps every positive grade as its gain (query 301 has grade-1 documents).
    folder = shared_dir / "data" / "trec_eval-test"
    expected = printed_trec_eval_values(folder / "out.test.aql")
    assert all(len(v) == 42 for v in expected.values()) and expected["301"]["ndcg_cut_10"] == "0.0439"
    qrels = folder / "qrels.rel_level"
    assert not mismatches_with_trec_eval(capsys, folder / "results.test", qrels, expected, flag, "2")


def test_relevance_level_decides_which_grades_binary_metrics_count_and_ndcg_keeps_gains(capsys, tmp_path):
    qrels = write(tmp_path / "qrels.txt", "q 0 a 1\nq 0 b 2\n")
    run = write(tmp_path / "run.txt", "q Q0 a 1 2 t\nq Q0 b 2 1 t\n")
    level1 = score_json(capsys, run, qrels, "--metrics", "mrr@10,recall@1,ndcg@10")["all"]
    level2 = score_json(capsys, run, qrels, "--metrics", "mrr@10,recall@1,ndcg@10", "-l", "2")["all"]
    assert (level1["mrr@10"], level1["recall@1"]) == (1.0, 0.5)
    assert (level2["mrr@10"], level2["recall@1"]) == (0.5, 0.0)
    assert level1["ndcg@10"] == level2["ndcg@10"] == pytest.approx((1 + 2 / np.log2(3)) / (2 + 1 / np.log2(3)))


def test_relevance_level_below_1_exits_2(capsys, tmp_path, two_query_qrels):
    run = write(tmp_path / "run.txt", "q1 Q0 a 1 1 t\n")
    code, _, err = score(capsys, run, two_query_qrels, "-l", "0")
    assert code == 2 and "--relevance-level must be >= 1" in err


def official_circo_scores(annotations: list[dict], submission: dict, k: int) -> tuple[float, float]:
    """CIRCO's official mAP@k and Recall@k, written out independently of mbench."""
    aps, recalls = [], []
    for query in annotations:
        ranked = submission[str(query["id"])][:k]
        relevant = [1.0 if image in query["gt_img_ids"] else 0.0 for image in ranked]
        hits, ap = 0.0, 0.0
        for i, rel in enumerate(relevant, start=1):
            hits += rel
            ap += (hits / i) * rel
        aps.append(ap / min(len(query["gt_img_ids"]), k))
        recalls.append(1.0 if query["target_img_id"] in ranked else 0.0)
    return sum(aps) / len(aps), sum(recalls) / len(recalls)


def test_circo_submission_scores_equal_the_official_circo_formula(capsys, shared_dir):
    circo = shared_dir / "data" / "circo"
    submission_path = circo / "submission_examples" / "submission_val.json"
    annotations_path = circo / "annotations" / "val.json"
    result = score_json(capsys, submission_path, annotations_path)
    assert list(result) == ["all"] and list(result["all"]) == list(CIRCO_METRICS)
    annotations = json.loads(annotations_path.read_text())
    submission = json.loads(submission_path.read_text())
    for k in (5, 10, 25, 50):
        map_k, recall_k = official_circo_scores(annotations, submission, k)
        assert result["all"][f"map@{k}"] == pytest.approx(map_k, abs=1e-12)
        assert result["all"][f"circo_recall@{k}"] == pytest.approx(recall_k, abs=1e-12)
    # The example submission does find some targets, so the comparison above is not 0 == 0.
    assert result["all"]["circo_recall@50"] > 0 and result["all"]["map@50"] > 0


def test_circo_reference_image_in_the_ranking_counts_as_a_miss_like_the_official_scorer(capsys, tmp_path):
    # CIRCO's src/evaluation.py scores the submitted list as it is: it never removes the query's
    # reference image. Here the reference (id 7) is ranked first, ahead of both ground truths.
    annotations = [{"id": 0, "reference_img_id": 7, "relative_caption": "c", "shared_concept": "s",
                    "target_img_id": 11, "gt_img_ids": [11, 12], "semantic_aspects": []}]
    submission = {"0": [7, 11, 12, 13, 14]}
    annotations_path = write(tmp_path / "val.json", json.dumps(annotations))
    submission_path = write(tmp_path / "submission.json", json.dumps(submission))
    result = score_json(capsys, submission_path, annotations_path, "--metrics", "map@5,circo_recall@1")["all"]
    # AP@5 = (P@2 + P@3) / min(|GT|, 5) = (1/2 + 2/3) / 2; with the reference removed it would be 1.
    assert result["map@5"] == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-15)
    assert result["circo_recall@1"] == 0.0
    assert result["map@5"] == pytest.approx(official_circo_scores(annotations, submission, 5)[0], abs=1e-15)


@pytest.fixture
def two_query_qrels(tmp_path) -> Path:
    return write(tmp_path / "qrels.txt", "q1 0 a 1\nq2 0 b 1\n")


def test_default_averages_over_queries_in_both_run_and_qrels(capsys, tmp_path, two_query_qrels):
    run = write(tmp_path / "run.txt", "q1 Q0 a 1 1 t\n")
    assert score_json(capsys, run, two_query_qrels, "--metrics", "mrr@10")["all"] == {"mrr@10": 1.0}


def test_complete_averages_over_every_qrels_query_missing_ones_scoring_zero(capsys, tmp_path, two_query_qrels):
    run = write(tmp_path / "run.txt", "q1 Q0 a 1 1 t\n")
    result = score_json(capsys, run, two_query_qrels, "--metrics", "mrr@10", "--complete", "--per-query")
    assert result["all"] == {"mrr@10": 0.5}
    assert result["per_query"] == {"q1": {"mrr@10": 1.0}, "q2": {"mrr@10": 0.0}}


def test_run_queries_absent_from_the_qrels_are_ignored_and_reported(capsys, tmp_path, two_query_qrels):
    run = write(tmp_path / "run.txt", "q1 Q0 a 1 1 t\nq9 Q0 a 1 1 t\n")
    code, out, err = score(capsys, run, two_query_qrels, "--metrics", "mrr@10", "--format", "json", "--per-query")
    assert code == 0 and json.loads(out)["per_query"] == {"q1": {"mrr@10": 1.0}}
    assert "1 run queries are not in the qrels" in err and "1 qrels queries have no ranking" in err


def test_a_query_judged_without_relevant_documents_is_averaged_as_zero_like_trec_eval(capsys, tmp_path):
    import pytrec_eval

    qrels = write(tmp_path / "qrels.txt", "q1 0 a 1\nq2 0 b 0\nq2 0 c -1\n")
    run = write(tmp_path / "run.txt", "q1 Q0 a 1 1 t\nq2 Q0 b 1 1 t\n")
    result = score_json(capsys, run, qrels, "--metrics", "ndcg@10,map_cut@10", "--per-query")
    assert result["per_query"]["q2"] == {"ndcg@10": 0.0, "map_cut@10": 0.0}
    assert result["all"] == {"ndcg@10": 0.5, "map_cut@10": 0.5}
    # trec_eval (here through pytrec_eval) evaluates such a query too, so its mean counts it.
    evaluator = pytrec_eval.RelevanceEvaluator({"q1": {"a": 1}, "q2": {"b": 0, "c": -1}}, {"ndcg_cut_10"})
    assert evaluator.evaluate({"q1": {"a": 1.0}, "q2": {"b": 1.0}})["q2"]["ndcg_cut_10"] == 0.0


def test_tied_scores_rank_by_docid_descending(capsys, tmp_path):
    # Equal scores: "d9" ranks before "d10" (string order descending), so the relevant d10 is 2nd.
    qrels = write(tmp_path / "qrels.txt", "q 0 d10 1\n")
    run = write(tmp_path / "run.txt", "q Q0 d10 1 5 t\nq Q0 d9 2 5 t\n")
    assert score_json(capsys, run, qrels, "--metrics", "mrr@10")["all"] == {"mrr@10": 0.5}


def test_random_runs_with_many_ties_score_like_pytrec_eval(capsys, tmp_path):
    import pytrec_eval

    rng = np.random.default_rng(7)
    run_lines, qrels_lines = [], []
    run_dict: dict[str, dict[str, float]] = {}
    qrels_dict: dict[str, dict[str, int]] = {}
    for q in range(30):
        qid = f"q{q}"
        docs = [f"d{i}" for i in rng.choice(60, size=int(rng.integers(1, 40)), replace=False)]
        # Scores from 3 values: most documents tie with others.
        run_dict[qid] = {d: float(rng.integers(0, 3)) for d in docs}
        run_lines += [f"{qid} Q0 {d} {rank} {s} t" for rank, (d, s) in enumerate(run_dict[qid].items(), start=1)]
        judged = rng.choice(60, size=12, replace=False)
        qrels_dict[qid] = {f"d{i}": int(rng.integers(-1, 4)) for i in judged}
        qrels_lines += [f"{qid} 0 {d} {g}" for d, g in qrels_dict[qid].items()]
    run = write(tmp_path / "run.txt", "\n".join(run_lines) + "\n")
    qrels = write(tmp_path / "qrels.txt", "\n".join(qrels_lines) + "\n")
    names = {"ndcg_cut_5": "ndcg@5", "P_5": "precision@5", "recall_10": "recall@10", "map_cut_10": "map_cut@10", "recip_rank": "mrr@1000"}
    result = score_json(capsys, run, qrels, "--per-query", "--metrics", ",".join(names.values()))
    reference = pytrec_eval.RelevanceEvaluator(qrels_dict, set(names)).evaluate(run_dict)
    for qid, values in reference.items():
        for measure, metric in names.items():
            assert result["per_query"][qid][metric] == pytest.approx(values[measure], abs=1e-9), (qid, metric)


def test_json_without_per_query_has_only_the_averages_of_the_default_metrics(capsys, tmp_path, two_query_qrels):
    run = write(tmp_path / "run.txt", "q1 Q0 a 1 1 t\nq2 Q0 a 1 1 t\n")
    result = score_json(capsys, run, two_query_qrels)
    assert list(result) == ["all"] and list(result["all"]) == list(DEFAULT_METRICS)
    assert result["all"]["precision@10"] == pytest.approx(0.05)


def test_table_shows_values_times_100(capsys, tmp_path, two_query_qrels):
    run = write(tmp_path / "run.txt", "q1 Q0 x 1 2 t\nq1 Q0 a 2 1 t\n")
    code, out, _ = score(capsys, run, two_query_qrels, "--metrics", "mrr@10", "--per-query")
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert ["all", "50.00"] in rows and ["q1", "50.00"] in rows and "values x100" in out


def test_a_malformed_run_line_exits_2_naming_file_and_line(capsys, tmp_path, two_query_qrels):
    run = write(tmp_path / "run.txt", "q1 Q0 a 1 1 t\nq1 Q0 b 2 t\n")
    code, out, err = score(capsys, run, two_query_qrels)
    assert code == 2 and out == "" and f"{run}:2:" in err and "q1 Q0 b 2 t" in err


def test_a_duplicate_run_line_exits_2_unless_dedupe_first(capsys, tmp_path, two_query_qrels):
    run = write(tmp_path / "run.txt", "q1 Q0 b 1 2 t\nq1 Q0 a 2 1 t\nq1 Q0 b 3 0 t\n")
    code, _, err = score(capsys, run, two_query_qrels, "--metrics", "mrr@10")
    assert code == 2 and f"{run}:3:" in err and "listed twice" in err
    assert score_json(capsys, run, two_query_qrels, "--metrics", "mrr@10", "--dedupe", "first")["all"] == {"mrr@10": 0.5}


@pytest.mark.parametrize(
    "metrics, message",
    [
        ("ndcg@10,bogus@3", "unknown metric 'bogus@3'"),
        ("circo_recall@5", "needs per-query targets"),
        ("modality_acc@1", "needs candidate modalities"),
    ],
)
def test_metrics_the_inputs_cannot_support_exit_2(capsys, tmp_path, two_query_qrels, metrics, message):
    run = write(tmp_path / "run.txt", "q1 Q0 a 1 1 t\n")
    code, _, err = score(capsys, run, two_query_qrels, "--metrics", metrics)
    assert code == 2 and message in err


def test_a_run_sharing_no_query_with_the_qrels_exits_2_showing_both_id_styles(capsys, tmp_path, two_query_qrels):
    run = write(tmp_path / "run.txt", "1 Q0 a 1 1 t\n")
    code, _, err = score(capsys, run, two_query_qrels)
    assert code == 2 and "no query of the run is in the qrels" in err and "'1'" in err and "'q1'" in err


def test_qrels_format_override_is_honoured(capsys, tmp_path):
    # 5 columns would be detected as M-BEIR; forced to TREC it is malformed.
    qrels = write(tmp_path / "qrels.txt", "q1 0 a 1 7\n")
    run = write(tmp_path / "run.txt", "q1 Q0 a 1 1 t\n")
    assert score_json(capsys, run, qrels, "--metrics", "mrr@10")["all"] == {"mrr@10": 1.0}
    code, _, err = score(capsys, run, qrels, "--qrels-format", "trec")
    assert code == 2 and f"{qrels}:1:" in err
