"""Controller decisions in the live runtime, from the same observation encoding as training.

A :class:`Decider` turns what the runtime measured over the last control interval
(:class:`LiveView`) into a plan, or ``None`` to keep the current one. :class:`EnvDecider` wraps
any controller with SB3's ``predict`` (``static``, ``dora``, a trained run folder): it encodes
the observation with :func:`dora_rl.env.observation.encode_observation`, asks the controller,
decodes the action with :func:`dora_rl.env.edge_env.decode_action`, and maps the pick to the
job's candidate plans for the devices present (the env's own candidate cache).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dora_rl.config import Scenario
from dora_rl.costmodel import Plan, State
from dora_rl.env.edge_env import BANDWIDTH_LEVELS, EdgeEnv, decode_action
from dora_rl.env.observation import encode_observation
from dora_rl.errors import DoraError


@dataclass(frozen=True)
class LiveView:
    """What the runtime knows at a control step.

    Attributes:
        usable: Per device (card order): its worker is alive.
        plan: The current plan.
        link_scale: Per device: measured link-rate multiplier (1 = the card's rate).
        qoe_slack: Smallest relative QoE slack measured over the last interval.
        since_switch: Control intervals since the last plan switch.
        interval: Index of this control step.
    """

    usable: tuple[bool, ...]
    plan: Plan
    link_scale: tuple[float, ...]
    qoe_slack: float
    since_switch: int
    interval: int


class Decider(Protocol):
    """Chooses plans for the runtime."""

    def initial(self, usable: tuple[bool, ...]) -> Plan:
        """The plan to start on."""

    def decide(self, view: LiveView) -> Plan | None:
        """A new plan, or ``None`` to keep the current one."""


class EnvDecider:
    """A controller with SB3's ``predict``, fed the training observation encoding.

    Args:
        controller: Anything with ``predict(obs, deterministic=True) -> (action, state)``.
        env: The controller's environment (its layout, candidate cache and ``k``).
        job: Index of the job the runtime serves.
    """

    def __init__(self, controller: Any, env: EdgeEnv, job: int) -> None:
        self.controller, self.env, self.job = controller, env, job
        self.history = np.ones((env.layout.history, env.n_devices))
        self.choice = 1

    def candidates(self, usable: tuple[bool, ...]) -> tuple[Plan, ...]:
        """The job's candidate plans for the devices present, least energy first."""
        cand = self.env.cache.get(np.array(usable, dtype=bool))[self.job]
        order = sorted(range(len(cand.plans)), key=lambda i: cand.energy_j[i])
        return tuple(cand.plans[i] for i in order)

    def initial(self, usable: tuple[bool, ...]) -> Plan:
        cand = self.env.cache.get(np.array(usable, dtype=bool))[self.job]
        if not cand.plans:
            raise DoraError(f"job {self.job}: no plan fits the devices present")
        self.choice = 1
        return cand.plans[0]

    def observation(self, view: LiveView) -> np.ndarray:
        """The observation vector the controller was trained on, from live measurements."""
        env = self.env
        self.history[:-1] = self.history[1:]
        self.history[-1] = view.link_scale
        world = env.world.state
        state = State(link_scale=np.array(view.link_scale), available=np.array(view.usable),
                      load=np.zeros(env.n_devices), battery_wh=world.battery_wh,
                      cross_traffic=world.cross_traffic, medium_share=world.medium_share)
        n = env.n_jobs
        active = np.ones(n, dtype=bool)
        slack = np.zeros(n)
        slack[self.job] = view.qoe_slack
        choice = np.zeros(n, dtype=np.int64)
        choice[self.job] = self.choice
        since = np.zeros(n, dtype=np.int64)
        since[self.job] = view.since_switch
        return encode_observation(env.layout, self.history, state, env.capacity_wh, active,
                                  np.ones(n), slack, choice, env.k,
                                  np.full(n, BANDWIDTH_LEVELS // 2, dtype=np.int64),
                                  BANDWIDTH_LEVELS, since, env.episode_steps)

    def decide(self, view: LiveView) -> Plan | None:
        obs = self.observation(view)
        action, _ = self.controller.predict(obs, deterministic=True)
        picks, _ = decode_action(action)
        pick = picks[self.job]
        if pick == 0:
            return None
        cand = self.env.cache.get(np.array(view.usable, dtype=bool))[self.job]
        if pick > len(cand.plans):
            return None
        self.choice = pick
        return cand.plans[pick - 1]


class FixedDecider:
    """Always the given plan (while its devices are present); candidates come from ``base``."""

    def __init__(self, plan: Plan, base: EnvDecider) -> None:
        self.plan, self.base = plan, base

    def initial(self, usable: tuple[bool, ...]) -> Plan:
        return self.plan

    def candidates(self, usable: tuple[bool, ...]) -> tuple[Plan, ...]:
        return self.base.candidates(usable)

    def decide(self, view: LiveView) -> Plan | None:
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


def make_decider(spec: str, scenario: Scenario, job: int) -> EnvDecider:
    """``static``, ``dora`` (any baseline name) or a run folder, as an :class:`EnvDecider`."""
    from dora_rl.controllers import load, make

    if Path(spec).is_dir():
        learned = load(spec)
        env = learned.make_env(bandwidth="static")
        controller: Any = learned
    else:
        env = EdgeEnv(scenario, bandwidth="static")
        controller = make(spec, env)
    base = env.unwrapped if hasattr(env, "unwrapped") else env
    if not isinstance(base, EdgeEnv):
        raise DoraError(f"--controller {spec}: its environment is not an EdgeEnv")
    if base.scenario.name != scenario.name:
        raise DoraError(f"--controller {spec}: trained on {base.scenario.name!r}, "
                        f"not {scenario.name!r}")
    base.reset(seed=0)
    return EnvDecider(controller, base, job)
