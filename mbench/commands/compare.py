"""`mbench compare RESULT_A RESULT_B`: per task, B - A on the main metric with a paired bootstrap CI and p-value.

A and B are each one result folder (holding result.json) or a folder of many results (a model, a
fingerprint, a whole results directory); results are paired by task, pool and variant (retrieval
or a rerank, and the sample of a partial --limit result). Or, as `mbench table` selects them:
`--tasks T... --models A B` (model names or aliases, from --results-dir). The differences come
from the per-query scores, joined on qid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mbench.commands.options import add_tasks_dir_argument
from mbench.commands.selection import add_adhoc_arguments
from mbench.display import add_decimals_argument
from mbench.errors import MbenchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of `mbench compare`."""
    parser.add_argument("result_a", type=Path, metavar="RESULT_A", nargs="?",
                        help="baseline: a result folder or a folder of results (omit with --tasks)")
    parser.add_argument("result_b", type=Path, metavar="RESULT_B", nargs="?",
                        help="the other: a result folder or a folder of results")
    parser.add_argument("--metric", default=None, help="metric to compare (default: each task's main metric)")
    add_adhoc_arguments(parser, models_help="the two models compared, A (baseline) then B: names or the aliases "
                        "they were run with", table_options=False)
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="results directory of --tasks/--models (default: $MBENCH_RESULTS or ./results)")
    add_tasks_dir_argument(parser)
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples and permutations (default: 10000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of both procedures (default: 0)")
    parser.add_argument("--format", choices=("md", "csv"), default="md", help="md: x100, rounded; csv: fractions, full precision")
    add_decimals_argument(parser)


def _side(path: Path, label: str) -> list:
    from mbench.reporting.result_index import results_at

    if not path.exists():
        raise MbenchError(f"{label}: {path} does not exist")
    found = results_at(path)
    if not found:
        raise MbenchError(f"{label}: no result.json under {path}")
    return found


def run(args: argparse.Namespace) -> int:
    """Compare the two sides and print one line per paired task."""
    import pandas as pd

    from mbench.reporting.stats import compare_pair, match_results

    if args.resamples < 1:
        raise MbenchError("--resamples must be at least 1")
    if args.tasks:
        if args.result_a is not None or args.result_b is not None:
            raise MbenchError("give either RESULT_A RESULT_B or --tasks with --models A B, not both")
        pairs, notes, only_a, only_b = _adhoc_pairs(args)
        label_a, label_b = args.models
    elif args.result_a is None or args.result_b is None:
        raise MbenchError("give RESULT_A and RESULT_B (result folders), or --tasks T... --models A B")
    else:
        if args.models or args.pool or args.limit is not None:
            raise MbenchError("--models, --pool and --limit select results with --tasks; RESULT_A and RESULT_B name them")
        label_a, label_b = args.result_a, args.result_b
        side_a, side_b = _side(args.result_a, "RESULT_A"), _side(args.result_b, "RESULT_B")
        if len(side_a) == 1 and len(side_b) == 1:
            # Two explicit folders: compare them even if their variants differ (retrieval vs its rerank).
            pairs, notes, only_a, only_b = [(side_a[0], side_b[0])], [], [], []
        else:
            matching = match_results(side_a, side_b)
            pairs, notes, only_a, only_b = matching.pairs, matching.notes, matching.only_a, matching.only_b
    for note in notes:
        print(f"mbench compare: note: {note}", file=sys.stderr)
    for label, unpaired in (("A", only_a), ("B", only_b)):
        for found in unpaired:
            print(f"mbench compare: note: only in {label}: {found.describe()}", file=sys.stderr)
    if not pairs:
        raise MbenchError(f"no task, pool and variant in common between {label_a} and {label_b}")
    comparisons = [compare_pair(a, b, metric=args.metric, n_resamples=args.resamples, seed=args.seed) for a, b in pairs]
    frame = pd.DataFrame(
        {
            "task": [c.task for c in comparisons],
            "pool": [c.pool for c in comparisons],
            "variant": [_variant(c) for c in comparisons],
            "metric": [c.metric for c in comparisons],
            "n": [c.n_queries for c in comparisons],
            "A": [c.mean_a for c in comparisons],
            "B": [c.mean_b for c in comparisons],
            "delta": [c.delta for c in comparisons],
            "ci_low": [c.ci_low for c in comparisons],
            "ci_high": [c.ci_high for c in comparisons],
            "p": [c.p_value for c in comparisons],
        }
    )
    if args.format == "csv":
        sys.stdout.write(frame.to_csv(index=False))
        return 0
    from mbench.display import display_decimals, format_value

    decimals = display_decimals(args.decimals)

    def shown(value: float, signed: bool = False) -> str:
        return format_value(value, decimals, signed=signed)

    print(f"A = {label_a}\nB = {label_b}\n")
    print("| task | pool | variant | metric | n | A | B | Δ (B − A) | 95% CI | p |")
    print("|:---|:---|:---|:---|---:|---:|---:|---:|:---:|---:|")
    for c, variant in zip(comparisons, frame["variant"]):
        mark = " †" if c.significant else ""
        print(
            f"| {c.task} | {c.pool} | {variant} | {c.metric} | {c.n_queries} | {shown(c.mean_a)} | "
            f"{shown(c.mean_b)} | {shown(c.delta, True)}{mark} | [{shown(c.ci_low, True)}, {shown(c.ci_high, True)}] | "
            f"{c.p_value:.4f} |"
        )
    print(
        f"\nValues x100. 95% CI: paired bootstrap over queries ({args.resamples} resamples, seed {args.seed}); "
        f"p: two-sided paired sign-flip randomisation test ({args.resamples} permutations); † p < 0.05."
    )
    return 0


def _variant(comparison: object) -> str:
    """The variant both sides share, or ``A vs B`` when they differ (a retrieval against its rerank)."""
    a, b = comparison.a.record.variant, comparison.b.record.variant  # type: ignore[attr-defined]
    return a if a == b else f"{a} vs {b}"


def _adhoc_pairs(args: argparse.Namespace) -> tuple[list, list[str], list, list]:
    """(pairs, notes, only in A, only in B) of `--tasks ... --models A B`, chosen as `mbench table` chooses its cells."""
    from mbench.results import default_results_dir
    from mbench.reporting.tables import adhoc_leaderboard, build_table

    if not args.models or len(args.models) != 2:
        raise MbenchError("--models takes exactly two models with --tasks: A (the baseline) and B")
    if args.models[0] == args.models[1]:
        raise MbenchError(f"--models names {args.models[0]!r} twice; two runs of one model compare by their result folders")
    results_dir = args.results_dir or default_results_dir()
    spec = adhoc_leaderboard(args.tasks, results_dir=results_dir, models=args.models, pool=args.pool,
                             tasks_dirs=args.tasks_dir, limit=args.limit)
    table = build_table(spec, results_dir, tasks_dirs=args.tasks_dir, limit=args.limit)
    column_a, column_b = (run.name for run in spec.runs)
    pairs, only_a, only_b = [], [], []
    for row in spec.rows:
        found_a, found_b = table.results.get((row.key, column_a)), table.results.get((row.key, column_b))
        if found_a is not None and found_b is not None:
            pairs.append((found_a, found_b))
        elif found_a is not None:
            only_a.append(found_a)
        elif found_b is not None:
            only_b.append(found_b)
    return pairs, list(table.notes), only_a, only_b
