"""Read one task or group YAML: `safe_load`, `include:` inheritance, and errors that name file and key.

Include rules:

- ``include: _base.yaml`` (or a list of paths) names files relative to the including file;
  includes may include further files; a cycle is an error.
- Later includes override earlier ones and the including file overrides all of them.
  Mappings merge key by key (so a base's ``pools: {global: ...}`` survives a task's
  ``pools: {local: ...}``); lists and scalars are replaced whole.
- A key set to ``null`` in the including file removes the inherited value, so the schema
  default applies.
- Files whose name starts with ``_`` are bases: they are only ever included, never tasks.

A file with a top-level ``group:`` key is a group (GroupSpec); any other file is a task (TaskSpec).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mbench.errors import MbenchError
from mbench.tasks.spec import GroupSpec, PoolSpec, TaskSpec

# The C loader parses ~10x faster; it is just as safe (no arbitrary Python objects).
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

INCLUDE_KEY = "include"
GROUP_KEY = "group"


class TaskFileError(MbenchError):
    """A task or group YAML that cannot be read, merged or validated; the message names file and key."""


@dataclass(frozen=True)
class LoadedFile:
    """A task or group file after includes: its spec and where each top-level key was set."""

    path: Path
    spec: TaskSpec | GroupSpec
    key_origins: Mapping[str, Path]

    @property
    def name(self) -> str:
        """The task or group name the file defines."""
        return self.spec.name if isinstance(self.spec, TaskSpec) else self.spec.group


def is_base_file(path: Path) -> bool:
    """True for include-only bases (file name starts with `_`), which are never tasks."""
    return path.name.startswith("_")


def read_yaml(path: Path, error: type[MbenchError], *, missing: str = "no such file") -> Any:
    """The parsed content of a YAML file (safe loader); an unreadable file or malformed YAML raises
    ``error`` naming the file (and the line); ``missing`` is what a missing file is called."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise error(f"{path}: {missing}") from err
    except OSError as err:
        raise error(f"{path}: cannot read: {err}") from err
    try:
        return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - a safe loader, C or Python
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise error(f"{where}: malformed YAML: {problem}") from err


def _read_yaml_mapping(path: Path) -> dict[str, Any]:
    data = read_yaml(path, TaskFileError)
    if data is None:
        raise TaskFileError(f"{path}: the file is empty; a task or group YAML is a mapping of keys")
    if not isinstance(data, dict):
        raise TaskFileError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    for key in data:
        if not isinstance(key, str):
            raise TaskFileError(f"{path}: {key!r}: keys must be strings")
    return data


def _include_targets(path: Path, value: Any) -> list[Path]:
    targets = [value] if isinstance(value, str) else value
    if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t for t in targets):
        raise TaskFileError(f"{path}: {INCLUDE_KEY}: expected a relative path or a list of relative paths")
    return [(path.parent / target) for target in targets]


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resolve(path: Path, chain: tuple[Path, ...], cache: dict[Path, tuple[dict, dict]]) -> tuple[dict, dict]:
    """The merged mapping of `path` and the file that set each top-level key."""
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(resolved):], resolved))
        raise TaskFileError(f"{chain[-1]}: {INCLUDE_KEY}: include cycle {cycle}")
    if resolved in cache:
        return cache[resolved]
    raw = _read_yaml_mapping(path)
    merged: dict[str, Any] = {}
    origins: dict[str, Path] = {}
    if INCLUDE_KEY in raw:
        for target in _include_targets(path, raw[INCLUDE_KEY]):
            if not target.is_file():
                raise TaskFileError(f"{path}: {INCLUDE_KEY}: no such file {target}")
            base, base_origins = _resolve(target, (*chain, resolved), cache)
            merged = _merge(merged, base)
            origins.update(base_origins)
    own = {k: v for k, v in raw.items() if k != INCLUDE_KEY}
    merged = _merge(merged, own)
    origins.update({k: path for k, v in own.items() if v is not None})
    origins = {k: v for k, v in origins.items() if k in merged}
    cache[resolved] = (merged, origins)
    return merged, origins


def read_merged(path: Path, cache: dict[Path, tuple[dict, dict]] | None = None) -> tuple[dict, dict]:
    """Read `path` with its includes applied: (mapping, top-level key -> file that set it)."""
    return _resolve(Path(path), (), {} if cache is None else cache)


def _loc_text(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) if loc else "(top level)"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    # Only the two schemas' own levels are worth a suggestion; nested dicts are free-form.
    if len(loc) == 1:
        return [k for k in model.model_fields if k != INCLUDE_KEY]
    if len(loc) == 3 and loc[0] == "pools":
        return list(PoolSpec.model_fields)
    return []


def format_validation_error(
    path: Path, err: ValidationError, model: type[BaseModel], origins: Mapping[str, Path]
) -> str:
    """Turn pydantic's errors into `file: key: message` lines (naming the base that set an inherited key)."""
    lines = []
    for item in err.errors(include_url=False):
        loc = tuple(item.get("loc", ()))
        msg = item.get("msg", "invalid")
        if item.get("type") == "extra_forbidden":
            allowed = _allowed_keys(model, loc)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1) if allowed else []
            msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
            if allowed:
                msg += f"; allowed keys: {', '.join(sorted(allowed))}"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        origin = origins.get(str(loc[0])) if loc else None
        inherited = f" (inherited from {origin})" if origin is not None and origin != path else ""
        lines.append(f"{path}: {_loc_text(loc)}: {msg}{inherited}")
    return "\n".join(lines)


def load_file(path: Path, cache: dict[Path, tuple[dict, dict]] | None = None) -> LoadedFile:
    """Load one task or group YAML (includes applied) and validate it against its schema."""
    path = Path(path)
    data, origins = read_merged(path, cache)
    model: type[TaskSpec] | type[GroupSpec] = GroupSpec if GROUP_KEY in data else TaskSpec
    try:
        spec = model.model_validate(data)
    except ValidationError as err:
        raise TaskFileError(format_validation_error(path, err, model, origins)) from None
    return LoadedFile(path=path, spec=spec, key_origins=origins)


def load_task_file(path: Path) -> TaskSpec:
    """Load a single task YAML by path (no index needed), e.g. a file a user wrote by hand."""
    loaded = load_file(Path(path))
    if not isinstance(loaded.spec, TaskSpec):
        raise TaskFileError(f"{path}: {GROUP_KEY}: this file defines a group, not a task")
    return loaded.spec
