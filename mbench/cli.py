"""The `mbench` command line: a thin dispatcher over one module per subcommand.

Each subcommand lives in `mbench/commands/<name>.py` with `add_arguments(parser)` and
`run(args) -> int`. Only the chosen module is imported, so `mbench --help` stays instant
and never imports torch or model code.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from mbench import __version__
from mbench.errors import MbenchError

# name -> (module, one-line help). Order is the order shown by `mbench --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("mbench.commands.run", "evaluate a model on tasks or groups: cached encoding, exact search, results with provenance"),
    "score": ("mbench.commands.score", "score a TREC run or CIRCO submission against qrels (a fast trec_eval)"),
    "ls": ("mbench.commands.ls", "list tasks, groups, models, data adapters or metrics (--names: one per line)"),
    "validate": ("mbench.commands.validate", "check tasks and their data: files, counts, ids, images (exit 0 only if valid)"),
    "rerank": ("mbench.commands.rerank", "rerank the top-k of a stored result (MLLM True/False, cross-encoder) into a rerank result beside it"),
    "check-model": ("mbench.commands.check_model", "run a model plugin through the conformance check on the mini benchmark"),
    "table": ("mbench.commands.table", "comparison tables from a leaderboard spec or --tasks/--models (md, LaTeX, CSV, HTML)"),
    "compare": ("mbench.commands.compare", "B - A per task with a paired bootstrap CI and a sign-flip test p-value"),
    "plot": ("mbench.commands.plot", "PNG figures of a leaderboard or --tasks/--models: grouped bars with published markers, modality accuracy"),
    "report": ("mbench.commands.report", "one self-contained HTML page comparing results: sortable table, plots, worst queries, provenance"),
    "cache": ("mbench.commands.cache", "inspect, verify and clean the embedding cache (ls | verify | gc)"),
    "export": ("mbench.commands.export", "write results in another tool's format: mteb's result files (--format mteb)"),
    "sweep": ("mbench.commands.sweep", "expand a sweep YAML (models x checkpoints x tasks x pools x policies) into runs: local, Slurm or --dry-run"),
}

EXIT_BAD_INPUT = 2


class ExactOptionParser(argparse.ArgumentParser):
    """An argument parser that takes no abbreviated options, nor do the subparsers it makes."""

    # An abbreviation reads `--tasks` as `--tasks-dir` where a command has only the latter, and the
    # error then blames the next option: every option must be spelled out.
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def _top_level_parser() -> argparse.ArgumentParser:
    parser = ExactOptionParser(
        prog="mbench",
        description="Evaluation harness for universal multimodal retrieval (M-BEIR, MTEB retrieval, CIRCO).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="commands:\n" + "\n".join(f"  {name:<12} {help_}" for name, (_, help_) in COMMANDS.items())
        + "\n\nRun `mbench COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"mbench {__version__}")
    parser.add_argument("command", nargs="?", choices=list(COMMANDS), metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `mbench` console script."""
    try:
        code = _dispatch(list(sys.argv[1:] if argv is None else argv))
        sys.stdout.flush()  # here, not at exit, so that a closed pipe is caught below
        return code
    except BrokenPipeError:
        return _closed_output_pipe()


def _dispatch(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        parser = _top_level_parser()
        parser.parse_args(argv[:1] or ["--help"])
        return 0
    name, rest = argv[0], argv[1:]
    module = importlib.import_module(COMMANDS[name][0])
    parser = ExactOptionParser(prog=f"mbench {name}", description=COMMANDS[name][1])
    module.add_arguments(parser)
    args = parser.parse_args(rest)
    try:
        return int(module.run(args) or 0)
    except MbenchError as err:
        print(f"mbench {name}: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        raise  # stdout's reader went away: main() exits quietly
    except OSError as err:
        # A file or folder the command could not open, create or write (a permission, a full
        # disk): the system names it; a traceback would add nothing the user can act on.
        where = f"{err.filename}: " if err.filename else ""
        print(f"mbench {name}: error: {where}{err.strerror or err}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _closed_output_pipe() -> int:
    """Exit quietly when the reader of stdout went away (`mbench ls tasks | head`)."""
    # Python flushes stdout again at exit, which would raise a second BrokenPipeError: point
    # the file descriptor at /dev/null first (the recipe of Python's signal documentation).
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
