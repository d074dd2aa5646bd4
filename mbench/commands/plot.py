"""`mbench plot SPEC | --tasks T... [--models M...] --out DIR`: PNG figures of a leaderboard or an
ad-hoc selection (grouped bars with published markers; modality accuracy where the pool mixes modalities).

matplotlib is imported only when the command runs, never for `--help`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mbench.commands.selection import add_adhoc_arguments, leaderboard_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of `mbench plot`."""
    parser.add_argument("spec", nargs="?",
                        help="leaderboard YAML, or the name of a packaged one (e.g. mm-embed-table1); omit with --tasks")
    parser.add_argument("--out", type=Path, required=True, help="folder the PNGs are written to")
    parser.add_argument("--results-dir", type=Path, default=None, help="results directory (default: $MBENCH_RESULTS or ./results)")
    add_adhoc_arguments(parser)
    parser.add_argument(
        "--tasks-dir", action="append", default=[], metavar="DIR", help="an extra directory of task YAMLs (repeatable)"
    )


def run(args: argparse.Namespace) -> int:
    """Draw the figures and print the path of each PNG written; notes (tasks a figure leaves out) go to stderr."""
    from mbench.reporting.plots import plot_table
    from mbench.results import default_results_dir
    from mbench.reporting.tables import build_table

    results_dir = args.results_dir or default_results_dir()
    spec = leaderboard_from_args(args, results_dir, command="plot")
    table = build_table(spec, results_dir, tasks_dirs=args.tasks_dir, limit=args.limit)
    written, notes = plot_table(table, args.out)
    for note in [*table.notes, *notes]:
        print(f"mbench plot: note: {note}", file=sys.stderr)
    for path in written:
        print(path)
    return 0
