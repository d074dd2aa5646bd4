"""Reading TREC runs and CIRCO submissions, and writing TREC runs (mbench.formats.runs, mbench.formats.submission)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from mbench.errors import MbenchError
from mbench.formats.runs import read_run, read_trec_run, write_trec_run
from mbench.formats.submission import read_circo_submission


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def ranked_ids(run, row: int) -> list[str]:
    """The docids of one ranking row, padding dropped."""
    return [run.docids[i] for i in run.ranking[row] if i >= 0]


def test_documents_are_ordered_by_score_descending_and_the_rank_column_is_ignored(tmp_path):
    path = write(tmp_path / "run.txt", "q1 Q0 a 1 0.1 t\nq1 Q0 b 2 0.9 t\nq1 Q0 c 3 0.5 t\n")
    run = read_trec_run(path)
    assert ranked_ids(run, 0) == ["b", "c", "a"]
    assert run.scores[0].tolist() == [0.9, 0.5, 0.1]


def test_equal_scores_are_ordered_by_docid_descending_in_string_order(tmp_path):
    # String order, not numeric: "d9" > "d10" > "d1".
    path = write(tmp_path / "run.txt", "q Q0 d1 1 2 t\nq Q0 d10 2 2 t\nq Q0 d9 3 2 t\nq Q0 top 4 3 t\n")
    assert ranked_ids(read_trec_run(path), 0) == ["top", "d9", "d10", "d1"]


def test_queries_are_rows_in_string_order_and_short_rankings_are_padded(tmp_path):
    path = write(tmp_path / "run.txt", "q2 Q0 a 1 1 t\nq10 Q0 b 1 1 t\nq10 Q0 c 2 0 t\n")
    run = read_trec_run(path)
    assert run.qids.tolist() == ["q10", "q2"]
    assert run.ranking.shape == (2, 2) and run.ranking.dtype == np.int64
    assert ranked_ids(run, 1) == ["a"] and run.ranking[1, 1] == -1 and np.isnan(run.scores[1, 1])


def test_tabs_and_aligned_spaces_separate_fields_like_trec_eval_results_test(tmp_path):
    path = write(tmp_path / "run.txt", "301\tQ0\tA\t104\t  2.129133\tSTANDARD\r\n  301 Q0  B 5   3.5 STANDARD  \n")
    run = read_trec_run(path)
    assert run.qids.tolist() == ["301"] and ranked_ids(run, 0) == ["B", "A"] and run.tag == "STANDARD"


def test_blank_lines_are_skipped(tmp_path):
    path = write(tmp_path / "run.txt", "\nq Q0 a 1 1 t\n\n\nq Q0 b 2 2 t\n\n")
    assert ranked_ids(read_trec_run(path), 0) == ["b", "a"]


def test_gzip_run_reads_like_the_plain_file(tmp_path):
    text = "q1 Q0 a 1 0.1 t\nq1 Q0 b 2 0.9 t\nq2 Q0 a 1 3 t\n"
    plain = read_trec_run(write(tmp_path / "run.txt", text))
    (tmp_path / "run.txt.gz").write_bytes(gzip.compress(text.encode()))
    packed = read_trec_run(tmp_path / "run.txt.gz")
    assert packed.qids.tolist() == plain.qids.tolist()
    assert [ranked_ids(packed, i) for i in range(2)] == [ranked_ids(plain, i) for i in range(2)]


@pytest.mark.parametrize(
    "bad_line, reason",
    [
        ("q1 Q0 c 3 0.5", "got 5"),
        ("q1 Q0 c 3 0.5 t extra", "got 7"),
        ("q1 Q0 c 3 high t", "score 'high' is not a number"),
        ("q1 Q0 c 3 nan t", "score is NaN"),
    ],
)
def test_a_malformed_line_is_named_with_file_line_and_text(tmp_path, bad_line, reason):
    # Line 4: the blank line 2 counts, so row numbers cannot be mistaken for line numbers.
    path = write(tmp_path / "run.txt", f"q1 Q0 a 1 1 t\n\nq1 Q0 b 2 2 t\n{bad_line}\nq1 Q0 d 4 4 t\n")
    with pytest.raises(MbenchError) as err:
        read_trec_run(path)
    assert f"{path}:4:" in str(err.value) and reason in str(err.value) and bad_line in str(err.value)


def test_a_malformed_line_in_a_gzip_run_is_named(tmp_path):
    path = tmp_path / "run.gz"
    path.write_bytes(gzip.compress(b"q Q0 a 1 1 t\nq Q0 b 2\n"))
    with pytest.raises(MbenchError, match=rf"{path}:2: .*got 4"):
        read_trec_run(path)


def test_a_repeated_query_document_pair_is_an_error_naming_both_lines(tmp_path):
    path = write(tmp_path / "run.txt", "q Q0 a 1 3 t\nq Q0 b 2 2 t\nr Q0 a 1 2 t\nq Q0 a 3 1 t\n")
    with pytest.raises(MbenchError) as err:
        read_trec_run(path)
    message = str(err.value)
    assert f"{path}:4:" in message and "first at line 1" in message and "'a'" in message and "--dedupe first" in message


def test_dedupe_first_keeps_the_first_occurrence_and_its_score(tmp_path):
    lines = ["q Q0 a 1 1 t", "q Q0 b 2 2 t", "q Q0 a 3 9 t", "r Q0 a 1 5 t", "q Q0 b 4 7 t", "q Q0 a 5 3 t"]
    run = read_trec_run(write(tmp_path / "run.txt", "\n".join(lines)), dedupe="first")
    assert ranked_ids(run, 0) == ["b", "a"] and run.scores[0].tolist() == [2.0, 1.0]
    assert ranked_ids(run, 1) == ["a"] and run.scores[1, 0] == 5.0


def test_depth_keeps_only_the_top_documents(tmp_path):
    path = write(tmp_path / "run.txt", "q Q0 a 1 1 t\nq Q0 b 2 2 t\nq Q0 c 3 3 t\n")
    run = read_trec_run(path, depth=2)
    assert run.depth == 2 and ranked_ids(run, 0) == ["c", "b"]


def test_an_empty_run_has_no_queries(tmp_path):
    run = read_trec_run(write(tmp_path / "run.txt", "\n"))
    assert run.n_queries == 0 and run.ranking.shape == (0, 0)


def test_circo_submission_ranks_follow_list_order(tmp_path):
    path = write(tmp_path / "sub.json", json.dumps({"1": [30, 10, 20], "0": [10]}))
    run = read_circo_submission(path)
    assert run.qids.tolist() == ["0", "1"]
    assert ranked_ids(run, 1) == ["30", "10", "20"] and ranked_ids(run, 0) == ["10"]
    # Scores decrease down the list so that a TREC writer or reader keeps the order.
    assert run.scores[1].tolist() == [3.0, 2.0, 1.0]


def test_circo_submission_with_a_repeated_image_is_an_error_unless_deduped(tmp_path):
    path = write(tmp_path / "sub.json", json.dumps({"7": [1, 2, 1, 3]}))
    with pytest.raises(MbenchError, match=r"query '7': image id 1 is listed twice \(positions 1 and 3\)"):
        read_circo_submission(path)
    assert ranked_ids(read_circo_submission(path, dedupe="first"), 0) == ["1", "2", "3"]


def test_read_run_tells_circo_json_from_trec_by_content(tmp_path):
    assert read_run(write(tmp_path / "a.trec", '  {"5": [1, 2]}')).qids.tolist() == ["5"]
    assert read_run(write(tmp_path / "b.json", "5 Q0 x 1 1 t\n")).docids.tolist() == ["x"]


def test_written_run_reads_back_with_the_same_order_scores_and_tag(tmp_path):
    docs = np.array([["b", "a", None], ["c", None, None]], dtype=object)
    scores = np.array([[0.30000000000000004, 0.1, np.nan], [1e-30, np.nan, np.nan]])
    write_trec_run(tmp_path / "run.trec", ["q1", "q2"], docs, scores, tag="sys")
    assert (tmp_path / "run.trec").read_text().splitlines() == [
        "q1 Q0 b 1 0.30000000000000004 sys",
        "q1 Q0 a 2 0.1 sys",
        "q2 Q0 c 1 1e-30 sys",
    ]
    run = read_trec_run(tmp_path / "run.trec")
    assert ranked_ids(run, 0) == ["b", "a"] and run.scores[0, 0] == 0.30000000000000004 and run.tag == "sys"


def test_gzip_written_run_is_gzip_and_byte_reproducible(tmp_path):
    docs = np.array([["x", "y"]], dtype=object)
    write_trec_run(tmp_path / "a.trec.gz", ["q"], docs, np.array([[2.0, 1.0]], dtype=np.float32))
    write_trec_run(tmp_path / "b.trec.gz", ["q"], docs, np.array([[2.0, 1.0]], dtype=np.float32))
    first = (tmp_path / "a.trec.gz").read_bytes()
    assert first == (tmp_path / "b.trec.gz").read_bytes()
    assert gzip.decompress(first).decode() == "q Q0 x 1 2 mbench\nq Q0 y 2 1 mbench\n"


@pytest.mark.parametrize("bad", ["has space", "", "tab\there"])
def test_writer_refuses_ids_that_would_not_read_back(tmp_path, bad):
    with pytest.raises(MbenchError, match="without whitespace"):
        write_trec_run(tmp_path / "run.trec", ["q"], np.array([[bad]], dtype=object), np.array([[1.0]]))
    assert not list(tmp_path.iterdir())
