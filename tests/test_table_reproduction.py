"""CI reproduction check: MiniLM on SciFact through `mbench run`, rendered with `mteb-minilm.yaml`, shows
MTEB's published 64.51 with delta 0.00; `mbench compare` against a copy with every ranking reversed
finds a difference whose CI excludes zero."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pytest
from fake_results import write_result

from mbench.cli import main
from mbench.reporting.result_index import scan_results
from mbench.results import read_per_query

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def minilm_scifact(minilm_scifact_run: Path) -> Path:
    """The results directory of `mbench run --model minilm --tasks mteb.scifact` (one run per session)."""
    return minilm_scifact_run


def _md_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|:"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows[cells[0]] = cells[1:]
    return rows


def test_minilm_scifact_reproduces_mteb(minilm_scifact: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["table", "mteb-minilm", "--results-dir", str(minilm_scifact), "--delta"]) == 0
    rows = _md_rows(capsys.readouterr().out)
    assert rows["Task"] == ["Metric", "MiniLM-L6 (MTEB)", "MiniLM-L6 (mbench)", "Δ vs MiniLM-L6 (MTEB)"]
    assert [cell.strip("*") for cell in rows["SciFact"]] == ["ndcg@10", "64.51", "64.51", "0.00"]
    assert rows["ArguAna"][2] == "–"  # not run here


def test_reversed_rankings_differ_significantly(
    minilm_scifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], shared_dir: Path
) -> None:
    [original] = [f for f in scan_results(minilm_scifact) if f.task == "mteb.scifact"]
    # Reverse every query's ranking (the best document last) and rescore it with `mbench score`.
    by_query: dict[str, list[str]] = {}
    with gzip.open(original.directory / "run.trec.gz", "rt") as handle:
        for line in handle:
            qid, _, docid, _, _, _ = line.split()
            by_query.setdefault(qid, []).append(docid)
    reversed_run = tmp_path / "reversed.trec"
    with reversed_run.open("w") as out:
        for qid, docids in by_query.items():
            for rank, docid in enumerate(reversed(docids), start=1):
                out.write(f"{qid} Q0 {docid} {rank} {-rank} reversed\n")
    qrels = shared_dir / "data" / "scifact" / "qrels" / "test.tsv"
    capsys.readouterr()
    assert main(["score", str(reversed_run), str(qrels), "--metrics", "ndcg@10", "--per-query", "--format", "json"]) == 0
    scored = json.loads(capsys.readouterr().out)["per_query"]
    qids = [str(q) for q in read_per_query(original.per_query_path)["qid"]]
    degraded = write_result(
        tmp_path / "degraded", model="minilm-reversed", task="mteb.scifact", pool="local",
        per_query={"ndcg@10": [scored[q]["ndcg@10"] if q in scored else 0.0 for q in qids]}, qids=qids,
        main_metric="ndcg@10",
    )  # fmt: skip
    assert main(["compare", str(original.directory), str(degraded), "--format", "csv"]) == 0
    [line] = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert line["task"] == "mteb.scifact" and line["n"] == "300"
    assert float(line["A"]) == pytest.approx(0.64508, abs=0.0005)
    assert float(line["ci_high"]) < 0 and float(line["p"]) < 0.001
    # The same run against itself: a zero difference whose CI covers zero.
    assert main(["compare", str(original.directory), str(original.directory), "--format", "csv"]) == 0
    [same] = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert float(same["ci_low"]) <= 0.0 <= float(same["ci_high"]) and float(same["p"]) == 1.0
