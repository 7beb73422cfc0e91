"""Bandwidth traces: load measured throughput files and split them by file.

Two CSV formats are read, one sample per row:

- the campus-walk format of ``envs/traces/wifi_cellular_walks``: no header,
  ``second,bytes_per_second`` (converted to Mbps as ``bytes * 8 / 1e6``);
- the common ``seconds, Mbps`` format with one header line whose text contains ``mbps`` (any case).

Columns may be separated by commas and/or whitespace. Limits (:mod:`dora_rl.config.limits`): a file
of at most 16 MiB, valid UTF-8; throughput finite, ``>= 0`` and at most 1 Tbit/s (1e6 Mbps,
1.25e11 bytes/s); the timestamps spanning at most 1,000,000 s, since the trace is expanded to one
sample a second. A trace is resampled to one sample per second
(linear interpolation) when its timestamps are not already one second apart. Every problem becomes a
one-line :class:`~dora_rl.errors.ConfigError` naming the file and the line.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from dora_rl.config.limits import MAX_TRACE_MBPS, MAX_TRACE_SPAN_S, read_limited, short
from dora_rl.errors import ConfigError
from dora_rl.paths import shipped

LINK_SCALE_MAX = 1.2
"""Largest link-rate multiplier (also of :mod:`dora_rl.dynamics.synthetic`)."""

Split = Literal["train", "validation", "test"]
SPLITS: tuple[Split, ...] = ("train", "validation", "test")
SPLIT_PERCENT: tuple[int, int, int] = (70, 15, 15)
"""Share of files (by name hash) in the train, validation and test splits."""

_SEP = re.compile(r"[,\s;]+")
_KIND_SUFFIXES = ("_wifi", "_cellular")


@dataclass(frozen=True)
class Trace:
    """A throughput trace.

    Attributes:
        name: The file name without extension (e.g. ``7_1_wifi``).
        mbps: Throughput in Mbps, one sample per second (float64, finite, >= 0).
    """

    name: str
    mbps: NDArray[np.float64]


def default_traces_dir() -> Path:
    """The shipped campus-walk WiFi/cellular traces (``envs/traces/wifi_cellular_walks``)."""
    return shipped("envs") / "traces" / "wifi_cellular_walks"


def bytes_to_mbps(bytes_per_second: NDArray[np.float64]) -> NDArray[np.float64]:
    """Convert bytes per second to megabits per second.

    Example:
        >>> bytes_to_mbps(np.array([125_000.0, 0.0])).tolist()
        [1.0, 0.0]
    """
    return np.asarray(bytes_per_second, dtype=np.float64) * 8.0 / 1e6


def _fields(line: str) -> list[str]:
    return [f for f in _SEP.split(line.strip()) if f]


def _parse_rows(label: str, rows: list[tuple[int, str]], max_value: float,
                unit: str) -> NDArray[np.float64]:
    """Parse ``(line number, text)`` rows into an ``[n, 2]`` array, checking every value: finite,
    ``>= 0``, the second column at most ``max_value`` and the whole trace spanning at most
    :data:`~dora_rl.config.limits.MAX_TRACE_SPAN_S` seconds (it is expanded to one sample a
    second)."""
    out = np.empty((len(rows), 2), dtype=np.float64)
    for i, (lineno, text) in enumerate(rows):
        parts = _fields(text)
        if len(parts) != 2:
            raise ConfigError(label, f"line {lineno}", f"expected 2 columns, got {len(parts)}")
        for k, part in enumerate(parts):
            try:
                value = float(part)
            except ValueError:
                raise ConfigError(label, f"line {lineno}", f"not a number: {short(part)}") \
                    from None
            if not np.isfinite(value):
                raise ConfigError(label, f"line {lineno}", f"must be finite, got {short(part)}")
            if value < 0:
                raise ConfigError(label, f"line {lineno}", f"must be >= 0, got {short(part)}")
            if k == 1 and value > max_value:
                raise ConfigError(label, f"line {lineno}", f"throughput must be <= {max_value:g} "
                                  f"{unit} (1 Tbit/s), got {short(part)}")
            out[i, k] = value
        if i > 0 and out[i, 0] <= out[i - 1, 0]:
            raise ConfigError(label, f"line {lineno}", f"seconds must increase, got "
                              f"{short(parts[0])} after {out[i - 1, 0]:g}")
        if out[i, 0] - out[0, 0] > MAX_TRACE_SPAN_S:
            raise ConfigError(label, f"line {lineno}", f"trace spans {out[i, 0] - out[0, 0]:g} s "
                              f"from its first sample, more than the limit of "
                              f"{MAX_TRACE_SPAN_S:g} s")
    return out


def resample_1hz(seconds: NDArray[np.float64], values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Values at one-second steps from the first timestamp (linear interpolation when needed).

    Example:
        >>> resample_1hz(np.array([0.0, 2.0]), np.array([0.0, 4.0])).tolist()
        [0.0, 2.0, 4.0]
    """
    if np.allclose(np.diff(seconds), 1.0):
        return np.asarray(values, dtype=np.float64).copy()
    grid = np.arange(seconds[0], seconds[-1] + 1e-9, 1.0)
    return np.interp(grid, seconds, values)


