"""The report as one self-contained HTML page: inline CSS, JavaScript and images, nothing fetched."""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from mbench.reporting.html.drilldown import Drilldown, QueryView, ShownItem
from mbench.reporting.result_index import FoundResult
from mbench.reporting.tables import SIGNIFICANCE_MARK, Table, layout


@dataclass
class Figure:
    """A plot embedded in the page."""

    title: str
    png: bytes
    caption: str = ""


@dataclass
class ReportPage:
    """Everything the page shows."""

    table: Table
    decimals: int
    baseline: str | None = None  # run column name
    p_values: dict[tuple[str, str], float] = field(default_factory=dict)
    significance_note: str = ""
    figures: list[Figure] = field(default_factory=list)
    figure_notes: list[str] = field(default_factory=list)
    drilldowns: dict[tuple[str, str], Drilldown] = field(default_factory=dict)  # (row id, column name)
    worst: int = 5
    generated: str = ""
    version: str = ""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def anchor(row_key: str) -> str:
    """The element id of a task's drill-down section."""
    return "task-" + re.sub(r"[^A-Za-z0-9_-]", "-", row_key)


def render_page(page: ReportPage) -> str:
    """The whole page."""
    table = page.table
    title = "mbench report" + (f" (PARTIAL: --limit {table.limit})" if table.limit is not None else "")
    css = resources.files("mbench.reporting.html").joinpath("report.css").read_text(encoding="utf-8")
    script = resources.files("mbench.reporting.html").joinpath("report.js").read_text(encoding="utf-8")
    runs, tasks = len(table.spec.runs), sum(1 for kind in table.row_kinds.values() if kind == "task")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>\n{css}</style>",
        "</head><body>",
        '<header class="page">',
        f"<h1>{_e(title)}</h1>",
        f"<p>{runs} run(s) on {tasks} task(s); generated {_e(page.generated)} by mbench {_e(page.version)}</p>",
        "</header>",
        '<nav class="toc"><a href="#comparison-section">Comparison</a><a href="#plots">Plots</a>'
        '<a href="#drilldown">Worst queries</a><a href="#provenance">Provenance</a></nav>',
        "<main>",
    ]
    if table.limit is not None:
        parts.append(f'<div class="partial-banner">Partial results: every run here is `mbench run --limit {table.limit}` '
                     "(a seeded sample of queries and candidates per task): not comparable with full results.</div>")
    parts += _comparison(page)
    parts += _plots(page)
    parts += _drilldown_sections(page)
    parts += _provenance(page)
    parts += ["</main>", f"<script>\n{script}</script>", "</body></html>"]
    return "\n".join(parts) + "\n"


def _comparison(page: ReportPage) -> list[str]:
    table = page.table
    shown = layout(table, delta=False, p_values=page.p_values if page.baseline else None, baseline=page.baseline,
                   decimals=page.decimals)
    columns = list(table.values.columns)
    out = ['<h2 id="comparison-section">Comparison</h2>', '<div class="table-wrap">',
           '<table class="comparison" id="comparison">', "<thead><tr>"]
    for position, header in enumerate(shown.header):
        kind = ' class="text"' if position < 2 else ""
        out.append(f'<th scope="col"{kind} title="sort by this column">{_e(header)}</th>')
    out.append("</tr></thead>")
    keys = list(table.values.index)
    n_tasks = shown.first_average if shown.first_average is not None else len(keys)
    for group, start, stop in (("tasks", 0, n_tasks), ("averages", n_tasks, len(keys))):
        if start == stop:
            continue
        out.append(f'<tbody class="{group}">')
        for key, cells in zip(keys[start:stop], shown.rows[start:stop]):
            label = _e(cells[0].text)
            if group == "tasks":
                label = f'<a href="#{anchor(key)}">{label}</a>'
            row = [f'<th scope="row" class="rowhead">{label}</th>', f'<td class="text">{_e(cells[1].text)}</td>']
            for name, cell in zip(columns, cells[2:]):
                value = table.values.at[key, name]
                data_value = "" if math.isnan(value) else repr(float(value))
                classes = " ".join(c for c in ("best" if cell.bold else "", "missing" if cell.missing else "") if c)
                text = _e(cell.text)
                if cell.marked:
                    p = page.p_values.get((key, name))
                    text += f'<sup class="sig" title="p = {p:.4g} vs {_e(table.column_label(page.baseline))}">{SIGNIFICANCE_MARK}</sup>'
                row.append(f'<td data-value="{data_value}"' + (f' class="{classes}"' if classes else "") + f">{text}</td>")
            out.append("<tr>" + "".join(row) + "</tr>")
        out.append("</tbody>")
    out += ["</table>", "</div>", '<ul class="footnotes">']
    out += [f"<li>{_e(note)}</li>" for note in shown.footnotes]
    if page.significance_note:
        out.append(f"<li>{_e(page.significance_note)}</li>")
    out.append("</ul>")
    return out


def _plots(page: ReportPage) -> list[str]:
    import base64

    out = ['<h2 id="plots">Plots</h2>']
    for figure in page.figures:
        uri = "data:image/png;base64," + base64.b64encode(figure.png).decode()
        out.append(f'<figure><img src="{uri}" alt="{_e(figure.title)}">'
                   f"<figcaption>{_e(figure.caption or figure.title)}</figcaption></figure>")
    if page.figure_notes:
        out.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in page.figure_notes) + "</ul>")
    return out


