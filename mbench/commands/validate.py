"""`mbench validate TASK...`: check task YAMLs and their data (files, counts, ids, images); exit 0 only if valid.

Every problem found is listed (file, line or id), not only the first; imports no torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mbench.commands.options import add_tasks_dir_argument
from mbench.data.validation import IMAGE_SAMPLE
from mbench.errors import MbenchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    parser.add_argument("tasks", nargs="+", metavar="TASK", help="task or group names (or glob patterns)")
    parser.add_argument("--data-dir", type=Path, default=None, help="data root (default: $MBENCH_DATA)")
    add_tasks_dir_argument(parser)
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache directory (default: $MBENCH_CACHE)")
    parser.add_argument("--pool", default="local", choices=("local", "global"), help="which pool to check")
    parser.add_argument("--full", action="store_true", help=f"open every image (default: a sample of {IMAGE_SAMPLE})")


def run(args: argparse.Namespace) -> int:
    """Validate each task; print a line per task and every problem; 0 if all are valid, else 2."""
    from mbench.data.validation import validate_task
    from mbench.tasks.index import get_index

    index = get_index(args.tasks_dir)  # schema errors of any YAML surface here, naming file and key
    names = index.expand(args.tasks)
    failed = 0
    for name in names:
        problems, notes, summary = validate_task(
            index.task(name), data_dir=args.data_dir, pool=args.pool, cache_dir=args.cache_dir,
            tasks_dirs=args.tasks_dir, full=args.full,
        )
        for note in notes:
            print(f"  warning: {note}")
        if problems:
            failed += 1
            print(f"FAIL {name} [{args.pool}] ({index.source(name)}): {len(problems)} problem(s)")
            for problem in problems:
                print("  " + problem.replace("\n", "\n  "))
        else:
            print(f"ok   {name} [{args.pool}]: {summary}")
    if failed:
        raise MbenchError(f"{failed} of {len(names)} task(s) are not valid (problems listed above)")
    return 0
