"""Controller decisions in the live runtime, on the ``-v1`` stack.

A :class:`Decider` turns a :class:`~dora_rl.runtime.observe.Measurement` into a
:class:`~dora_rl.world.Decision` (per job the plan wanted, its bandwidth level, per device its
power mode; ``None`` keeps), or ``None`` to keep everything. :class:`ControlDecider` wraps any
controller of a ``-v1`` env (``static``, ``dora``, ``oracle``, a trained run folder): it
points its env at the measurement (:func:`~dora_rl.runtime.observe.bind`), takes the env's
own observation of it, asks the controller's ``predict`` and decodes the action with the env's
own :meth:`~dora_rl.env.edge_env.EdgeEnv.decode` (safety layer included). The env is
the decider's alone and is never reset or stepped: its world, control state and last outcome
are the measurement's and nothing else.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from dora_rl.config import Scenario
from dora_rl.costmodel import Plan
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.errors import DoraError
from dora_rl.runtime.observe import Measurement, observe
from dora_rl.world import Decision


class Decider(Protocol):
    """Chooses plans, bandwidth levels and power modes for the runtime."""

    def initial(self, usable: tuple[bool, ...]) -> Plan:
        """The plan to start on."""

    def candidates(self, usable: tuple[bool, ...]) -> tuple[Plan, ...]:
        """Plans to fall back on with the ``usable`` devices, least energy first."""

    def decide(self, m: Measurement) -> Decision | None:
        """The decision for the coming interval (``None`` keeps everything)."""


class ControlDecider:
    """A ``-v1`` controller deciding on the runtime's measurements.

    Args:
        controller: Anything with ``predict(obs, deterministic=True) -> (action, state)``.
        env: The controller's env (layout, candidate cache, decoding); not reset, not stepped.
        job: Index of the job the runtime serves.
    """

    def __init__(self, controller: Any, env: EdgeEnv, job: int) -> None:
        self.controller, self.env, self.job = controller, env, job
        self.history: deque[list[float]] = deque(maxlen=env.layout.history)
        self.last_step = -1
        self.invalid = 0
        """Choices the safety layer replaced so far."""

    def candidates(self, usable: tuple[bool, ...]) -> tuple[Plan, ...]:
        cand = self.env.cache.get(list(usable))[self.job]
        order = sorted(range(len(cand.plans)), key=lambda i: cand.energy_j[i])
        return tuple(cand.plans[i] for i in order)

    def initial(self, usable: tuple[bool, ...]) -> Plan:
        """The env's starting plan (a controller may set ``initial_plans``), else the job's
        first candidate."""
        start = self.env.initial_plans[self.job] if self.env.initial_plans else None
        if start is not None and all(usable[d] for d in start.devices):
            return start
        cand = self.env.cache.get(list(usable))[self.job]
        if not cand.plans:
            raise DoraError(f"job {self.job}: no plan fits the devices present")
        return cand.plans[0]

    def observation(self, m: Measurement) -> NDArray[np.float32]:
        """The observation of ``m`` (a new interval's link rates enter the history once)."""
        row = m.world.state.lists[2]
        if not self.history:
            self.history.extend([row] * self.env.layout.history)
        elif m.world.step != self.last_step:
            self.history.append(row)
        self.last_step = m.world.step
        return observe(self.env, m, self.history)

    def decide(self, m: Measurement) -> Decision:
        obs = self.observation(m)  # the env now points at ``m``
        action, _ = self.controller.predict(obs, deterministic=True)
        decision, invalid = self.env.decode(action)
        self.invalid += invalid
        return decision


class FixedDecider:
    """Always the given plan (while its devices are present); candidates come from ``base``.
    Levels and modes are kept (the whole medium, nominal modes)."""

    def __init__(self, plan: Plan, base: ControlDecider) -> None:
        self.plan, self.base = plan, base

    def initial(self, usable: tuple[bool, ...]) -> Plan:
        return self.plan

    def candidates(self, usable: tuple[bool, ...]) -> tuple[Plan, ...]:
        return self.base.candidates(usable)

    def decide(self, m: Measurement) -> Decision | None:
        return None


def parse_plan(text: str, devices: list[str], n_layers: int) -> Plan:
    """A plan written as ``END:DEV+DEV,END:DEV`` (exclusive stage ends, device names).

    Example:
        >>> parse_plan("4:a+b,8:c", ["a", "b", "c"], 8).stage_devices
        ((0, 1), (2,))
    """
    ends, groups = [], []
    for part in text.split(","):
        end, _, names = part.partition(":")
        if not end.strip().isdigit() or not names:
            raise DoraError(f"--plan {text}: expected END:DEVICE+DEVICE,... such as 4:slow,8:fast")
        unknown = [n for n in names.split("+") if n not in devices]
        if unknown:
            raise DoraError(f"--plan {text}: unknown device {unknown[0]!r}")
        ends.append(int(end))
        groups.append(tuple(devices.index(n) for n in names.split("+")))
    if ends != sorted(set(ends)) or ends[-1] != n_layers or ends[0] < 1:
        raise DoraError(f"--plan {text}: stage ends must rise strictly and end at {n_layers}")
    if len({d for g in groups for d in g}) != sum(len(g) for g in groups):
        raise DoraError(f"--plan {text}: a device is in two stages")
    return Plan(stage_end=tuple(ends), stage_devices=tuple(groups))


def make_decider(spec: str, scenario: Scenario, job: int) -> ControlDecider:
    """A baseline name (``static``, ``dora``, ...) or a run folder, as a
    :class:`ControlDecider` on the ``-v1`` env of ``scenario``."""
    from dora_rl.controllers import load, make

    if Path(spec).is_dir():
        learned = load(spec)
        env: Any = learned.make_env(bandwidth="static")
        controller: Any = learned
    else:
        env = EdgeEnv(scenario, bandwidth="static")
        controller = make(spec, env)
    base = env.unwrapped
    if not isinstance(base, EdgeEnv):
        raise DoraError(f"--controller {spec}: its environment is {type(base).__name__}, "
                        "not a dora_rl EdgeEnv")
    if base.scenario.name != scenario.name:
        raise DoraError(f"--controller {spec}: trained on {base.scenario.name!r}, "
                        f"not {scenario.name!r}")
    return ControlDecider(controller, base, job)


__all__ = ["ControlDecider", "Decider", "FixedDecider", "make_decider", "parse_plan"]
