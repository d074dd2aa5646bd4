"""Figures of a filled leaderboard: grouped bars per task with published numbers as markers, and modality accuracy.

matplotlib (Agg backend) is imported only here and only when a figure is drawn. Sizes are for a
paper: 7 inches wide (a two-column figure), 7-8 pt text, 200 dpi.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mbench.errors import MbenchError
from mbench.reporting.leaderboard import Leaderboard
from mbench.reporting.tables import Table, build_table

PAPER_WIDTH_IN = 7.0
DPI = 200
_REFERENCE_MARKERS = ("D", "^", "v", "s", "P", "X", "o", "*", "<", ">")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise MbenchError("plots need matplotlib: pip install 'mbench[plot]'") from None

    matplotlib.use("Agg")  # headless: never needs a display
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 7,
            "axes.titlesize": 8,
            "axes.labelsize": 7,
            "xtick.labelsize": 6.5,
            "ytick.labelsize": 6.5,
            "legend.fontsize": 6.5,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )
    return plt


def _scale_label(scale: float) -> str:
    return "%" if scale == 100 else f"x{scale:g}"


def _grouped_bars(
    ax: Any,
    labels: list[str],
    runs: list[tuple[str, list[float]]],
    references: list[tuple[str, list[float], str]],
    *,
    scale: float,
    colours: list[int] | None = None,
) -> None:
    """Bars for every run (NaN: no bar) and, on each run's bar, a marker at its reference's published value.

    ``colours``: each run's colour number (default: its position), so a run keeps its colour across figures.
    """
    from matplotlib.patches import Patch

    colours = colours if colours is not None else list(range(len(runs)))
    n_groups, n_runs = len(labels), max(1, len(runs))
    width = min(0.8 / n_runs, 0.3)
    offsets = [(i - (n_runs - 1) / 2) * width for i in range(n_runs)]
    for i, (name, values) in enumerate(runs):
        xs = [g + offsets[i] for g in range(n_groups) if not math.isnan(values[g])]
        heights = [values[g] * scale for g in range(n_groups) if not math.isnan(values[g])]
        colour = f"C{colours[i] % 10}"
        if xs:
            ax.bar(xs, heights, width=width * 0.92, label=name, color=colour, zorder=2)
        else:
            # An empty bar call gets a default-coloured legend entry; say plainly there is nothing yet.
            _no_result_handles(ax).append(Patch(facecolor=colour, alpha=0.35, label=f"{name}: no results yet"))
    run_index = {name: i for i, (name, _) in enumerate(runs)}
    for j, (name, values, paired_run) in enumerate(references):
        offset = offsets[run_index[paired_run]]
        xs = [g + offset for g in range(n_groups) if not math.isnan(values[g])]
        ys = [values[g] * scale for g in range(n_groups) if not math.isnan(values[g])]
        ax.scatter(
            xs,
            ys,
            marker=_REFERENCE_MARKERS[j % len(_REFERENCE_MARKERS)],
            s=20,
            facecolor="white",
            edgecolor="black",
            linewidth=0.9,
            label=f"{name} (published)",
            zorder=3,
        )
    ax.set_xticks(range(n_groups))
    # One line per label, rotated and anchored at its tick: wrapped labels collide when rotated.
    ax.set_xticklabels(labels, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_xlim(-0.6, n_groups - 0.4)
    ax.set_ylim(bottom=0)  # bars start at zero; so must the axis when only markers are drawn
    ax.grid(axis="y", linewidth=0.4, alpha=0.5, zorder=0)
    ax.set_axisbelow(True)


def _no_result_handles(ax: Any) -> list[Any]:
    """Legend entries of runs without any bar, kept on the axes until the legend is drawn."""
    if not hasattr(ax, "_mbench_no_result_handles"):
        ax._mbench_no_result_handles = []
    return ax._mbench_no_result_handles


def _paired_references(spec: Leaderboard) -> list[tuple[str, str]]:
    """(reference column name, run label) for every run that names a reference: the markers drawn.

    References no run is compared with are left out: eight published columns as markers on two
    bars would hide the comparison the figure is for.
    """
    return [(run.reference, run.label) for run in spec.runs if run.reference is not None]


def _legend(ax: Any) -> int:
    """A legend above the axes (never over the bars); returns how many lines it takes."""
    from matplotlib.container import BarContainer
    from matplotlib.patches import Patch

    handles, labels = ax.get_legend_handles_labels()
    handles += _no_result_handles(ax)
    labels += [h.get_label() for h in _no_result_handles(ax)]
    # As many columns as fit the axes' width at 6.5 pt (about 100 characters across 7 inches).
    ncol = max(1, min(len(labels), 4, 100 // max(8, max((len(label) + 6 for label in labels), default=8))))
    # Runs (bars) first, then the published markers, whatever order matplotlib collected them in.
    order = sorted(range(len(handles)), key=lambda i: not isinstance(handles[i], (BarContainer, Patch)))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=ncol, frameon=False, handlelength=1.2, columnspacing=1.2)
    return math.ceil(len(labels) / ncol) if labels else 0


def bar_figure(table: Table) -> Any:
    """Grouped bars of the run columns per row, each run's reference as markers (a matplotlib Figure)."""
    from collections import Counter

    plt = _pyplot()
    spec = table.spec
    rows = spec.rows
    common_metric = Counter(row.metric for row in rows).most_common(1)[0][0]
    # Name the metric only where it is not the common one (Recall@10 rows among Recall@5 ones).
    labels = [row.label if row.metric == common_metric else f"{row.label} [{row.metric}]" for row in rows]
    keys = [row.key for row in rows]
    runs = [(run.label, [float(table.values.at[k, run.name]) for k in keys]) for run in spec.runs]
    references = [
        (spec.reference(ref).label, [float(table.values.at[k, ref]) for k in keys], run_label)
        for ref, run_label in _paired_references(spec)
    ]
    fig, ax = plt.subplots(figsize=(PAPER_WIDTH_IN, 3.2), dpi=DPI)
    _grouped_bars(ax, labels, runs, references, scale=spec.format.scale)
    unit = _scale_label(spec.format.scale)
    differs = any(row.metric != common_metric for row in rows)
    ax.set_ylabel(f"{common_metric} ({unit})" + (", unless noted" if differs else ""))
    legend_lines = _legend(ax)
    ax.set_title(spec.title or spec.name, loc="left", pad=8 + 11 * legend_lines)
    fig.tight_layout()
    return fig


