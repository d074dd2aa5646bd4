"""The selection of results `table`, `plot`, `compare` and `report` share: a leaderboard SPEC or an
ad-hoc `--tasks ... --models ...` (model names or the aliases they were run with), full results or
the partial ones of `mbench run --limit N`, and the mean a table ends with.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mbench.errors import MbenchError


def add_adhoc_arguments(
    parser: argparse.ArgumentParser, *, models_help: str | None = None, table_options: bool = True
) -> None:
    """The ad-hoc selection options (`--tasks`, `--models`, `--pool`; for tables also `--metric` and
    `--mean-metric`) and `--limit`."""
    adhoc = parser.add_argument_group("ad-hoc selection (no SPEC)")
    adhoc.add_argument("--tasks", nargs="+", metavar="TASK", help="tasks, groups or glob patterns: one row each")
    adhoc.add_argument(
        "--models", nargs="+", metavar="MODEL",
        help=models_help or "one column per model: its name, or the alias it was run with (default: every model with results)",
    )
    adhoc.add_argument("--pool", default=None, help="candidate pool of every row (default: the one pool the results have)")
    if table_options:
        adhoc.add_argument("--metric", nargs="+", metavar="METRIC",
                           help="metric(s) per task (default: each task's main metric)")
        adhoc.add_argument("--mean-metric", default=None, metavar="M",
                           help="end with the mean of metric M over the tasks (every task must compute M) instead of "
                           "the mean of each task's main metric")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="show the partial results of `mbench run --limit N` instead of full results (never mixed)")


def adhoc_requested(args: argparse.Namespace) -> bool:
    """Whether the ad-hoc form was used."""
    return bool(args.tasks)


def leaderboard_from_args(args: argparse.Namespace, results_dir: Path, *, command: str) -> Any:
    """The leaderboard a command's arguments select: SPEC (a file or a packaged name) or the ad-hoc form."""
    from mbench.reporting.leaderboard import load_leaderboard, resolve_leaderboard_path
    from mbench.reporting.tables import adhoc_leaderboard

    spec = getattr(args, "spec", None)
    if spec is not None and args.tasks:
        raise MbenchError("give either a SPEC or --tasks, not both")
    if spec is not None:
        if args.models or args.metric or args.pool or args.mean_metric:
            raise MbenchError(
                "--models, --metric, --pool and --mean-metric belong to the ad-hoc form (--tasks); a SPEC fixes them"
            )
        return load_leaderboard(resolve_leaderboard_path(spec), tasks_dirs=args.tasks_dir)
    if args.tasks:
        return adhoc_leaderboard(
            args.tasks, results_dir=results_dir, models=args.models, metrics=args.metric, pool=args.pool,
            tasks_dirs=args.tasks_dir, limit=args.limit, mean_metric=args.mean_metric,
        )
    raise MbenchError(f"give a leaderboard SPEC (see `mbench table --list`) or --tasks for an ad-hoc {command}")
