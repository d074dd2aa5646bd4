"""The task index: every task and group found in the packaged `tasks/`, entry points and extra dirs.

Where task YAMLs come from, in this order (a name defined twice is an error naming both files):

1. the packaged tasks: `mbench/_packaged/tasks` inside an installed wheel, or the repository's
   `tasks/` in a source checkout / editable install (`packaged_tasks_dir`);
2. the entry-point group ``mbench.tasks``: each entry point resolves either to a string or
   `os.PathLike` naming a directory (``my_pkg.tasks:TASKS_DIR``), or to a module
   (``my_pkg.tasks``), whose directory holds the YAMLs: for a package, the package directory;
   for a plain module, the directory containing its file;
3. extra directories passed as `tasks_dirs` (the CLI's ``--tasks-dir DIR``).

Every directory is searched recursively for ``*.yaml`` / ``*.yml``; files starting with `_` are
include-only bases. The index is built once per process and set of extra directories.
"""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from types import ModuleType

from mbench.errors import MbenchError
from mbench.plugins import load_entry_point
from mbench.tasks.loader import LoadedFile, TaskFileError, is_base_file, load_file
from mbench.tasks.spec import GroupSpec, TaskSpec

ENTRY_POINT_GROUP = "mbench.tasks"
_GLOB_CHARS = set("*?[")

PathLike = str | os.PathLike[str]


def packaged_tasks_dir() -> Path:
    """The task YAMLs shipped with mbench: inside the wheel, or the repository's `tasks/` when run from source."""
    package_dir = Path(__file__).resolve().parent.parent
    # pyproject force-includes the repository's `tasks/` here when it builds a wheel.
    installed = package_dir / "_packaged" / "tasks"
    if installed.is_dir():
        return installed
    # Editable installs and source checkouts: the data lives beside the package.
    source_root = package_dir.parent
    if (source_root / "tasks").is_dir() and (source_root / "pyproject.toml").is_file():
        return source_root / "tasks"
    raise MbenchError(
        f"mbench's task YAMLs are missing: looked for {installed} (wheel) and {source_root / 'tasks'} "
        "(source checkout); reinstall mbench"
    )


def _entry_point_dir(ep: metadata.EntryPoint) -> Path:
    where = f"entry point {ep.name!r} = {ep.value!r} (group {ENTRY_POINT_GROUP})"
    target = load_entry_point(ep, where)
    if isinstance(target, (str, os.PathLike)):
        directory = Path(target)
    elif isinstance(target, ModuleType):
        if getattr(target, "__file__", None):
            directory = Path(target.__file__).parent  # type: ignore[arg-type]
        else:  # a namespace package has no __file__, only __path__
            directory = Path(next(iter(target.__path__)))
    else:
        raise MbenchError(
            f"{where}: resolves to a {type(target).__name__}; expected a module or a directory path (str or Path)"
        )
    if not directory.is_dir():
        raise MbenchError(f"{where}: {directory} is not a directory")
    return directory


def entry_point_task_dirs() -> list[Path]:
    """Directories contributed by installed plugins through the `mbench.tasks` entry-point group."""
    eps = sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    return [_entry_point_dir(ep) for ep in eps]


def task_search_dirs(tasks_dirs: Iterable[PathLike] = ()) -> list[Path]:
    """Every directory the index reads, in order: packaged, entry points, then `tasks_dirs`."""
    extra = []
    for directory in tasks_dirs:
        path = Path(directory)
        if not path.is_dir():
            raise MbenchError(f"--tasks-dir {path}: no such directory")
        extra.append(path)
    return [packaged_tasks_dir(), *entry_point_task_dirs(), *extra]


def _yaml_files(directory: Path) -> list[Path]:
    return sorted(p for pattern in ("*.yaml", "*.yml") for p in directory.rglob(pattern) if p.is_file())


