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
=====================  ===================================================================
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from dora_rl import __version__
from dora_rl.config import Scenario
from dora_rl.controllers.learned import CONFIG_FORMAT
from dora_rl.errors import DoraError

REPO_DIR = Path(__file__).resolve().parent.parent.parent


def new_run_dir(out_dir: Path, scenario_name: str, run_id: str | None = None) -> Path:
    """Create ``out_dir/<scenario>/ppo_<run_id>``; never reuses an existing folder.

    Without ``run_id`` it is the UTC time (``20261130-231500``), with ``-2``, ``-3``... appended
    if that folder exists already.
    """
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
    """The source revision, with ``+dirty`` if the tree has uncommitted changes."""
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
    return {"name": scenario.name, "path": _portable(path),
            "base_dir": _portable(scenario.base_dir),
            "sha256": hashlib.sha256(text.encode()).hexdigest(), "content": text}


def _portable(path: Path) -> str:
    """A path inside the source tree relative to it (so a shipped run folder works on another
    checkout), any other path absolute."""
    try:
        return str(path.resolve().relative_to(REPO_DIR))
    except ValueError:
        return str(path.resolve())


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
