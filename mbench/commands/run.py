"""`mbench run`: evaluate a model on tasks (groups expand), cached and resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from mbench.commands.options import add_device_argument, add_reranker_arguments, add_tasks_dir_argument, resolve_device
from mbench.data.limit import DEFAULT_LIMIT_POOL
from mbench.display import add_decimals_argument
from mbench.engine.instructions import INSTRUCTION_POLICIES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `mbench run`."""
    parser.add_argument("--model", required=True, help="registered model name, alias, or package.module:factory")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="argument of the model's factory (repeatable)")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="allow models that ship their own Python code (e.g. nvidia/MM-Embed) to run it")
    parser.add_argument("--tasks", required=True, help="comma-separated task or group names (e.g. mbeir, mteb.scifact)")
    parser.add_argument("--pool", default="local", help="candidate pool: local (default) or global (M-BEIR union pool)")
    parser.add_argument("--data-dir", type=Path, default=None, help="data root (default: $MBENCH_DATA)")
    parser.add_argument("--results-dir", type=Path, default=None, help="results root (default: $MBENCH_RESULTS or ./results)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache root (default: $MBENCH_CACHE or ~/.cache/mbench)")
    add_tasks_dir_argument(parser)
    parser.add_argument("--instruction-policy", choices=INSTRUCTION_POLICIES, default="first",
                        help="which instruction each query gets (default: first, as the MM-Embed paper)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the 'seeded' instruction policy")
    add_device_argument(parser)
    parser.add_argument("--batch-size", type=int, default=64, help="items per encoder call")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding images")
    parser.add_argument("--depth", type=int, default=None,
                        help="ranking depth kept (default: the largest metric k, the task's depth, at least 100)")
    parser.add_argument("--search-backend", choices=("torch", "faiss"), default="torch")
    parser.add_argument("--store-dtype", choices=("native", "fp16"), default="native",
                        help="embedding cache precision: native (default) keeps what the model emits bit for bit "
                             "(fp32 on CPU); fp16 halves the disk of a huge pool but rounds every embedding "
                             "(recorded, and its results go to <pool>.store-fp16/)")
    parser.add_argument("--shard-size", type=int, default=8192,
                        help="items per stored embedding shard: the most a killed run recomputes")
    parser.add_argument("--overwrite", action="store_true", help="recompute results that already exist")
    add_reranker_arguments(parser, required=False)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    smoke = parser.add_argument_group("smoke run (partial results, kept apart from full ones)")
    smoke.add_argument("--limit", type=int, default=None, metavar="N",
                       help="evaluate a seeded sample of N queries per task, against the candidates they are judged "
                       "on plus sampled distractors of the pool; results go to <pool>.limit-N, marked partial")
    smoke.add_argument("--limit-pool", default=str(DEFAULT_LIMIT_POOL), metavar="M",
                       help=f"candidates kept with --limit (default: {DEFAULT_LIMIT_POOL}); 'all' keeps the whole pool, "
                       "so each sampled query scores as in the full run")
    smoke.add_argument("--limit-seed", type=int, default=0, metavar="S", help="seed of the --limit sample (default: 0)")
    add_decimals_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Build the model once, evaluate every task, print a table of main metrics."""
    from mbench.engine.orchestrate import RerankRequest, compatible_tasks, run_tasks
    from mbench.engine.pipeline import STORE_DTYPE_CHOICES, RunOptions
    from mbench.errors import MbenchError
    from mbench.models.registry import (
        accepted_args,
        build_model,
        parse_model_args,
        resolve_factory,
    )
    from mbench.results import default_results_dir
    from mbench.tasks import expand_task_names, load_task_spec

    if args.batch_size < 1 or args.num_workers < 0 or args.shard_size < 1:
        raise MbenchError("--batch-size and --shard-size must be >= 1 and --num-workers >= 0")
    requested = [t.strip() for t in args.tasks.split(",") if t.strip()]
    names = expand_task_names(requested, args.tasks_dir)
    specs = [load_task_spec(name, args.tasks_dir) for name in names]
    for spec in specs:
        if args.pool not in spec.pools and spec.pools:
            raise MbenchError(f"task {spec.name} has no pool {args.pool!r} (its pools: {', '.join(spec.pools)})")
    model_args = parse_model_args(args.model_arg)
    limit = None
    if args.limit is not None:
        from mbench.data.limit import Limit, parse_limit_pool

        limit = Limit(queries=args.limit, seed=args.limit_seed, pool=parse_limit_pool(args.limit_pool))
    if args.trust_remote_code:
        factory, _ = resolve_factory(args.model)
        if "trust_remote_code" not in {a.name for a in accepted_args(factory)[0]}:
            raise MbenchError(f"model {args.model!r} runs no remote code; drop --trust-remote-code")
        model_args.setdefault("trust_remote_code", "true")
    from mbench.engine.distributed import current_world, rank_device

    device = rank_device(resolve_device(args.device))
    world = current_world(device)
    options = RunOptions(
        pool=args.pool,
        data_dir=args.data_dir,
        results_dir=args.results_dir or default_results_dir(),
        cache_dir=args.cache_dir,
        tasks_dirs=tuple(args.tasks_dir),
        instruction_policy=args.instruction_policy,
        seed=args.seed,
        device=device,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        depth=args.depth,
        search_backend=args.search_backend,
        store_dtype=STORE_DTYPE_CHOICES[args.store_dtype],
        overwrite=args.overwrite,
        progress=not args.no_progress,
        shard_size=args.shard_size,
        requested_model=args.model,
        world=world,
        limit=limit,
    )
    model = build_model(args.model, model_args, device=device)
    specs = compatible_tasks(model.meta, specs, requested)
    rerank = None
    if args.reranker:
        rerank = RerankRequest(args.reranker, args.reranker_arg, args.rerank_top_k, args.rerank_batch_size)
    outcomes = run_tasks(model, model_args, specs, options, rerank=rerank)
    if world.is_main:
        print(_summary_table(model.meta.name, outcomes, args.decimals))
    return 0


def _summary_table(model_name: str, outcomes: list, decimals: int | None = None) -> str:
    """Main metric per task (x100, rounded by mbench.display's rule), as a plain table."""
    from tabulate import tabulate

    from mbench.display import display_decimals, format_value

    shown = display_decimals(decimals)
    rows = []
    for spec, outcome in outcomes:
        record = outcome.record
        main = record.main_metric
        value = record.metrics.get(main) if main else None
        rows.append([outcome.task, record.pool, main or "-", "-" if value is None else format_value(value, shown),
                     record.n_queries])
    partial = sorted({str(o.record.limit["queries"]) for _, o in outcomes if o.record.limit})
    flag = (f"PARTIAL: --limit {', '.join(partial)} (a sample of each task's queries and candidates; "
            "not comparable with full results)\n") if partial else ""
    # Values stay as formatted (tabulate would reparse "40.00" as 40).
    return f"model: {model_name}\n{flag}" + tabulate(rows, headers=["task", "pool", "main metric", "x100", "queries"],
                                                 disable_numparse=True, colalign=("left",) * 3 + ("right",) * 2)
