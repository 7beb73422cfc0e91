"""The run folder of one training run, ``checkpoints/<scenario>/ppo_<run_id>/``.

=====================  ===================================================================
file                   content
=====================  ===================================================================
``model.zip``          the final model (stable-baselines3 format; only ``policy.pth`` is read
                       back, as tensors)
``best_model.zip``     the best model by mean reward on the validation traces
``config.yaml``        every resolved setting, env id and version, observation and action
                       sizes, the scenario card's text and SHA-256, package versions
``command.txt``        the command line that produced the run
``git_commit.txt``     the source revision (``unknown`` outside a git checkout)
``validation.json``    every validation during training
``evaluation.json``    the final model's and the baselines' figures on the test traces
``tb/``                TensorBoard logs of the run
``run.json``           ``{"complete": false, ...}`` from the start; replaced atomically by
                       ``{"complete": true, ...}`` once ``model.zip`` is saved, or updated with
                       ``interrupted_at_step`` when training is interrupted. The loader refuses
                       a folder that is not complete (:mod:`dora_rl.controllers.checkpoint`)
=====================  ===================================================================
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from dora_rl import __version__
from dora_rl.config import Scenario
from dora_rl.config.names import require_name
from dora_rl.controllers.checkpoint import RUN_RECORD
from dora_rl.controllers.learned import CONFIG_FORMAT
from dora_rl.errors import DoraError
from dora_rl.paths import portable

REPO_DIR = Path(__file__).resolve().parent.parent.parent


def safe_component(name: str, what: str) -> str:
    """``name`` if it is one safe path component (the one name rule of
    :mod:`dora_rl.config.names`), else a one-line error naming ``what``.

    Example:
        >>> safe_component("smart_home", "scenario name")
        'smart_home'
        >>> safe_component("..", "--run-id")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        dora_rl.errors.ConfigError: --run-id: must be a safe name (...), got '..'
    """
    return require_name(name, what, "")


def new_run_dir(out_dir: Path, scenario_name: str, run_id: str | None = None) -> Path:
    """Create ``out_dir/<scenario>/ppo_<run_id>``; never reuses an existing folder.

    Without ``run_id`` it is the UTC time (``20261130-231500``), with ``-2``, ``-3``... appended
    if that folder exists already. The scenario name and run id must be safe path components
    (a card named ``..`` must not put the run one level up).
    """
    safe_component(scenario_name, "scenario name")
    if run_id is not None:
        safe_component(run_id, "--run-id")
    base = out_dir / scenario_name
    stem = f"ppo_{run_id or datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 1000):
        path = base / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            if run_id is not None:
                raise DoraError(f"{path}: run folder exists already (runs are never "
                                "overwritten; pick another --run-id)") from None
        except OSError as exc:
            raise DoraError(f"{path}: cannot create the run folder ({exc.strerror})") from None
    raise DoraError(f"{base}: too many runs named {stem}")


def git_commit() -> str:
    """The source revision, with ``+dirty`` if the tree has uncommitted changes; ``unknown``
    for an installed package (not a checkout)."""
    if not (REPO_DIR / ".git").exists():
        return "unknown"
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_DIR, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_DIR, capture_output=True, text=True, timeout=10,
                               check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return rev + ("+dirty" if dirty else "")


def scenario_record(scenario: Scenario) -> dict[str, Any]:
    """The card's path, folder, text and SHA-256, so the run folder alone rebuilds the env."""
    path = Path(scenario.source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DoraError(f"{path}: cannot read the scenario card to record it "
                        f"({exc.strerror})") from None
    return {"name": scenario.name, "path": portable(path),
            "base_dir": portable(scenario.base_dir),
            "sha256": hashlib.sha256(text.encode()).hexdigest(), "content": text}


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the card's text) as readable ``|`` blocks."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def write_config(run_dir: Path, record: dict[str, Any]) -> None:
    """Write ``config.yaml`` (plus package versions and the format number)."""
    import gymnasium
    import stable_baselines3
    import torch

    full = {"format": CONFIG_FORMAT, **record,
            "versions": {"dora_rl": __version__, "python": platform.python_version(),
                         "torch": str(torch.__version__), "gymnasium": gymnasium.__version__,
                         "stable_baselines3": stable_baselines3.__version__}}
    (run_dir / "config.yaml").write_text(
        yaml.dump(full, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True))


def write_provenance(run_dir: Path, command: str) -> str:
    """Write ``command.txt`` and ``git_commit.txt``; returns the commit."""
    commit = git_commit()
    (run_dir / "command.txt").write_text(command + "\n")
    (run_dir / "git_commit.txt").write_text(commit + "\n")
    return commit


def _write_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Replace ``run.json`` atomically (a reader sees the old or the new record, never half)."""
    tmp = run_dir / f".{RUN_RECORD}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, run_dir / RUN_RECORD)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mark_started(run_dir: Path) -> None:
    """``run.json`` = ``{"complete": false}``: the folder is not loadable until finished."""
    _write_record(run_dir, {"complete": False, "started_utc": _now()})


def mark_interrupted(run_dir: Path, step: int, reason: str) -> None:
    """Record where training stopped; the folder stays incomplete."""
    _write_record(run_dir, {"complete": False, "started_utc": _started(run_dir),
                            "interrupted_at_step": int(step), "interrupted_by": reason,
                            "interrupted_utc": _now()})


def mark_complete(run_dir: Path, steps: int) -> None:
    """The last write of a training run: ``run.json`` = ``{"complete": true, ...}``."""
    _write_record(run_dir, {"complete": True, "started_utc": _started(run_dir),
                            "finished_utc": _now(), "timesteps": int(steps)})


def _started(run_dir: Path) -> str | None:
    try:
        value = json.loads((run_dir / RUN_RECORD).read_text()).get("started_utc")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
