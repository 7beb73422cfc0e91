"""``dora_rl/Sim-v1``: the ``-v1`` environment with each control interval simulated.

:class:`SimEnv` is :class:`~dora_rl.env.edge_env.EdgeEnv` with one change: its interval
model is a :class:`~dora_rl.sim.simulated_model.SimulatedModel`, which keeps the interval model's
control-state bookkeeping (make-before-break switches, weights, residency, power modes, wakes)
and measures the interval's timing event by event: latency, requests served and met, busy and
radio seconds per device, and from those the energy (the interval model's formula). Spaces,
observation, dynamics (the same seed gives the same world, bar batteries, which drain by the
simulated energy), candidates, safety layer and reward are the shell's, so every ``-v1``
controller runs on it unchanged.

``info`` has :class:`EdgeEnv`'s keys, measured (``latency_ms`` is the mean over the units
finished in the interval, NaN if none, inf in an outage with none), plus:

- ``sim_arrived``, ``sim_finished``, ``sim_met``, ``sim_outstanding``: per job, units that
  arrived, finished, finished on target, and were in flight at the interval's end;
- ``sim_weights_in_flight_bytes``: per job, weight bytes still crossing the simulated network
  (the interval model may have cut over before they arrived);
- ``model_latency_ms``, ``model_requests``, ``model_requests_missed``, ``model_energy_j``,
  ``model_jobs_energy_j``: the interval model's own figures for the same interval (same
  control and world), for paired comparisons.

Privileged controllers get a :class:`~dora_rl.env.edge_env.WorldHandle` whose model is the
plain interval model (its what-ifs never touch the simulation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from dora_rl.config import Scenario
from dora_rl.env.edge_env import EdgeEnv, WorldHandle
from dora_rl.sim.measured import IntervalReport
from dora_rl.sim.simulated_model import SimulatedModel
from dora_rl.sim.simulator import QUEUE_CAPACITY, Simulator
from dora_rl.world import IntervalModel

ENV_ID = "dora_rl/Sim-v1"
SIM_STREAM = 0x51D
"""Mixed into the reset seed for the arrival generator (keeps it apart from the world's)."""


@dataclass(frozen=True)
class AnalyticHandle(WorldHandle):
    """The world handle of a :class:`SimEnv`: its model is the plain interval model."""

    @property
    def model(self) -> IntervalModel:
        """The interval model (pure), not the simulation."""
        env = self.env
        assert isinstance(env, SimEnv)
        return env.analytic


class SimEnv(EdgeEnv):
    """EdgeEnv with simulated intervals (see the module docstring).

    Args (besides :class:`~dora_rl.env.edge_env.EdgeEnv`'s):
        queue_capacity: Bound of each stage's queue, in requests.
        rate_scale: Multiplier on every job's request rate.
        arrivals: Arrival times per job name (seconds from reset) replacing Poisson arrivals.
        compare_analytic: Kept for the command line; every request is stamped with the
            interval model's latency of the interval it arrived in (``Request.analytic_ms``)
            in any case, at no extra cost.
    """

    def __init__(self, scenario: str | Path | Scenario = "smart_home", bandwidth: str | None = None,
                 traces_dir: str | Path | None = None, split: str = "train",
                 episode_steps: int | None = None, k: int = 4,
                 interval_s: float | None = None,
                 queue_capacity: int = QUEUE_CAPACITY, rate_scale: float = 1.0,
                 arrivals: dict[str, Sequence[float]] | None = None,
                 compare_analytic: bool = False) -> None:
        super().__init__(scenario, bandwidth=bandwidth, traces_dir=traces_dir, split=split,
                         episode_steps=episode_steps, k=k, interval_s=interval_s)
        self.analytic: IntervalModel = self.model
        """The plain interval model (the simulated one shares its cost models)."""
        self.model: SimulatedModel = SimulatedModel(
            self.scenario, self.interval_s, models=self.analytic.models,
            queue_capacity=queue_capacity, rate_scale=rate_scale, arrivals=arrivals)
        self.handle = AnalyticHandle(self)
        self.compare_analytic = compare_analytic
        self._seeds = np.random.SeedSequence()

    @property
    def sim(self) -> Simulator:
        """The simulation of the current episode."""
        sim = self.model.sim
        assert sim is not None, "reset() first"
        return sim

    @property
    def last_report(self) -> IntervalReport | None:
        """What the simulator measured in the last interval (None before the first step)."""
        return self.model.report

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[NDArray[np.float32], dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        if seed is not None:
            self._seeds = np.random.SeedSequence([seed, SIM_STREAM])
        self.model.start(self.ctl, self._seeds.spawn(1)[0])
        return obs, info

    def step(self, action: NDArray[np.int64]) -> tuple[NDArray[np.float32], float, bool, bool,
                                                       dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        report, charged = self.model.report, self.model.charged
        assert report is not None and charged is not None
        info["sim_arrived"] = tuple(iv.arrived for iv in report.jobs)
        info["sim_finished"] = tuple(iv.finished for iv in report.jobs)
        info["sim_met"] = tuple(iv.met for iv in report.jobs)
        info["sim_outstanding"] = tuple(iv.outstanding for iv in report.jobs)
        info["sim_weights_in_flight_bytes"] = tuple(self.model.weights_in_flight_bytes)
        info["model_latency_ms"] = tuple(j.latency_ms for j in charged.jobs)
        info["model_requests"] = tuple(j.scored for j in charged.jobs)
        info["model_requests_missed"] = tuple(j.missed for j in charged.jobs)
        info["model_energy_j"] = charged.energy_j
        info["model_jobs_energy_j"] = charged.jobs_energy_j
        return obs, reward, terminated, truncated, info


def register_sim_env() -> None:
    """Register ``dora_rl/Sim-v1`` with Gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="dora_rl.sim.env:SimEnv")


__all__ = ["ENV_ID", "AnalyticHandle", "SimEnv", "register_sim_env"]