MODALITY_METRIC = "modality_acc@1"


def single_modality_reason(found: Any, task_spec: Any) -> str | None:
    """Why modality accuracy is 100% by construction for this result (its pool has one modality), else None.

    Known from the pool's modality counts the result records, else from the task: a BEIR pool is
    text only, a union pool (M-BEIR global) mixes modalities; otherwise it cannot be told and the bar is drawn.
    """
    counts = found.record.pool_modalities
    if counts:
        return f"every candidate of its pool is {next(iter(counts))}" if len(counts) == 1 else None
    if task_spec is None:
        return None
    if task_spec.adapter == "beir":
        return "its pool is text only"
    return None


def _modality_groups(table: Table) -> dict[tuple[str, str], str]:
    """(task, pool) -> label of its first task row: one group of bars each, whatever metrics its rows show."""
    groups: dict[tuple[str, str], str] = {}
    for row in table.spec.rows:
        if table.row_kinds[row.key] == "task":
            groups.setdefault((row.task, table.spec.row_pool(row)), row.label)
    return groups


def _result_of(table: Table, run_name: str, task: str, pool: str) -> Any | None:
    return next((f for (_, name), f in table.results.items() if name == run_name and f.task == task and f.pool == pool),
                None)


def modality_left_out(table: Table, metric: str = MODALITY_METRIC) -> dict[str, str]:
    """Tasks (row labels) the modality figure leaves out, each with the reason."""
    from mbench.tasks.index import get_index

    index = get_index()
    left_out = {}
    for (task, pool), label in _modality_groups(table).items():
        results = [f for f in (_result_of(table, run.name, task, pool) for run in table.spec.runs) if f is not None]
        with_metric = [f for f in results if f.record.metrics.get(metric) is not None]
        task_spec = index.task(task) if task in index.tasks else None
        reasons = {single_modality_reason(f, task_spec) for f in with_metric}
        if results and not with_metric:
            left_out[label] = f"no {metric} in its results"
        elif with_metric and None not in reasons:
            left_out[label] = f"{sorted(reasons)[0]}: {metric} is 100% by construction"
    return left_out


