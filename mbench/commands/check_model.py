"""`mbench check-model NAME [--model-arg k=v ...]`: run a plugin through the conformance check.

The sample is drawn from the mini benchmark (generated into the cache on first use): queries
and candidates of every modality its tasks cover, so each declared modality is exercised and
each undeclared one must be refused. Exit status 0 when every check passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import warnings

from mbench.commands.options import add_tasks_dir_argument
from mbench.errors import MbenchError

MINI_PREFIX = "mini."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of `mbench check-model`."""
    parser.add_argument("model", metavar="NAME", help="a registered model, an entry-point plugin or package.module:factory")
    parser.add_argument(
        "--model-arg", action="append", default=[], metavar="KEY=VALUE", help="a plugin argument (repeatable)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--dtype", default=None, choices=("float32", "float16", "bfloat16"), help="the plugin's compute dtype"
    )
    parser.add_argument(
        "--batch-sizes", default="1,7,64", help="comma-separated batch sizes whose outputs must agree (default: 1,7,64)"
    )
    parser.add_argument(
        "--per-modality", type=int, default=24, metavar="N", help="sample items per modality and role (default: 24)"
    )
    parser.add_argument("--tolerance", type=float, default=None, help="largest relative deviation between batchings")
    parser.add_argument("--cache-dir", default=None, help="where the mini benchmark is generated (default: $MBENCH_CACHE)")
    add_tasks_dir_argument(parser)


def _batch_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError as err:
        raise MbenchError(f"--batch-sizes {text!r}: expected comma-separated integers") from err
    if len(sizes) < 2 or min(sizes) < 1:
        raise MbenchError(f"--batch-sizes {text!r}: give at least two positive sizes")
    return sizes


def run(args: argparse.Namespace) -> int:
    """Build the model, sample the mini benchmark, run the checks and print the report."""
    from mbench.data.common import DataWarning
    from mbench.data.loader import load_task
    from mbench.engine.encode import autocast_context
    from mbench.models import conformance
    from mbench.models.base import model_kind
    from mbench.models.registry import build_model, parse_model_args
    from mbench.tasks.index import get_index

    batch_sizes = _batch_sizes(args.batch_sizes)
    if args.per_modality < 1:
        raise MbenchError("--per-modality must be >= 1")
    index = get_index(args.tasks_dir)
    specs = [index.task(name) for name in index.tasks if name.startswith(MINI_PREFIX)]
    if not specs:
        raise MbenchError("no mini benchmark tasks (mini.*) are registered, so there is nothing to check the model on")
    with warnings.catch_warnings():
        # Notes about the mini data itself (e.g. cross-dataset judgments dropped from a local
        # pool) concern scoring, not the items sampled here.
        warnings.simplefilter("ignore", DataWarning)
        tasks = [load_task(spec, data_dir=None, cache_dir=args.cache_dir) for spec in specs]
    sampled_queries = conformance.sample_items_with_source([t.queries for t in tasks], args.per_modality)
    candidates = conformance.sample_items([t.pool for t in tasks], args.per_modality)
    queries = [item for item, _ in sampled_queries]

    model = build_model(args.model, parse_model_args(args.model_arg), device=args.device, dtype=args.dtype)
    family = getattr(getattr(model, "meta", None), "prompt_family", None)
    # As in a run: each query gets its own task's prompt; a reranker scores pairs of one task.
    query_prompts = [specs[t].prompts.get(family) if family else None for _, t in sampled_queries]
    # A prompt-driven reranker cannot score a task without its prompt; such tasks give no pairs.
    pairs = [(query, tasks[t].pool.item(0), prompt)
             for (query, t), prompt in zip(sampled_queries, query_prompts) if prompt is not None or not family]
    tolerance = args.tolerance if args.tolerance is not None else conformance.default_tolerance(args.device, args.dtype)
    # A retriever is checked in the precision `mbench run` encodes in (bf16 autocast on CUDA);
    # a model that fits no protocol is reported by the checks themselves.
    retriever = False
    with contextlib.suppress(MbenchError):
        retriever = model_kind(model) == "retriever"
    precision = autocast_context(args.device) if retriever else contextlib.nullcontext()
    with precision:
        results = conformance.run_conformance(
            model, queries, candidates, batch_sizes=batch_sizes, tolerance=tolerance, query_prompts=query_prompts,
            pairs=pairs,
        )
    print(f"check-model {args.model}: {len(queries)} queries and {len(candidates)} candidates from {len(specs)} mini tasks")
    print(conformance.format_report(results))
    failed = [r.name for r in results if not r.passed]
    print(f"{len(results) - len(failed)}/{len(results)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
