"""`mbench validate TASK...`: check task YAMLs and their data (files, counts, ids, images); exit 0 only if valid.

Every problem found is listed (file, line or id), not only the first; imports no torch.
"""

from __future__ import annotations

import argparse
import random
import warnings
from pathlib import Path

from mbench.errors import MbenchError

# Images opened per task and pool unless --full: enough to catch a wrong image root or a
# truncated archive, cheap enough for pools of millions.
IMAGE_SAMPLE = 200


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's options."""
    parser.add_argument("tasks", nargs="+", metavar="TASK", help="task or group names (or glob patterns)")
    parser.add_argument("--data-dir", type=Path, default=None, help="data root (default: $MBENCH_DATA)")
    parser.add_argument("--tasks-dir", type=Path, action="append", default=[], help="extra task YAML directory")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache directory (default: $MBENCH_CACHE)")
    parser.add_argument("--pool", default="local", choices=("local", "global"), help="which pool to check")
    parser.add_argument("--full", action="store_true", help=f"open every image (default: a sample of {IMAGE_SAMPLE})")


def run(args: argparse.Namespace) -> int:
    """Validate each task; print a line per task and every problem; 0 if all are valid, else 2."""
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


def validate_task(
    spec,
    *,
    data_dir: Path | None,
    pool: str = "local",
    cache_dir: Path | None = None,
    tasks_dirs: list[Path] | tuple = (),
    full: bool = False,
) -> tuple[list[str], list[str], str]:
    """(problems, warnings, summary) for one task's data against its YAML."""
    from mbench.data.loader import group_members_from_index, load_task, local_folder

    if spec.pools and pool not in spec.pools:
        return [], [], f"no {pool!r} pool (pools: {', '.join(spec.pools)}): nothing to check"
    problems: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = load_task(
                spec, data_dir=data_dir, pool=pool, cache_dir=cache_dir,
                group_members=group_members_from_index(tasks_dirs), check_images=False,
            )
        except MbenchError as err:
            return [str(err)], [str(w.message) for w in caught], ""
    notes = [str(w.message) for w in caught]
    folder = local_folder(spec, data_dir=data_dir, cache_dir=cache_dir)
    n_queries = len(data.queries)
    if spec.n_queries is not None and n_queries != spec.n_queries:
        problems.append(f"n_queries: the YAML says {spec.n_queries}, the data has {n_queries} queries with judgments"
                        if data.relevance is not None else
                        f"n_queries: the YAML says {spec.n_queries}, the data has {n_queries} queries")
    pool_spec = spec.pools.get(pool)
    if pool_spec is not None and pool_spec.size is not None and len(data.pool) != pool_spec.size:
        problems.append(f"pools.{pool}.size: the YAML says {pool_spec.size}, the pool has {len(data.pool)} candidates")
    n_qrels = _count_judgments(spec, folder, data)
    if spec.n_qrels is not None and n_qrels is not None and n_qrels != spec.n_qrels:
        problems.append(f"n_qrels: the YAML says {spec.n_qrels}, the qrels have {n_qrels} judgments")
    checked, image_problems = _check_images(data, full=full)
    problems.extend(image_problems)
    judged = "no qrels" if n_qrels is None else f"{n_qrels} judgments"
    outside = data.qrels.outside_pool if data.qrels is not None else 0
    if outside:
        judged += f" ({outside} on the other dataset's candidates: global pool only)"
    summary = (f"{n_queries} queries, {len(data.pool)} candidates, {judged}, "
               f"{checked} images opened{' (all)' if full else ''}")
    return problems, notes, summary


def _count_judgments(spec, folder: Path | None, data) -> int | None:
    """Judgments as the YAML's n_qrels counts them: lines of the split's qrels source."""
    if data.relevance is None:
        return None
    if folder is None:  # loaded from the hub: the loaded judgments are the source's
        return int(data.relevance.indices.size)
    if spec.adapter == "mbeir":
        from mbench.data.mbeir import count_judgments

        return count_judgments(spec, folder)
    if spec.adapter == "beir":
        from mbench.data.beir import qrels_path, read_qrels

        return len(read_qrels(qrels_path(spec, folder)))
    from mbench.data.circo import count_relevant

    return count_relevant(spec, folder)[1]


def _check_images(data, *, full: bool) -> tuple[int, list[str]]:
    """Open (a deterministic sample of) the task's images with PIL; list every missing or unreadable one."""
    from PIL import Image

    entries = [("query", data.queries.ids[i], path) for i, path in enumerate(data.queries.images) if path]
    entries += [("candidate", data.pool.ids[i], path) for i, path in enumerate(data.pool.images) if path]
    if not full and len(entries) > IMAGE_SAMPLE:
        entries = random.Random(f"validate/{data.name}").sample(entries, IMAGE_SAMPLE)
    problems = []
    for role, item_id, path in entries:
        try:
            with Image.open(path) as image:
                image.verify()
        except FileNotFoundError:
            problems.append(f"image missing: {role} {item_id!r}: {path}")
        except Exception as err:  # PIL raises many types for corrupt files; each is a problem to report
            problems.append(f"image unreadable: {role} {item_id!r}: {path}: {type(err).__name__}: {err}")
    return len(entries), problems
