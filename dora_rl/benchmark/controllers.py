"""Which controllers a benchmark compares, and an environment of its own for each.

``--controllers`` is a comma-separated list. Each entry is

- a baseline name (``static``, ``throughput``, ``dora``, ``greedy``, ``oracle``, ``random``),
  built with :func:`dora_rl.controllers.make`;
- ``label=RUN_DIR``: a trained controller, loaded with ``dora_rl.controllers.load(RUN_DIR)``
  and shown as ``label``;
- ``label=NAME``: a baseline under another label;
- a bare path to an existing directory: a trained controller labelled by the directory name.

Every controller gets its own environment (``throughput`` sets the env's starting plans,
``greedy`` reads its coming interval, ``oracle`` the whole episode), built with the same
scenario, split, traces and episode length so all of them replay the same episodes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym

from dora_rl.config import Scenario
from dora_rl.controllers import CONTROLLERS, make
from dora_rl.controllers.evaluation import Predictor
from dora_rl.errors import ConfigError, UsageError
from dora_rl.paths import find

ENV_ID = "dora_rl/Edge-v1"
BACKEND_ENV_IDS = {"analytic": ENV_ID, "sim": "dora_rl/Sim-v1"}
"""The env id of each backend: the cost model, or the discrete-event simulator."""
_LABEL = re.compile(r"^[A-Za-z0-9_.+-]+$")



@dataclass(frozen=True)
class ControllerSpec:
    """One entry of ``--controllers``.

    Attributes:
        label: Name in tables, plots and TensorBoard run names.
        baseline: Baseline name for :func:`dora_rl.controllers.make`, or None.
        run_dir: Directory of a trained controller, or None.
    """

    label: str
    baseline: str | None = None
    run_dir: Path | None = None


@dataclass(frozen=True)
class EnvSettings:
    """What every controller's environment shares.

    Attributes:
        scenario: The card (loaded once).
        split: Trace split to replay (``test`` for held-out episodes).
        traces_dir: Trace folder; None uses the card's or the shipped walks.
        episode_steps: Intervals per episode; None keeps the env's default.
        backend: ``analytic`` (each interval from the cost model) or ``sim`` (simulated
            event by event).
    """

    scenario: Scenario
    split: str = "test"
    traces_dir: Path | None = None
    episode_steps: int | None = None
    backend: str = "analytic"

    def make_env(self, **extra: Any) -> gym.Env[Any, Any]:
        """A fresh environment on held-out trace episodes (``extra``: ``k``, ``interval_s``)."""
        kwargs: dict[str, Any] = {"scenario": self.scenario, "split": self.split,
                                  "bandwidth": "trace", "traces_dir": self.traces_dir, **extra}
        if self.episode_steps is not None:
            kwargs["episode_steps"] = self.episode_steps
        try:
            return gym.make(BACKEND_ENV_IDS[self.backend], **kwargs)
        except ConfigError as error:
            if self.traces_dir is not None:
                raise UsageError(f"--traces: {error}") from None
            raise


@dataclass
class Contender:
    """A controller ready to run.

    Attributes:
        spec: What was asked for.
        env: Its own environment.
        fresh: Returns the controller to run an episode with (a new one for baselines, so
            no state carries over between episodes; the loaded one for trained controllers).
    """

    spec: ControllerSpec
    env: gym.Env[Any, Any]
    fresh: Callable[[], Predictor]

    @property
    def label(self) -> str:
        """The controller's label."""
        return self.spec.label


def parse_controllers(text: str) -> list[ControllerSpec]:
    """Parse ``--controllers`` (see the module docstring).

    Raises:
        UsageError: empty list, unknown name, missing run directory, bad or repeated label.

    Example:
        >>> [(s.label, s.baseline) for s in parse_controllers("static,fast=throughput")]
        [('static', 'static'), ('fast', 'throughput')]
    """
    entries = [e.strip() for e in text.split(",")]
    if not text.strip() or any(not e for e in entries):
        raise UsageError(f"--controllers {text!r}: expected a comma-separated list such as "
                         "static,dora or ppo=RUN_DIR,dora (no empty entries)")
    specs = [_parse_entry(e) for e in entries]
    labels = [s.label for s in specs]
    repeated = sorted({x for x in labels if labels.count(x) > 1})
    if repeated:
        raise UsageError(f"--controllers: label {repeated[0]!r} given more than once "
                         "(name them label=...)")
    return specs


