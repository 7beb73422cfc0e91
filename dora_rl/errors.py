"""Errors that reach the user as one line and exit code 2.

Every problem with user input (a card, a profile, a checkpoint, a plan that fits nowhere) is raised
as a :class:`DoraError` subclass. Command-line entry points wrap their ``main`` with
:func:`run_cli`, which prints ``str(error)`` on one line to stderr and exits with status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn


class DoraError(Exception):
    """Base class of every error caused by user input."""


class ConfigError(DoraError):
    """A scenario card, device catalog or profile is invalid.

    Args:
        source: The file (or ``"<string>"``) the problem is in.
        path: The field path inside it, e.g. ``devices[2].memory_bytes``; empty for the whole file.
        problem: What is wrong, in words, with the offending value where there is one.

    Example:
        >>> str(ConfigError("envs/x.yaml", "devices[2].memory_bytes", "must be > 0, got -5"))
        'envs/x.yaml: devices[2].memory_bytes: must be > 0, got -5'
    """

    def __init__(self, source: str, path: str, problem: str) -> None:
        self.source = source
        self.path = path
        self.problem = problem
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {problem}")


class InfeasibleError(DoraError):
    """No plan can satisfy the constraints; the message names the binding one."""


class UsageError(DoraError):
    """A bad command-line argument (the message names it)."""


class ArgParser(argparse.ArgumentParser):
    """The parser of every command: argparse's, whose errors are a :class:`UsageError` (one
    line and exit status 2 through :func:`run_cli`) instead of a usage dump.

    Example:
        >>> parser = ArgParser(prog="x")
        >>> _ = parser.add_argument("--n", type=int)
        >>> try:
        ...     parser.parse_args(["--n", "two"])
        ... except UsageError as error:
        ...     print(error)
        argument --n: invalid int value: 'two'
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Run a CLI ``main`` and turn a :class:`DoraError` into one line and exit code 2."""
    try:
        return main(argv)
    except DoraError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
