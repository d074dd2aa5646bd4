"""`mbench plot` and `mbench compare` take the ad-hoc selection of `mbench table` (--tasks, --models by name or alias)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_results import write_result

from mbench.cli import main


def _two_models(root: Path) -> None:
    """bm25 and a model run under the alias `minilm` (recorded as requested_model) on two tasks."""
    for model, values in (("bm25", (0.25, 0.5)), ("sentence-transformers/all-MiniLM-L6-v2", (0.75, 0.5))):
        for task, value in zip(("mteb.scifact", "mteb.nfcorpus"), values):
            folder = write_result(root, model=model, task=task, pool="local",
                                  per_query={"ndcg@10": [value] * 4, "hit@1": [1.0, 0.0, 1.0, 0.0]},
                                  main_metric="ndcg@10", qids=["a", "b", "c", "d"])
            if model != "bm25":
                record = json.loads((folder / "result.json").read_text())
                record["requested_model"] = "minilm"
                (folder / "result.json").write_text(json.dumps(record))


def test_plot_takes_tasks_and_models_by_alias(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Regression: `mbench plot --tasks ...` was read as --tasks-dir and refused --models.
    _two_models(tmp_path / "results")
    assert main(["plot", "--tasks", "mteb.scifact", "mteb.nfcorpus", "--models", "bm25", "minilm",
                 "--results-dir", str(tmp_path / "results"), "--out", str(tmp_path / "fig")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "fig" / "adhoc_bars.png")]


def test_compare_takes_tasks_and_two_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _two_models(tmp_path / "results")
    assert main(["compare", "--tasks", "mteb.scifact", "mteb.nfcorpus", "--models", "bm25", "minilm",
                 "--results-dir", str(tmp_path / "results"), "--resamples", "100"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("A = bm25\nB = minilm\n")
    assert "| mteb.scifact | local | retrieval | ndcg@10 | 4 | 25.00 | 75.00 | +50.00 |" in out
    assert "| mteb.nfcorpus | local | retrieval | ndcg@10 | 4 | 50.00 | 50.00 | 0.00 |" in out


def test_compare_needs_exactly_two_models_with_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _two_models(tmp_path / "results")
    assert main(["compare", "--tasks", "mteb.scifact", "--models", "bm25", "--results-dir", str(tmp_path / "results")]) == 2
    assert "--models takes exactly two models" in capsys.readouterr().err
    assert main(["compare", "--tasks", "mteb.scifact", "--models", "bm25", "bm25",
                 "--results-dir", str(tmp_path / "results")]) == 2
    assert "names 'bm25' twice" in capsys.readouterr().err