def modality_figure(table: Table, metric: str = MODALITY_METRIC) -> Any | None:
    """Modality accuracy per task and pool for each run (bars) and published values (markers), over the tasks
    where it means something (see modality_left_out, noted under the axes); None when there is no such task."""
    plt = _pyplot()
    spec = table.spec
    left_out = modality_left_out(table, metric)
    groups = {key: label for key, label in _modality_groups(table).items() if label not in left_out}
    if not groups:
        return None
    runs = []
    for run in spec.runs:
        values = []
        for task, pool in groups:
            found = _result_of(table, run.name, task, pool)
            value = None if found is None else found.record.metrics.get(metric)
            values.append(math.nan if value is None else float(value))
        runs.append((run.label, values))
    # Published modality accuracies live in rows whose metric is this one (MM-Embed Table 2).
    metric_rows = {(row.task, spec.row_pool(row)): row.key for row in spec.rows if row.metric == metric}
    references = []
    for ref, run_label in _paired_references(spec):
        values = [float(table.values.at[metric_rows[g], ref]) if g in metric_rows else math.nan for g in groups]
        if not all(math.isnan(v) for v in values):
            references.append((spec.reference(ref).label, values, run_label))
    # A run with no modality accuracy and no published one beside it is no part of this figure.
    marked = {run_label for _, _, run_label in references}
    kept = [i for i, (label, values) in enumerate(runs) if label in marked or not all(math.isnan(v) for v in values)]
    runs = [runs[i] for i in kept]
    if not references and all(math.isnan(v) for _, values in runs for v in values):
        return None
    k = metric.split("@")[1]
    fig, ax = plt.subplots(figsize=(PAPER_WIDTH_IN, 3.2), dpi=DPI)
    _grouped_bars(ax, list(groups.values()), runs, references, scale=100.0, colours=kept)
    ax.set_ylim(0, 105)
    ax.set_ylabel(f"modality accuracy@{k} (%)")
    legend_lines = _legend(ax)
    ax.set_title(
        f"{spec.title or spec.name}\nModality accuracy: share of the top {k} in the task's candidate modality",
        loc="left",
        pad=8 + 11 * legend_lines,
    )
    fig.tight_layout()
    if left_out:
        import textwrap

        # Below the figure's box: the saved PNG (bbox_inches="tight") grows to hold it.
        note = "Left out: " + "; ".join(f"{task} ({why})" for task, why in left_out.items())
        fig.text(0.01, -0.01, textwrap.fill(note, 140), fontsize=6, va="top", ha="left", color="0.3")
    return fig


def figure_png(figure: Any, dpi: int = DPI) -> bytes:
    """A drawn figure as PNG bytes (for pages that embed it); the figure is closed."""
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    _pyplot().close(figure)
    return buffer.getvalue()


def plot_leaderboard(
    spec: Leaderboard, results_dir: Path, out_dir: Path, *, tasks_dirs: Iterable[str | Path] = ()
) -> list[Path]:
    """Write `<spec>_bars.png` and, when any modality accuracy is known, `<spec>_modality.png`; return the paths."""
    return plot_table(build_table(spec, results_dir, tasks_dirs=tasks_dirs), out_dir)[0]


def plot_table(table: Table, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Write the figures of a filled table; return the PNG paths and notes (tasks left out and why)."""
    plt = _pyplot()
    spec = table.spec
    left_out = modality_left_out(table)
    notes = [f"modality figure leaves out {task}: {why}" for task, why in left_out.items()]
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MbenchError(f"--out {out_dir}: cannot create the folder: {err}") from None
    written = []
    for suffix, fig in (("bars", bar_figure(table)), ("modality", modality_figure(table))):
        if fig is None:
            continue
        path = out_dir / f"{spec.name}_{suffix}.png"
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    if left_out and len(written) == 1:
        notes.append("no modality figure: no task of the table has a pool of several modalities")
    return written, notes
