"""`mbench table`: the paper's columns with empty cells, averages only when complete, bold best, deltas,
full-precision CSV, LaTeX that compiles, significance marks, the ad-hoc form and light imports."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from fake_results import fingerprint_of, rerank_info, write_result

from mbench.cli import main
from mbench.reporting.leaderboard import load_leaderboard
from mbench.reporting.tables import build_table, format_number, latex_escape, render

REPO = Path(__file__).resolve().parents[1]
TABLE1 = REPO / "leaderboards" / "mm-embed-table1.yaml"
PAPER_COLUMNS = [
    "rand_CLIPSF", "rand_LLaVa-E", "rand_LLaVa-P", "rand_NV-Embed-v1",
    "hard_CLIPSF", "hard_LLaVa-P", "hard_NV-Embed-v1", "MM-Embed",
]  # fmt: skip


def _md_rows(text: str) -> dict[str, list[str]]:
    """Markdown table lines keyed by their first cell, cells stripped."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|:"):
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            rows[cells[0]] = cells[1:]
    return rows


def _table(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    assert main(["table", *argv]) == 0
    captured = capsys.readouterr()
    return captured.out, captured.err


def _hits(k: int, n: int = 10) -> np.ndarray:
    """n per-query hits of which exactly k are 1 (mean k/n)."""
    return np.array([1.0] * k + [0.0] * (n - k))


def test_table1_renders_the_paper_columns_with_empty_run_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = _table(capsys, str(TABLE1), "--results-dir", str(tmp_path / "none"), "--format", "md")
    rows = _md_rows(out)
    header = rows["Task"]
    assert header[:9] == ["Metric", *PAPER_COLUMNS]
    assert header[9:] == ["CLIP-SF (ours)", "MM-Embed (ours)"]
    visualnews = rows["1. VisualNews (t→i)"]
    # Published numbers as printed; the best of the row in bold; no run yet: explicit empty cells.
    assert visualnews == ["hit@5", "**43.8**", "33.2", "34.2", "32.1", "42.7", "39.7", "41.1", "41.0", "–", "–"]
    assert rows["1. Fashion200K (t→i)"][0] == "hit@10"
    assert rows["MTEB text retrieval (15 tasks)"] == ["ndcg@10", "–", "–", "–", "–", "–", "46.4", "49.7", "**60.3**", "–", "–"]
    assert rows["Avg. all (16 tasks)"][1:] == ["47.4", "47.9", "48.3", "47.2", "48.3", "51.9", "52.3", "**52.7**", "–", "–"]
    assert len(rows) == 1 + 17 + 3


def _mm_embed_results(root: Path, *, skip: str | None = None) -> dict[str, float]:
    """MM-Embed results on the 16 M-BEIR tasks (global pool) with hand-picked means; returns them by task."""
    spec = load_leaderboard(TABLE1)
    means = {}
    for position, row in enumerate(r for r in spec.rows if r.task.startswith("mbeir.")):
        if row.task == skip:
            continue
        k = position % 10 + 1  # means 0.1, 0.2, ..., 1.0, 0.1, ...
        write_result(root, model="nvidia/MM-Embed", task=row.task, pool="global",
                     per_query={"hit@1": _hits(k), "hit@5": _hits(k), "hit@10": _hits(k)}, main_metric=row.metric)  # fmt: skip
        means[row.task] = k / 10
    return means


def test_averages_are_computed_only_when_every_cell_is_present(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    means = _mm_embed_results(tmp_path, skip="mbeir.cirr.it2i")
    out, _ = _table(capsys, str(TABLE1), "--results-dir", str(tmp_path))
    rows = _md_rows(out)
    ours = rows["Task"].index("MM-Embed (ours)")
    # Tasks 1-5 are the first ten rows: means 0.1 ... 1.0, average 0.55 -> 55.0.
    assert rows["Avg. single-modal query (tasks 1-5)"][ours] == "55.0"
    assert rows["7. CIRR ((i,t)→i)"][ours] == "–"
    assert rows["Avg. multi-modal query (tasks 6-8)"][ours] == "–"
    assert rows["Avg. all (16 tasks)"][ours] == "–"
    # FashionIQ: 0.3, above the best published 27.4, so bold.
    assert means["mbeir.fashioniq.it2i"] == 0.3
    assert rows["7. FashionIQ ((i,t)→i)"][ours] == f"**{format_number(0.3, load_leaderboard(TABLE1).format)}**"


def test_bold_best_and_delta(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _mm_embed_results(tmp_path)
    out, _ = _table(capsys, str(TABLE1), "--results-dir", str(tmp_path), "--delta")
    rows = _md_rows(out)
    header = rows["Task"]
    ours, delta = header.index("MM-Embed (ours)"), header.index("Δ vs MM-Embed")
    assert delta == ours + 1 and header.index("Δ vs rand_CLIPSF") == header.index("CLIP-SF (ours)") + 1
    # NIGHTS is the 10th M-BEIR row: mean 1.0, above every published number -> the only bold cell.
    nights = rows["5. NIGHTS (i→i)"]
    assert nights[ours] == "**100.0**" and nights[delta] == "+67.6"
    assert sum(cell.startswith("**") for cell in nights) == 1
    # VisualNews t->i: 10.0 against 41.0.
    assert rows["1. VisualNews (t→i)"][delta] == "-31.0"
    # Multi-modal average: rows 11-16 have means 0.1, 0.2, ..., 0.6 -> 35.0; the paper's MM-Embed shows 47.0.
    assert rows["Avg. multi-modal query (tasks 6-8)"][ours] == "35.0"
    assert rows["Avg. multi-modal query (tasks 6-8)"][delta] == "-12.0"
    assert rows["MTEB text retrieval (15 tasks)"][delta] == "–"


def test_ties_after_rounding_are_all_bold(tmp_path: Path) -> None:
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "tie",
                "pool": "local",
                "rows": [{"task": "mteb.scifact", "metric": "ndcg@10"}],
                "runs": [{"name": "a", "model": "a", "reference": "p"}],
                "references": [
                    {"name": "p", "source": {"paper": "x", "table": "1", "column": "c"}, "values": {"mteb.scifact": 50.0}}
                ],
            }
        )
    )
    write_result(tmp_path / "r", model="a", task="mteb.scifact", pool="local", per_query={"ndcg@10": [0.50004]},
                 main_metric="ndcg@10")  # fmt: skip
    text = render(build_table(load_leaderboard(spec_path), tmp_path / "r"), "md", delta=True)
    assert "| **50.00** | **50.00** | 0.00 |" in text  # the display rule's 2 decimals: the spec sets none


