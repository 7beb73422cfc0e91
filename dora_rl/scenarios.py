"""Find scenario cards by name or path.

A name such as ``smart_home`` resolves to the shipped card ``envs/smart_home.yaml`` (see
:mod:`dora_rl.paths` for where the shipped data is); any other argument is a path, and a relative
``envs/...`` path missing from the working directory is the shipped card.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dora_rl.config import Scenario, load_scenario
from dora_rl.errors import ConfigError
from dora_rl.paths import find, shipped

ENVS_DIR = shipped("envs")
"""The shipped scenario cards (``envs/`` of the repository)."""


def available() -> list[str]:
    """Names of the shipped cards."""
    return sorted(p.stem for p in ENVS_DIR.glob("*.yaml")) if ENVS_DIR.is_dir() else []


def resolve_path(name_or_path: str | Path) -> Path:
    """Path of a card given as a path or as the name of a shipped card."""
    path = find(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    candidate = ENVS_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    raise ConfigError(str(name_or_path), "", f"no such scenario file or name "
                      f"(known names: {', '.join(available()) or 'none'})")


def load(name_or_path: str | Path) -> Scenario:
    """Load a scenario card by name (``tiny``) or path (``envs/tiny.yaml``).

    Loads of an unchanged file return the same (immutable) Scenario object, so environments of
    one card in a process share their planned candidates.
    """
    path = resolve_path(name_or_path)
    try:
        stamp = path.resolve().stat().st_mtime_ns
    except OSError:
        return load_scenario(path)  # reports the unreadable file
    key = (path.resolve(), stamp)
    if key not in _LOADED:
        _LOADED[key] = load_scenario(path)
    return _LOADED[key]


_LOADED: dict[tuple[Path, int], Scenario] = {}

TRACE_UNITS_HELP = ("how a bandwidth trace's Mbps become link rates: relative (each trace "
                    "scaled to its 95th percentile at the card's link_mbps) or absolute (the "
                    "recorded Mbps as the link rate, at most 1.2 x link_mbps); default: the "
                    "card's dynamics.trace_units, relative unless the card says otherwise")
"""The ``--trace-units`` help of every command line that replays traces."""


def with_trace_units(scenario: Scenario, units: str | None) -> Scenario:
    """``scenario`` with ``dynamics.trace_units`` set to ``units`` (None: the card's).

    Example:
        >>> with_trace_units(load("tiny"), "absolute").dynamics.trace_units
        'absolute'
    """
    if units is None or units == scenario.dynamics.trace_units:
        return scenario
    if units not in ("relative", "absolute"):
        raise ConfigError("--trace-units", "", f"must be relative or absolute, got {units!r}")
    dynamics = scenario.dynamics.model_copy(update={"trace_units": units})
    return dataclasses.replace(scenario, dynamics=dynamics)
