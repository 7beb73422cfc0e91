"""Robust model-predictive control over the observation, as Pensieve's strongest baseline.

Each interval it forecasts every link over the horizon from the observation's link history
(harmonic mean of the last readings, divided by one plus the largest relative error of its
recent forecasts: RobustMPC), rebuilds the world from the observation (presence, loads,
batteries, cross traffic, job activity and QoE scales) with the forecast links, and for each
job scores keeping its plan against switching to each candidate over the horizon: a switch
keeps the old plan serving while its weights move at the forecast rate, then serves the new
one. Intervals predicted to miss a target count first, then the jobs' energy (the plan's
predicted power over the horizon plus the transfer's radio energy). It applies the first
step: per job the best option (a switch must save ``hysteresis`` of the energy to beat keeping
at equal misses), devices no plan uses asleep where they may.

It knows the card (the interval model, a pure function of it) and what its actions mean (the
env's candidate plans); everything about the world it reads from the observation.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from dora_rl.controllers.base import MID_LEVEL, Action, Controller
from dora_rl.costmodel import Plan
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.env.observation import QOE_SCALE_MAX
from dora_rl.world import SLEEP
from dora_rl.world.predict import predict_in_view
from dora_rl.world.queues import at_load, combine

HORIZON = 10
"""Intervals the plan looks ahead."""
ERRORS = 5
"""Recent forecasts whose error discounts the next one."""
HYSTERESIS = 0.02
FLOOR = 1e-3
"""Smallest link multiplier the harmonic mean takes (a fade is not a division by zero)."""


def harmonic_forecast(history: NDArray[np.float32]) -> NDArray[np.float64]:
    """Per device, the harmonic mean of its link readings (rows: devices).

    Example:
        >>> harmonic_forecast(np.array([[1.0, 0.5], [0.2, 0.2]], np.float32)).round(3).tolist()
        [0.667, 0.2]
    """
    h = np.maximum(np.asarray(history, dtype=np.float64), FLOOR)
    return h.shape[1] / (1.0 / h).sum(axis=1)


class Mpc(Controller):
    """Robust MPC (see the module docstring).

    Args:
        env: The env whose card and candidates it plans with.
        horizon: Intervals looked ahead.
    """

    def __init__(self, env: gym.Env[Any, Any], horizon: int = HORIZON) -> None:
        super().__init__(env)
        self.env: EdgeEnv = env.unwrapped  # type: ignore[assignment]
        self.horizon = horizon
        self.errors: deque[float] = deque(maxlen=ERRORS)
        self.forecast: NDArray[np.float64] | None = None
        self.wifi = [f.wifi for f in self.env.model.devices]

    def act(self, obs: NDArray[np.float32]) -> Action:
        lay, env, model = self.spec.layout, self.env, self.env.model
        links = lay.links(obs)
        measured = links[:, -1].astype(np.float64)
        if self.forecast is not None:
            wifi = [d for d, w in enumerate(self.wifi) if w]
            if wifi:
                self.errors.append(max(abs(self.forecast[d] - measured[d])
                                       / max(measured[d], 0.05) for d in wifi))
        self.forecast = harmonic_forecast(links)
        robust = self.forecast / (1.0 + max(self.errors, default=0.0))
        devices, jobs, cands = lay.device(obs), lay.job(obs), lay.candidates(obs)
        present = devices[:, 0] > 0.5
        state = model.models[0].nominal.replace(
            link_scale=np.where(self.wifi, robust, measured), available=present,
            load=np.minimum(devices[:, 1].astype(np.float64), 0.95),
            cross_traffic=lay.cross_traffic(obs).astype(np.float64))
        usable = (present & (devices[:, 2] > 0)).tolist()
        active = jobs[:, 0] > 0.5
        share = 1.0 / max(int(active.sum()), 1)
        view = model.view(state, share, usable)
        current = [self._current(j, cands[j]) for j in range(self.n_jobs)]
        # this interval's request rates, held over the horizon
        rates = [float(r) for r in jobs[:, 10]] if lay.rates else [1.0] * self.n_jobs
        loads = [model.kernel_load(j, p, rates[j]) if p is not None and active[j] else None
                 for j, p in enumerate(current)]
        picks = []
        for j in range(self.n_jobs):
            if not active[j] or jobs[j, 5] > 0.5:  # inactive, or a switch under way: keep
                picks.append(0)
                continue
            others = at_load(combine(loads, model.n_devices, skip=j), state.lists[0])
            picks.append(self._pick(j, current[j], cands[j], view,
                                    float(jobs[j, 1]) * QOE_SCALE_MAX, others, rates[j]))
        chosen = [env.cands[j].plans[p - 1] if p else current[j] for j, p in enumerate(picks)]
        used = {d for p in chosen if p is not None for d in p.devices}
        modes = [SLEEP if devices[d, 7] > 0.5 and d not in used and present[d] else 0
                 for d in range(self.n_devices)]
        return self.spec.action(picks, [MID_LEVEL] * self.n_jobs, modes)

    def _current(self, j: int, cand: NDArray[np.float32]) -> Plan | None:
        """The job's serving plan, when it is one of the candidates."""
        serving = np.flatnonzero(cand[:, 4] > 0.5)
        plans = self.env.cands[j].plans
        return plans[int(serving[0])] if len(serving) and serving[0] < len(plans) else None

    def _pick(self, j: int, current: Plan | None, cand: NDArray[np.float32], view: Any,
              qoe_scale: float, others: Any, rate_scale: float = 1.0) -> int:
        """0 keeps; ``i + 1`` switches to candidate ``i``."""
        model, interval = self.env.model, self.env.interval_s
        plans = self.env.cands[j].plans
        total = self.env.total_weight_bytes[j]
        modes = (0,) * self.n_devices

        def figures(plan: Plan) -> tuple[float, float]:
            return predict_in_view(model, modes, j, plan, view, qoe_scale, others, rate_scale)

        now = figures(current) if current is not None else (-1.0, math.inf)
        keep = (self.horizon * float(now[0] < 0), self.horizon * now[1] * interval)
        best, pick = keep, 0
        for i, plan in enumerate(plans):
            if plan == current or cand[i, 0] < 0.5:
                continue
            slack, power = figures(plan)
            moving = float(cand[i, 3]) * total
            fill_bps = min((self._rate(d) for d in plan.devices), default=math.inf)
            moving_s = moving / fill_bps if fill_bps > 0 else math.inf
            wait = min(math.ceil(moving_s / interval), self.horizon)
            after = self.horizon - wait
            radio = moving_s * max((f.rx_w - f.idle_w for f in
                                    (model.devices[d] for d in plan.devices)), default=0.0)
            if wait >= self.horizon:
                continue  # the switch would not finish within the horizon
            energy = (wait * now[1] if wait else 0.0) + after * power
            cost = (wait * float(now[0] < 0) + after * float(slack < 0),
                    energy * interval + radio)
            if cost[0] < best[0] or (cost[0] == best[0]
                                     and cost[1] < best[1] * (1.0 - HYSTERESIS)):
                best, pick = cost, i + 1
        return pick

    def _rate(self, d: int) -> float:
        """Bytes a second device ``d`` receives weights at: its storage, else its forecast
        link."""
        f = self.env.model.devices[d]
        if f.storage_bytes_per_s is not None:
            return f.storage_bytes_per_s
        scale = self.forecast[d] if self.forecast is not None else 1.0
        return float(scale) * f.link_bytes_per_s / (1.0 + max(self.errors, default=0.0))


__all__ = ["Mpc", "harmonic_forecast"]
