"""The ``dora-rl`` command: one entry point for every ``python -m dora_rl.<command>``.

Usage::

    dora-rl plan --scenario smart_home        # the same as python -m dora_rl.plan --scenario ...
    dora-rl train --help

``dora-rl <command> ARGS`` runs ``python -m dora_rl.<command> ARGS`` in this process, exit status
included; ``dora-rl --help`` lists the commands.
"""

from __future__ import annotations

import runpy
import sys
import warnings
from collections.abc import Sequence

COMMANDS: dict[str, str] = {
    "inspect": "print what a scenario card resolves to (devices, models, jobs, plans)",
    "profile": "profile a model block by block and write its profile (YAML)",
    "plan": "plan a card's jobs: the plan set, the network schedule and the baselines",
    "train": "train a PPO controller for a card into a new run folder",
    "bench": "compare controllers on the same held-out episodes",
    "sim": "run a controller in the discrete-event simulator",
    "serve": "serve a card's job live across worker processes",
    "worker": "join a running server as one device's worker",
}
"""Each subcommand with its one-line summary; ``dora_rl.<name>`` is the module it runs unless
:data:`MODULES` names another."""
MODULES: dict[str, str] = {"inspect": "dora_rl.describe", "profile": "dora_rl.profiler"}
"""Subcommands whose module has another name (no module shadows the standard library's)."""


def usage() -> str:
    """The text of ``dora-rl --help``."""
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, summary in COMMANDS.items()]
    return "\n".join([
        "usage: dora-rl COMMAND [ARGS...]",
        "",
        "QoE-aware planning and control of AI jobs on heterogeneous edge devices.",
        "",
        "commands:",
        *lines,
        "",
        "dora-rl COMMAND --help shows a command's options; dora-rl COMMAND ARGS is the same as",
        "python -m dora_rl.COMMAND ARGS (inspect: dora_rl.describe, profile: dora_rl.profiler).",
    ])


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``dora-rl``; returns the exit status (2 with one line on stderr for an unknown or
    missing command).

    Example:
        >>> main(["nonsense"])
        2
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(f"error: dora-rl needs a command ({', '.join(COMMANDS)}); dora-rl --help "
              "describes them", file=sys.stderr)
        return 2
    command, rest = args[0], args[1:]
    if command in ("-h", "--help", "help"):
        print(usage())
        return 0
    if command == "--version":
        from dora_rl import __version__

        print(f"dora-rl {__version__}")
        return 0
    if command not in COMMANDS:
        print(f"error: dora-rl: unknown command {command!r} (commands: "
              f"{', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    return _run(MODULES.get(command, f"dora_rl.{command}"), rest)


def _run(module: str, rest: list[str]) -> int:
    """Run ``module`` as ``__main__`` with ``rest`` as its arguments, as ``python -m`` does."""
    saved = sys.argv[:]
    sys.argv = [module, *rest]
    try:
        with warnings.catch_warnings():  # a module imported before (by a test) runs afresh
            warnings.filterwarnings("ignore", "'dora_rl.* found in sys.modules",
                                    RuntimeWarning)
            runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        code = done.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
