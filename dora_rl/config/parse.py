"""Parse YAML safely and validate it against the schema, with one-line errors.

Every problem becomes a :class:`~dora_rl.errors.ConfigError` naming the file, the field path
and the problem: ``envs/x.yaml: devices[2].memory_bytes: must be > 0, got -5``.

Before anything is built from a file, :func:`parse_yaml` checks it against the limits of
:mod:`dora_rl.config.limits`: nesting depth, the number of aliases and the size they expand to
(an alias bomb is refused, not expanded), the digits of an integer, and duplicate mapping keys
(an error naming the key, never "last one wins").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from dora_rl.config.limits import (
    MAX_INT_DIGITS,
    MAX_YAML_ALIASES,
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_ITEMS,
    MAX_YAML_NODES,
    read_limited,
    short,
)
from dora_rl.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class SafeNumbers(yaml.SafeLoader):
    """Safe loader that also reads ``8e9`` (no dot) as a float, as users write it."""


SafeNumbers.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


class LimitedLoader(SafeNumbers):
    """:class:`SafeNumbers` that refuses deep nesting, long collections and many aliases while
    composing, so a hostile file stops early; errors name the field path."""

    def __init__(self, stream: str, label: str = "<string>") -> None:
        super().__init__(stream)
        self.label = label
        self._path: list[str] = []
        self._aliases = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        """Compose one node, counting aliases, items and nesting depth."""
        if isinstance(parent, SequenceNode | MappingNode) and len(parent.value) >= MAX_YAML_ITEMS:
            raise ConfigError(self.label, self._where(), f"has more than {MAX_YAML_ITEMS:,} "
                              "items; refused")
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise ComposerError(None, None, f"more than {MAX_YAML_ALIASES} aliases (*name)",
                                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        if len(self._path) >= MAX_YAML_DEPTH:
            raise ConfigError(self.label, self._where(), f"invalid YAML: nested deeper than "
                              f"{MAX_YAML_DEPTH} levels (line "
                              f"{self.peek_event().start_mark.line + 1})")
        if isinstance(index, int):
            self._path.append(f"[{index}]")
        elif isinstance(index, ScalarNode):
            self._path.append(f".{_cut(str(index.value), 40)}")
        else:
            self._path.append("")
        try:
            return super().compose_node(parent, index)
        finally:
            self._path.pop()

    def _where(self) -> str:
        return _cut("".join(self._path).lstrip("."), 60)


def parse_yaml(text: str, label: str) -> Any:
    """Parse YAML text within the limits, turning every problem into a one-line ConfigError.

    Example:
        >>> parse_yaml("a: 1\\nb: [2, 3e2]", "f.yaml")
        {'a': 1, 'b': [2, 300.0]}
        >>> parse_yaml("a: 1\\na: 2", "f.yaml")
        Traceback (most recent call last):
        dora_rl.errors.ConfigError: f.yaml: a: duplicate key (line 2; also on line 1)
    """
    loader: LimitedLoader | None = None
    try:
        loader = LimitedLoader(text, label)
        node = loader.get_single_node()
        if node is None:
            return None
        _NodeCheck(label).visit(node, "")
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(label, where, f"invalid YAML: {exc.problem or 'syntax error'}") from None
    except ReaderError as exc:
        raise ConfigError(label, "", f"invalid YAML: character {short(chr(exc.character))} at "
                          f"offset {exc.position} is not allowed ({exc.reason})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(label, "", f"invalid YAML: {short(str(exc))}") from None
    except (ValueError, OverflowError, RecursionError) as exc:  # a scalar PyYAML cannot build
        raise ConfigError(label, "", f"invalid YAML value: {short(str(exc))}") from None
    finally:
        if loader is not None:
            loader.dispose()


class _NodeCheck:
    """Walk a composed node graph once: duplicate keys, huge integers, alias expansion."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.size: dict[int, int] = {}
        self.open: set[int] = set()

    def visit(self, node: Node, path: str) -> int:
        key = id(node)
        if key in self.size:
            return self.size[key]
        if key in self.open:
            raise ConfigError(self.label, path or "", "invalid YAML: an alias refers to itself")
        self.open.add(key)
        n = 1
        if isinstance(node, ScalarNode):
            self._scalar(node, path)
        elif isinstance(node, SequenceNode):
            for i, child in enumerate(node.value):
                n += self.visit(child, f"{path}[{i}]")
                self._limit(n, path)
        elif isinstance(node, MappingNode):
            seen: dict[Any, int] = {}
            for k, v in node.value:
                name = k.value if isinstance(k, ScalarNode) else None
                if name is not None and k.tag != _MERGE_TAG:
                    child = f"{path}.{name}" if path else str(name)
                    if name in seen:
                        raise ConfigError(self.label, _cut(child),
                                          f"duplicate key (line {k.start_mark.line + 1}; also on "
                                          f"line {seen[name]})")
                    seen[name] = k.start_mark.line + 1
                else:
                    child = path
                n += self.visit(k, child) + self.visit(v, child)
                self._limit(n, path)
        self.open.discard(key)
        self.size[key] = n
        return n

    def _limit(self, n: int, path: str) -> None:
        if n > MAX_YAML_NODES:
            raise ConfigError(self.label, path, f"expands to more than {MAX_YAML_NODES:,} values "
                              "(aliases expanded); refused")

    def _scalar(self, node: ScalarNode, path: str) -> None:
        if node.tag == _INT_TAG:
            digits = sum(c.isdigit() for c in node.value)
            if digits > MAX_INT_DIGITS:
                raise ConfigError(self.label, path, f"integer with {digits} digits is out of "
                                  f"range (at most {MAX_INT_DIGITS})")


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
            out += f".{_cut(str(part))}" if out else _cut(str(part))
    return out


def problem_text(err: dict[str, Any]) -> str:
    """One line for a pydantic error: what is wrong with the value (shown at most 80 chars)."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    shown = short(value)
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
    if kind == "value_error":
        msg = msg.removeprefix("Value error, ")
        return msg if isinstance(value, dict | list) else f"{msg}, got {shown}"
    msg = msg[0].lower() + msg[1:] if msg else msg
    return f"{msg.replace('input should be', 'must be')}, got {shown}"


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _num(x: Any) -> str:
    return str(int(x)) if isinstance(x, float) and x.is_integer() else str(x)


def read_yaml(path: Path, label: str | None = None) -> Any:
    """Read a YAML file within the limits (size, UTF-8, depth, aliases, duplicate keys)."""
    label = label or str(path)
    return parse_yaml(read_limited(path, label, MAX_YAML_BYTES), label)


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


__all__ = ["LimitedLoader", "SafeNumbers", "format_loc", "parse_yaml", "problem_text",
           "read_yaml", "validate"]
