"""`mbench compare RESULT_A RESULT_B`: per task, B - A on the main metric with a paired bootstrap CI and p-value.

A and B are each one result folder (holding result.json) or a folder of many results (a model, a
fingerprint, a whole results directory); results are paired by task, pool and variant (retrieval
or a rerank). The differences come from the per-query scores, joined on qid.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mbench.errors import MbenchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of `mbench compare`."""
    parser.add_argument("result_a", type=Path, metavar="RESULT_A", help="baseline: a result folder or a folder of results")
    parser.add_argument("result_b", type=Path, metavar="RESULT_B", help="the other: a result folder or a folder of results")
    parser.add_argument("--metric", default=None, help="metric to compare (default: each task's main metric)")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples and permutations (default: 10000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of both procedures (default: 0)")
    parser.add_argument("--format", choices=("md", "csv"), default="md", help="md: x100, rounded; csv: fractions, full precision")


def _side(path: Path, label: str) -> list:
    from mbench.result_index import results_at

    if not path.exists():
        raise MbenchError(f"{label}: {path} does not exist")
    found = results_at(path)
    if not found:
        raise MbenchError(f"{label}: no result.json under {path}")
    return found


def run(args: argparse.Namespace) -> int:
    """Compare the two sides and print one line per paired task."""
    import pandas as pd

    from mbench.stats import compare_pair, match_results

    if args.resamples < 1:
        raise MbenchError("--resamples must be at least 1")
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
        raise MbenchError(f"no task, pool and variant in common between {args.result_a} and {args.result_b}")
    comparisons = [compare_pair(a, b, metric=args.metric, n_resamples=args.resamples, seed=args.seed) for a, b in pairs]
    frame = pd.DataFrame(
        {
            "task": [c.task for c in comparisons],
            "pool": [c.pool for c in comparisons],
            "variant": [c.a.variant if c.a.variant == c.b.variant else f"{c.a.variant} vs {c.b.variant}" for c in comparisons],
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
    print(f"A = {args.result_a}\nB = {args.result_b}\n")
    print("| task | pool | variant | metric | n | A | B | Δ (B − A) | 95% CI | p |")
    print("|:---|:---|:---|:---|---:|---:|---:|---:|:---:|---:|")
    for c, variant in zip(comparisons, frame["variant"]):
        mark = " †" if c.significant else ""
        print(
            f"| {c.task} | {c.pool} | {variant} | {c.metric} | {c.n_queries} | {100 * c.mean_a:.2f} | "
            f"{100 * c.mean_b:.2f} | {100 * c.delta:+.2f}{mark} | [{100 * c.ci_low:+.2f}, {100 * c.ci_high:+.2f}] | "
            f"{c.p_value:.4f} |"
        )
    print(
        f"\nValues x100. 95% CI: paired bootstrap over queries ({args.resamples} resamples, seed {args.seed}); "
        f"p: two-sided paired sign-flip randomisation test ({args.resamples} permutations); † p < 0.05."
    )
    return 0
