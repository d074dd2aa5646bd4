"""`mbench report`: one self-contained HTML page comparing results: a sortable table with
significance marks, the plots, the worst queries of every task with their items, and the
provenance of every run."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mbench.errors import MbenchError

# Screen resolution: the page stays a few hundred kB; `mbench plot` writes print-quality PNGs.
REPORT_DPI = 110


@dataclass
class ReportOptions:
    """What a report shows and how."""

    limit: int | None = None
    baseline: str | None = None  # a run's label or model name; default: the first run
    worst: int = 5
    top: int = 5
    data_dir: Path | None = None
    cache_dir: Path | None = None
    tasks_dirs: Sequence[Path] = field(default_factory=tuple)
    decimals: int | None = None
    resamples: int = 10_000
    seed: int = 0


def build_report(paths: Sequence[Path], options: ReportOptions) -> tuple[str, list[str]]:
    """The HTML page of the results in ``paths``, and notes for the terminal."""
    from mbench import __version__
    from mbench.display import display_decimals
    from mbench.reporting.html.collect import find_results, report_table
    from mbench.reporting.html.drilldown import TaskDataCache, Thumbnails, worst_queries
    from mbench.reporting.html.page import ReportPage, render_page
    from mbench.reporting.tables import significance

    if options.worst < 1 or options.top < 1 or options.resamples < 1:
        raise MbenchError("--worst, --top and --resamples must be at least 1")
    table = report_table(find_results(paths), limit=options.limit, tasks_dirs=options.tasks_dirs)
    page = ReportPage(table=table, decimals=display_decimals(options.decimals), worst=options.worst,
                      generated=datetime.datetime.now().astimezone().isoformat(timespec="seconds"), version=__version__)
    notes = list(table.notes)
    if len(table.spec.runs) > 1:
        page.baseline = _baseline(table, options.baseline)
        problems: list[str] = []
        page.p_values = significance(table, page.baseline, n_resamples=options.resamples, seed=options.seed,
                                     problems=problems)
        page.significance_note = (f"Significance against {table.column_label(page.baseline)}: {options.resamples} "
                                  f"permutations, seed {options.seed}; hover a mark for its p-value.")
        notes += problems
    page.figures, page.figure_notes = _figures(table)
    notes += page.figure_notes
    cache, thumbnails = TaskDataCache(options.data_dir, options.cache_dir, options.tasks_dirs), Thumbnails()
    for (row_key, column), found in table.results.items():
        page.drilldowns[(row_key, column)] = worst_queries(found, cache, thumbnails, worst=options.worst, top=options.top)
    notes += sorted({v.note for v in page.drilldowns.values() if v.note})
    return render_page(page), notes


def _baseline(table, wanted: str | None) -> str:
    """The run column significance is tested against: the first run, or the one named by label or model."""
    if wanted is None:
        return table.spec.runs[0].name
    for run in table.spec.runs:
        if wanted in (run.name, run.label, run.model):
            return run.name
    labels = ", ".join(run.label for run in table.spec.runs)
    raise MbenchError(f"--baseline {wanted!r}: no such run (runs: {labels})")


def _figures(table) -> tuple[list, list[str]]:
    """The bar and modality figures as PNGs (none without matplotlib, said in a note)."""
    from mbench.reporting.html.page import Figure
    from mbench.reporting.plots import bar_figure, figure_png, modality_figure, modality_left_out

    try:
        bars = bar_figure(table)
    except MbenchError as err:  # matplotlib is an extra
        return [], [f"no plots: {err}"]
    figures = [Figure(title="Main metric per task", png=figure_png(bars, dpi=REPORT_DPI))]
    modality = modality_figure(table)
    if modality is not None:
        figures.append(Figure(title="Modality accuracy (tasks whose pool mixes modalities)",
                              png=figure_png(modality, dpi=REPORT_DPI)))
    return figures, [f"modality figure leaves out {task}: {why}" for task, why in modality_left_out(table).items()]
