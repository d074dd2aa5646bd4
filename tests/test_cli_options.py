"""Options shared by several commands mean the same in each: one default, one help text."""

from __future__ import annotations

import argparse
import importlib

import pytest

from mbench.cli import COMMANDS


def _action(command: str, option: str) -> argparse.Action:
    parser = argparse.ArgumentParser()
    importlib.import_module(COMMANDS[command][0]).add_arguments(parser)
    return next(a for a in parser._actions if option in a.option_strings)


@pytest.mark.parametrize("option", ["--device", "--reranker-arg", "--rerank-top-k", "--rerank-batch-size", "--tasks-dir"])
def test_run_and_rerank_read_a_shared_option_alike(option: str) -> None:
    run, rerank = _action("run", option), _action("rerank", option)
    assert (run.default, run.help, run.type) == (rerank.default, rerank.help, rerank.type)


def test_without_a_gpu_the_device_default_is_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from mbench.commands.options import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == "cpu"
    assert resolve_device("cuda:1") == "cuda:1"