def load_trace(path: str | Path) -> Trace:
    """Load one trace file (walk format without header, or ``seconds, Mbps`` with a header).

    Raises:
        ConfigError: ``<file>: line N: <problem>`` for unreadable, non-numeric, negative or
            non-finite values, fewer than 2 rows, seconds not increasing, an unknown header, or a
            value, span or file size beyond the limits of the module docstring.
    """
    path = Path(path)
    label = str(path)
    text = read_limited(path, label)
    rows = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not rows:
        raise ConfigError(label, "", "empty trace file")
    first = _fields(rows[0][1])
    has_header = all(_not_number(f) for f in first)
    if has_header:
        if "mbps" not in rows[0][1].lower():
            raise ConfigError(label, f"line {rows[0][0]}", f"unknown header "
                              f"{short(rows[0][1].strip())}"
                              " (expected 'seconds, Mbps' or no header with bytes per second)")
        rows = rows[1:]
    if len(rows) < 2:
        raise ConfigError(label, "", f"needs at least 2 rows of samples, got {len(rows)}")
    if has_header:
        data = _parse_rows(label, rows, MAX_TRACE_MBPS, "Mbps")
    else:
        data = _parse_rows(label, rows, MAX_TRACE_MBPS * 1e6 / 8.0, "bytes/s")
    mbps = data[:, 1] if has_header else bytes_to_mbps(data[:, 1])
    return Trace(name=path.stem, mbps=resample_1hz(data[:, 0], mbps))


def _not_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return True
    return False


def trace_kind(name: str) -> str | None:
    """``"wifi"`` or ``"cellular"`` from a name's suffix, or None when it has neither.

    Example:
        >>> trace_kind("7_1_wifi"), trace_kind("7_1_cellular"), trace_kind("office")
        ('wifi', 'cellular', None)
    """
    for suffix in _KIND_SUFFIXES:
        if name.endswith(suffix):
            return suffix[1:]
    return None


def load_traces(directory: str | Path, pattern: str = "*.csv",
                kind: Literal["wifi", "cellular", "any"] = "any") -> list[Trace]:
    """Load every trace in ``directory`` matching ``pattern``, sorted by file name.

    Args:
        directory: Folder of trace files.
        pattern: Glob of the files to read.
        kind: ``"wifi"`` keeps files named ``*_wifi.*`` and ``"cellular"`` files named
            ``*_cellular.*``; files with neither suffix are kept for every kind (a folder of
            generic traces works with any ``kind``).

    Raises:
        ConfigError: the directory is missing or has no matching file, or a file is invalid.
    """
    directory = Path(directory)
    label = str(directory)
    if not directory.is_dir():
        raise ConfigError(label, "", "trace directory does not exist")
    files = sorted((p for p in directory.glob(pattern) if p.is_file()), key=lambda p: p.name)
    if kind != "any":
        files = [p for p in files if trace_kind(p.stem) in (kind, None)]
    if not files:
        what = f"{pattern!r}" + (f" of kind {kind!r}" if kind != "any" else "")
        raise ConfigError(label, "", f"no trace files matching {what}")
    return [load_trace(p) for p in files]


def split_of(name: str) -> Split:
    """The split a trace name hashes to (CRC-32 of the name, mod 100, against 70/15/15).

    Example:
        >>> split_of("7_1_wifi") in SPLITS
        True
    """
    bucket = zlib.crc32(name.encode("utf-8")) % 100
    if bucket < SPLIT_PERCENT[0]:
        return "train"
    if bucket < SPLIT_PERCENT[0] + SPLIT_PERCENT[1]:
        return "validation"
    return "test"


def split_traces(traces: list[Trace], split: Split) -> list[Trace]:
    """The traces of one split, chosen by file so no recording is shared between splits.

    Traces are sorted by name and each goes to the split its name hashes to (:func:`split_of`,
    about 70 % train, 15 % validation, 15 % test). With at least 3 traces no split is left empty:
    each empty split (in the order train, validation, test) takes the first trace, by name, of the
    currently largest split. The result depends only on the set of names, so it is stable across
    calls and runs.

    Raises:
        ValueError: ``split`` is not one of ``train``, ``validation``, ``test``.

    Example:
        >>> ts = [Trace(f"t{i}", np.ones(2)) for i in range(10)]
        >>> parts = [split_traces(ts, s) for s in SPLITS]
        >>> sorted(t.name for p in parts for t in p) == sorted(t.name for t in ts)
        True
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    groups: dict[str, list[Trace]] = {s: [] for s in SPLITS}
    for trace in sorted(traces, key=lambda t: t.name):
        groups[split_of(trace.name)].append(trace)
    if len(traces) >= 3:
        for name in SPLITS:
            if not groups[name]:
                largest = max(SPLITS, key=lambda s: len(groups[s]))
                groups[name].append(groups[largest].pop(0))
    return list(groups[split])


def trace_scale(mbps: NDArray[np.float64]) -> NDArray[np.float64]:
    """Link-rate multipliers of a trace: Mbps over its 95th percentile, clipped to [0, 1.2].

    A trace whose 95th percentile is 0 (a dead link) gives all zeros.

    Example:
        >>> trace_scale(np.array([0.0, 50.0, 100.0, 100.0])).round(2).tolist()
        [0.0, 0.5, 1.0, 1.0]
    """
    p95 = float(np.percentile(mbps, 95))
    if p95 <= 0.0:
        return np.zeros(len(mbps))
    return np.clip(np.asarray(mbps, dtype=np.float64) / p95, 0.0, LINK_SCALE_MAX)
