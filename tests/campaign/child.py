"""What a campaign worker runs: `mbench argv...` in a process forked from a server that imported mbench once.

Importing torch takes seconds on a loaded machine; the forkserver pays it once and every kill,
I/O-error and concurrency case forks from it. The server imports modules but runs nothing, so
no thread pool exists yet when it forks.
"""

from __future__ import annotations

import os
import sys

import numpy  # noqa: F401  (preloaded for the forked workers)
import pandas  # noqa: F401
import pyarrow.csv  # noqa: F401
import pyarrow.json  # noqa: F401
import torch  # noqa: F401
from PIL import Image  # noqa: F401

import mbench.cli  # noqa: F401
import mbench.engine.pipeline  # noqa: F401
import mbench.engine.rerank  # noqa: F401
import mbench.engine.search  # noqa: F401
from mbench import faults


def main_in_child(argv: list[str], log_path: str, fault_spec: str, trace: str | None, env: dict[str, str]) -> None:
    """Run the CLI with stdout and stderr appended to ``log_path`` and ``fault_spec`` planned; exit with its code."""
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.update(env)
    faults.configure(fault_spec, trace)
    from mbench.cli import main

    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no atexit work: the same ending as the console script, without multiprocessing's cleanup
