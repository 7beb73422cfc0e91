"""Every command the README and the docs show exists and takes the options shown.

Commands are read from fenced shell blocks and inline code (``python -m dora_rl.X ...``,
``dora-rl X ...``, ``python experiments/X.py ...``); each one's ``--help`` must succeed and
name every ``--option`` the command uses.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import re
import runpy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
COMMAND = re.compile(r"(?:python3?|\.venv/bin/python) (?:-m (dora_rl[\w.]*)|(experiments/\w+\.py))"
                     r"|dora-rl (\w+)")
MODULES = {"dora_rl.sim": "dora_rl.sim.command"}
"""Commands whose ``main`` lives in another module than the one ``-m`` names."""


def commands() -> list[tuple[str, str, str]]:
    """(page, target, command line) of every command shown."""
    out = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        snippets = [re.sub(r"\\\n\s*", " ", block) for block in
                    re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S)]
        snippets += re.findall(r"`([^`\n]*(?:python|dora-rl)[^`\n]*)`", text)
        for snippet in snippets:
            for line in snippet.splitlines():
                for segment in re.split(r"\s*(?:\||&&|;)\s*", line):
                    found = COMMAND.search(segment)
                    if found:
                        target = found.group(1) or found.group(2) or f"cli:{found.group(3)}"
                        out.append((page.name, target, segment[found.start():].strip()))
    return out


@functools.cache
def help_text(target: str) -> str:
    """What ``target --help`` prints (it must exit with 0)."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit) as done:
        if target.startswith("experiments/"):
            argv = sys.argv
            sys.argv = [str(REPO / target), "--help"]
            try:
                runpy.run_path(str(REPO / target), run_name="__main__")
            finally:
                sys.argv = argv
        elif target.startswith("cli:"):
            importlib.import_module("dora_rl.cli").main([target[4:], "--help"])
        else:
            importlib.import_module(MODULES.get(target, target)).main(["--help"])
    assert done.value.code in (0, None), f"{target} --help exited with {done.value.code}"
    return buf.getvalue()


SHOWN = commands()


def test_the_pages_show_commands() -> None:
    targets = {t for _, t, _ in SHOWN}
    assert len(SHOWN) > 20 and {"dora_rl.plan", "dora_rl.serve", "dora_rl.train"} <= targets


@pytest.mark.parametrize(("page", "target", "command"), SHOWN,
                         ids=[f"{p}:{c[:60]}" for p, _, c in SHOWN])
def test_a_shown_command_takes_its_options(page: str, target: str, command: str) -> None:
    text = help_text(target)
    assert "usage:" in text
    for option in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", command):
        assert option in text, f"{page}: {command!r} uses {option}, which {target} lacks"
