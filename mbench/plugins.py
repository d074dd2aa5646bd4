"""Entry-point plugins: finding the installed entry points of a group, and loading one so that a
broken plugin names itself. The model registry (``mbench.models``), the adapter registry
(``mbench.adapters``) and the task index (``mbench.tasks``) all find their plugins here.
"""

from __future__ import annotations

import importlib.metadata
import warnings
from collections.abc import Collection
from typing import Any

from mbench.errors import MbenchError


def entry_points_by_name(
    group: str, *, builtin_names: Collection[str] = (), kind: str, shadow_is_error: bool = False
) -> dict[str, importlib.metadata.EntryPoint]:
    """The installed entry points of ``group`` by name, sorted.

    A name two packages register is an error; one a built-in ``kind`` already has is shadowed by
    it (a warning), or refused when ``shadow_is_error``.
    """
    found = sorted(importlib.metadata.entry_points(group=group), key=lambda ep: ep.name)
    out: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in found:
        if ep.name in builtin_names:
            message = (f"entry point {ep.name!r} ({ep.value}) in group {group!r} is shadowed by the built-in {kind} "
                       "of the same name; rename it to use it")
            if shadow_is_error:
                raise MbenchError(message)
            warnings.warn(message, stacklevel=3)
            continue
        if ep.name in out:
            raise MbenchError(
                f"two installed packages register the {kind} {ep.name!r} in {group!r}: {out[ep.name].value} and "
                f"{ep.value}; uninstall one"
            )
        out[ep.name] = ep
    return out


def load_entry_point(ep: importlib.metadata.EntryPoint, where: str) -> Any:
    """What the entry point names; any failure to import it is an MbenchError starting with ``where``."""
    try:
        return ep.load()
    except Exception as err:  # a broken third-party plugin must name itself, not crash the CLI
        raise MbenchError(f"{where}: cannot load: {type(err).__name__}: {err}") from err