def _suggest(name: str, known: Iterable[str] | Mapping[str, LoadedFile]) -> str:
    """`` (did you mean a, b?)`` for close names; the closest one's file too when ``known`` maps names to files
    (a name one typo away from a task may be a typo in that task's own YAML)."""
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    if not close:
        return ""
    where = f" (defined in {known[close[0]].path})" if isinstance(known, Mapping) else ""
    return f" (did you mean {close[0]}{where}{''.join(', ' + c for c in close[1:])}?)"


@dataclass(frozen=True)
class TaskIndex:
    """All known tasks and groups, each with the file that defines it."""

    tasks: Mapping[str, LoadedFile]
    groups: Mapping[str, LoadedFile]

    def task(self, name: str) -> TaskSpec:
        """The spec of task `name`; an unknown name errors with close matches."""
        if name not in self.tasks:
            hint = " (that is a group: expand it first)" if name in self.groups else _suggest(name, self._names())
            raise MbenchError(f"unknown task {name!r}{hint}; `mbench ls tasks` lists them")
        return self.tasks[name].spec  # type: ignore[return-value]

    def group(self, name: str) -> GroupSpec:
        """The spec of group `name`; an unknown name errors with close matches."""
        if name not in self.groups:
            raise MbenchError(f"unknown group {name!r}{_suggest(name, self.groups)}; `mbench ls groups` lists them")
        return self.groups[name].spec  # type: ignore[return-value]

    def source(self, name: str) -> Path:
        """The YAML file that defines task or group `name`."""
        if name in self.tasks:
            return self.tasks[name].path
        if name in self.groups:
            return self.groups[name].path
        raise MbenchError(f"unknown task or group {name!r}{_suggest(name, self._names())}")

    def expand(self, names: Iterable[str]) -> list[str]:
        """Task names for `names`: groups expand recursively, glob patterns match task names; order kept, no repeats."""
        out: dict[str, None] = {}
        for name in names:
            if name in self.tasks:
                out[name] = None
            elif name in self.groups:
                out.update(dict.fromkeys(self._expand_group(name, ())))
            elif _GLOB_CHARS & set(name):
                matched = [t for t in sorted(self.tasks) if fnmatch.fnmatchcase(t, name)]
                if not matched:
                    raise MbenchError(f"pattern {name!r} matches no task; `mbench ls tasks` lists them")
                out.update(dict.fromkeys(matched))
            else:
                raise MbenchError(
                    f"unknown task or group {name!r}{_suggest(name, self._names())}; "
                    "`mbench ls tasks` and `mbench ls groups` list them"
                )
        return list(out)

    def scored_members(self, group: str) -> list[str]:
        """The direct members of ``group`` that a group mean averages: scored tasks, and member groups
        with at least one scored task. Unscored tasks (``scored: false``, e.g. CIRCO test) are left out."""
        members = []
        for member in self.group(group).tasks:
            if member in self.groups:
                if self.scored_tasks([member]):
                    members.append(member)
            elif self.task(member).scored:
                members.append(member)
        return members

    def scored_tasks(self, names: Iterable[str]) -> list[str]:
        """``expand(names)`` without the unscored tasks: the tasks whose metrics a group row reads."""
        return [name for name in self.expand(names) if self.task(name).scored]

    def _expand_group(self, name: str, chain: tuple[str, ...]) -> list[str]:
        if name in chain:
            cycle = " -> ".join((*chain[chain.index(name):], name))
            raise MbenchError(f"{self.groups[name].path}: tasks: group cycle {cycle}")
        spec: GroupSpec = self.groups[name].spec  # type: ignore[assignment]
        out: dict[str, None] = {}
        for position, member in enumerate(spec.tasks):
            if member in self.tasks:
                out[member] = None
            elif member in self.groups:
                out.update(dict.fromkeys(self._expand_group(member, (*chain, name))))
            else:
                raise MbenchError(
                    f"{self.groups[name].path}: tasks.{position}: unknown task or group {member!r}"
                    f"{_suggest(member, self._names())}"
                )
        return list(out)

    def _names(self) -> dict[str, LoadedFile]:
        return {**self.tasks, **self.groups}

    def check_references(self) -> None:
        """Every group member and every `union_of` pool names something that exists (errors name file and key)."""
        for name in self.groups:
            self._expand_group(name, ())
        for name, loaded in self.tasks.items():
            spec: TaskSpec = loaded.spec  # type: ignore[assignment]
            for pool_name, pool in spec.pools.items():
                if pool.union_of is None:
                    continue
                if pool.union_of not in self.groups:
                    raise MbenchError(
                        f"{loaded.path}: pools.{pool_name}.union_of: unknown group {pool.union_of!r}"
                        f"{_suggest(pool.union_of, self.groups)}"
                    )
                if name not in self._expand_group(pool.union_of, ()):
                    raise MbenchError(
                        f"{loaded.path}: pools.{pool_name}.union_of: task {name!r} is not in group "
                        f"{pool.union_of!r}, so its queries could miss their own candidates"
                    )


