"""Find a task's data (data root, generated mini data, or the HF hub) and hand it to the task's adapter."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from mbench.data.adapter import LoadRequest
from mbench.data.common import hub_offline
from mbench.data.registry import get_adapter
from mbench.data.types import TaskData
from mbench.engine.cache import cache_root
from mbench.errors import MbenchError
from mbench.tasks.spec import TaskSpec

# group name -> the specs of its tasks, in group order (the M-BEIR global pool's members).
GroupMembers = Callable[[str], Sequence[TaskSpec]]


def data_root(data_dir: Path | str | None) -> Path | None:
    """The data root: ``data_dir`` when given, else ``$MBENCH_DATA``, else None."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get("MBENCH_DATA")
    return Path(env).expanduser() if env else None


def data_dir_from_source(source: str | None, data_folder: str) -> Path | None:
    """The data root whose ``data_folder`` is the recorded source directory, or None (hub ids, generated data)."""
    if not source:
        return None
    path = Path(source)
    folder = Path(data_folder)
    if not path.is_dir() or path.parts[-len(folder.parts):] != folder.parts:
        return None
    root = path
    for _ in folder.parts:
        root = root.parent
    return root


def local_folder(spec: TaskSpec, *, data_dir: Path | str | None, cache_dir: Path | str | None = None) -> Path | None:
    """The task's folder on disk (generating the mini benchmark if needed), or None when it is not there."""
    if spec.generator == "mini":
        from mbench.data.mini import ensure_mini

        return ensure_mini(cache_root(cache_dir)) / spec.data_folder
    root = data_root(data_dir)
    if root is not None and (root / spec.data_folder).is_dir():
        return root / spec.data_folder
    return None


def load_task(
    spec: TaskSpec,
    *,
    data_dir: Path | str | None,
    pool: str = "local",
    cache_dir: Path | str | None = None,
    group_members: GroupMembers | None = None,
    check_images: bool = True,
) -> TaskData:
    """Load ``spec``'s queries, ``pool`` and qrels from the data root, the mini generator or the hub."""
    if spec.pools and pool not in spec.pools:
        raise MbenchError(f"task {spec.name} has no pool {pool!r} (its pools: {', '.join(spec.pools)})")
    adapter = get_adapter(spec.adapter)
    folder = local_folder(spec, data_dir=data_dir, cache_dir=cache_dir)
    if folder is None and (not adapter.downloads or spec.hf_dataset is None or hub_offline()):
        raise MbenchError(not_found(spec, data_dir))
    request = LoadRequest(
        folder=folder,
        pool=pool,
        check_images=check_images,
        folder_of=lambda other: local_folder(other, data_dir=data_dir, cache_dir=cache_dir),
        not_found=lambda other: not_found(other, data_dir),
        group_members=group_members or default_group_members,
    )
    return adapter.load(spec, request)


def group_members_from_index(tasks_dirs: Sequence[Path | str] = ()) -> GroupMembers:
    """A GroupMembers over the task index (packaged tasks, entry points and ``tasks_dirs``)."""

    def members(group: str) -> list[TaskSpec]:
        from mbench.tasks.index import get_index

        index = get_index(tasks_dirs)
        return [index.task(name) for name in index.expand([group])]

    return members


def default_group_members(group: str) -> list[TaskSpec]:
    """The specs of a group's tasks from the default task index (packaged tasks and entry points)."""
    return group_members_from_index(())(group)


def not_found(spec: TaskSpec, data_dir: Path | str | None) -> str:
    """The one message for data that is neither on disk nor reachable on the hub."""
    adapter = get_adapter(spec.adapter)
    root = data_root(data_dir)
    if root is None:
        looked = f"no data root is set (pass --data-dir ROOT or set MBENCH_DATA), so {spec.data_folder}/ was not looked for"
    else:
        origin = "--data-dir" if data_dir is not None else "$MBENCH_DATA"
        looked = f"looked for {(root / spec.data_folder).absolute()} ({origin}): not found"
    hub = ""
    if spec.hf_dataset is not None and adapter.downloads and hub_offline():
        hub = " The hub is not available: HF_HUB_OFFLINE is set; unset it to download."
    return f"task {spec.name}: data not found: {looked}. To get it: {adapter.how_to_get(spec)}.{hub}"
