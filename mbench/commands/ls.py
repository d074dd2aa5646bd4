"""`mbench ls tasks|groups|models|adapters|metrics [--names] [--tasks-dir DIR]`: what the harness knows about.

Reads YAMLs and the registries' static tables only: no torch, no model code.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from mbench.commands.options import add_tasks_dir_argument
from mbench.errors import MbenchError

KINDS = ("tasks", "groups", "models", "adapters", "metrics")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of `mbench ls`."""
    parser.add_argument("kind", nargs="?", choices=KINDS, default="tasks", help="what to list (default: tasks)")
    parser.add_argument("--names", action="store_true", help="one name per line and nothing else (for scripts)")
    add_tasks_dir_argument(parser)


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Left-aligned plain-text columns separated by two spaces, with a rule under the header."""
    cells = [[str(c) for c in header], *[["" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _tasks(args: argparse.Namespace) -> tuple[list[str], str]:
    from mbench.tasks.index import get_index

    index = get_index(args.tasks_dir)
    specs = [index.task(name) for name in index.tasks]
    rows = [
        (
            s.name,
            s.adapter,
            f"{s.query_modality} -> {s.cand_modality}",
            s.main_metric if s.scored else "(submission)",
            f"{s.n_queries:,}" if s.n_queries is not None else "",
        )
        for s in specs
    ]
    table = format_table(("name", "adapter", "modality q -> c", "main metric", "n_queries"), rows)
    return [s.name for s in specs], table


def _groups(args: argparse.Namespace) -> tuple[list[str], str]:
    from mbench.tasks.index import get_index

    index = get_index(args.tasks_dir)
    rows = []
    for name in index.groups:
        spec = index.group(name)
        rows.append((name, len(spec.tasks), len(index.expand([name])), spec.aggregation, spec.description))
    table = format_table(("name", "members", "tasks", "aggregation", "description"), rows)
    return list(index.groups), table


def _models(args: argparse.Namespace) -> tuple[list[str], str]:
    try:
        registry = importlib.import_module("mbench.models.registry")
    except ModuleNotFoundError as err:
        if err.name not in ("mbench.models", "mbench.models.registry"):
            raise
        raise MbenchError(
            "the model registry (mbench.models.registry) is not part of this install, so no models can be listed"
        ) from err
    rows = registry.list_models()
    table = format_table(("name", "source", "description"), [(name, source, desc) for name, desc, source in rows])
    return [row[0] for row in rows], table


def _adapters(args: argparse.Namespace) -> tuple[list[str], str]:
    from mbench.data.registry import list_adapters

    rows = list_adapters()
    return [name for name, _ in rows], format_table(("name", "source"), rows)


def _metrics(args: argparse.Namespace) -> tuple[list[str], str]:
    from mbench.metrics import METRICS

    rows = [(f"{f.name}@k", f.definition, f.reference()) for f in METRICS.values()]
    return [f.name for f in METRICS.values()], format_table(("name", "definition", "anchor"), rows)


def run(args: argparse.Namespace) -> int:
    """List tasks, groups, models, data adapters or metrics as a table, or one name per line with --names."""
    if args.tasks_dir and args.kind not in ("tasks", "groups"):
        raise MbenchError(f"--tasks-dir applies to `ls tasks` and `ls groups`, not to {args.kind}")
    listers = {"tasks": _tasks, "groups": _groups, "models": _models, "adapters": _adapters, "metrics": _metrics}
    names, table = listers[args.kind](args)
    print("\n".join(names) if args.names else table)
    return 0
