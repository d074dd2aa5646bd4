"""`mbench plot`: the PNGs exist, and the figures hold one bar per present cell and one marker per published value."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fake_results import write_result

from mbench.cli import main
from mbench.reporting.leaderboard import load_leaderboard
from mbench.reporting.plots import bar_figure, modality_figure, modality_left_out
from mbench.reporting.tables import adhoc_leaderboard, build_table

REPO = Path(__file__).resolve().parents[1]
TABLE1 = REPO / "leaderboards" / "mm-embed-table1.yaml"
TABLE2 = REPO / "leaderboards" / "mm-embed-table2.yaml"


def _table1_results(root: Path) -> None:
    """CLIP-SF on all 16 M-BEIR tasks, MM-Embed on all but CIRR; both with modality accuracy."""
    spec = load_leaderboard(TABLE1)
    rng = np.random.default_rng(0)
    for model in ("clip-sf", "nvidia/MM-Embed"):
        for row in spec.rows:
            if not row.task.startswith("mbeir.") or (model == "nvidia/MM-Embed" and row.task == "mbeir.cirr.it2i"):
                continue
            hits = (rng.random(40) < 0.5).astype(float)
            write_result(root, model=model, task=row.task, pool="global",
                         per_query={"hit@1": hits, "hit@5": hits, "hit@10": hits, "modality_acc@1": np.ones(40)},
                         main_metric=row.metric)  # fmt: skip


def _bars(ax) -> list:  # noqa: ANN001 - a matplotlib Axes
    from matplotlib.patches import Rectangle

    return [p for p in ax.patches if isinstance(p, Rectangle)]


def _marker_count(ax) -> int:  # noqa: ANN001
    return sum(len(c.get_offsets()) for c in ax.collections)


def test_bar_figure_has_one_bar_per_result_and_one_marker_per_published_value(tmp_path: Path) -> None:
    _table1_results(tmp_path)
    table = build_table(load_leaderboard(TABLE1), tmp_path)
    fig = bar_figure(table)
    ax = fig.axes[0]
    assert len(_bars(ax)) == 16 + 15
    # Markers: the references paired with a run: rand_CLIPSF (16 tasks) and MM-Embed (16 tasks + MTEB).
    assert _marker_count(ax) == 16 + 17
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "CLIP-SF (ours)", "MM-Embed (ours)", "rand_CLIPSF (published)", "MM-Embed (published)",
    ]  # fmt: skip
    assert ax.get_ylabel() == "hit@5 (%), unless noted"
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert len(labels) == 17 and labels[2] == "1. Fashion200K (t→i) [hit@10]" and labels[0] == "1. VisualNews (t→i)"
    heights = sorted(p.get_height() for p in _bars(ax))
    assert 0 < heights[0] and heights[-1] <= 100


def test_modality_figure_bars_and_published_markers(tmp_path: Path) -> None:
    _table1_results(tmp_path)
    fig = modality_figure(build_table(load_leaderboard(TABLE1), tmp_path))
    assert fig is not None
    ax = fig.axes[0]
    assert len(_bars(ax)) == 16 + 15 and {p.get_height() for p in _bars(ax)} == {100.0}
    assert _marker_count(ax) == 0  # Table 1 publishes no modality accuracy
    # Table 2 does (M.A.@1 of rand_CLIPSF on MSCOCO t->i and i->t): markers on the CLIP-SF bars.
    fig2 = modality_figure(build_table(load_leaderboard(TABLE2), tmp_path))
    ax2 = fig2.axes[0]
    assert len(_bars(ax2)) == 4
    offsets = sorted(float(y) for c in ax2.collections for _, y in c.get_offsets())
    assert offsets == pytest.approx([92.6, 98.7])


def test_no_modality_figure_without_any_modality_accuracy(tmp_path: Path) -> None:
    write_result(tmp_path, model="minilm", task="mteb.scifact", pool="local", per_query={"ndcg@10": [0.5]},
                 main_metric="ndcg@10")  # fmt: skip
    table = build_table(load_leaderboard(REPO / "leaderboards" / "mteb-minilm.yaml"), tmp_path)
    assert modality_figure(table) is None


def test_plot_command_writes_pngs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _table1_results(tmp_path / "results")
    out = tmp_path / "figures"
    for spec in ("mm-embed-table1", "mm-embed-table2", "mm-embed-table4", "mm-embed-table9"):
        assert main(["plot", spec, "--results-dir", str(tmp_path / "results"), "--out", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == [
        "mm-embed-table1_bars.png", "mm-embed-table1_modality.png",
        "mm-embed-table2_bars.png", "mm-embed-table2_modality.png",
        "mm-embed-table4_bars.png", "mm-embed-table9_bars.png",
    ]  # fmt: skip
    for path in out.iterdir():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    printed = capsys.readouterr().out.split()
    assert str(out / "mm-embed-table1_bars.png") in printed


def test_modality_figure_leaves_out_tasks_whose_pool_has_one_modality(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Regression: text-only tasks got a lone 100% bar and no word of why.
    for task, counts in (("mbeir.webqa.t2t", {"text": 40}), ("mbeir.cirr.it2i", {"image": 30, "text": 10})):
        folder = write_result(tmp_path / "results", model="m", task=task, pool="local", main_metric="hit@5",
                              per_query={"hit@5": [1.0, 0.0], "modality_acc@1": [1.0, 0.0]})
        record = json.loads((folder / "result.json").read_text())
        record["pool_modalities"] = counts
        (folder / "result.json").write_text(json.dumps(record))
    write_result(tmp_path / "results", model="m", task="mteb.scifact", pool="local", main_metric="ndcg@10",
                 per_query={"ndcg@10": [0.5], "modality_acc@1": [1.0]})  # fmt: skip
    args = ["--tasks", "mbeir.webqa.t2t", "mbeir.cirr.it2i", "mteb.scifact", "--results-dir", str(tmp_path / "results")]
    table = build_table(adhoc_leaderboard(args[1:4], results_dir=tmp_path / "results"), tmp_path / "results")
    assert modality_left_out(table) == {
        "mbeir.webqa.t2t": "every candidate of its pool is text: modality_acc@1 is 100% by construction",
        "mteb.scifact": "its pool is text only: modality_acc@1 is 100% by construction",
    }
    ax = modality_figure(table).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["mbeir.cirr.it2i"]
    assert main(["plot", *args, "--out", str(tmp_path / "fig")]) == 0
    err = capsys.readouterr().err
    assert "modality figure leaves out mbeir.webqa.t2t: every candidate of its pool is text" in err
    assert "modality figure leaves out mteb.scifact: its pool is text only" in err


def test_no_modality_figure_when_every_pool_has_one_modality(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_result(tmp_path, model="m", task="mteb.scifact", pool="local", main_metric="ndcg@10",
                 per_query={"ndcg@10": [0.5], "modality_acc@1": [1.0]})  # fmt: skip
    assert main(["plot", "--tasks", "mteb.scifact", "--results-dir", str(tmp_path), "--out", str(tmp_path / "fig")]) == 0
    captured = capsys.readouterr()
    assert captured.out.split() == [str(tmp_path / "fig" / "adhoc_bars.png")]
    assert "no modality figure: no task of the table has a pool of several modalities" in captured.err
