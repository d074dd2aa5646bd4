"""`mbench report RESULTS... --out report.html`: one self-contained HTML page (no server, nothing
fetched) comparing the results found in RESULTS: a sortable table with significance marks, the
plots, each task's worst queries with their items, and the provenance of every run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mbench.commands.options import add_tasks_dir_argument
from mbench.display import add_decimals_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of `mbench report`."""
    parser.add_argument("results", nargs="+", type=Path, metavar="RESULTS",
                        help="result folders, or folders holding results (a model, a fingerprint, a results directory)")
    parser.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="report the partial results of `mbench run --limit N` instead of full results")
    parser.add_argument("--baseline", default=None, metavar="RUN",
                        help="run the significance marks test against: its label or model name (default: the first run)")
    parser.add_argument("--worst", type=int, default=5, metavar="K", help="worst queries shown per task and run (default: 5)")
    parser.add_argument("--top", type=int, default=5, metavar="K", help="retrieved items shown per query (default: 5)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data root for the queries' and items' text and images (default: where each run read them)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache root (the generated mini benchmark lives there)")
    add_tasks_dir_argument(parser)
    parser.add_argument("--resamples", type=int, default=10_000, help="permutations of the significance test (default: 10000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the significance test (default: 0)")
    add_decimals_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Write the page; print its path, and notes (what was left out and why) to stderr."""
    from mbench.errors import MbenchError
    from mbench.reporting.html import ReportOptions, build_report
    from mbench.formats.atomic import atomic_write_bytes

    options = ReportOptions(
        limit=args.limit, baseline=args.baseline, worst=args.worst, top=args.top, data_dir=args.data_dir,
        cache_dir=args.cache_dir, tasks_dirs=tuple(Path(d) for d in args.tasks_dir), decimals=args.decimals,
        resamples=args.resamples, seed=args.seed,
    )
    page, notes = build_report(args.results, options)
    try:
        atomic_write_bytes(args.out, page.encode("utf-8"))
    except OSError as err:
        raise MbenchError(f"--out {args.out}: cannot write: {err}") from None
    for note in notes:
        print(f"mbench report: note: {note}", file=sys.stderr)
    print(args.out)
    return 0
