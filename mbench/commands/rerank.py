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

from mbench.commands.options import add_device_argument, add_reranker_arguments, add_tasks_dir_argument, resolve_device
from mbench.display import add_decimals_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of `mbench rerank`."""
    parser.add_argument("result_dir", metavar="RESULT_DIR", help="a first-stage result directory (holds result.json)")
    add_reranker_arguments(parser, required=True)
    parser.add_argument("--data-dir", default=None, help="the data root (default: the source recorded in result.json)")
    parser.add_argument("--cache-dir", default=None, help="cache root for reranker scores (default: $MBENCH_CACHE)")
    add_tasks_dir_argument(parser)
    add_device_argument(parser)
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
    from mbench.engine.rerank import rerank_result
    from mbench.models.registry import build_reranker
    from mbench.results import SUBMISSION_FILE, read_result
    from mbench.tasks.index import load_task_spec

    first_dir = Path(args.result_dir)
    first = read_result(first_dir)
    task, pool = first.task, first.pool
    spec = load_task_spec(task, args.tasks_dir)
    source = first.dataset.get("source")
    data_dir = args.data_dir if args.data_dir is not None else data_dir_from_source(source, spec.data_folder)
    data = limited_like(load_task(spec, data_dir=data_dir, pool=pool, cache_dir=args.cache_dir), first)

    device = resolve_device(args.device)
    reranker, reranker_args = build_reranker(args.reranker, args.reranker_arg, batch_size=args.rerank_batch_size,
                                             device=device, dtype=args.dtype)
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
        device=device,
    )
    reranked = read_result(out_dir)
    info = reranked.rerank
    print(f"{task} ({pool}): reranked the top {args.rerank_top_k} with {args.reranker} "
          f"({info.pairs_scored} pairs scored, {info.pairs_cached} from the cache) -> {out_dir}")
    main = spec.main_metric
    if main is None:
        print(f"{task} has no qrels: submission file {out_dir / SUBMISSION_FILE}")
        return 0
    before = first.metrics.get(main)
    after = reranked.metrics[main]
    decimals = display_decimals(args.decimals)
    before_text = format_value(before, decimals) if before is not None else "n/a"
    print(f"{main}: retrieval {before_text}  rerank {format_value(after, decimals)}"
          + (f"  ({format_value(after - before, decimals, signed=True)})" if before is not None else ""))
    return 0
