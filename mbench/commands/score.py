"""`mbench score RUN QRELS`: a trec_eval for this harness, fast on big runs.

RUN is a TREC run file (optionally .gz) or a CIRCO submission JSON; QRELS is TREC, M-BEIR or
BEIR qrels, or CIRCO annotations. Queries are chosen and ranked as trec_eval does.
`mbench score RESULT_DIR` rescores a result folder: its run file against the qrels its
result.json records (checked unchanged by sha256), by default with the metrics it was scored with.
"""

from __future__ import annotations

import argparse
import json
import sys

from mbench.display import add_decimals_argument
from mbench.errors import MbenchError

DEFAULT_METRICS = ("ndcg@10", "recall@10", "recall@100", "map_cut@1000", "mrr@10", "precision@10")
CIRCO_METRICS = (
    "map@5", "map@10", "map@25", "map@50",
    "circo_recall@5", "circo_recall@10", "circo_recall@25", "circo_recall@50",
)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of `mbench score`."""
    parser.add_argument("run", metavar="RUN",
                        help="TREC run file (qid Q0 docid rank score tag; .gz ok), CIRCO submission JSON, or a result "
                        "folder (RESULT_DIR: its run file against the qrels its result.json records)")
    parser.add_argument("qrels", metavar="QRELS", nargs="?",
                        help="TREC / M-BEIR qrels, BEIR qrels TSV, or CIRCO annotations JSON (optional with RESULT_DIR)")
    parser.add_argument(
        "--metrics",
        help=f"comma-separated, e.g. ndcg@10,recall@100 (default: {','.join(DEFAULT_METRICS)}; "
        f"for CIRCO annotations: {','.join(CIRCO_METRICS)})",
    )
    parser.add_argument("--per-query", action="store_true", help="also report every query's values")
    parser.add_argument(
        "--complete",
        action="store_true",
        help="average over every qrels query, those missing from the run scoring 0 (trec_eval -c); "
        "default: over the queries in both",
    )
    parser.add_argument(
        "-l", "--relevance-level", type=int, default=1, metavar="N",
        help="least grade that counts as relevant for the binary metrics (trec_eval -l; default 1); "
             "nDCG keeps the graded gains",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")
    add_decimals_argument(parser)
    parser.add_argument(
        "--qrels-format", choices=("auto", "trec", "mbeir", "beir", "circo"), default="auto",
        help="QRELS format (default: detected from the content)",
    )  # fmt: skip
    parser.add_argument(
        "--dedupe", choices=("error", "first"), default="error",
        help="a document listed twice for a query: an error (default) or keep the first occurrence",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Score the run and print the averages (and per-query values) as a table or JSON."""
    from pathlib import Path

    from mbench.engine.scoring import score_run
    from mbench.formats.qrels import read_qrels
    from mbench.formats.runs import read_run
    from mbench.metrics import parse_metric, required_depth

    if args.relevance_level < 1:
        raise MbenchError(
            f"--relevance-level must be >= 1, got {args.relevance_level}: unjudged documents have grade 0, so a "
            "level of 0 or less would count them relevant"
        )
    run_path, defaults = args.run, None
    if Path(args.run).is_dir():
        run_path, qrels, defaults = _stored_inputs(Path(args.run), args)
    elif args.qrels is None:
        raise MbenchError(f"{args.run}: give QRELS after a run file (only a result folder records its own qrels)")
    else:
        qrels = read_qrels(args.qrels, args.qrels_format)
    names = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else defaults
    if names is None:
        names = list(CIRCO_METRICS if qrels.format == "circo" else DEFAULT_METRICS)
    try:
        metrics = [parse_metric(name) for name in names]
    except ValueError as err:
        raise MbenchError(f"--metrics: {err}") from None
    if not metrics:
        raise MbenchError("--metrics: give at least one metric, e.g. ndcg@10")
    # Metrics never look past their largest k, so deeper documents need not be kept.
    ranked = read_run(run_path, dedupe=args.dedupe, depth=required_depth(metrics))
    scores = score_run(ranked, qrels, metrics, complete=args.complete, relevance_level=args.relevance_level)

    if scores.skipped_run_queries:
        print(f"mbench score: {scores.skipped_run_queries} run queries are not in the qrels and are ignored", file=sys.stderr)
    if scores.missing_run_queries and not args.complete:
        print(
            f"mbench score: {scores.missing_run_queries} qrels queries have no ranking in the run and are not "
            "averaged (--complete counts them as 0)",
            file=sys.stderr,
        )
    means = scores.mean()
    if args.format == "json":
        out: dict = {"all": means}
        if args.per_query:
            columns = [scores.per_query[m.name].tolist() for m in metrics]
            out["per_query"] = {
                str(qid): {m.name: column[i] for m, column in zip(metrics, columns)} for i, qid in enumerate(scores.qids)
            }
        json.dump(out, sys.stdout)
        sys.stdout.write("\n")
        return 0

    from tabulate import tabulate

    from mbench.display import display_decimals, format_value

    decimals = display_decimals(args.decimals)
    # Values are formatted here so that numeric-looking query ids stay text.
    rows = [["all", *(format_value(means[m.name], decimals) for m in metrics)]]
    if args.per_query:
        per_query = [[format_value(v, decimals) for v in scores.per_query[m.name].tolist()] for m in metrics]
        rows += [[qid, *(column[i] for column in per_query)] for i, qid in enumerate(scores.qids)]
    aligns = ["left", *(["right"] * len(metrics))]
    print(tabulate(rows, headers=["query", *(m.name for m in metrics)], disable_numparse=True, colalign=aligns))
    print(f"\n{len(scores.qids)} queries; values x100")
    return 0




def _stored_inputs(directory, args: argparse.Namespace) -> tuple:
    """(run file, qrels, default metrics) of a result folder; a QRELS given on the command line replaces the recorded one."""
    from mbench.formats.qrels import read_qrels
    from mbench.results import RUN_FILE, read_result, recorded_qrels

    recorded = list(read_result(directory).metrics)
    run_file = directory / RUN_FILE
    if not run_file.is_file():
        raise MbenchError(f"{directory}: no {RUN_FILE}; the result folder is incomplete")
    qrels = read_qrels(args.qrels, args.qrels_format) if args.qrels is not None else recorded_qrels(directory)
    # Modality accuracy needs the pool's modalities, which a run file does not carry.
    left_out = [m for m in recorded if m.startswith("modality_acc")]
    if left_out and args.metrics is None:
        print(f"mbench score: {', '.join(left_out)} left out (needs the pool's modalities; result.json has them)",
              file=sys.stderr)
    return run_file, qrels, [m for m in recorded if m not in left_out] or None