def test_csv_keeps_full_precision_fractions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_result(tmp_path, model="nvidia/MM-Embed", task="mbeir.cirr.it2i", pool="global",
                 per_query={"hit@5": [1.0, 0.0, 0.0]}, main_metric="hit@5")  # fmt: skip
    out, _ = _table(capsys, str(TABLE1), "--results-dir", str(tmp_path), "--format", "csv", "--delta")
    rows = {r["row"]: r for r in csv.DictReader(io.StringIO(out))}
    cirr = rows["mbeir.cirr.it2i"]
    assert cirr["mm-embed"] == repr(1 / 3) == "0.3333333333333333"
    assert cirr["MM-Embed"] == "0.5"  # the paper's 50.0, as a fraction
    assert float(cirr["delta:mm-embed"]) == pytest.approx(1 / 3 - 0.5, abs=1e-15)
    assert cirr["clip-sf"] == "" and cirr["metric"] == "hit@5" and cirr["pool"] == "global" and cirr["kind"] == "task"
    assert rows["avg-all"]["kind"] == "average" and rows["avg-all"]["mm-embed"] == ""
    assert rows["mteb"]["kind"] == "group"


def test_the_newest_result_wins_and_the_choice_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for tag, created, k in (("old", "2026-01-01T00:00:00+00:00", 2), ("new", "2026-02-01T00:00:00+00:00", 7)):
        write_result(tmp_path, model="nvidia/MM-Embed", fingerprint=fingerprint_of(tag), task="mbeir.cirr.it2i", pool="global",
                     per_query={"hit@5": _hits(k)}, main_metric="hit@5", created=created)  # fmt: skip
    out, err = _table(capsys, str(TABLE1), "--results-dir", str(tmp_path))
    rows = _md_rows(out)
    assert rows["7. CIRR ((i,t)→i)"][rows["Task"].index("MM-Embed (ours)")] == "**70.0**"  # the newer one
    assert "newest" in err and fingerprint_of("old")[:12] in err and fingerprint_of("new")[:12] in err
    assert "newest" in out  # also a footnote under the table


