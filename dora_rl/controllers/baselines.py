"""Controllers that are not learned; each answers SB3's ``predict`` so one loop runs them all.

- ``static``: the offline optimum from the start, never changed (the user's initial partition).
- ``throughput``: the throughput-first baseline plan, never changed (how existing planners run).
- ``dora``: the rule-based runtime adapter: from the previous interval's measured state it
  predicts every candidate with the cost model and picks the least-energy one predicted to
  meet QoE with a margin, with hysteresis; when no candidate meets QoE it takes the one with
  the smallest shortfall.
- ``oracle``: privileged: sees the true state of the coming interval (through a callable) and
  picks the least-energy candidate that meets QoE in it. A bound, not deployable.
- ``random``: uniform random actions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from dora_rl.controllers.card import DoraSettings, load_baseline_settings
from dora_rl.costmodel import State
from dora_rl.dynamics import WorldState
from dora_rl.env.edge_env import BANDWIDTH_LEVELS, EdgeEnv, encode_action
from dora_rl.errors import InfeasibleError
from dora_rl.planner.baselines import throughput as throughput_plan
from dora_rl.planner.compose import time_mix

Action = NDArray[np.int64]


class Controller:
    """Base: SB3's ``predict(obs, state, episode_start, deterministic) -> (action, state)``."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        self.env: EdgeEnv = env.unwrapped  # type: ignore[assignment]
        self.n_jobs = self.env.n_jobs

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Action, Any]:
        """The action for ``observation`` (a single env; batched observations are not used)."""
        return self.act(), state

    def act(self) -> Action:
        """Keep every plan at the middle bandwidth level."""
        return encode_action([0] * self.n_jobs, [BANDWIDTH_LEVELS // 2] * self.n_jobs)


@dataclass(frozen=True)
class _Figure:
    time_s: float
    energy_j: float
    index: int


class Static(Controller):
    """The offline optimum, never changed."""


class Throughput(Controller):
    """The throughput-first baseline plan of every job, never changed."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.env.initial_plans = [throughput_plan(m) for m in self.env.models]


class RandomController(Controller):
    """Uniform random actions (seeded)."""

    def __init__(self, env: gym.Env[Any, Any], seed: int | None = None) -> None:
        super().__init__(env)
        self.space = env.action_space
        self.space.seed(load_baseline_settings().random.seed if seed is None else seed)

    def act(self) -> Action:
        return np.asarray(self.space.sample(), dtype=np.int64)


class _Chooser(Controller):
    """Pick per job the least-energy candidate that meets QoE in a given state."""

    margin = 0.0
    hysteresis = 0.0
    mix = False

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.credit: dict[tuple[int, int], float] = {}

    def _mixed(self, j: int, cand: Any, scored: list[tuple[Any, ...]], state: State,
               world: WorldState) -> int | None:
        """For a training job with a time-to-finish deadline, only the *average* iteration time
        matters: alternate the two plans of the least-energy mix meeting it (an LP), when that
        mix saves energy over the best single plan. Per-request targets never mix."""
        job = self.env.models[j].tables.job
        if job.training is None or job.qoe.deadline_s is None or not job.training.iterations:
            return None
        target_s = job.qoe.deadline_s / job.training.iterations * float(world.qoe_scale[j])
        entries = []
        for _, _, energy, i in scored:
            m = self.env.models[j].evaluate(cand.plans[i], state, check=False)
            if m["memory_ok"] and np.isfinite(m["iteration_s"]):
                entries.append(_Figure(float(m["iteration_s"]), float(energy), i))
        if len(entries) < 2:
            return None
        try:
            mix = time_mix(entries, target_s)
        except InfeasibleError:
            return None
        single = min((e.energy_j for e in entries if e.time_s <= target_s), default=np.inf)
        if mix.energy_j >= single * (1 - 1e-9):
            return None
        # serve the plan furthest behind its share (a deterministic round robin)
        for e, f in zip(entries, mix.fractions, strict=True):
            self.credit[(j, e.index)] = self.credit.get((j, e.index), 0.0) + f
        chosen = max(entries, key=lambda e: self.credit[(j, e.index)])
        self.credit[(j, chosen.index)] -= 1.0
        return 0 if self.env.plans[j] == cand.plans[chosen.index] else chosen.index + 1


    def choose(self, world: WorldState, state: State) -> Action:
        env = self.env
        picks = []
        # jobs decide in turn, each seeing the demand the earlier ones will place (deciding all
        # at once on the current plans' demand makes jobs that share devices swap back and
        # forth every interval)
        active = world.job_active
        util = [row[:] for row in env.demands(env.plans, active)]
        for j, cand in enumerate(env.cache.get(state.usable)):
            scored = []
            view = env.job_view(j, state, world.job_active, util)
            figures: dict[int, dict[str, Any]] = {}
            for i, plan in enumerate(cand.plans):
                if not all(state.usable[d] for d in plan.devices):
                    continue
                m = figures[i] = env.models[j].evaluate(plan, view, check=False)
                slack = env.job_slacks(j, m, env.stall_ahead(j, plan, state),
                                       float(world.qoe_scale[j]))
                short = sum(-s for s in slack if s < 0)
                ok = m["memory_ok"] and all(s >= self.margin for s in slack)
                scored.append((not ok, short if not ok else 0.0, m["energy_j"], i))
            if not scored:
                picks.append(0)
                continue
            best = min(scored)
            current = next((s for s in scored if env.plans[j] == cand.plans[s[3]]), None)
            mixed = self._mixed(j, cand, scored, view, world) if self.mix else None
            if mixed is not None:  # a time-to-finish target: alternate two plans
                picks.append(mixed)
                chosen = mixed - 1 if mixed else (current[3] if current else None)
            else:
                keep = current is not None and not current[0] and (
                    current[2] <= best[2] * (1.0 + self.hysteresis))
                picks.append(0 if keep else best[3] + 1)
                chosen = current[3] if keep and current else best[3]
            if chosen is not None and active[j]:
                util[j] = env.plan_demand(j, cand.plans[chosen])
        return encode_action(picks, [BANDWIDTH_LEVELS // 2] * self.n_jobs)


class Dora(_Chooser):
    """Rule-based adapter on the last interval's measurements (by default 10 % QoE margin, 5 %
    hysteresis, and the two-plan time mix for a time-to-finish target; ``agents/baselines.yaml``
    or ``settings`` changes them)."""

    def __init__(self, env: gym.Env[Any, Any], settings: DoraSettings | None = None) -> None:
        super().__init__(env)
        settings = settings or load_baseline_settings().dora
        self.margin, self.hysteresis = settings.qoe_margin, settings.hysteresis
        self.mix = settings.time_mix

    def act(self) -> Action:
        world = self.env.world
        return self.choose(world, world.state)


class Oracle(_Chooser):
    """Privileged: decides on the true coming interval, for all jobs together.

    Every combination of the jobs' feasible choices (keep, or one of the candidates) is scored
    exactly as the env will score the interval (each job seeing the others' demand), and the
    combination with the fewest QoE misses, then the smallest shortfall,
    then the least power wins; a switch's stall counts in the switching job's QoE as the env
    counts it (its energy and reward term do not). A bound, not a deployable controller.
    Beyond ``max_combinations`` it decides jobs in turn.

    Args:
        env: The environment.
        peek: Returns the world of the coming interval; by default the env's ``next_world``.
    """

    def __init__(self, env: gym.Env[Any, Any],
                 peek: Callable[[], WorldState] | None = None) -> None:
        super().__init__(env)
        self.peek = peek or (lambda: self.env.next_world)
        self.max_combinations = load_baseline_settings().oracle.max_combinations

    def act(self) -> Action:
        world = self.peek()
        env, state, active = self.env, world.state, world.job_active
        usable = state.usable
        options: list[list[tuple[int, Any]]] = []
        for j, cand in enumerate(env.cache.get(usable)):
            current = env.plans[j]
            opts = [(0, current)] if current is not None and all(
                usable[d] for d in current.devices) else []
            if active[j]:
                opts += [(i + 1, p) for i, p in enumerate(cand.plans)
                         if p != current and all(usable[d] for d in p.devices)]
            options.append(opts or [(0, current)])
        if math.prod(len(o) for o in options) > self.max_combinations:
            return self.choose(world, state)
        best: tuple[tuple[float, float, float], tuple[int, ...]] | None = None
        for combo in itertools.product(*options):
            plans = [plan for _, plan in combo]
            util = env.demands(plans, active)
            score = [0.0, 0.0, 0.0]
            for j, plan in enumerate(plans):
                if not active[j] or plan is None:
                    continue
                view = env.job_view(j, state, active, util)
                m = env.models[j].evaluate(plan, view, check=False)
                slack = env.job_slacks(j, m, env.stall_ahead(j, plan, state),
                                       float(world.qoe_scale[j]))
                short = sum(min(-s, 5.0) for s in slack if s < 0)
                score[0] += float(short > 0 or not (m["memory_ok"] and m["usable_ok"]))
                score[1] += short
                score[2] += m["power_w"] if math.isfinite(m["power_w"]) else 1e12
                if best is not None and tuple(score[:2]) > best[0][:2]:
                    break  # already worse than the best complete choice
            else:
                key = (score[0], score[1], score[2])
                if best is None or key < best[0]:
                    best = (key, tuple(pick for pick, _ in combo))
        assert best is not None
        return encode_action(list(best[1]), [BANDWIDTH_LEVELS // 2] * self.n_jobs)


CONTROLLERS: dict[str, type[Controller]] = {
    "static": Static, "throughput": Throughput, "dora": Dora, "oracle": Oracle,
    "random": RandomController,
}


def make(name: str, env: gym.Env[Any, Any]) -> Any:
    """Build the controller ``name`` for ``env`` (the ``-v1`` controllers of
    :mod:`dora_rl.controllers.observed` for a ``-v1`` env)."""
    from dora_rl.env.control_env import ControlEnv

    if isinstance(env.unwrapped, ControlEnv):
        from dora_rl.controllers.observed import CONTROLLERS as OBSERVED

        if name not in OBSERVED:
            from dora_rl.errors import DoraError

            raise DoraError(f"unknown controller {name!r} (known: {', '.join(OBSERVED)})")
        return OBSERVED[name](env)
    if name not in CONTROLLERS:
        from dora_rl.errors import DoraError

        raise DoraError(f"unknown controller {name!r} (known: {', '.join(CONTROLLERS)})")
    return CONTROLLERS[name](env)
