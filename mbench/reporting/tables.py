"""Leaderboard spec + results directory -> a DataFrame of fractions -> markdown, LaTeX, CSV or HTML.

Cells hold fractions at full precision (NaN = missing). Rendering scales and rounds them
(`format` of the spec), writes missing cells explicitly, bolds the best value of a row, adds
`--delta` columns (run minus its reference) and marks cells that differ significantly from a
baseline column. When several results fit one cell the newest `created` is used and a note says so.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from mbench.display import display_decimals, format_value
from mbench.errors import MbenchError
from mbench.reporting.leaderboard import Leaderboard, NumberFormat, ReferenceColumn, Row, RunColumn, parse_leaderboard
from mbench.reporting.result_index import FoundResult, filter_results, newest, scan_results

FORMATS = ("md", "latex", "csv", "html")
MISSING = "–"
LATEX_MISSING = "--"
SIGNIFICANCE_MARK = "†"
SIGNIFICANCE_LEVEL = 0.05


@dataclass
class Table:
    """A filled leaderboard: fractions per (row or average id, column name), the results behind them, notes."""

    spec: Leaderboard
    values: pd.DataFrame
    row_kinds: dict[str, str]
    results: dict[tuple[str, str], FoundResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    limit: int | None = None  # N: the run columns hold partial results of `mbench run --limit N`
    average_cells: dict[str, str] = field(default_factory=dict)  # average id -> what its metric cell says
    average_note: str | None = None  # the footnote of averages over different metrics

    @property
    def run_names(self) -> list[str]:
        """Names of the run columns, in spec order."""
        return [c.name for c in self.spec.runs]

    @property
    def reference_names(self) -> list[str]:
        """Names of the reference columns, in spec order."""
        return [c.name for c in self.spec.references]

    def column_label(self, name: str) -> str:
        """The header of column `name` (a run column of partial results says so)."""
        for column in self.spec.runs:
            if column.name == name:
                return column.label if self.limit is None else f"{column.label} [partial: limit {self.limit}]"
        for column in self.spec.references:
            if column.name == name:
                return column.label
        raise KeyError(name)

    @property
    def partial_legend(self) -> list[str]:
        """The footnote every table of partial results carries."""
        if self.limit is None:
            return []
        return [f"PARTIAL: run columns hold `mbench run --limit {self.limit}` results (a seeded sample of "
                f"{self.limit} queries per task and the candidates they need): not comparable with full results."]


def _column_filter(row: Row, column: RunColumn) -> dict[str, object]:
    # The spec validator guarantees row and column never disagree, so either one's value is the filter.
    return {
        "kind": row.kind or column.kind or "retrieval",
        "reranker": row.reranker or column.reranker,
        "top_k": row.top_k or column.top_k,
    }


class _RunFiller:
    """Fills one run column: a cell per task row, group rows as means of their members."""

    def __init__(self, spec: Leaderboard, column: RunColumn, root: Path, results: list[FoundResult], index,
                 limit: int | None = None) -> None:
        self.spec, self.column, self.root, self.results, self.index = spec, column, root, results, index
        self.limit = limit
        self.chosen: dict[str, FoundResult] = {}
        self.ambiguous: list[str] = []
        self.lacking_metric: list[str] = []
        self.other_samples: dict[str, set[int | None]] = {}  # task -> limits of results not shown

    def value(self, row: Row) -> float:
        return self._task_or_group(row, row.task, ())

    def value_of_metric(self, row: Row, metric: str) -> float:
        """The row's task or group scored with ``metric`` instead of the row's own (an average's `metric`)."""
        return self._task_or_group(row.model_copy(update={"metric": metric}), row.task, ())

    def _task_or_group(self, row: Row, name: str, chain: tuple[str, ...]) -> float:
        if name in self.index.groups:
            # A group is the mean over its scored direct members (a member group counts once), as MTEB
            # averages CQADupStack; TaskIndex.scored_members is the one rule for which members count.
            values = [self._task_or_group(row, member, (*chain, name)) for member in self.index.scored_members(name)]
            return _mean_if_complete(values)
        selectors = dict(
            root=self.root,
            task=name,
            pool=self.spec.row_pool(row),
            model=self.column.model,
            fingerprint=self.column.fingerprint,
            **_column_filter(row, self.column),
        )
        matches = filter_results(self.results, limit=self.limit, **selectors)  # type: ignore[arg-type]
        if not matches:
            # Results of another sample (full vs --limit) are never shown here, but their existence is told.
            others = {
                found.record.limit_queries for found in self.results
                if found.record.limit_queries != self.limit
                and filter_results([found], limit=found.record.limit_queries, **selectors)  # type: ignore[arg-type]
            }
            if others:
                self.other_samples.setdefault(name, set()).update(others)
            return math.nan
        chosen = newest(matches)
        if len(matches) > 1:
            fingerprints = sorted({m.record.fingerprint[:12] for m in matches})
            self.ambiguous.append(f"{name} ({len(matches)} results, fingerprints {', '.join(fingerprints)})")
        if not chain:
            self.chosen[row.key] = chosen
        value = chosen.record.metrics.get(row.metric)
        if value is None:
            self.lacking_metric.append(f"{name} ({chosen.directory})")
            return math.nan
        return float(value)


def _mean_if_complete(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values and all(not math.isnan(v) for v in values) else math.nan


def _reference_values(spec: Leaderboard, reference: ReferenceColumn) -> dict[str, float]:
    out = {}
    for row in spec.rows:
        fraction = reference.fraction(row.key)
        out[row.key] = math.nan if fraction is None else fraction
    metric_of = {row.key: row.metric for row in spec.rows}
    for average in spec.averages:
        published = reference.fraction(average.id)
        # A published average is shown as printed (the paper averaged unrounded numbers); else computed
        # from the published rows, when they hold the metric averaged.
        computable = average.metric is None or all(metric_of[r] == average.metric for r in average.rows)
        computed = _mean_if_complete([out[r] for r in average.rows]) if computable else math.nan
        out[average.id] = published if published is not None else computed
    return out


def describe_averages(spec: Leaderboard, index) -> tuple[dict[str, str], str | None]:
    """Per average, what its metric cell says; and one footnote for the averages over different metrics."""
    rows = {row.key: row for row in spec.rows}
    cells: dict[str, str] = {}
    mixed_rows: dict[str, Row] = {}
    all_main = True
    for average in spec.averages:
        metrics = {rows[key].metric for key in average.rows}
        if average.metric is not None or len(metrics) == 1:
            cells[average.id] = average.metric or next(iter(metrics))
            continue
        for key in average.rows:
            row = rows[key]
            mixed_rows[key] = row
            members = index.expand([row.task]) if row.task in index.groups else [row.task]
            all_main &= all(index.task(m).main_metric == row.metric for m in members if m in index.tasks)
        cells[average.id] = None  # type: ignore[assignment]  # filled below, once all_main is known
    if not mixed_rows:
        return cells, None
    cell = f"{'main' if all_main else 'row'} metrics*"
    cells = {key: cell if value is None else value for key, value in cells.items()}
    by_metric: dict[str, list[str]] = {}
    for row in mixed_rows.values():
        by_metric.setdefault(row.metric, []).append(row.label)
    common = max(by_metric, key=lambda m: len(by_metric[m]))
    others = "; ".join(f"{m} for {', '.join(labels)}" for m, labels in by_metric.items() if m != common)
    what = "each task's main metric" if all_main else "each row's metric"
    return cells, (f"* The mean of {what} ({common}; {others}), as the MM-Embed paper averages; a single-metric "
                   "mean: --mean-metric M, or `metric:` in a spec's average.")


def build_table(
    spec: Leaderboard, results_dir: Path, *, tasks_dirs: Iterable[str | Path] = (), limit: int | None = None
) -> Table:
    """Fill `spec` from the results under `results_dir` (and the columns' own `results_dir`): full
    results, or with ``limit`` the partial results of `mbench run --limit N`."""
    from mbench.tasks.index import get_index

    index = get_index(tasks_dirs)
    scanned: dict[Path, list[FoundResult]] = {}
    columns: dict[str, dict[str, float]] = {}
    chosen: dict[tuple[str, str], FoundResult] = {}
    notes: list[str] = []
    for column in spec.runs:
        root = Path(column.results_dir) if column.results_dir is not None else Path(results_dir)
        if root not in scanned:
            scanned[root] = scan_results(root)
        filler = _RunFiller(spec, column, root, scanned[root], index, limit)
        cells = {row.key: filler.value(row) for row in spec.rows}
        rows_by_key = {row.key: row for row in spec.rows}
        for average in spec.averages:
            if average.metric is None:
                cells[average.id] = _mean_if_complete([cells[r] for r in average.rows])
            else:
                cells[average.id] = _mean_if_complete(
                    [filler.value_of_metric(rows_by_key[r], average.metric) for r in average.rows])
        columns[column.name] = cells
        chosen.update({(key, column.name): found for key, found in filler.chosen.items()})
        if filler.ambiguous:
            notes.append(
                f"column {column.label!r}: several results matched {len(filler.ambiguous)} cell(s); the newest "
                f"`created` was used: {'; '.join(filler.ambiguous)}"
            )
        if filler.lacking_metric:
            notes.append(f"column {column.label!r}: result lacks the row's metric: {'; '.join(filler.lacking_metric)}")
        for task, limits in filler.other_samples.items():
            shown = ", ".join("full results (omit --limit)" if n is None else f"partial results (--limit {n})"
                              for n in sorted(limits, key=lambda n: -1 if n is None else n))
            notes.append(f"column {column.label!r}: {task} has only {shown}; they are not mixed into this table")
    for reference in spec.references:
        columns[reference.name] = _reference_values(spec, reference)
    keys = [row.key for row in spec.rows] + [a.id for a in spec.averages]
    values = pd.DataFrame(
        {name: [cells[k] for k in keys] for name, cells in columns.items()}, index=pd.Index(keys, name="row"), dtype=float
    )
    # References first (the published numbers), then the runs: "ours" reads as the last columns.
    values = values[[*[c.name for c in spec.references], *[c.name for c in spec.runs]]]
    row_kinds = {row.key: ("group" if row.task in index.groups else "task") for row in spec.rows}
    row_kinds.update({a.id: "average" for a in spec.averages})
    average_cells, average_note = describe_averages(spec, index)
    return Table(spec=spec, values=values, row_kinds=row_kinds, results=chosen, notes=notes, limit=limit,
                 average_cells=average_cells, average_note=average_note)


def delta_columns(table: Table) -> pd.DataFrame:
    """Each run column that names a reference, minus that reference (fractions; NaN where either is missing)."""
    out = {}
    for run in table.spec.runs:
        if run.reference is not None:
            out[run.name] = table.values[run.name] - table.values[run.reference]
    if not out:
        raise MbenchError(
            f"--delta: no run column of {table.spec.name!r} names a `reference` column to subtract"
        )
    return pd.DataFrame(out, index=table.values.index)


def significance(
    table: Table, baseline: str, *, n_resamples: int = 10_000, seed: int = 0, problems: list[str] | None = None
) -> dict[tuple[str, str], float]:
    """Sign-flip p-values of every run cell against the baseline run column, on task rows with both results.

    A pair that cannot be tested (scored on different queries, say) raises, or with ``problems``
    given is left unmarked and described there.
    """
    from mbench.reporting.stats import paired_values, sign_flip_p_value

    names = {c.name: c.name for c in table.spec.runs} | {c.label: c.name for c in table.spec.runs}
    if baseline not in names:
        raise MbenchError(
            f"--significance {baseline!r}: not a run column of {table.spec.name!r} "
            f"(run columns: {', '.join(table.run_names) or 'none'}); reference columns have no per-query scores"
        )
    baseline = names[baseline]
    p_values: dict[tuple[str, str], float] = {}
    for row in table.spec.rows:
        base = table.results.get((row.key, baseline))
        if base is None or table.row_kinds[row.key] != "task":
            continue
        for run in table.run_names:
            other = table.results.get((row.key, run))
            if run == baseline or other is None or math.isnan(table.values.at[row.key, run]):
                continue
            try:
                _, values_base, values_other = paired_values(base, other, row.metric)
            except MbenchError as err:
                if problems is None:
                    raise
                problems.append(f"{row.label}, {table.column_label(run)}: no significance test: {err}")
                continue
            p_values[(row.key, run)] = sign_flip_p_value(values_other - values_base, n_permutations=n_resamples, seed=seed)
    return p_values


# ---------------------------------------------------------------- rendering


def format_number(value: float, number_format: NumberFormat, *, signed: bool = False, decimals: int | None = None) -> str:
    """A fraction as shown (mbench.display's rule): scaled, rounded; signed values get + or - (a rounded zero gets neither)."""
    shown = display_decimals(decimals, number_format.decimals)
    return format_value(value, shown, scale=number_format.scale, signed=signed)


@dataclass
class Cell:
    """One rendered cell: its text and how it is marked."""

    text: str
    bold: bool = False
    marked: bool = False
    missing: bool = False


@dataclass
class Layout:
    """The rendered table independent of format: header, body rows, where averages start, footnotes."""

    header: list[str]
    rows: list[list[Cell]]
    first_average: int | None
    legend: list[str]
    sources: list[str]
    notes: list[str]

    @property
    def footnotes(self) -> list[str]:
        """Legend, sources and notes, in that order."""
        return [*self.legend, *self.sources, *self.notes]


def layout(
    table: Table, *, delta: bool, p_values: dict[tuple[str, str], float] | None, baseline: str | None,
    decimals: int | None = None,
) -> Layout:
    """The table's cells as shown (rounded, best bold, significance marked) and its footnotes, for any format."""
    spec, fmt = table.spec, table.spec.format
    decimals = display_decimals(decimals, fmt.decimals)
    deltas = delta_columns(table) if delta else None
    header = ["Task", "Metric"]
    order: list[tuple[str, str]] = []  # (kind, column name) with kind value|delta
    for name in table.values.columns:
        header.append(table.column_label(name))
        order.append(("value", name))
        if deltas is not None and name in deltas.columns:
            run = next(c for c in spec.runs if c.name == name)
            header.append(f"Δ vs {table.column_label(run.reference)}")  # type: ignore[arg-type]
            order.append(("delta", name))
    labels = {row.key: (row.label, row.metric) for row in spec.rows}
    labels.update({a.id: (a.label, table.average_cells.get(a.id, "mean")) for a in spec.averages})
    rows = []
    for key in table.values.index:
        value_row = table.values.loc[key]
        shown = {
            name: format_number(v, fmt, decimals=decimals) for name, v in value_row.items() if not math.isnan(v)
        }
        best = None
        if len(shown) >= 2:
            # Bold what the reader sees as best: ties after rounding are all bold.
            best = max(float(t) for t in shown.values())
        label, metric = labels[key]
        cells = [Cell(label), Cell(metric)]
        for kind, name in order:
            if kind == "value":
                if name not in shown:
                    cells.append(Cell(MISSING, missing=True))
                    continue
                marked = bool(p_values) and p_values.get((key, name), 1.0) < SIGNIFICANCE_LEVEL
                cells.append(Cell(shown[name], bold=best is not None and float(shown[name]) == best, marked=marked))
            else:
                d = deltas.at[key, name]  # type: ignore[union-attr]
                cells.append(Cell(MISSING, missing=True) if math.isnan(d) else Cell(format_number(d, fmt, signed=True, decimals=decimals)))
        rows.append(cells)
    legend = [f"Values x{fmt.scale:g}, {decimals} decimal(s); {MISSING} = no result; best of each row in bold.",
              *table.partial_legend]
    if p_values is not None and baseline is not None:
        legend.append(
            f"{SIGNIFICANCE_MARK} differs from {table.column_label(baseline) if baseline in table.run_names else baseline} "
            f"with p < {SIGNIFICANCE_LEVEL} (paired sign-flip randomisation test over queries)."
        )
    by_source: dict[str, list[str]] = {}
    for reference in spec.references:
        where = f"{reference.source.paper}, {reference.source.table}"
        named = reference.label if reference.label == reference.source.column else (
            f"{reference.label} = {reference.source.column!r}"
        )
        by_source.setdefault(where, []).append(named)
    sources = [f"Reference numbers: {where}: {'; '.join(cols)}." for where, cols in by_source.items()]
    first_average = len(spec.rows) if spec.averages else None
    legend += [table.average_note] if table.average_note else []
    return Layout(header, rows, first_average, legend, sources, list(table.notes))


def render(
    table: Table,
    fmt: str = "md",
    *,
    delta: bool = False,
    p_values: dict[tuple[str, str], float] | None = None,
    baseline: str | None = None,
    decimals: int | None = None,
) -> str:
    """The table as markdown, LaTeX (booktabs), CSV (full-precision fractions) or HTML (``decimals``: --decimals)."""
    if fmt == "csv":
        return render_csv(table, delta=delta, p_values=p_values)
    shown = layout(table, delta=delta, p_values=p_values, baseline=baseline, decimals=decimals)
    if fmt == "md":
        return _render_md(table, shown)
    if fmt == "latex":
        return _render_latex(table, shown)
    if fmt == "html":
        return _render_html(table, shown)
    raise MbenchError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")


def _render_md(table: Table, shown: Layout) -> str:
    def cell_text(cell: Cell) -> str:
        text = f"**{cell.text}**" if cell.bold else cell.text
        text = text + SIGNIFICANCE_MARK if cell.marked else text
        return text.replace("|", "\\|")

    lines = []
    if table.spec.title:
        lines += [f"**{table.spec.title}**", ""]
    lines.append("| " + " | ".join(h.replace("|", "\\|") for h in shown.header) + " |")
    lines.append("|" + "|".join([":---", ":---"] + ["---:"] * (len(shown.header) - 2)) + "|")
    for cells in shown.rows:
        lines.append("| " + " | ".join(cell_text(c) for c in cells) + " |")
    lines.append("")
    lines += [f"- {note}" for note in shown.footnotes]
    return "\n".join(lines) + "\n"


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "–": "--",
    "—": "---",
    "→": r"$\rightarrow$",
    "×": r"$\times$",
    "Δ": r"$\Delta$",
    "†": r"$^\dagger$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
}


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX tabular (specials escaped, a few common Unicode symbols spelled out)."""
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def _render_latex(table: Table, shown: Layout) -> str:
    def cell_text(cell: Cell) -> str:
        if cell.missing:
            return LATEX_MISSING
        text = latex_escape(cell.text)
        text = rf"\textbf{{{text}}}" if cell.bold else text
        return text + r"$^\dagger$" if cell.marked else text

    n_cols = len(shown.header)
    lines = [f"% {table.spec.title or table.spec.name} -- generated by `mbench table`; needs \\usepackage{{booktabs}}"]
    lines += [f"% {note}" for note in shown.notes]
    lines.append(r"\begin{tabular}{ll" + "r" * (n_cols - 2) + "}")
    lines.append(r"\toprule")
    lines.append(" & ".join(latex_escape(h) for h in shown.header) + r" \\")
    lines.append(r"\midrule")
    for position, cells in enumerate(shown.rows):
        if position == shown.first_average:
            lines.append(r"\midrule")
        lines.append(" & ".join(cell_text(c) for c in cells) + r" \\")
    lines.append(r"\bottomrule")
    # The legend travels with the table so a pasted tabular never loses what the marks mean.
    for note in [*shown.legend, *shown.sources]:
        lines.append(rf"\multicolumn{{{n_cols}}}{{l}}{{\footnotesize {latex_escape(note)}}} \\")
    lines.append(r"\end{tabular}")
    return "\n".join(lines) + "\n"


def _render_html(table: Table, shown: Layout) -> str:
    def cell_html(cell: Cell, tag: str) -> str:
        text = html.escape(cell.text)
        text = f"<b>{text}</b>" if cell.bold else text
        text = f"{text}<sup>{SIGNIFICANCE_MARK}</sup>" if cell.marked else text
        return f"<{tag}>{text}</{tag}>"

    lines = ["<table>"]
    if table.spec.title:
        lines.append(f"<caption>{html.escape(table.spec.title)}</caption>")
    lines.append("<thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in shown.header) + "</tr></thead>")
    lines.append("<tbody>")
    for position, cells in enumerate(shown.rows):
        css = ' class="average"' if shown.first_average is not None and position >= shown.first_average else ""
        lines.append(f"<tr{css}>" + cell_html(cells[0], "th") + "".join(cell_html(c, "td") for c in cells[1:]) + "</tr>")
    lines.append("</tbody>")
    lines.append(
        f'<tfoot><tr><td colspan="{len(shown.header)}">'
        + "<br>".join(html.escape(n) for n in shown.footnotes)
        + "</td></tr></tfoot>"
    )
    lines.append("</table>")
    return "\n".join(lines) + "\n"


def csv_frame(
    table: Table, *, delta: bool = False, p_values: dict[tuple[str, str], float] | None = None
) -> pd.DataFrame:
    """The table as a flat DataFrame of fractions at full precision, one line per row or average."""
    spec = table.spec
    meta = {row.key: (row.label, row.task, row.metric, spec.row_pool(row)) for row in spec.rows}
    meta.update({a.id: (a.label, "", table.average_cells.get(a.id, "mean").rstrip("*"), "") for a in spec.averages})
    frame = pd.DataFrame(
        {
            "row": list(table.values.index),
            "label": [meta[k][0] for k in table.values.index],
            "kind": [table.row_kinds[k] for k in table.values.index],
            "task": [meta[k][1] for k in table.values.index],
            "metric": [meta[k][2] for k in table.values.index],
            "pool": [meta[k][3] for k in table.values.index],
        }
    )
    for name in table.values.columns:
        frame[name] = table.values[name].to_numpy()
    if delta:
        for name, column in delta_columns(table).items():
            frame[f"delta:{name}"] = column.to_numpy()
    if p_values is not None:
        for name in table.run_names:
            frame[f"p:{name}"] = [p_values.get((k, name), math.nan) for k in table.values.index]
    if table.limit is not None:
        frame["partial_limit"] = table.limit  # the run columns are `mbench run --limit N` samples
    return frame


def render_csv(
    table: Table, *, delta: bool = False, p_values: dict[tuple[str, str], float] | None = None
) -> str:
    """CSV of fractions: full precision (repr of each float), empty where missing."""
    return csv_frame(table, delta=delta, p_values=p_values).to_csv(index=False)


# ---------------------------------------------------------------- ad-hoc tables


def adhoc_leaderboard(
    tasks: Sequence[str],
    *,
    results_dir: Path,
    models: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    pool: str | None = None,
    tasks_dirs: Iterable[str | Path] = (),
    limit: int | None = None,
    mean_metric: str | None = None,
) -> Leaderboard:
    """A leaderboard for `mbench table --tasks ... --models ... --metric ...` (no spec file), over full
    results or, with ``limit``, the partial ones of `mbench run --limit N`. Its Mean row averages the
    rows (each task's main metric unless --metric), or ``mean_metric`` of every task."""
    from mbench.reporting.result_index import model_dir_name
    from mbench.tasks.index import get_index

    index = get_index(tasks_dirs)
    task_names = index.expand(tasks)
    found = [f for f in scan_results(Path(results_dir)) if f.record.limit_queries == limit]
    if not models:
        models = sorted({f.record.model_name for f in found if f.task in task_names})
        if not models:
            partial = sorted({f.record.limit_queries for f in scan_results(Path(results_dir))
                              if f.task in task_names and f.record.limit_queries})
            hint = f" (partial results exist: pass --limit {partial[0]} to show them)" if partial and limit is None else ""
            raise MbenchError(
                f"no {'partial (--limit ' + str(limit) + ') ' if limit else ''}results for {', '.join(tasks)} under "
                f"{results_dir}{hint}; pass --results-dir or run them")
    rows = []
    for task_name in task_names:
        spec = index.task(task_name)
        if not spec.scored:
            continue
        row_pool = pool
        if row_pool is None:
            pools = sorted(
                {f.pool for f in found if f.task == task_name and (f.record.model_name in models or model_dir_name(f, Path(results_dir)) in models)}
            )
            if len(pools) > 1:
                raise MbenchError(f"{task_name}: results exist for pools {', '.join(pools)}; choose one with --pool")
            row_pool = pools[0] if pools else ("local" if "local" in spec.pools else next(iter(spec.pools)))
        for metric in metrics or [spec.main_metric]:
            rows.append(
                {
                    "id": task_name if not metrics or len(metrics) == 1 else f"{task_name}:{metric}",
                    "task": task_name,
                    "metric": metric,
                    "pool": row_pool,
                }
            )
    if not rows:
        raise MbenchError(f"no scored task among {', '.join(tasks)}")
    averages = []
    if mean_metric is not None:
        lacking = [r["task"] for r in rows if mean_metric not in index.task(r["task"]).metrics]
        if lacking:
            raise MbenchError(f"--mean-metric {mean_metric}: not computed by {', '.join(dict.fromkeys(lacking))}")
        first_row_of_task: dict[str, str] = {}
        for row in rows:
            first_row_of_task.setdefault(row["task"], row["id"])
        averages = [{"id": "mean", "rows": list(first_row_of_task.values()), "display": f"Mean {mean_metric}",
                     "metric": mean_metric}]
    elif len(rows) > 1 and (not metrics or len(metrics) == 1):
        # One row per task: its main metric (mixed ones are footnoted) or the one --metric.
        averages = [{"id": "mean", "rows": [r["id"] for r in rows], "display": "Mean"}]
    data = {
        "name": "adhoc",
        "rows": rows,
        "averages": averages,
        "runs": [{"name": _column_name(m), "display": m, "model": m} for m in models],
    }
    from mbench.reporting.leaderboard import check_tasks

    leaderboard = parse_leaderboard(data, "mbench table --tasks")
    check_tasks(leaderboard, "mbench table --tasks", tasks_dirs)
    return leaderboard


def _column_name(model: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.\-+@]", "_", model) or "model"
