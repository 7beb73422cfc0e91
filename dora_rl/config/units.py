"""Sizes and rates written with a unit in cards: ``4GB``, ``512MiB``, ``866.7Mbps``, ``10Gbps``.

A size or rate field takes a plain number in the unit of its name (``memory_bytes: 4e9``,
``link_mbps: 866.7``) or a string with a unit, converted exactly (decimal arithmetic, so
``4.2GB`` is 4,200,000,000 bytes, not one off). Units are case-sensitive (``Mb`` is not ``MB``): a
unit that is not listed, or one of the wrong kind (a rate for a size), is an error naming the
units the field takes. A quoted number without a unit stays an error, as everywhere in a card.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

SIZE_UNITS: dict[str, Decimal] = {
    "B": Decimal(1), "kB": Decimal(10) ** 3, "KB": Decimal(10) ** 3, "MB": Decimal(10) ** 6,
    "GB": Decimal(10) ** 9, "TB": Decimal(10) ** 12, "KiB": Decimal(2) ** 10,
    "MiB": Decimal(2) ** 20, "GiB": Decimal(2) ** 30, "TiB": Decimal(2) ** 40,
}
"""Bytes per unit of size (SI ``kB``...``TB``, binary ``KiB``...``TiB``)."""
RATE_UNITS: dict[str, Decimal] = {
    "bps": Decimal("1e-6"), "kbps": Decimal("1e-3"), "Mbps": Decimal(1), "Gbps": Decimal(10) ** 3,
    "Tbps": Decimal(10) ** 6, "B/s": Decimal("8e-6"), "kB/s": Decimal("8e-3"), "MB/s": Decimal(8),
    "GB/s": Decimal(8000),
}
"""Mbit/s per unit of rate (bits per second, or bytes per second as storage datasheets give)."""

_QUANTITY = re.compile(r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z/]+)\s*")
_MAX_EXPONENT = 30
"""Larger (or smaller) magnitudes stay floats, so the bounds checks see them (no huge ints)."""


def parse_size_bytes(value: Any) -> Any:
    """A size with a unit as bytes (an ``int`` when whole); any other value unchanged.

    Example:
        >>> parse_size_bytes("4GB"), parse_size_bytes("512MiB"), parse_size_bytes(7)
        (4000000000, 536870912, 7)
        >>> parse_size_bytes("10Gbps")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: 'Gbps' is a unit of rate; a size takes B, kB, KB, MB, GB, ... GiB or TiB
    """
    return _convert(value, SIZE_UNITS, "size", RATE_UNITS, Decimal(1))


def parse_rate_mbps(value: Any) -> Any:
    """A rate with a unit in Mbit/s; any other value unchanged.

    Example:
        >>> parse_rate_mbps("866.7Mbps"), parse_rate_mbps("10Gbps"), parse_rate_mbps("400MB/s")
        (866.7, 10000.0, 3200.0)
    """
    return _convert(value, RATE_UNITS, "rate", SIZE_UNITS, Decimal(1))


def parse_rate_gbytes(value: Any) -> Any:
    """A rate with a unit in GB/s (``memory_bandwidth_gbps``); any other value unchanged.

    Example:
        >>> parse_rate_gbytes("68GB/s"), parse_rate_gbytes("100Gbps")
        (68.0, 12.5)
    """
    return _convert(value, RATE_UNITS, "rate", SIZE_UNITS, Decimal(8000))


def _convert(value: Any, units: dict[str, Decimal], kind: str, other: dict[str, Decimal],
             per: Decimal) -> Any:
    """``value`` converted when it is a number with a unit of ``units``; a ValueError naming
    the units when it has another unit; anything else unchanged (the number checks judge it)."""
    if not isinstance(value, str):
        return value
    match = _QUANTITY.fullmatch(value)
    if match is None:
        return value
    number, unit = match.groups()
    if unit not in units:
        listed = ", ".join(units)
        listed = listed[: listed.rfind(", ")] + " or " + listed[listed.rfind(", ") + 2:]
        wrong = "rate" if kind == "size" else "size"
        if unit in other:
            raise ValueError(f"{unit!r} is a unit of {wrong}; a {kind} takes {listed}")
        raise ValueError(f"unknown unit {unit!r}; a {kind} takes {listed}")
    try:
        exact = Decimal(number) * units[unit] / per
    except ArithmeticError:  # beyond Decimal's exponent range
        raise ValueError(f"is out of range for a {kind}") from None
    if kind == "size" and abs(exact.adjusted()) <= _MAX_EXPONENT \
            and exact == exact.to_integral_value():
        return int(exact)
    return float(exact)


__all__ = ["RATE_UNITS", "SIZE_UNITS", "parse_rate_gbytes", "parse_rate_mbps",
           "parse_size_bytes"]
