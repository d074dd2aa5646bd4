"""`mbench table SPEC | --tasks T... [--models M...] [--metric M...]`: results beside published numbers.

Imports pandas only when it runs (never torch or matplotlib), so `mbench table --help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mbench.display import add_decimals_argument
from mbench.errors import MbenchError

FORMATS = ("md", "latex", "csv", "html")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of `mbench table`."""
    parser.add_argument(
        "spec",
        nargs="?",
        help="leaderboard YAML, or the name of a packaged one (e.g. mm-embed-table1); omit with --tasks",
    )
    parser.add_argument("--results-dir", type=Path, default=None, help="results directory (default: $MBENCH_RESULTS or ./results)")
    parser.add_argument("--format", choices=FORMATS, default="md", help="output format (default: md)")
    parser.add_argument("--out", type=Path, default=None, help="write the table to this file instead of stdout")
    parser.add_argument("--delta", action="store_true", help="add, after each run column, the run minus its reference column")
    parser.add_argument(
        "--significance",
        metavar="BASELINE",
        default=None,
        help="mark run cells that differ from run column BASELINE with p < 0.05 (paired sign-flip test over queries)",
    )
    parser.add_argument("--resamples", type=int, default=10_000, help="permutations of the significance test (default: 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the significance test (default: 0)")
    parser.add_argument("--list", action="store_true", help="list the packaged leaderboards and exit")
    add_decimals_argument(parser)
    adhoc = parser.add_argument_group("ad-hoc table (no SPEC)")
    adhoc.add_argument("--tasks", nargs="+", metavar="TASK", help="tasks, groups or glob patterns: one row each")
    adhoc.add_argument("--models", nargs="+", metavar="MODEL", help="one column per model name (default: every model with results)")
    adhoc.add_argument("--metric", nargs="+", metavar="METRIC", help="metric(s) per task (default: each task's main metric)")
    adhoc.add_argument("--pool", default=None, help="candidate pool of every row (default: the one pool the results have)")
    parser.add_argument(
        "--tasks-dir", action="append", default=[], metavar="DIR", help="an extra directory of task YAMLs (repeatable)"
    )


def run(args: argparse.Namespace) -> int:
    """Build the table and print (or write) it; notes about the choice of results go to stderr."""
    from mbench.leaderboard import (
        list_packaged_leaderboards,
        load_leaderboard,
        resolve_leaderboard_path,
    )
    from mbench.results import default_results_dir
    from mbench.tables import adhoc_leaderboard, build_table, render, significance

    if args.list:
        for path in list_packaged_leaderboards():
            print(path.stem)
        return 0
    results_dir = args.results_dir or default_results_dir()
    if args.spec is not None and args.tasks:
        raise MbenchError("give either a SPEC or --tasks, not both")
    if args.spec is not None:
        if args.models or args.metric or args.pool:
            raise MbenchError("--models, --metric and --pool belong to the ad-hoc form (--tasks); a SPEC fixes them")
        spec = load_leaderboard(resolve_leaderboard_path(args.spec), tasks_dirs=args.tasks_dir)
    elif args.tasks:
        spec = adhoc_leaderboard(
            args.tasks,
            results_dir=results_dir,
            models=args.models,
            metrics=args.metric,
            pool=args.pool,
            tasks_dirs=args.tasks_dir,
        )
    else:
        raise MbenchError("give a leaderboard SPEC (see `mbench table --list`) or --tasks for an ad-hoc table")
    table = build_table(spec, results_dir, tasks_dirs=args.tasks_dir)
    p_values = None
    if args.significance is not None:
        p_values = significance(table, args.significance, n_resamples=args.resamples, seed=args.seed)
    baseline = None
    if args.significance is not None:
        baseline = next(c.name for c in spec.runs if args.significance in (c.name, c.label))
    text = render(table, args.format, delta=args.delta, p_values=p_values, baseline=baseline, decimals=args.decimals)
    for note in table.notes:
        print(f"mbench table: note: {note}", file=sys.stderr)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0