def _drilldown_sections(page: ReportPage) -> list[str]:
    table = page.table
    out = ['<h2 id="drilldown">Worst queries per task</h2>',
           f"<p>For each task and run, the {page.worst} queries with the lowest value of the task's main metric "
           "(ties by query id): the query, the top retrieved items (green: relevant) and the gold items.</p>",
           '<p class="controls"><button type="button" class="toggle-all" data-open="1">Expand all</button>'
           '<button type="button" class="toggle-all" data-open="0">Collapse all</button></p>']
    for row in table.spec.rows:
        out.append(f'<section class="task" id="{anchor(row.key)}">')
        out.append(f"<h3>{_e(row.label)} <small>[{_e(table.spec.row_pool(row))}, {_e(row.metric)}]</small></h3>")
        for column in table.spec.runs:
            view = page.drilldowns.get((row.key, column.name))
            if view is None:
                continue
            summary = (f"{_e(table.column_label(column.name))}: worst {len(view.queries)} of {view.n_queries} "
                       f"queries by {_e(view.metric)}")
            out.append(f'<details class="run"><summary>{summary}</summary><div class="details-body">')
            if view.note:
                out.append(f'<p class="note">{_e(view.note)}</p>')
            out += [_query_html(query, view.metric, page.decimals) for query in view.queries]
            out.append("</div></details>")
        out.append("</section>")
    return out


def _query_html(query: QueryView, metric: str, decimals: int) -> str:
    from mbench.display import format_value

    head = (f'<div class="query-head"><div class="score">{_e(metric)}<br>{_e(format_value(query.value, decimals))}</div>'
            f'<div class="query-item"><div class="id">query {_e(query.qid)}</div>{_item_body(query.query)}</div></div>')
    retrieved = "".join(_item_html(item, rank) for rank, item in enumerate(query.retrieved, start=1))
    gold = "".join(_item_html(item, None) for item in query.gold)
    return (f'<div class="query" data-qid="{_e(query.qid)}">{head}<div class="strips">'
            f'<div class="strip retrieved"><div class="strip-label">top {len(query.retrieved)} retrieved</div>'
            f"{retrieved or '<em>nothing retrieved</em>'}</div>"
            f'<div class="strip gold"><div class="strip-label">gold ({len(query.gold)})</div>'
            f"{gold or '<em>no relevant item judged</em>'}</div></div></div>")


def _item_html(item: ShownItem, rank: int | None) -> str:
    classes = "item relevant" if item.relevant else "item"
    rank_html = f'<span class="rank">{rank}.</span>' if rank is not None else ""
    return f'<div class="{classes}" data-id="{_e(item.id)}">{rank_html}<span class="id">{_e(item.id)}</span>{_item_body(item)}</div>'


def _item_body(item: ShownItem) -> str:
    body = ""
    if item.thumbnail:
        body += f'<img src="{item.thumbnail}" alt="image of {_e(item.id)}">'
    if item.text:
        body += f'<div class="text" title="{_e(item.text)}">{_e(item.text)}</div>'
    if item.note:
        body += f'<div class="note">{_e(item.note)}</div>'
    return body


PROVENANCE_FIELDS: Sequence[tuple[str, Any]] = (
    ("created", lambda r: r.created),
    ("model", lambda r: _json({k: r.model.get(k) for k in ("name", "version", "revision", "fingerprint")})),
    ("run as", lambda r: r.requested_model),
    ("model args", lambda r: _json(r.model_args)),
    ("rerank", lambda r: None if r.rerank is None else _json(
        {"reranker": r.rerank.reranker.get("name"), "fingerprint": r.rerank.reranker.get("fingerprint"),
         "top_k": r.rerank.top_k, "prompt": r.rerank.prompt, "first_stage": r.rerank.first_stage})),
    ("instructions", lambda r: f"{r.instruction_policy} (seed {r.seed}): {_json(r.instructions)}"),
    ("prompt", lambda r: r.prompt),
    ("data", lambda r: r.dataset.get("source")),
    ("qrels", lambda r: "; ".join(f"{q['path']} (sha256 {str(q.get('sha256'))[:16]})"
                                  for q in (r.qrels or {}).get("files", [])) or None),
    ("partial sample", lambda r: _json({k: v for k, v in r.limit.items() if k != "query_ids"}) if r.limit else None),
    ("task spec sha256", lambda r: r.task_spec_hash),
    ("queries, depth", lambda r: f"{r.n_queries}, {r.depth}"),
    ("device, world size, search", lambda r: f"{r.device}, {r.world_size}, {r.search_backend}"),
    ("mbench, git", lambda r: f"{r.versions.get('mbench')}, {r.git_sha}"),
    ("libraries", lambda r: _json({k: v for k, v in r.versions.items() if v and k != "mbench"})),
    ("timings (s)", lambda r: _json(r.timings)),
)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=False)


def _provenance(page: ReportPage) -> list[str]:
    table = page.table
    out = ['<h2 id="provenance">Provenance</h2>', "<p>Where every number comes from: one block per run, one table per result.</p>"]
    by_column: dict[str, list[tuple[str, FoundResult]]] = {}
    for (row_key, column), found in table.results.items():
        by_column.setdefault(column, []).append((row_key, found))
    for column in table.spec.runs:
        entries = by_column.get(column.name, [])
        out.append(f'<details class="provenance" id="provenance-{_e(column.name)}"><summary>'
                   f"{_e(table.column_label(column.name))}: {len(entries)} result(s)</summary><div class=\"details-body\">")
        for row_key, found in entries:
            out.append(f"<h4>{_e(found.task)} [{_e(found.pool)}]</h4><table class=\"provenance\">")
            out.append(f"<tr><th>result folder</th><td>{_e(found.directory)}</td></tr>")
            for name, get in PROVENANCE_FIELDS:
                value = get(found.record)
                if value not in (None, "", "{}"):
                    out.append(f"<tr><th>{_e(name)}</th><td>{_e(value)}</td></tr>")
            out.append("</table>")
        out.append("</div></details>")
    return out