def test_fingerprint_selects_one_checkpoint(tmp_path: Path) -> None:
    for tag, k in (("ckpt1", 2), ("ckpt2", 7)):
        write_result(tmp_path, model="clip-sf", fingerprint=fingerprint_of(tag), task="mbeir.cirr.it2i", pool="global",
                     per_query={"hit@5": _hits(k)}, main_metric="hit@5")  # fmt: skip
    spec = yaml.safe_load(TABLE1.read_text())
    spec["runs"] = [{"name": "first", "model": "clip-sf", "fingerprint": fingerprint_of("ckpt1")[:8]}]
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    table = build_table(load_leaderboard(path), tmp_path)
    assert table.values.at["mbeir.cirr.it2i", "first"] == pytest.approx(0.2)
    assert not table.notes


def test_group_rows_are_the_mean_of_their_members(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mbench.tasks.index import get_index

    index = get_index()
    members = index.expand(["mteb.cqadupstack"])
    assert len(members) == 12
    for position, task in enumerate(members):
        write_result(tmp_path, model="nvidia/MM-Embed", task=task, pool="local", per_query={"ndcg@10": [position / 12]},
                     main_metric="ndcg@10")  # fmt: skip
    table9 = REPO / "leaderboards" / "mm-embed-table9.yaml"
    table = build_table(load_leaderboard(table9), tmp_path)
    assert table.values.at["mteb.cqadupstack", "mm-embed"] == pytest.approx(sum(range(12)) / 144)
    assert np.isnan(table.values.at["avg", "mm-embed"])  # the other 14 tasks are missing
    # One member missing: the group is missing too.
    shutil.rmtree(next(tmp_path.rglob(members[3])))
    table = build_table(load_leaderboard(table9), tmp_path)
    assert np.isnan(table.values.at["mteb.cqadupstack", "mm-embed"])


def test_a_group_row_averages_its_scored_members_only(tmp_path: Path) -> None:
    from mbench.reporting.leaderboard import check_tasks, parse_leaderboard

    # The circo group is circo.val (scored) and circo.test (scored: false, a submission only): the
    # group's mean is circo.val's value, 3 of 4 queries = 0.75, and the spec is not refused.
    write_result(tmp_path, model="m", task="circo.val", pool="local", per_query={"map@5": [1.0, 1.0, 1.0, 0.0]},
                 main_metric="map@5")
    spec = parse_leaderboard({"name": "t", "pool": "local", "rows": [{"task": "circo", "metric": "map@5"}],
                              "runs": [{"name": "m", "model": "m"}]}, "test")
    check_tasks(spec, "test")
    assert build_table(spec, tmp_path).values.at["circo", "m"] == 0.75


def test_rerank_rows_take_rerank_results(tmp_path: Path) -> None:
    first = write_result(tmp_path, model="nvidia/MM-Embed", task="circo.val", pool="local", per_query={"map@5": [0.25, 0.35]},
                         main_metric="map@5")  # fmt: skip
    write_result(tmp_path, model="nvidia/MM-Embed", task="circo.val", pool="local", per_query={"map@5": [0.5, 0.3]},
                 main_metric="map@5", rerank=rerank_info(first))  # fmt: skip
    table = build_table(load_leaderboard(REPO / "leaderboards" / "mm-embed-table4.yaml"), tmp_path)
    assert table.values.at["circo.retrieval", "mm-embed"] == pytest.approx(0.30)
    assert table.values.at["circo.rerank", "mm-embed"] == pytest.approx(0.40)
    assert table.values.at["circo.rerank", "MM-Embed"] == pytest.approx(0.399)
    assert np.isnan(table.values.at["circo.rerank", "e5v"])


def test_latex_is_escaped_booktabs_and_compiles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _mm_embed_results(tmp_path / "r")
    out, _ = _table(capsys, str(TABLE1), "--results-dir", str(tmp_path / "r"), "--format", "latex", "--delta")
    assert r"\toprule" in out and r"\midrule" in out and r"\bottomrule" in out
    assert r"rand\_CLIPSF" in out and "rand_CLIPSF" not in out.replace(r"rand\_CLIPSF", "")
    assert r"\textbf{43.8}" in out and r"$\Delta$ vs MM-Embed" in out
    assert r"$\rightarrow$" in out and "→" not in out and "–" not in out
    pdflatex = shutil.which("pdflatex")
    if pdflatex is None:
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    document = tmp_path / "table.tex"
    document.write_text(
        "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[margin=0.3in,landscape]{geometry}\n"
        "\\begin{document}\n\\tiny\n" + out + "\\end{document}\n"
    )
    result = subprocess.run(
        [pdflatex, "-interaction=nonstopmode", "-halt-on-error", document.name],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    assert (tmp_path / "table.pdf").stat().st_size > 1000


def test_latex_escape() -> None:
    assert latex_escape("a_b & 50% #1 {x} ~ ^ \\") == r"a\_b \& 50\% \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{}"


def test_html_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = _table(capsys, str(TABLE1), "--results-dir", str(tmp_path), "--format", "html")
    assert out.startswith("<table>") and "<b>43.8</b>" in out and "<th>rand_CLIPSF</th>" in out
    assert "<caption>MM-Embed Table 1: M-BEIR (global pool) and MTEB</caption>" in out


def test_significance_marks_cells_against_the_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    base = (rng.random(300) < 0.5).astype(float)
    better = np.where((base == 0) & (np.arange(300) < 200), 1.0, base)  # ~100 more hits: clearly significant
    same = base.copy()
    same[:2] = 1 - same[:2]  # two queries change: not significant
    for model, tasks in (("clip-sf", {"mbeir.cirr.it2i": base, "mbeir.nights.i2i": base}),
                         ("nvidia/MM-Embed", {"mbeir.cirr.it2i": better, "mbeir.nights.i2i": same})):  # fmt: skip
        for task, values in tasks.items():
            write_result(tmp_path, model=model, task=task, pool="global", per_query={"hit@5": values},
                         main_metric="hit@5")  # fmt: skip
    out, _ = _table(capsys, str(TABLE1), "--results-dir", str(tmp_path), "--significance", "clip-sf")
    rows = _md_rows(out)
    ours = rows["Task"].index("MM-Embed (ours)")
    assert rows["7. CIRR ((i,t)→i)"][ours].endswith("†")
    assert not rows["5. NIGHTS (i→i)"][ours].endswith("†")
    assert not rows["7. CIRR ((i,t)→i)"][rows["Task"].index("CLIP-SF (ours)")].endswith("†")
    assert "† differs from CLIP-SF (ours) with p < 0.05" in out
    latex, _ = _table(capsys, str(TABLE1), "--results-dir", str(tmp_path), "--significance", "clip-sf", "--format", "latex")
    assert r"$^\dagger$" in latex
    csv_out, _ = _table(capsys, str(TABLE1), "--results-dir", str(tmp_path), "--significance", "clip-sf", "--format", "csv")
    cirr = next(r for r in csv.DictReader(io.StringIO(csv_out)) if r["row"] == "mbeir.cirr.it2i")
    assert float(cirr["p:mm-embed"]) < 0.05 and cirr["p:clip-sf"] == ""


def test_significance_baseline_must_be_a_run_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["table", str(TABLE1), "--results-dir", str(tmp_path), "--significance", "MM-Embed"]) == 2
    assert "not a run column" in capsys.readouterr().err


def test_delta_needs_a_reference(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_result(tmp_path, model="a", task="mteb.scifact", pool="local", per_query={"ndcg@10": [0.5]}, main_metric="ndcg@10")
    assert main(["table", "--tasks", "mteb.scifact", "--results-dir", str(tmp_path), "--delta"]) == 2
    assert "names a `reference`" in capsys.readouterr().err


def test_adhoc_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for model, values in (("bm25", (0.25, 0.5)), ("minilm", (0.75, 0.5))):
        for task, value in zip(("mteb.scifact", "mteb.nfcorpus"), values):
            write_result(tmp_path, model=model, task=task, pool="local",
                         per_query={"ndcg@10": [value], "recall@10": [value / 2]}, main_metric="ndcg@10")  # fmt: skip
    out, _ = _table(capsys, "--tasks", "mteb.scifact", "mteb.nfcorpus", "--results-dir", str(tmp_path))
    rows = _md_rows(out)
    assert rows["Task"] == ["Metric", "bm25", "minilm"]
    assert rows["mteb.scifact"] == ["ndcg@10", "25.00", "**75.00**"]
    assert rows["Mean"] == ["ndcg@10", "37.50", "**62.50**"]  # one metric: the mean says which
    out, _ = _table(capsys, "--tasks", "mteb.scifact", "--models", "minilm", "--metric", "ndcg@10", "recall@10",
                    "--results-dir", str(tmp_path), "--format", "csv")  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["row"], r["minilm"]) for r in rows] == [("mteb.scifact:ndcg@10", "0.75"), ("mteb.scifact:recall@10", "0.375")]


