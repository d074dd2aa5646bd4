"""Running one CLI invocation in this process, and judging how it ended."""

from __future__ import annotations

import contextlib
import io
import os
import re
import traceback
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CliResult:
    """How one `mbench ...` call ended: exit code, its output, and the traceback of an escaped exception."""

    code: int | None
    stdout: str
    stderr: str
    traceback: str | None = None


@contextlib.contextmanager
def environment(**values: str | None) -> Iterator[None]:
    """Set (or with None, unset) environment variables for the block."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_cli(argv: Sequence[str]) -> CliResult:
    """`mbench argv...` through the console script's entry point, output captured.

    An exception escaping ``main`` is what the console script would print as a traceback; it is
    returned as ``traceback`` with ``code`` None.
    """
    from mbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("default")
        try:
            code: int | None = main(list(argv))
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:  # noqa: BLE001 - every escape is a finding
            return CliResult(None, out.getvalue(), err.getvalue(), traceback.format_exc())
    return CliResult(code, out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class Verdict:
    """One campaign case: its class, name, whether it ended cleanly with nothing lost, and why not."""

    klass: str
    name: str
    clean: bool
    detail: str = ""


def judge_refusal(result: CliResult, blamed: str, where: str | None = None) -> str:
    """'' when ``result`` is a clean refusal (exit 2, a message naming ``blamed`` and ``where``), else why not."""
    if result.traceback is not None:
        return "traceback: " + result.traceback.strip().splitlines()[-1]
    if "Traceback (most recent call last)" in result.stderr:
        return "a traceback inside the message"
    if result.code != 2:
        return f"exit code {result.code}, expected 2 (stderr: {result.stderr.strip()[-300:]!r})"
    if "error:" not in result.stderr:
        return f"no error message (stderr: {result.stderr.strip()[-300:]!r})"
    # `mbench validate` lists the problems it found on stdout and ends with one error line.
    message = result.stderr + result.stdout
    if blamed not in message:
        return f"the message does not name {blamed!r}: {message.strip()[-400:]!r}"
    if where is not None and not re.search(where, message):
        return f"the message does not locate the problem ({where!r}): {message.strip()[-400:]!r}"
    return ""


@dataclass
class Tally:
    """Per campaign class: cases tried and cases that ended cleanly; the unclean ones kept for the report."""

    tried: dict[str, int] = field(default_factory=dict)
    clean: dict[str, int] = field(default_factory=dict)
    failures: list[Verdict] = field(default_factory=list)

    def add(self, verdict: Verdict) -> None:
        """Count one case."""
        self.tried[verdict.klass] = self.tried.get(verdict.klass, 0) + 1
        self.clean[verdict.klass] = self.clean.get(verdict.klass, 0) + int(verdict.clean)
        if not verdict.clean:
            self.failures.append(verdict)

    def extend(self, verdicts: Sequence[Verdict]) -> None:
        """Count several cases."""
        for verdict in verdicts:
            self.add(verdict)
