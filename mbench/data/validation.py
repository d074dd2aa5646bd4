"""Checking a task's data against its YAML: counts, ids (through the adapter's load) and images.

Every problem is collected and named (file, line or id), not only the first; nothing here
imports torch. `mbench validate` prints what this returns.
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from mbench.errors import MbenchError

if TYPE_CHECKING:
    from mbench.data.types import TaskData
    from mbench.tasks.spec import TaskSpec

# Images opened per task and pool unless full: enough to catch a wrong image root or a
# truncated archive, cheap enough for pools of millions.
IMAGE_SAMPLE = 200


class TaskReport(NamedTuple):
    """What validating one task found: problems (the task is valid without any), warnings, and a summary line."""

    problems: list[str]
    notes: list[str]
    summary: str


def validate_task(
    spec: TaskSpec,
    *,
    data_dir: Path | None,
    pool: str = "local",
    cache_dir: Path | None = None,
    tasks_dirs: Sequence[Path | str] = (),
    full: bool = False,
) -> TaskReport:
    """Load the task through its adapter and check it against its YAML: counts, the adapter's checks, images."""
    from mbench.data.loader import group_members_from_index, load_task, local_folder
    from mbench.data.registry import get_adapter

    if spec.pools and pool not in spec.pools:
        return TaskReport([], [], f"no {pool!r} pool (pools: {', '.join(spec.pools)}): nothing to check")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            data = load_task(
                spec, data_dir=data_dir, pool=pool, cache_dir=cache_dir,
                group_members=group_members_from_index(tasks_dirs), check_images=False,
            )
        except MbenchError as err:
            return TaskReport([str(err)], [str(w.message) for w in caught], "")
    notes = [str(w.message) for w in caught]
    adapter = get_adapter(spec.adapter)
    folder = local_folder(spec, data_dir=data_dir, cache_dir=cache_dir)
    problems: list[str] = []
    n_queries = len(data.queries)
    if spec.n_queries is not None and n_queries != spec.n_queries:
        problems.append(f"n_queries: the YAML says {spec.n_queries}, the data has {n_queries} queries with judgments"
                        if data.relevance is not None else
                        f"n_queries: the YAML says {spec.n_queries}, the data has {n_queries} queries")
    pool_spec = spec.pools.get(pool)
    if pool_spec is not None and pool_spec.size is not None and len(data.pool) != pool_spec.size:
        problems.append(f"pools.{pool}.size: the YAML says {pool_spec.size}, the pool has {len(data.pool)} candidates")
    problems.extend(adapter.validate(spec, data, folder))
    checked, image_problems = check_images(data, full=full)
    problems.extend(image_problems)
    n_qrels = adapter.count(spec, data, folder)
    judged = "no qrels" if n_qrels is None else f"{n_qrels} judgments"
    outside = data.qrels.outside_pool if data.qrels is not None else 0
    if outside:
        judged += f" ({outside} on the other dataset's candidates: global pool only)"
    summary = (f"{n_queries} queries, {len(data.pool)} candidates, {judged}, "
               f"{checked} images opened{' (all)' if full else ''}")
    return TaskReport(problems, notes, summary)


def check_images(data: TaskData, *, full: bool) -> tuple[int, list[str]]:
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