def test_adhoc_table_asks_for_a_pool_when_results_have_several(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for pool in ("local", "global"):
        write_result(tmp_path, model="m", task="mbeir.cirr.it2i", pool=pool, per_query={"hit@5": [1.0]}, main_metric="hit@5")
    assert main(["table", "--tasks", "mbeir.cirr.it2i", "--results-dir", str(tmp_path)]) == 2
    assert "--pool" in capsys.readouterr().err
    out, _ = _table(capsys, "--tasks", "mbeir.cirr.it2i", "--results-dir", str(tmp_path), "--pool", "global")
    assert "100.00" in out


def test_spec_errors_exit_2_with_the_file_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\npool: local\nrows: [{task: mteb.scifact, metric: ndcg@10}]\nruns: [{name: a, model: m}]\nextra: 1\n")
    assert main(["table", str(path)]) == 2
    assert f"{path}: extra: unknown key" in capsys.readouterr().err


def test_table_help_imports_no_torch_or_matplotlib() -> None:
    code = (
        "import sys\nfrom mbench.cli import main\n"
        "try:\n    main(['table', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'matplotlib', 'transformers', 'pandas') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def _mixed_main_metrics(root: Path) -> None:
    """Two tasks whose main metrics differ (hit@5 and ndcg@10), each result also holding the other metrics."""
    write_result(root, model="m", task="mbeir.cirr.it2i", pool="local", main_metric="hit@5",
                 per_query={"hit@5": [1.0, 0.0], "hit@10": [1.0, 1.0], "hit@1": [0.0, 0.0]})  # fmt: skip
    write_result(root, model="m", task="mbeir.webqa.t2t", pool="local", main_metric="hit@5",
                 per_query={"hit@5": [1.0, 1.0], "hit@10": [1.0, 1.0], "hit@1": [1.0, 0.0]})  # fmt: skip
    write_result(root, model="m", task="mteb.scifact", pool="local", main_metric="ndcg@10",
                 per_query={"ndcg@10": [0.2, 0.4]})  # fmt: skip


def test_a_mean_of_mixed_main_metrics_is_labelled_and_footnoted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _mixed_main_metrics(tmp_path)
    out, _ = _table(capsys, "--tasks", "mbeir.cirr.it2i", "mbeir.webqa.t2t", "mteb.scifact", "--results-dir", str(tmp_path))
    rows = _md_rows(out)
    assert rows["Mean"] == ["main metrics*", "60.00"]  # (50 + 100 + 30) / 3
    assert ("- * The mean of each task's main metric (hit@5; ndcg@10 for mteb.scifact), as the MM-Embed paper "
            "averages; a single-metric mean: --mean-metric M") in out


def test_mean_metric_averages_one_metric_over_every_task(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _mixed_main_metrics(tmp_path)
    out, _ = _table(capsys, "--tasks", "mbeir.cirr.it2i", "mbeir.webqa.t2t", "--results-dir", str(tmp_path),
                    "--mean-metric", "hit@1")
    rows = _md_rows(out)
    assert rows["mbeir.cirr.it2i"] == ["hit@5", "50.00"]  # rows keep each task's main metric
    assert rows["Mean hit@1"] == ["hit@1", "25.00"]  # (0 + 50) / 2
    assert "The mean of each task's main metric" not in out
    assert main(["table", "--tasks", "mbeir.cirr.it2i", "mteb.scifact", "--results-dir", str(tmp_path),
                 "--mean-metric", "hit@1"]) == 2
    assert "--mean-metric hit@1: not computed by mteb.scifact" in capsys.readouterr().err


def test_a_spec_average_can_name_its_metric(tmp_path: Path) -> None:
    _mixed_main_metrics(tmp_path)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump({
        "name": "m10", "pool": "local",
        "rows": [{"task": "mbeir.cirr.it2i", "metric": "hit@5"}, {"task": "mbeir.webqa.t2t", "metric": "hit@5"}],
        "averages": [{"id": "avg10", "rows": ["mbeir.cirr.it2i", "mbeir.webqa.t2t"], "metric": "hit@10"}],
        "runs": [{"name": "m", "model": "m"}],
    }))  # fmt: skip
    table = build_table(load_leaderboard(spec_path), tmp_path)
    assert table.values.at["avg10", "m"] == 1.0
    assert "| avg10 | hit@10 | 100.00 |" in render(table, "md")
