"""`mbench rerank RESULT_DIR --reranker R --rerank-top-k K`: rerank a stored first-stage result.

Reads the first stage's ``result.json`` (task, pool, data source) and ``run.trec.gz``, loads the
task's data, reranks the top-k of every query, and writes the rerank result to
``RESULT_DIR/rerank-<R>-top<K>/`` with the same metrics; prints first-stage vs reranked main
metric. For a task without qrels (``circo.test``) it writes CIRCO's ``submission.json`` of the
reranked ranking (top-50, the reranked top-k first) instead of metrics.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mbench.display import add_decimals_argument
from mbench.errors import MbenchError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of `mbench rerank`."""
    parser.add_argument("result_dir", metavar="RESULT_DIR", help="a first-stage result directory (holds result.json)")
    parser.add_argument("--reranker", required=True, help="a reranker: llava-next-tf, cross-encoder, or package.module:factory")
    parser.add_argument(
        "--reranker-arg", action="append", default=[], metavar="KEY=VALUE", help="a reranker argument (repeatable)"
    )
    parser.add_argument("--rerank-top-k", type=int, default=10, metavar="K", help="candidates reranked per query (default: 10)")
    parser.add_argument("--rerank-batch-size", type=int, default=8, metavar="N", help="pairs per forward pass (default: 8)")
    parser.add_argument("--data-dir", default=None, help="the data root (default: the source recorded in result.json)")
    parser.add_argument("--cache-dir", default=None, help="cache root for reranker scores (default: $MBENCH_CACHE)")
    parser.add_argument("--tasks-dir", action="append", default=[], metavar="DIR", help="an extra directory of task YAMLs")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"),
                        help="the reranker's dtype (default: bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--overwrite", action="store_true", help="recompute an existing rerank result")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_decimals_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Rerank the result, write it beside the first stage, print the main metric before and after."""
    from mbench.data.limit import limited_like
    from mbench.data.loader import data_dir_from_source, load_task
    from mbench.display import display_decimals, format_value
    from mbench.engine.rerank import SUBMISSION_FILE, rerank_result
    from mbench.models.base import model_kind
    from mbench.models.registry import build_model, parse_model_args
    from mbench.results import read_result
    from mbench.tasks.index import load_task_spec

    first_dir = Path(args.result_dir)
    first = read_result(first_dir)
    task, pool = first.get("task"), first.get("pool", "local")
    if not task:
        raise MbenchError(f"{first_dir / 'result.json'}: no task name")
    spec = load_task_spec(task, args.tasks_dir)
    source = (first.get("dataset") or {}).get("source")
    data_dir = args.data_dir if args.data_dir is not None else data_dir_from_source(source, spec.data_folder)
    data = limited_like(load_task(spec, data_dir=data_dir, pool=pool, cache_dir=args.cache_dir), first)

    reranker_args = parse_model_args(args.reranker_arg)
    reranker_args.setdefault("batch_size", str(args.rerank_batch_size))
    reranker = build_model(args.reranker, reranker_args, device=args.device, dtype=args.dtype)
    if model_kind(reranker) != "reranker":
        raise MbenchError(f"{args.reranker!r} is a {model_kind(reranker)}, not a reranker (it has no score())")
    out_dir = rerank_result(
        first_dir,
        reranker,
        top_k=args.rerank_top_k,
        data=data,
        spec=spec,
        cache_dir=args.cache_dir,
        batch_size=args.rerank_batch_size,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        reranker_name=args.reranker,
        reranker_args=reranker_args,
        device=args.device,
    )
    reranked = read_result(out_dir)
    info = reranked["rerank"]
    print(f"{task} ({pool}): reranked the top {args.rerank_top_k} with {args.reranker} "
          f"({info['pairs_scored']} pairs scored, {info['pairs_cached']} from the cache) -> {out_dir}")
    main = spec.main_metric
    if main is None:
        print(f"{task} has no qrels: submission file {out_dir / SUBMISSION_FILE}")
        return 0
    before = (first.get("metrics") or {}).get(main)
    after = reranked["metrics"][main]
    decimals = display_decimals(args.decimals)
    before_text = format_value(before, decimals) if before is not None else "n/a"
    print(f"{main}: retrieval {before_text}  rerank {format_value(after, decimals)}"
          + (f"  ({format_value(after - before, decimals, signed=True)})" if before is not None else ""))
    return 0
