"""Find a task's data (data root, generated mini data, or the HF hub) and dispatch to its adapter."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from mbench.data.common import hub_offline
from mbench.data.types import TaskData
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


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$MBENCH_CACHE``, else ``~/.cache/mbench``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    return Path(os.environ.get("MBENCH_CACHE") or "~/.cache/mbench").expanduser()


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
    folder = local_folder(spec, data_dir=data_dir, cache_dir=cache_dir)
    if spec.adapter == "beir":
        if folder is not None:
            from mbench.data.beir import load_beir

            return load_beir(spec, folder)
        _require_hub(spec, data_dir)
        from mbench.data.beir import load_beir_hub

        return _from_hub(spec, data_dir, lambda: load_beir_hub(spec))
    if spec.adapter == "circo":
        if folder is None:
            raise MbenchError(_not_found(spec, data_dir))
        from mbench.data.circo import load_circo

        return load_circo(spec, folder)
    from mbench.data.mbeir import PoolMember, load_mbeir

    if folder is None:
        _require_hub(spec, data_dir)
        folder = _from_hub(spec, data_dir, lambda: _mbeir_snapshot(spec, pool, group_members))
    members: list[PoolMember] = []
    pool_spec = spec.pools.get(pool)
    if pool_spec is not None and pool_spec.union_of is not None:
        members = global_pool_members(
            spec, pool_spec.union_of, folder, data_dir=data_dir, cache_dir=cache_dir, group_members=group_members
        )
    return load_mbeir(spec, folder, pool="local" if not members else pool, global_members=members,
                      check_images=check_images)


def global_pool_members(
    spec: TaskSpec,
    group: str,
    folder: Path,
    *,
    data_dir: Path | str | None,
    cache_dir: Path | str | None = None,
    group_members: GroupMembers | None = None,
) -> list:
    """The local pools whose concatenation is ``spec``'s pool ``union_of: group``, each file once."""
    from mbench.data.mbeir import PoolMember

    resolve = group_members or default_group_members
    members: list[PoolMember] = []
    seen: set[Path] = set()
    for member in resolve(group):
        local = member.pools.get("local")
        if member.adapter != "mbeir" or local is None or local.file is None:
            raise MbenchError(
                f"task {spec.name}: pool union_of {group!r} includes {member.name}, which has no M-BEIR local pool file"
            )
        member_folder = folder if member.data_folder == spec.data_folder else local_folder(
            member, data_dir=data_dir, cache_dir=cache_dir
        )
        if member_folder is None:
            raise MbenchError(_not_found(member, data_dir))
        path = (member_folder / local.file).absolute()
        if path in seen:
            continue
        seen.add(path)
        members.append(PoolMember(task=member.name, path=path, root=member_folder))
    if not members:
        raise MbenchError(f"task {spec.name}: group {group!r} of its pool has no tasks")
    return members


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


def _require_hub(spec: TaskSpec, data_dir: Path | str | None) -> None:
    if spec.hf_dataset is None or hub_offline():
        raise MbenchError(_not_found(spec, data_dir))


# The hub readers come with the `hub` extra; a missing one is a setup step to name, not a failure to report.
HUB_MODULES = ("datasets", "huggingface_hub")
HUB_EXTRA_HINT = 'pip install "mbench[hub]"'


def _from_hub(spec: TaskSpec, data_dir: Path | str | None, fetch: Callable):
    try:
        return fetch()
    except MbenchError:
        raise
    except ModuleNotFoundError as err:
        if err.name not in HUB_MODULES:
            raise
        raise MbenchError(
            f"{_not_found(spec, data_dir)}\n(downloading needs the `{err.name}` package, which is not installed: "
            f"{HUB_EXTRA_HINT} installs datasets and huggingface_hub)"
        ) from None
    except Exception as err:  # network, auth or missing revision: say what failed and how to work offline
        raise MbenchError(f"{_not_found(spec, data_dir)}\n(downloading failed: {type(err).__name__}: {err})") from err


def _mbeir_snapshot(spec: TaskSpec, pool: str, group_members: GroupMembers | None) -> Path:
    """Download the files this task reads from the pinned M-BEIR revision; return the snapshot folder."""
    from huggingface_hub import snapshot_download

    from mbench.data.mbeir import INSTRUCTIONS_FILE, required_files

    patterns = required_files(spec, "local") + [INSTRUCTIONS_FILE]
    pool_spec = spec.pools.get(pool)
    if pool_spec is not None and pool_spec.union_of is not None:
        resolve = group_members or default_group_members
        patterns += [m.pools["local"].file for m in resolve(pool_spec.union_of) if "local" in m.pools]
    path = snapshot_download(
        repo_id=spec.hf_dataset, repo_type="dataset", revision=spec.revision, allow_patterns=sorted(set(patterns))
    )
    return Path(path)


def _not_found(spec: TaskSpec, data_dir: Path | str | None) -> str:
    """The one message for data that is neither on disk nor reachable on the hub."""
    root = data_root(data_dir)
    if root is None:
        looked = f"no data root is set (pass --data-dir ROOT or set MBENCH_DATA), so {spec.data_folder}/ was not looked for"
    else:
        origin = "--data-dir" if data_dir is not None else "$MBENCH_DATA"
        looked = f"looked for {(root / spec.data_folder).absolute()} ({origin}): not found"
    how = {
        "mbeir": f"download the M-BEIR dataset (huggingface-cli download {spec.hf_dataset or 'TIGER-Lab/M-BEIR'} "
        f"--repo-type dataset{' --revision ' + spec.revision if spec.revision else ''} --local-dir ROOT/{spec.data_folder})"
        " and extract its image archive there",
        "beir": f"download the BEIR dataset into ROOT/{spec.data_folder} (corpus.jsonl, queries.jsonl, qrels/{spec.split}.tsv)"
        + (f", or let mbench fetch {spec.hf_dataset}@{spec.revision} from the hub (needs {HUB_EXTRA_HINT})"
           if spec.hf_dataset else ""),
        "circo": f"clone https://github.com/miccunifi/CIRCO into ROOT/{spec.data_folder} (annotations/) and unzip the "
        "COCO 2017 unlabeled images (unlabeled2017/) and image_info_unlabeled2017.json there",
    }[spec.adapter]
    hub = ""
    if spec.hf_dataset is not None and spec.adapter != "circo":
        hub = (" The hub is not available: HF_HUB_OFFLINE is set; unset it to download."
               if hub_offline() else "")
    return f"task {spec.name}: data not found: {looked}. To get it: {how}.{hub}"
