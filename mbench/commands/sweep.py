"""`mbench sweep`: expand a sweep YAML into `mbench run` invocations and run or submit them."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `mbench sweep`."""
    parser.add_argument("sweep", type=Path, metavar="SWEEP.yaml", help="sweep file (see sweeps/instructions.yaml)")
    parser.add_argument("--executor", choices=("local", "slurm"), default="local",
                        help="local: one point after another in this process; slurm: a submitit job array")
    parser.add_argument("--dry-run", action="store_true", help="print the command of every grid point; run nothing")
    parser.add_argument("--slurm-partition", default=None, help="Slurm partition of every job")
    parser.add_argument("--slurm-gpus-per-node", type=int, default=None, metavar="N", help="GPUs of every job")
    parser.add_argument("--slurm-time", type=int, default=None, metavar="MIN", help="time limit of every job, minutes")
    parser.add_argument("--slurm-array-parallelism", type=int, default=None, metavar="N",
                        help="at most N jobs of the array run at once")
    parser.add_argument("--wait", action="store_true",
                        help="slurm: wait for every job and exit 1 if any failed (default: submit and return)")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="submitit logs and pickles (default: ./mbench-sweep-logs/<sweep file stem>)")


def run(args: argparse.Namespace) -> int:
    """Load and check the sweep, then print, run or submit its grid points."""
    from mbench.engine.sweep import (
        SlurmOptions,
        check_tasks,
        dry_run,
        expand,
        load_sweep,
        run_local,
        run_slurm,
    )
    from mbench.errors import MbenchError

    for flag in ("slurm_gpus_per_node", "slurm_time", "slurm_array_parallelism"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise MbenchError(f"--{flag.replace('_', '-')} must be >= 1")
    sweep = load_sweep(args.sweep)
    check_tasks(sweep, args.sweep)
    points = expand(sweep)
    if args.dry_run:
        return dry_run(points)
    if args.executor == "local":
        given = [f"--{flag.replace('_', '-')}" for flag in ("slurm_partition", "slurm_gpus_per_node", "slurm_time",
                                                             "slurm_array_parallelism") if getattr(args, flag) is not None]
        if given or args.wait:
            raise MbenchError(f"{', '.join(given + (['--wait'] if args.wait else []))}: only with --executor slurm")
        return run_local(points)
    options = SlurmOptions(
        partition=args.slurm_partition,
        gpus_per_node=args.slurm_gpus_per_node,
        time_min=args.slurm_time,
        array_parallelism=args.slurm_array_parallelism,
        job_name=f"mbench-sweep-{args.sweep.stem}",
    )
    log_dir = args.log_dir or Path("mbench-sweep-logs") / args.sweep.stem
    return run_slurm(points, options, log_dir, wait=args.wait)
