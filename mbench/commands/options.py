"""Options several commands share, defined once so that they default and read the same everywhere."""

from __future__ import annotations

import argparse

DEVICE_HELP = "cpu, cuda or cuda:N (default: cuda when torch sees a GPU, else cpu)"


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: where models run (resolved by ``resolve_device``)."""
    parser.add_argument("--device", default=None, help=DEVICE_HELP)


def resolve_device(device: str | None) -> str:
    """The ``--device`` given, else ``cuda`` when torch sees a GPU, else ``cpu`` (imports torch)."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def add_tasks_dir_argument(parser: argparse.ArgumentParser) -> None:
    """``--tasks-dir``: extra task YAML directories, on top of the packaged tasks and entry points."""
    parser.add_argument("--tasks-dir", action="append", default=[], metavar="DIR",
                        help="an extra directory of task YAMLs, searched recursively (repeatable)")


def add_reranker_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """``--reranker`` with its arguments, depth and batch size (required by `mbench rerank`, optional in `run`)."""
    parser.add_argument(
        "--reranker", required=required, default=None,
        help="the reranker (llava-next-tf, cross-encoder, or package.module:factory)"
        + ("" if required else "; rerank the top-k of every task with it"),
    )
    parser.add_argument("--reranker-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="argument of the reranker's factory (repeatable)")
    parser.add_argument("--rerank-top-k", type=int, default=10, metavar="K", help="candidates reranked per query (default: 10)")
    parser.add_argument("--rerank-batch-size", type=int, default=8, metavar="N",
                        help="pairs per reranker forward pass (default: 8)")
