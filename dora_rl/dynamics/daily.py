"""Load over the day: hourly profiles read from a measured file, as rate multipliers.

A profile file is a CSV with a header ``day,hour,<column>,...`` and one row per day and hour
(``hour`` 0-23, every day with all 24 hours): counts of work per hour, such as vehicles
passing a camera or commands given to an assistant. A job names a column with
``rate_profile`` and a WiFi domain with ``cross_traffic_profile``. Each column is divided by
its largest value over the file, so the card's figure (request rate, cross traffic) is the
busiest hour's and every other hour runs at a fraction of it.

Days are split into train, validation and test by the hash of their name
(:func:`~dora_rl.dynamics.traces.split_of`, as the bandwidth traces are), so an episode on the
test split replays days no training episode saw. An episode starts on a random day of its
split at a random hour (or the card's ``start_hour``) and runs on through the next days of
the split. Between hour midpoints the value is interpolated linearly; the multiplier a job
runs at is then rounded up to a multiple of :data:`RATE_STEP` (at least one step), so the
world's rates take a few dozen values and the cost figures of each are computed once.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from dora_rl.dynamics.traces import SPLITS, Split, split_of
from dora_rl.errors import ConfigError

RATE_STEP = 1.0 / 32.0
"""Rates are multiples of this share of the card's (busiest hour's) rate."""
MAX_FILE_BYTES = 16 * 2**20
"""Largest profile file read (16 MiB, about 400,000 rows of a few columns)."""
HOURS = 24


@dataclass(frozen=True)
class DailyProfiles:
    """Hourly profiles of one file.

    Attributes:
        source: The file read.
        days: Day names, in file order.
        columns: Column names (without ``day`` and ``hour``).
        values: [days, 24, columns] each column over its largest value, in [0, 1].
    """

    source: str
    days: tuple[str, ...]
    columns: tuple[str, ...]
    values: NDArray[np.float64]

    def column(self, name: str) -> int:
        """Index of column ``name``.

        Raises:
            KeyError: no such column.
        """
        return self.columns.index(name)

    def split(self, split: Split) -> NDArray[np.int64]:
        """Indices of the days in ``split``; a file of fewer than 3 days serves every split."""
        if len(self.days) < 3:
            return np.arange(len(self.days))
        picked = [i for i, d in enumerate(self.days) if split_of(d) == split]
        if not picked:  # a small file: every split still gets a day
            picked = [SPLITS.index(split) % len(self.days)]
        return np.array(picked, dtype=np.int64)


def _number(label: str, line: int, field: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(label, f"line {line}: {field}", f"not a number: {text[:40]!r}") \
            from None
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(label, f"line {line}: {field}", f"must be finite and >= 0, got {value}")
    return value


def load_profiles(path: str | Path) -> DailyProfiles:
    """Read and check a profile file.

    Raises:
        ConfigError: the file is missing, too large, or a row is malformed (naming the line
            and the column), or a day lacks an hour, or a column is all zeros.
    """
    path = Path(path)
    label = str(path)
    if not path.is_file():
        raise ConfigError(label, "", "load profile file does not exist")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ConfigError(label, "", f"larger than {MAX_FILE_BYTES // 2**20} MiB")
    reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8", errors="replace")))
    header = next(reader, None)
    columns = _columns(label, header)
    rows = _rows(label, reader, columns)
    days = tuple(rows)
    values = np.array([[rows[d][h] for h in range(HOURS)] for d in days], dtype=np.float64)
    peak = values.max(axis=(0, 1))
    for c, p in enumerate(peak.tolist()):
        if p <= 0:
            raise ConfigError(label, f"column {columns[c]!r}", "all values are 0")
    return DailyProfiles(source=label, days=days, columns=columns, values=values / peak)


def _columns(label: str, header: list[str] | None) -> tuple[str, ...]:
    if header is None or [h.strip() for h in header[:2]] != ["day", "hour"] or len(header) < 3:
        raise ConfigError(label, "line 1", "header must be 'day,hour,<column>,...'")
    columns = tuple(h.strip() for h in header[2:])
    if len(set(columns)) != len(columns) or not all(columns):
        raise ConfigError(label, "line 1", "column names must be distinct and not empty")
    return columns


def _rows(label: str, reader: Iterator[list[str]], columns: tuple[str, ...]
          ) -> dict[str, dict[int, list[float]]]:
    """Per day, per hour, the columns' values (every day checked for all 24 hours)."""
    width = len(columns) + 2
    rows: dict[str, dict[int, list[float]]] = {}
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        if len(row) != width:
            raise ConfigError(label, f"line {line}", f"{len(row)} fields, expected {width}")
        day = row[0].strip()
        hour = _number(label, line, "hour", row[1])
        if hour != int(hour) or hour >= HOURS:
            raise ConfigError(label, f"line {line}: hour", f"must be 0..23, got {row[1]!r}")
        hours = rows.setdefault(day, {})
        if int(hour) in hours:
            raise ConfigError(label, f"line {line}", f"day {day!r} hour {int(hour)} repeated")
        hours[int(hour)] = [_number(label, line, c, t) for c, t in zip(columns, row[2:],
                                                                        strict=True)]
    if not rows:
        raise ConfigError(label, "", "no rows")
    for day, hours in rows.items():
        if len(hours) != HOURS:
            missing = sorted(set(range(HOURS)) - set(hours))
            raise ConfigError(label, f"day {day!r}", f"hours {missing} missing")
    return rows


def hourly_series(profiles: DailyProfiles, column: int, days: NDArray[np.int64],
                  first: int) -> NDArray[np.float64]:
    """Hourly values of ``column`` over the split's ``days`` starting at day index ``first``
    (wrapping around), one per hour."""
    order = np.roll(days, -first)
    return profiles.values[order, :, column].ravel()


def at_times(hourly: NDArray[np.float64], hours: NDArray[np.float64]) -> NDArray[np.float64]:
    """Values at ``hours`` since the series' first midnight: linear between hour midpoints
    (hour ``h``'s value at ``h + 0.5``), held flat before the first and after the last.

    Example:
        >>> at_times(np.array([0.0, 1.0]), np.array([0.5, 1.0, 1.5, 3.0])).tolist()
        [0.0, 0.5, 1.0, 1.0]
    """
    mid = np.arange(hourly.size) + 0.5
    return np.interp(hours, mid, hourly)


def rate_steps(multiplier: NDArray[np.float64]) -> NDArray[np.float64]:
    """Multipliers rounded up to a multiple of :data:`RATE_STEP`, at least one step, at most 1.

    Example:
        >>> rate_steps(np.array([0.0, 0.01, 0.5, 0.51, 1.0])).tolist()
        [0.03125, 0.03125, 0.5, 0.53125, 1.0]
    """
    steps = np.ceil(np.asarray(multiplier) / RATE_STEP - 1e-9)
    return np.clip(steps, 1, round(1 / RATE_STEP)) * RATE_STEP


__all__ = ["HOURS", "RATE_STEP", "DailyProfiles", "at_times", "hourly_series",
           "load_profiles", "rate_steps"]
