"""`mbench export RESULT_DIR... --format mteb --out DIR`: results in another tool's file format.

`mteb`: mteb's result layout, `<model>/<revision>/<TaskName>.json` with a `model_meta.json` per
revision folder, each file an mteb TaskResult holding the scores under mteb's keys (`ndcg_at_10`,
`map_at_10`, `mrr_at_10`, `recall_at_100`, `main_score`, ...) that mteb's own loader reads. Only
results of tasks mteb knows are written (matched by dataset and revision); every other result is
listed with the reason it was skipped. Exit 0 when something was written, 1 when nothing was.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mbench.errors import MbenchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of `mbench export`."""
    parser.add_argument("results", nargs="+", type=Path, metavar="RESULT_DIR",
                        help="a result folder (holding result.json) or a folder of results")
    parser.add_argument("--format", choices=("mteb",), default="mteb", help="the file format (default: mteb)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="where the files are written")
    parser.add_argument("--tasks-dir", action="append", default=[], metavar="DIR", help="an extra directory of task YAMLs")


def run(args: argparse.Namespace) -> int:
    """Export every result found under the given folders; print one line per file written or result skipped."""
    from mbench.interop.mteb_results import plan_export, write_export
    from mbench.reporting.result_index import results_at

    found = []
    for path in args.results:
        if not path.exists():
            raise MbenchError(f"{path} does not exist")
        here = results_at(path)
        if not here:
            raise MbenchError(f"no result.json under {path}")
        found += here
    planned, skipped = plan_export(found, args.out, args.tasks_dir)
    for item in skipped:
        print(f"skipped {item.source}: {item.reason}", file=sys.stderr)
    for item in write_export(planned):
        print(f"{item.source} -> {item.path} ({item.task_name}, {item.main_score_key} = {item.main_score:.5f})")
    if not planned:
        print(f"mbench export: nothing exported ({len(skipped)} result(s) skipped)", file=sys.stderr)
        return 1
    return 0
