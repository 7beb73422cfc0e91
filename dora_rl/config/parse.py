"""Parse YAML safely and validate it against the schema, with one-line errors.

Every problem becomes a :class:`~dora_rl.errors.ConfigError` naming the file, the field path
and the problem: ``envs/x.yaml: devices[2].memory_bytes: must be > 0, got -5``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from dora_rl.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


class SafeNumbers(yaml.SafeLoader):
    """Safe loader that also reads ``8e9`` (no dot) as a float, as users write it."""


SafeNumbers.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def format_loc(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location as a field path.

    Example:
        >>> format_loc(("devices", 2, "memory_bytes"))
        'devices[2].memory_bytes'
        >>> format_loc(("compute", "format_speed", "q3", "[key]"))  # a bad mapping key
        'compute.format_speed.q3'
    """
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def problem_text(err: dict[str, Any]) -> str:
    """One line for a pydantic error: what is wrong with the value."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    shown = repr(value) if isinstance(value, str) else value
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<",
              "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {op} {_num(bound)}, got {shown}"
    if kind == "finite_number":
        return f"must be a finite number, got {shown}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {shown}"
    msg = str(err["msg"])
    msg = msg[0].lower() + msg[1:] if msg else msg
    return f"{msg.replace('input should be', 'must be')}, got {shown}"


def _num(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def read_yaml(path: Path, label: str | None = None) -> Any:
    """Parse a YAML file safely, turning I/O and syntax problems into a ConfigError."""
    label = label or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(label, "", f"cannot read file ({exc.strerror or exc})") from None
    try:
        return yaml.load(text, Loader=SafeNumbers)  # noqa: S506 - SafeNumbers is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        reason = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(label, where, f"invalid YAML: {reason}") from None


def validate(model: type[M], data: Any, label: str, prefix: str = "") -> M:
    """Validate ``data`` against ``model``; report the first problem as a ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(label, prefix, f"must be a mapping, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = format_loc(tuple(err["loc"]))
        full = f"{prefix}.{path}" if prefix and path else (prefix or path)
        raise ConfigError(label, full, problem_text(dict(err))) from None


__all__ = ["SafeNumbers", "format_loc", "problem_text", "read_yaml", "validate"]
