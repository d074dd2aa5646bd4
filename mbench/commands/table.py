"""`mbench table SPEC | --tasks T... [--models M...] [--metric M...]`: results beside published numbers.

Imports pandas only when it runs (never torch or matplotlib), so `mbench table --help` is instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mbench.commands.selection import add_adhoc_arguments, leaderboard_from_args
from mbench.display import add_decimals_argument

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
    add_adhoc_arguments(parser)
    parser.add_argument(
        "--tasks-dir", action="append", default=[], metavar="DIR", help="an extra directory of task YAMLs (repeatable)"
    )


def run(args: argparse.Namespace) -> int:
    """Build the table and print (or write) it; notes about the choice of results go to stderr."""
    from mbench.reporting.leaderboard import list_packaged_leaderboards
    from mbench.reporting.tables import build_table, render, significance
    from mbench.results import default_results_dir

    if args.list:
        for path in list_packaged_leaderboards():
            print(path.stem)
        return 0
    results_dir = args.results_dir or default_results_dir()
    spec = leaderboard_from_args(args, results_dir, command="table")
    table = build_table(spec, results_dir, tasks_dirs=args.tasks_dir, limit=args.limit)
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
        from mbench.formats.atomic import atomic_write_bytes

        atomic_write_bytes(args.out, text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    return 0