def _parse_entry(entry: str) -> ControllerSpec:
    known = ", ".join(CONTROLLERS)
    if "=" in entry:
        label, _, value = (part.strip() for part in entry.partition("="))
        if not _LABEL.match(label):
            raise UsageError(f"--controllers: label {label!r} must be letters, digits, "
                             "'_', '.', '+' or '-'")
        if value in CONTROLLERS and not find(value).is_dir():
            return ControllerSpec(label, baseline=value)
        if not find(value).is_dir():
            raise UsageError(f"--controllers: {entry!r}: {value!r} is neither a run directory "
                             f"nor a controller ({known})")
        return ControllerSpec(label, run_dir=find(value))
    if entry in CONTROLLERS:
        return ControllerSpec(entry, baseline=entry)
    if find(entry).is_dir():
        label = find(entry).resolve().name
        if not _LABEL.match(label):
            raise UsageError(f"--controllers: name the run directory {entry!r} as "
                             "label=DIR (its name is not a usable label)")
        return ControllerSpec(label, run_dir=find(entry))
    raise UsageError(f"--controllers: unknown controller {entry!r} (known: {known}; or "
                     "label=RUN_DIR for a trained one)")


def _load_trained(run_dir: Path) -> Any:
    """``dora_rl.controllers.load(run_dir)`` (looked up at call time)."""
    from dora_rl import controllers

    return controllers.load(run_dir)


def build_all(specs: list[ControllerSpec], settings: EnvSettings) -> list[Contender]:
    """Environments and controller factories of every spec, in order.

    A trained controller's environment takes ``k`` and ``interval_s`` from the ``env_kwargs``
    it was trained with (they fix its spaces). The baselines' environments take the trained
    controllers' ``interval_s`` (so all replay the same episodes; trained controllers that
    disagree on it are refused) and their ``k`` when they agree on it (so the rule-based
    controllers choose among the same candidates), else the env's defaults.

    Raises:
        UsageError: a trained controller was trained on another scenario, or two disagree on
            ``interval_s``.
        DoraError: a checkpoint is unusable (from ``dora_rl.controllers.load``).
    """
    trained: dict[str, tuple[Any, dict[str, Any]]] = {}
    for spec in specs:
        if spec.run_dir is None:
            continue
        controller = _load_trained(spec.run_dir)
        trained_on = controller.scenario.name
        if trained_on != settings.scenario.name:
            raise UsageError(f"--controllers: {spec.label} ({spec.run_dir}) was trained on "
                             f"scenario {trained_on!r}, not {settings.scenario.name!r}")
        kwargs = {k: v for k, v in dict(controller.env_kwargs).items()
                  if k in ("k", "interval_s")}
        trained[spec.label] = (controller, kwargs)
    shared: dict[str, Any] = {}
    for key in ("interval_s", "k"):
        values = {label: kwargs[key] for label, (_, kwargs) in trained.items() if key in kwargs}
        if len(set(values.values())) == 1:
            shared[key] = next(iter(values.values()))
        elif len(values) > 1 and key == "interval_s":
            listed = ", ".join(f"{label} {v}" for label, v in values.items())
            raise UsageError(f"--controllers: trained with different interval_s ({listed}): "
                             "they cannot replay the same episodes")
    out = []
    for spec in specs:
        if spec.label in trained:
            controller, kwargs = trained[spec.label]
            env = settings.make_env(**{**shared, **kwargs})
            out.append(Contender(spec, env, partial(_same, controller)))
        else:
            assert spec.baseline is not None
            env = settings.make_env(**shared)
            out.append(Contender(spec, env, partial(make, spec.baseline, env)))
    return out


def _same(controller: Predictor) -> Predictor:
    return controller


__all__ = ["BACKEND_ENV_IDS", "ENV_ID", "Contender", "ControllerSpec", "EnvSettings",
           "UsageError", "build_all", "parse_controllers"]
