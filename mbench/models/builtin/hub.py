"""Offline resolution of a Hugging Face model name to a local directory and the revision that pins it."""

from __future__ import annotations

from pathlib import Path

from mbench.errors import MbenchError
from mbench.models.base import directory_digest


def resolve_model_dir(name: str, revision: str | None, *, plugin: str, local_arg: str = "name") -> tuple[Path, str]:
    """A local directory holding ``name`` and its revision: a local dir's content digest or the cached hub commit.

    Never downloads: a hub id that is not in the local Hugging Face cache is an error that says
    how to fetch it or point at a local copy (with ``--model-arg <local_arg>=``).
    """
    local = Path(name).expanduser()
    if local.is_dir():
        if revision is not None:
            raise MbenchError(f"{plugin}: --model-arg revision applies to hub ids, not to the local directory {name!r}")
        return local.resolve(), directory_digest(local)
    # A path-like name that is not a directory is a typo, not a hub id: say so instead of a cache miss.
    if local.is_absolute() or name.startswith(("./", "../", "~")) or name.count("/") > 1:
        raise MbenchError(f"{plugin}: model directory {name!r} does not exist")
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(name, revision=revision, local_files_only=True))
    except Exception as err:  # the hub client raises several types for "not cached"
        at = f" at revision {revision}" if revision else ""
        raise MbenchError(
            f"{plugin}: model {name!r}{at} is not in the local Hugging Face cache and mbench never downloads: "
            f"fetch it with `hf download {name}{f' --revision {revision}' if revision else ''}`, "
            f"or pass --model-arg {local_arg}=/path/to/a/local/copy"
        ) from err
    # A snapshot directory is named after the commit it holds.
    return path, path.name
