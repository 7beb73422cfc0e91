"""Find scenario cards by name or path.

A name such as ``smart_home`` resolves to ``envs/smart_home.yaml`` of the source tree (the cards
are data, shipped beside the package, not inside it); any other argument is a path.
"""

from __future__ import annotations

from pathlib import Path

from dora_rl.config import Scenario, load_scenario
from dora_rl.errors import ConfigError

ENVS_DIR = Path(__file__).resolve().parent.parent / "envs"


def available() -> list[str]:
    """Names of the cards in the ``envs/`` directory."""
    return sorted(p.stem for p in ENVS_DIR.glob("*.yaml")) if ENVS_DIR.is_dir() else []


def resolve_path(name_or_path: str | Path) -> Path:
    """Path of a card given as a path or as a name from ``envs/``."""
    path = Path(name_or_path)
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
