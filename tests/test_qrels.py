"""Reading qrels in every supported format (mbench.formats.qrels)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mbench.errors import MbenchError
from mbench.formats.qrels import detect_qrels_format, read_qrels

CIRCO_ENTRY = {"reference_img_id": 5, "relative_caption": "c", "shared_concept": "s", "semantic_aspects": []}


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def judgments(qrels) -> list[tuple[str, str, int]]:
    return list(zip(qrels.qids.tolist(), qrels.docids.tolist(), qrels.grades.tolist()))


def test_trec_qrels_keep_every_judgment_including_zero_and_negative_grades(tmp_path):
    qrels = read_qrels(write(tmp_path / "q.txt", "301 0 A 1\n301 0 B 0\n302\t0\tA\t-1\n"))
    assert qrels.format == "trec"
    assert judgments(qrels) == [("301", "A", 1), ("301", "B", 0), ("302", "A", -1)]
    assert qrels.query_ids.tolist() == ["301", "302"] and qrels.task_ids is None and qrels.targets is None


def test_mbeir_qrels_keep_the_task_id_column(tmp_path):
    qrels = read_qrels(write(tmp_path / "q.txt", "9:1 0 9:1 1 7\n9:2 0 4:3 1 7\n"))
    # qid and did namespaces are separate: "9:1" is both and both are kept.
    assert qrels.format == "mbeir"
    assert judgments(qrels) == [("9:1", "9:1", 1), ("9:2", "4:3", 1)] and qrels.task_ids.tolist() == [7, 7]


def test_beir_tsv_is_read_after_its_header(tmp_path):
    qrels = read_qrels(write(tmp_path / "test.tsv", "query-id\tcorpus-id\tscore\nq1\tdoc 1\t2\nq2\td2\t0\n"))
    # Tab-separated: a space inside an id is part of the id.
    assert qrels.format == "beir" and judgments(qrels) == [("q1", "doc 1", 2), ("q2", "d2", 0)]


def test_beir_tsv_with_a_wrong_header_is_refused_on_line_1(tmp_path):
    path = write(tmp_path / "test.tsv", "qid\tdid\tscore\nq1\td1\t1\n")
    with pytest.raises(MbenchError, match=rf"{path}:1: expected the header"):
        read_qrels(path, "beir")


def test_circo_annotations_give_relevant_ground_truth_and_targets(tmp_path):
    entries = [
        {**CIRCO_ENTRY, "id": 0, "target_img_id": 11, "gt_img_ids": [11, 12]},
        {**CIRCO_ENTRY, "id": 3, "target_img_id": 30, "gt_img_ids": [30]},
    ]
    qrels = read_qrels(write(tmp_path / "val.json", json.dumps(entries)))
    assert qrels.format == "circo"
    assert judgments(qrels) == [("0", "11", 1), ("0", "12", 1), ("3", "30", 1)]
    assert qrels.targets == {"0": "11", "3": "30"} and qrels.query_ids.tolist() == ["0", "3"]


def test_circo_test_split_without_ground_truth_is_refused(tmp_path):
    path = write(tmp_path / "test.json", json.dumps([{**CIRCO_ENTRY, "id": 0}]))
    with pytest.raises(MbenchError, match="query 0 .*no public ground truth"):
        read_qrels(path)


def test_circo_annotations_with_a_repeated_ground_truth_image_are_refused(tmp_path):
    path = write(tmp_path / "val.json", json.dumps([{**CIRCO_ENTRY, "id": 4, "target_img_id": 1, "gt_img_ids": [1, 2, 1]}]))
    with pytest.raises(MbenchError, match="query 4 .*image 1 is listed twice"):
        read_qrels(path)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("\n301 0 A 1\n", "trec"),
        ("9:1 0 9:1 1 7\n", "mbeir"),
        ("query-id\tcorpus-id\tscore\nq\td\t1\n", "beir"),
        ('  [{"id": 0}]', "circo"),
    ],
)
def test_the_format_is_detected_from_the_content(tmp_path, text, expected):
    assert detect_qrels_format(write(tmp_path / "qrels", text)) == expected


def test_an_undetectable_format_names_the_line_and_the_override(tmp_path):
    path = write(tmp_path / "qrels", "\nq d 1\n")
    with pytest.raises(MbenchError, match=rf"{path}:2: cannot tell the qrels format .*pass the format"):
        detect_qrels_format(path)


def test_a_format_override_wins_over_detection(tmp_path):
    path = write(tmp_path / "qrels", "q 0 d 1 7\n")
    with pytest.raises(MbenchError, match=rf"{path}:1: expected 4 whitespace-separated fields .*got 5"):
        read_qrels(path, "trec")


def test_a_non_integer_grade_is_named_with_file_line_and_text(tmp_path):
    path = write(tmp_path / "q.txt", "1 0 a 1\n1 0 b 0.5\n")
    with pytest.raises(MbenchError, match=rf"{path}:2: rel '0.5' is not an integer: '1 0 b 0.5'"):
        read_qrels(path)


def test_a_document_judged_twice_is_an_error_naming_both_lines(tmp_path):
    path = write(tmp_path / "test.tsv", "query-id\tcorpus-id\tscore\nq\ta\t1\nq\tb\t1\nq\ta\t0\n")
    # Line numbers count the header line.
    with pytest.raises(MbenchError, match=rf"{path}:4: document 'a' is judged twice for query 'q' \(first at line 2\)"):
        read_qrels(path)


def test_gzip_qrels_are_detected_and_read(tmp_path):
    path = tmp_path / "qrels.gz"
    path.write_bytes(gzip.compress(b"1 0 a 2\n"))
    assert judgments(read_qrels(path)) == [("1", "a", 2)]
