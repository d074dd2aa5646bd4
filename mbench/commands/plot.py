"""`mbench plot SPEC --out DIR`: PNG figures of a leaderboard (grouped bars with published markers, modality accuracy).

matplotlib is imported only when the command runs, never for `--help`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of `mbench plot`."""
    parser.add_argument("spec", help="leaderboard YAML, or the name of a packaged one (e.g. mm-embed-table1)")
    parser.add_argument("--out", type=Path, required=True, help="folder the PNGs are written to")
    parser.add_argument("--results-dir", type=Path, default=None, help="results directory (default: $MBENCH_RESULTS or ./results)")
    parser.add_argument(
        "--tasks-dir", action="append", default=[], metavar="DIR", help="an extra directory of task YAMLs (repeatable)"
    )


def run(args: argparse.Namespace) -> int:
    """Draw the figures and print the path of each PNG written."""
    from mbench.reporting.leaderboard import load_leaderboard, resolve_leaderboard_path
    from mbench.reporting.plots import plot_leaderboard
    from mbench.results import default_results_dir

    spec = load_leaderboard(resolve_leaderboard_path(args.spec), tasks_dirs=args.tasks_dir)
    for path in plot_leaderboard(spec, args.results_dir or default_results_dir(), args.out, tasks_dirs=args.tasks_dir):
        print(path)
    return 0
