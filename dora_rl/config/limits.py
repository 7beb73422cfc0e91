"""Size, depth and range limits every input file is checked against before it is expanded.

A hostile-but-fair input must not exhaust memory or time: a 29-byte trace whose timestamps span
a billion seconds, a YAML alias bomb ("billion laughs"), a 60,000-layer card or a request rate
of 1e308 are refused with one line naming the file, the field and the limit. The limits are far
above anything an edge deployment needs; see ``docs/cards.md`` ("Limits") for the reasoning.
"""

from __future__ import annotations

import reprlib
from pathlib import Path
from typing import Any

from dora_rl.errors import ConfigError

MAX_FILE_BYTES = 16 * 1024 * 1024
"""Largest trace or other CSV file read (the shipped ones are under 300 kB)."""
MAX_YAML_BYTES = 4 * 1024 * 1024
"""Largest YAML file (card, profile, catalog, PipeEdge file): a 4,096-layer profile with
measured times takes about 1.5 MB, and parsing 4 MiB of YAML takes seconds, not minutes."""
MAX_YAML_ITEMS = 4096
"""Most items of one YAML list or mapping (no schema list holds more: :data:`MAX_LAYERS`)."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of YAML collections (the shipped cards nest 5 levels)."""
MAX_YAML_ALIASES = 1024
"""Most ``*alias`` references in one YAML file (the shipped files use none; ``yaml.safe_dump``
writes one per repeated object)."""
MAX_YAML_NODES = 1_000_000
"""Most YAML nodes once aliases are expanded (what validation walks; the largest shipped
file has about 20,000)."""
MAX_INT_DIGITS = 20
"""Most digits of a YAML integer (every bounded integer field fits in 19)."""
MAX_LAYERS = 4096
"""Most layers of a model (the largest shipped profile has 24; Llama-3-70B has 80 blocks)."""
MAX_LIST_ITEMS = 256
"""Most devices, jobs, models, domains or power levels in a card."""
MAX_EPISODE_STEPS = 1_000_000
"""Most control intervals in an episode (``dynamics.episode_s / interval_s``)."""
MAX_TRACE_SPAN_S = 1_000_000.0
"""Longest time a bandwidth trace may span (11.6 days at one sample a second, 8 MB)."""
MAX_TRACE_MBPS = 1_000_000.0
"""Largest throughput in a trace: 1 Tbit/s (the shipped walks peak at 80 Mbit/s)."""
MAX_TEXT_CHARS = 80
"""Longest value echoed into an error line; longer values are cut with ``...``."""


def short(value: Any, limit: int = MAX_TEXT_CHARS) -> str:
    """A bounded ``repr`` of a value for an error line: at most ``limit`` characters.

    Nested containers are cut after a few items per level, so a huge value is never rendered
    whole.

    Example:
        >>> len(short("x" * 200)), "..." in short("x" * 200)
        (80, True)
        >>> short([[1, 2], "a"])
        "[[1, 2], 'a']"
    """
    r = reprlib.Repr()
    r.maxstring, r.maxother, r.maxlong = limit, limit, limit
    r.maxlevel, r.maxlist, r.maxdict, r.maxtuple = 3, 6, 6, 6
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_limited(path: Path, label: str, limit: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a file no larger than ``limit`` bytes.

    Raises:
        ConfigError: the file cannot be read, is larger than ``limit`` or is not valid UTF-8
            (the message gives the offset of the first bad byte).
    """
    chunks: list[bytes] = []
    size = 0
    try:
        with path.open("rb") as f:
            while chunk := f.read(min(2**20, limit + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise ConfigError(label, "", f"file is larger than the limit of "
                                      f"{limit / 2**20:g} MiB")
    except OSError as exc:
        raise ConfigError(label, "", f"cannot read file ({exc.strerror or exc})") from None
    return decode_utf8(b"".join(chunks), label)


def decode_utf8(data: bytes, label: str) -> str:
    """Decode ``data`` as UTF-8 or raise a ConfigError giving the offset of the first bad byte.

    Example:
        >>> decode_utf8(b"ok", "f")
        'ok'
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(label, f"line {line}", f"not valid UTF-8 (byte 0x{data[exc.start]:02x} "
                          f"at offset {exc.start})") from None


__all__ = ["MAX_EPISODE_STEPS", "MAX_FILE_BYTES", "MAX_INT_DIGITS", "MAX_LAYERS",
           "MAX_LIST_ITEMS", "MAX_TEXT_CHARS", "MAX_TRACE_MBPS", "MAX_TRACE_SPAN_S",
           "MAX_YAML_ALIASES", "MAX_YAML_BYTES", "MAX_YAML_DEPTH", "MAX_YAML_ITEMS",
           "MAX_YAML_NODES", "decode_utf8", "read_limited", "short"]
