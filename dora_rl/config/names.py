"""Safe names and safe display text for everything a user file names or describes.

Names of scenarios, devices, jobs, models, domains and runs become folder and file names
(``checkpoints/<scenario>/<run>/``), so one rule holds for all of them: letters, digits, ``_``,
``.`` and ``-``, not starting with ``.`` or ``-``, at most 64 characters. That rules out ``..``,
``/``, ``\\``, NUL, hidden files and terminal control characters.

Free text (a card's ``description``, a profile's ``source``, file paths) is never refused; it is
made safe where it is shown: :func:`display_text` drops terminal control characters (ANSI
escapes included) and escapes ``rich`` markup, so ``[/bold]`` prints as typed.
"""

from __future__ import annotations

import re
import unicodedata

from rich.markup import escape

from dora_rl.errors import ConfigError

NAME_MAX_CHARS = 64
"""Longest name (also one path component on every file system)."""
NAME_RULE = ("letters, digits, '_', '.' and '-', not starting with '.' or '-', "
             f"at most {NAME_MAX_CHARS} characters")
"""The rule in words, for error messages."""

_NAME = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9_.\-]{{0,{NAME_MAX_CHARS - 1}}}")
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")


def is_safe_name(name: object) -> bool:
    """Whether ``name`` is a safe name (see the module docstring).

    Example:
        >>> [is_safe_name(n) for n in ("tiny", "vit_b16", "run-1.2", "..", ".x", "a/b", "")]
        [True, True, True, False, False, False, False]
    """
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def check_name(name: str) -> str:
    """``name`` if it is safe; else a ValueError saying the rule (a pydantic validator).

    Example:
        >>> check_name("tiny")
        'tiny'
    """
    if not is_safe_name(name):
        raise ValueError(f"must be a safe name ({NAME_RULE})")
    return name


def require_name(name: str, source: str, field: str) -> str:
    """``name`` if it is safe; else a :class:`ConfigError` naming ``source`` and ``field``.

    For names that do not come through a schema, e.g. a run name given on the command line
    (``source="--run-name"``, ``field=""``).

    Example:
        >>> require_name("../up", "--run-name", "")
        Traceback (most recent call last):
        dora_rl.errors.ConfigError: --run-name: must be a safe name (letters, digits, '_', '.' \
and '-', not starting with '.' or '-', at most 64 characters), got '../up'
    """
    if not is_safe_name(name):
        shown = repr(name) if len(name) <= 80 else repr(name[:77]) + "..."
        raise ConfigError(source, field, f"must be a safe name ({NAME_RULE}), got {shown}")
    return name


def plain_text(text: str) -> str:
    """``text`` without terminal control characters: ANSI escape sequences and every other
    control character are removed, tabs and newlines become spaces.

    Example:
        >>> plain_text("ok\\x1b[31m red\\x1b[0m\\tbell\\x07")
        'ok red bell'
    """
    text = _ANSI.sub("", text)
    return "".join(" " if c in "\t\n\r" else c for c in text
                   if c in "\t\n\r" or unicodedata.category(c) not in ("Cc", "Cf", "Cs", "Co"))


def display_text(text: object, limit: int | None = None) -> str:
    """``text`` safe to print through ``rich``: control characters removed, markup escaped,
    optionally cut to ``limit`` characters.

    Example:
        >>> display_text("[/bold] \\x1b[2Jcard")
        '\\\\[/bold] card'
    """
    plain = plain_text(str(text))
    if limit is not None and len(plain) > limit:
        plain = plain[: max(limit - 3, 0)] + "..."
    return escape(plain)


__all__ = ["NAME_MAX_CHARS", "NAME_RULE", "check_name", "display_text", "is_safe_name",
           "plain_text", "require_name"]
