"""Finding data adapters by name: the built-ins, then the entry-point group ``mbench.adapters``.

An entry point names an adapter class (instantiated without arguments) or an adapter object,
e.g. ``[project.entry-points."mbench.adapters"] mydata = "my_pkg.adapter:MyAdapter"``; its name is
the ``adapter:`` value of the task YAMLs it loads. Built-ins are imported only when used.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
from typing import TYPE_CHECKING

from mbench.errors import MbenchError
from mbench.plugins import entry_points_by_name, load_entry_point

if TYPE_CHECKING:
    from mbench.data.adapter import Adapter

ENTRY_POINT_GROUP = "mbench.adapters"

BUILTINS: dict[str, str] = {
    "beir": "mbench.data.beir:BeirAdapter",
    "circo": "mbench.data.circo:CircoAdapter",
    "mbeir": "mbench.data.mbeir:MbeirAdapter",
}

_MEMBERS = ("name", "files", "options", "downloads", "load", "count", "validate", "how_to_get")


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    # Cached: every task YAML validated asks whether its adapter exists.
    return entry_points_by_name(ENTRY_POINT_GROUP, builtin_names=BUILTINS, kind="adapter", shadow_is_error=True)


def adapter_names() -> list[str]:
    """Every known adapter name: built-ins, then entry points; imports no adapter code."""
    return [*BUILTINS, *_entry_points()]


def list_adapters() -> list[tuple[str, str]]:
    """Every known adapter as (name, source) for `mbench ls adapters`."""
    rows = [(name, f"builtin ({target})") for name, target in BUILTINS.items()]
    rows += [(name, f"entry point {ep.value}") for name, ep in _entry_points().items()]
    return rows


@functools.lru_cache(maxsize=None)
def get_adapter(name: str) -> Adapter:
    """The adapter called ``name``; an unknown name lists the known ones, a broken plugin names itself."""
    if name in BUILTINS:
        module_name, _, attr = BUILTINS[name].partition(":")
        target = getattr(importlib.import_module(module_name), attr)
        where = f"built-in adapter {name!r}"
    else:
        entry_points = _entry_points()
        if name not in entry_points:
            raise MbenchError(
                f"unknown adapter {name!r}; known adapters: {', '.join(adapter_names())} "
                f"(plugins register theirs in the entry-point group {ENTRY_POINT_GROUP!r})"
            )
        where = f"adapter {name!r} (entry point {entry_points[name].value})"
        target = load_entry_point(entry_points[name], where)
    adapter = target() if isinstance(target, type) else target
    missing = [member for member in _MEMBERS if not hasattr(adapter, member)]
    if missing:
        raise MbenchError(f"{where} lacks {', '.join(missing)} of the adapter contract (mbench.data.adapter.Adapter)")
    if adapter.name != name:
        raise MbenchError(f"{where} calls itself {adapter.name!r}; the entry point name and the adapter name must agree")
    return adapter


def clear_cache() -> None:
    """Forget the adapters found and built so far (after installing or faking plugins within one process)."""
    _entry_points.cache_clear()
    get_adapter.cache_clear()
