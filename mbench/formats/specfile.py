"""Reading the YAML spec files (tasks, groups, leaderboards, sweeps): safe, strict, with errors naming file and line.

Safe: PyYAML's safe loader (its C version when built), so no tag can construct a Python object.
Strict: a key given twice in one mapping is an error (YAML calls it one, PyYAML keeps the last
value silently), and text must be UTF-8 (a leading byte-order mark is allowed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mbench.errors import MbenchError

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_Base):  # type: ignore[misc, valid-type]
    """The safe loader, refusing a key repeated in one mapping."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            repeated = key in seen
        except TypeError:  # an unhashable key: construct_mapping reports it
            break
        if repeated:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} appears twice in one mapping (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _mapping)


def read_yaml(path: str | Path, error: type[MbenchError] = MbenchError, *, missing: str = "no such file") -> Any:
    """The YAML document in ``path``; an unreadable, non-UTF-8 or malformed file raises ``error`` naming
    file and line; ``missing`` is what a missing file is called."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {missing}") from None
    except OSError as err:
        raise error(f"{path}: cannot read: {err.strerror or err}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a safe loader, C or Python
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(err, "problem", None) or str(err)
        raise error(f"{where}: malformed YAML: {problem}") from None


def relative_inside(value: str) -> str:
    """``value`` if it is a relative path that stays inside its base folder (no absolute path, no ``..``).

    For pydantic validators of spec fields that name files under a data root or working folder:
    a spec must not read or write outside it.
    """
    if not value or not value.strip():
        raise ValueError("an empty path")
    path = Path(value)
    if path.is_absolute() or value.startswith("~") or "\\" in value:
        raise ValueError(f"{value!r} is not a relative path (absolute paths and ~ are refused)")
    if ".." in path.parts:
        raise ValueError(f"{value!r} climbs out of its folder with '..'")
    return value


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
