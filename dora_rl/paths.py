"""Where the shipped data is: scenario cards and traces, controller cards, trained controllers.

Everything the package reads at run time is inside the package, so an installed wheel finds it
from any folder:

- ``dora_rl/data/``: the device catalog and the built-in model profiles;
- ``dora_rl/shipped/envs/``: the scenario cards, their profiles, traces and samples;
- ``dora_rl/shipped/agents/``: the controller cards (``ppo.yaml``, ``baselines.yaml``);
- ``dora_rl/shipped/checkpoints/``: the trained controllers (run folders named ``ppo_v<N>``).

In a source checkout the three ``shipped`` entries are links to the repository's top-level
``envs/``, ``agents/`` and ``checkpoints/`` (the files to edit); a wheel holds copies. A relative
path that starts with one of these three names (``envs/smart_home.yaml``,
``checkpoints/smart_home/ppo_v1``) means the file in the working directory when it exists there,
else the shipped one (:func:`find`), so the commands in the docs work from any folder.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
"""The folder holding ``envs``, ``agents`` and ``checkpoints``."""
SHIPPED: tuple[str, ...] = ("envs", "agents", "checkpoints")
"""The names of the shipped folders."""


def shipped(name: str) -> Path:
    """The shipped folder ``name`` (one of :data:`SHIPPED`).

    A checkout whose links came out as plain files (symbolic links turned off in git) falls back
    to the folder at the repository's root.

    Example:
        >>> (shipped("envs") / "tiny.yaml").is_file()
        True
    """
    if name not in SHIPPED:
        raise ValueError(f"no shipped folder {name!r} (folders: {', '.join(SHIPPED)})")
    path = SHIPPED_DIR / name
    if path.is_dir():
        return path
    checkout = SHIPPED_DIR.parent.parent / name
    return checkout if checkout.is_dir() else path


def find(path: str | Path) -> Path:
    """``path`` itself when it exists (or is absolute, or is not under a shipped folder's name),
    else its shipped copy when that exists, else ``path`` (so errors name what was asked for).

    Example:
        >>> import os, tempfile
        >>> here = os.getcwd(); os.chdir(tempfile.gettempdir())
        >>> find("envs/tiny.yaml") == shipped("envs") / "tiny.yaml"
        True
        >>> find("elsewhere/tiny.yaml")
        PosixPath('elsewhere/tiny.yaml')
        >>> os.chdir(here)
    """
    path = Path(path)
    if path.is_absolute() or not path.parts or path.parts[0] not in SHIPPED or path.exists():
        return path
    candidate = shipped(path.parts[0]).joinpath(*path.parts[1:])
    return candidate if candidate.exists() else path


def portable(path: str | Path) -> str:
    """A path inside the shipped data as ``envs/...`` (the same in every install), any other
    path absolute; :func:`from_portable` turns it back into a path.

    Example:
        >>> portable(shipped("envs") / "tiny.yaml")
        'envs/tiny.yaml'
        >>> portable("/tmp/x.yaml")
        '/tmp/x.yaml'
    """
    resolved = Path(path).resolve()
    for name in SHIPPED:
        root = shipped(name).resolve()
        if resolved == root or root in resolved.parents:
            return Path(name, resolved.relative_to(root)).as_posix()
    return str(resolved)


def from_portable(text: str) -> Path:
    """The path :func:`portable` wrote: a relative one is in the shipped data.

    Example:
        >>> from_portable("envs") == shipped("envs")
        True
    """
    path = Path(text)
    if path.is_absolute() or not path.parts or path.parts[0] not in SHIPPED:
        return path if path.is_absolute() else SHIPPED_DIR.parent.parent / path
    return shipped(path.parts[0]).joinpath(*path.parts[1:])


__all__ = ["SHIPPED", "SHIPPED_DIR", "find", "from_portable", "portable", "shipped"]
