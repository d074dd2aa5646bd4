"""The results a report shows, as a filled comparison table: one row per (task, pool), one column per run.

A run is what distinguishes results of one task: the model and its fingerprint, retrieval or a
rerank, the instruction policy, and the sample of a partial (--limit) result. Each cell holds the
result of that run on that task (its main metric); a run that has no result for a task shows a
missing cell.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mbench.errors import MbenchError
from mbench.reporting.leaderboard import parse_leaderboard
from mbench.reporting.result_index import FoundResult, load_found, scan_results
from mbench.results import result_exists
from mbench.reporting.tables import Table, describe_averages


@dataclass(frozen=True)
class RunKey:
    """What makes two results the same run of the report."""

    model: str
    fingerprint: str
    variant: str
    policy: str


def run_key(found: FoundResult) -> RunKey:
    """The run a result belongs to."""
    record = found.record
    policy = str(record.instruction_policy or "first")
    if policy == "seeded":
        policy = f"seeded-{record.seed or 0}"
    return RunKey(record.model_name, record.fingerprint, record.variant, policy)


def find_results(paths: Sequence[Path]) -> list[FoundResult]:
    """Every complete result in or under ``paths`` (result folders, model folders, results roots), each once."""
    found: dict[Path, FoundResult] = {}
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise MbenchError(f"{path} does not exist")
        results = scan_results(path) if not result_exists(path) else [load_found(path), *scan_results(path)]
        if not results:
            raise MbenchError(f"no result.json under {path}")
        for result in results:
            found.setdefault(result.directory.resolve(), result)
    return list(found.values())


def report_table(found: Sequence[FoundResult], *, limit: int | None = None, tasks_dirs: Sequence[Path] = ()) -> Table:
    """The comparison table of ``found`` (full results, or the --limit ``limit`` ones; the others are noted)."""
    import pandas as pd

    from mbench.tasks.index import get_index

    kept = [f for f in found if f.record.limit_queries == limit and f.record.metrics]
    notes = []
    skipped = len([f for f in found if f.record.limit_queries != limit])
    if skipped:
        notes.append(f"{skipped} result(s) of another sample left out ({'full' if limit else 'partial --limit'} "
                     f"results are never mixed with {'partial' if limit else 'full'} ones; see --limit)")
    unscored = len([f for f in found if f.record.limit_queries == limit and not f.record.metrics])
    if unscored:
        notes.append(f"{unscored} unscored result(s) left out (no qrels, e.g. a CIRCO test submission)")
    if not kept:
        raise MbenchError("no scored result to report" + (f" ({notes[0]})" if notes else ""))
    index = get_index(tasks_dirs)
    order = {name: position for position, name in enumerate(index.tasks)}
    rows_of: dict[tuple[str, str], str] = {}  # (task, pool) -> main metric
    for result in sorted(kept, key=lambda f: (order.get(f.task, len(order)), f.task, f.pool)):
        rows_of.setdefault((result.task, result.pool), result.record.main_metric)
    several_pools = {task for task, _ in rows_of if sum(1 for t, _ in rows_of if t == task) > 1}
    row_ids = {key: f"{key[0]}@{key[1]}" if key[0] in several_pools else key[0] for key in rows_of}

    runs: dict[RunKey, dict[tuple[str, str], FoundResult]] = {}
    for result in kept:
        cells = runs.setdefault(run_key(result), {})
        key = (result.task, result.pool)
        if key in cells:  # the same run twice (copies of a folder): the newest, as tables choose
            if result.created <= cells[key].created:
                continue
            notes.append(f"{result.describe()}: two results of one run; the newest is shown")
        cells[key] = result
    labels = _run_labels(list(runs))
    columns = []
    for number, key in enumerate(runs, start=1):
        name = f"run{number}-" + re.sub(r"[^A-Za-z0-9_.\-+@]", "_", labels[key])[:60]
        columns.append({"name": name, "display": labels[key], "model": key.model or "unknown"})
    rows = [{"id": row_ids[key], "task": key[0], "metric": metric, "pool": key[1]} for key, metric in rows_of.items()]
    averages = [{"id": "mean", "rows": [r["id"] for r in rows], "display": "Mean"}] if len(rows) > 1 else []
    spec = parse_leaderboard({"name": "report", "rows": rows, "averages": averages, "runs": columns}, "mbench report")
    values: dict[str, list[float]] = {}
    chosen: dict[tuple[str, str], FoundResult] = {}
    for column, key in zip(spec.runs, runs):
        cells = []
        for (task, pool), metric in rows_of.items():
            result = runs[key].get((task, pool))
            value = None if result is None else result.record.metrics.get(metric)
            cells.append(math.nan if value is None else float(value))
            if result is not None:
                chosen[(row_ids[(task, pool)], column.name)] = result
        if averages:
            cells.append(float(sum(cells) / len(cells)) if all(not math.isnan(v) for v in cells) else math.nan)
        values[column.name] = cells
    frame = pd.DataFrame(values, index=pd.Index([r["id"] for r in rows] + [a["id"] for a in averages], name="row"),
                         dtype=float)
    row_kinds = {r["id"]: "task" for r in rows} | {a["id"]: "average" for a in averages}
    average_cells, average_note = describe_averages(spec, index)
    return Table(spec=spec, values=frame, row_kinds=row_kinds, results=chosen, notes=notes, limit=limit,
                 average_cells=average_cells, average_note=average_note)


def _run_labels(keys: list[RunKey]) -> dict[RunKey, str]:
    """Short column labels: the model, then only what tells runs of one model apart."""
    labels = {}
    for key in keys:
        same_model = [k for k in keys if k.model == key.model]
        label = key.model
        if len({k.fingerprint for k in same_model}) > 1:
            label += f" @{key.fingerprint[:8]}"
        kind = key.variant.split(" [")[0]  # a partial table says its sample once, in every header
        if kind != "retrieval":
            label += f" ({kind})"
        if key.policy != "first":
            label += f" [instructions: {key.policy}]"
        labels[key] = label
    for key, label in labels.items():  # two samples of one run (limit-5 and limit-5-pool-all)
        if sum(1 for other in labels.values() if other == label) > 1:
            labels[key] = f"{label} {key.variant[len(key.variant.split(' [')[0]):].strip()}"
    return labels
