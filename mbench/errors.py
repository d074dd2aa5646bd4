"""The one exception type the CLI turns into a clear message and exit code 2."""

from __future__ import annotations


class MbenchError(Exception):
    """Bad input or state the user can fix (names the file, line or id); exit code 2 in the CLI."""