def build_index(directories: Sequence[Path]) -> TaskIndex:
    """Parse every YAML under `directories` into a TaskIndex (uncached; see `get_index`)."""
    include_cache: dict = {}
    tasks: dict[str, LoadedFile] = {}
    groups: dict[str, LoadedFile] = {}
    seen_dirs: set[Path] = set()
    seen_files: set[Path] = set()
    for directory in directories:
        resolved_dir = directory.resolve()
        if resolved_dir in seen_dirs:
            continue
        seen_dirs.add(resolved_dir)
        for path in _yaml_files(directory):
            resolved = path.resolve()
            if is_base_file(path) or resolved in seen_files:
                continue
            seen_files.add(resolved)
            loaded = load_file(path, include_cache)
            name = loaded.name
            previous = tasks.get(name) or groups.get(name)
            if previous is not None:
                kind = "task" if isinstance(loaded.spec, TaskSpec) else "group"
                raise TaskFileError(
                    f"{path}: {'name' if kind == 'task' else 'group'}: {name!r} is already defined in "
                    f"{previous.path}; task and group names must be unique"
                )
            (tasks if isinstance(loaded.spec, TaskSpec) else groups)[name] = loaded
    index = TaskIndex(tasks=dict(sorted(tasks.items())), groups=dict(sorted(groups.items())))
    index.check_references()
    return index


@lru_cache(maxsize=8)
def _cached_index(extra_dirs: tuple[str, ...]) -> TaskIndex:
    return build_index(task_search_dirs(extra_dirs))


def get_index(tasks_dirs: Iterable[PathLike] = ()) -> TaskIndex:
    """The index over packaged tasks, entry points and `tasks_dirs`, built once per process."""
    return _cached_index(tuple(str(Path(d).resolve()) for d in tasks_dirs))


def clear_cache() -> None:
    """Forget cached indexes (after YAMLs or installed plugins change within one process)."""
    _cached_index.cache_clear()


def load_task_spec(name: str, tasks_dirs: Iterable[PathLike] = ()) -> TaskSpec:
    """The TaskSpec of task `name`."""
    return get_index(tasks_dirs).task(name)


def load_group_spec(name: str, tasks_dirs: Iterable[PathLike] = ()) -> GroupSpec:
    """The GroupSpec of group `name`."""
    return get_index(tasks_dirs).group(name)


def task_source(name: str, tasks_dirs: Iterable[PathLike] = ()) -> Path:
    """The YAML file defining task or group `name` (for messages that name the file)."""
    return get_index(tasks_dirs).source(name)


def list_tasks(tasks_dirs: Iterable[PathLike] = ()) -> list[TaskSpec]:
    """Every task, sorted by name."""
    index = get_index(tasks_dirs)
    return [index.task(name) for name in index.tasks]


def list_groups(tasks_dirs: Iterable[PathLike] = ()) -> list[GroupSpec]:
    """Every group, sorted by name."""
    index = get_index(tasks_dirs)
    return [index.group(name) for name in index.groups]


def expand_task_names(names: Iterable[str], tasks_dirs: Iterable[PathLike] = ()) -> list[str]:
    """Task names for task names, group names (expanded recursively) and glob patterns, in order, without repeats."""
    return get_index(tasks_dirs).expand(names)
