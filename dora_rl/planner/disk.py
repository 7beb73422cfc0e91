"""Plan sets kept on disk, so a card is planned once per code version, not once per process.

A plan set (:func:`~dora_rl.planner.planset.plan_set`) of an edge card takes the exact solver
tens of seconds; envs, tests and ``plan`` ask for the same ones again and again. Each is stored
as a small JSON file named by a hash of everything its result depends on:

- the job's cost model inputs: the whole validated scenario (devices with their catalog
  figures resolved, network, models, jobs) and the job's own figures;
- the request: mode, ``k``, the state planned for, the solver's time limit;
- the code: the package version and the bytes of every module of ``config``, ``costmodel``
  and ``planner``, of ``env/plan_choices.py`` and of the shipped catalog
  (:func:`code_fingerprint`), so a change to the planner or the cost model never reads an old
  answer.

The candidates an env builds for a set of usable devices (its plan sets, the joint choice, the
re-solves for a device subset) are kept the same way, under a key of every job of the card.

Only the plans, their robustness and roles (for candidates, their nominal energies, which only
rank them) are stored; the plans' figures are recomputed from the cost model on reading, and a
file that cannot be read or holds a plan the job cannot run is ignored and replaced. Only
proven optima are ever stored (a solve that stops at its time limit raises instead). The
folder is ``$DORA_RL_CACHE`` when set, else the platform's user cache folder
(``~/.cache/dora_rl/plan_sets`` on Linux);
``DORA_RL_CACHE=off`` turns the cache off; ``python -m dora_rl.plan --clear-cache`` empties it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import platformdirs

from dora_rl import __version__
from dora_rl.config import Scenario
from dora_rl.costmodel import CostModel, Plan, PlanError, State, check_plan

log = logging.getLogger(__name__)

CACHE_ENV = "DORA_RL_CACHE"
"""Environment variable naming the cache folder (``off`` disables the cache)."""
FORMAT = 1
"""Version of the file layout."""
MAX_FILE_BYTES = 1 << 20
"""Larger files are not plan sets of ours and are ignored."""
_PACKAGE = Path(__file__).resolve().parent.parent
_CODE_PARTS = ("config", "costmodel", "planner")
_CODE_FILES = ("env/plan_choices.py",)
T = TypeVar("T")


def cache_dir() -> Path | None:
    """The cache folder, or None when the cache is off (``DORA_RL_CACHE=off``).

    Example:
        >>> import os
        >>> os.environ[CACHE_ENV] = "/tmp/dora-cache-example"
        >>> str(cache_dir())
        '/tmp/dora-cache-example'
        >>> os.environ[CACHE_ENV] = "off"; cache_dir() is None
        True
        >>> del os.environ[CACHE_ENV]
    """
    chosen = os.environ.get(CACHE_ENV, "").strip()
    if chosen.lower() == "off":
        return None
    if chosen:
        return Path(chosen).expanduser()
    return platformdirs.user_cache_path("dora_rl") / "plan_sets"


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of the package version and of the code and catalog a plan set depends on."""
    digest = hashlib.sha256(f"{__version__}/{FORMAT}".encode())
    files: list[Path] = []
    for part in _CODE_PARTS:
        files.extend(sorted((_PACKAGE / part).rglob("*.py")))
    files.extend(_PACKAGE / name for name in _CODE_FILES)
    files.extend(sorted((_PACKAGE / "data").rglob("*.yaml")))
    for path in files:
        digest.update(str(path.relative_to(_PACKAGE)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def scenario_text(scenario: Scenario) -> str:
    """Everything of a scenario a job's cost model reads, as canonical JSON (not its name,
    file, description, dynamics or reward: the same card under another path plans alike).

    Example:
        >>> from dora_rl.scenarios import load
        >>> scenario_text(load("tiny")) == scenario_text(load("tiny"))
        True
    """
    return json.dumps({
        "devices": [d.model_dump(mode="json") for d in scenario.devices],
        "network": scenario.network.model_dump(mode="json"),
        "models": {k: m.model_dump(mode="json") for k, m in sorted(scenario.models.items())},
        "jobs": [j.model_dump(mode="json") for j in scenario.jobs],
        "objective": scenario.objective.model_dump(mode="json"),
        "measured": sorted([list(k), list(v)] for k, v in scenario.measured.items()),
        "measured_format": sorted([list(k), v] for k, v in scenario.measured_format.items()),
    }, sort_keys=True)


def _state_bytes(state: State) -> Iterable[bytes]:
    for name in ("link_scale", "available", "load", "battery_wh", "cross_traffic",
                 "medium_share"):
        value = getattr(state, name)
        array = np.ascontiguousarray(np.asarray(value, dtype=np.float64))
        yield name.encode() + array.tobytes()


def _digest(models: Sequence[CostModel], request: str) -> str:
    digest = hashlib.sha256(code_fingerprint().encode())
    digest.update(scenario_text(models[0].scenario).encode())
    for model in models:
        digest.update(f"{model.job_index}:".encode())
        digest.update(model.tables.job.model_dump_json().encode())
    digest.update(request.encode())
    return digest.hexdigest()


def plan_set_key(model: CostModel, mode: str, k: int, state: State,
                 time_limit_s: float) -> str:
    """The file name (a hex digest) of a plan set's request; see the module docstring."""
    state_hash = hashlib.sha256(b"".join(_state_bytes(state))).hexdigest()
    return _digest([model], f"plan_set/{mode}/{k}/{time_limit_s!r}/{state_hash}")


def candidates_key(models: Sequence[CostModel], k: int, usable: bytes) -> str:
    """The file name of the candidates of every job of a card for one set of usable devices
    (:class:`~dora_rl.env.plan_choices.CandidateCache`)."""
    return _digest(models, f"candidates/{k}/{usable.hex()}")


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """A plan as JSON-ready data (:func:`plan_from_json` reads it back)."""
    return {"stage_end": list(plan.stage_end),
            "stage_devices": [list(g) for g in plan.stage_devices],
            "micro_batches": plan.micro_batches,
            "boundary_shares": None if plan.boundary_shares is None
            else list(plan.boundary_shares),
            "allreduce_shares": None if plan.allreduce_shares is None
            else list(plan.allreduce_shares),
            "dvfs_levels": None if plan.dvfs_levels is None else list(plan.dvfs_levels)}


def plan_from_json(raw: dict[str, Any], model: CostModel) -> Plan:
    """The plan :func:`plan_to_json` wrote, checked against ``model``'s job.

    Raises:
        PlanError, KeyError, TypeError, ValueError: not a plan this job can run.

    Example:
        >>> from dora_rl.scenarios import load
        >>> model = CostModel(load("tiny"))
        >>> plan = Plan(stage_end=(3, 8), stage_devices=((0,), (1, 2)))
        >>> plan_from_json(plan_to_json(plan), model) == plan
        True
    """
    def maybe(name: str, kind: type) -> tuple[Any, ...] | None:
        value = raw[name]
        return None if value is None else tuple(kind(v) for v in value)

    plan = Plan(stage_end=tuple(int(v) for v in raw["stage_end"]),
                stage_devices=tuple(tuple(int(d) for d in g) for g in raw["stage_devices"]),
                micro_batches=int(raw["micro_batches"]),
                boundary_shares=maybe("boundary_shares", float),
                allreduce_shares=maybe("allreduce_shares", float),
                dvfs_levels=maybe("dvfs_levels", int))
    check_plan(plan, model.tables)
    return plan


def load_entry(key: str, parse: Callable[[Any], T]) -> T | None:
    """``parse`` of the data stored under ``key``, or None when there is none usable:
    missing, too large, written for another key or format, or refused by ``parse`` (which
    raises KeyError, TypeError, ValueError or PlanError on data it cannot use)."""
    folder = cache_dir()
    if folder is None:
        return None
    path = folder / f"{key}.json"
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("key") != key:
            return None
        return parse(data["data"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, IndexError, PlanError) as error:
        log.warning("ignoring the unreadable plan cache file %s (%s)", path, error)
        return None


def store_entry(key: str, data: Any) -> None:
    """Store JSON-ready ``data`` under ``key`` atomically; a folder that cannot be written is
    skipped with a log line (the cache only saves time)."""
    folder = cache_dir()
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, suffix=".tmp", delete=False,
                                         encoding="utf-8") as out:
            json.dump({"format": FORMAT, "key": key, "data": data}, out)
        os.replace(out.name, folder / f"{key}.json")
    except OSError as error:
        log.warning("cannot write the plan cache in %s (%s)", folder, error)


def clear() -> int:
    """Delete every cached plan set; the number of files removed."""
    folder = cache_dir()
    if folder is None or not folder.is_dir():
        return 0
    removed = 0
    for path in list(folder.glob("*.json")) + list(folder.glob("*.tmp")):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


__all__ = ["CACHE_ENV", "cache_dir", "candidates_key", "clear", "code_fingerprint", "load_entry",
           "plan_from_json", "plan_set_key", "plan_to_json", "scenario_text", "store_entry"]
