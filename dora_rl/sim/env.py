"""``dora_rl/Sim-v0``: the environment with each control interval simulated event by event.

:class:`SimEnv` is :class:`dora_rl.env.edge_env.EdgeEnv` with one change: the interval is not
evaluated by the cost model but run in :class:`dora_rl.sim.Simulator`. Everything else is the
analytic environment's: spaces, observation encoder, dynamics (the same seed gives the same
world: link traces, churn, load, job activity and QoE changes), candidates, safety layer and
reward, so every controller (``static``, ``throughput``, ``dora``, ``oracle``, a trained
policy) runs on it unchanged.

What the simulated interval reports (``info`` has the analytic environment's keys, plus
``sim_finished``, ``sim_met`` and ``sim_outstanding`` per job):

- ``latency_ms``: mean latency of the job's units finished in the interval (NaN if none).
- QoE slack and violations: measured on the interval's finished units and on units already
  late (:func:`dora_rl.sim.figures.measured_slack`); the observation's slack keeps the last
  measured value of each target between measurements.
- ``energy_j``: idle power of every device that is on over the interval, plus compute,
  transmit and receive power above idle over the simulated busy and radio time.
- Weights of moved layers cross the simulated network after a switch while the affected
  stages stall (the reward's switch term still charges the cost model's migration stall).
- Arrivals are drawn from a generator of their own, seeded from the reset seed, so the world
  matches the analytic environment's for the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from dora_rl.config import Scenario
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.sim.figures import IntervalReport, measured_slack
from dora_rl.sim.simulator import QUEUE_CAPACITY, Simulator

ENV_ID = "dora_rl/Sim-v0"
SIM_STREAM = 0x51D
"""Mixed into the reset seed for the arrival generator (keeps it apart from the world's)."""


class SimEnv(EdgeEnv):
    """EdgeEnv driven by the discrete-event simulator (see the module docstring).

    Args (besides :class:`EdgeEnv`'s):
        queue_capacity: Bound of each stage's queue, in requests.
        rate_scale: Multiplier on every job's request rate.
        arrivals: Arrival times per job name (seconds from reset) replacing Poisson arrivals.
        compare_analytic: Stamp every request with the cost model's latency for the plan and
            job view it arrived in (``Request.analytic_ms``; costs one evaluation per job and
            interval).
    """

    def __init__(self, scenario: str | Path | Scenario = "smart_home", bandwidth: str | None = None,
                 traces_dir: str | Path | None = None, split: str = "train",
                 episode_steps: int = 300, k: int = 4, interval_s: float = 1.0,
                 queue_capacity: int = QUEUE_CAPACITY, rate_scale: float = 1.0,
                 arrivals: dict[str, Sequence[float]] | None = None,
                 compare_analytic: bool = False) -> None:
        super().__init__(scenario, bandwidth=bandwidth, traces_dir=traces_dir, split=split,
                         episode_steps=episode_steps, k=k, interval_s=interval_s)
        self.queue_capacity = queue_capacity
        self.rate_scale = rate_scale
        self.arrivals = arrivals
        self.compare_analytic = compare_analytic
        tables = self.models[0].tables
        self.power = ((tables.tx_w - tables.idle_w).tolist(),
                      (tables.rx_w - tables.idle_w).tolist())
        self._seeds = np.random.SeedSequence()
        self.last_report: IntervalReport | None = None

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[NDArray[np.float32], dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        if seed is not None:
            self._seeds = np.random.SeedSequence([seed, SIM_STREAM])
        self.sim = Simulator(self.scenario, self.models, seed=self._seeds.spawn(1)[0],
                             queue_capacity=self.queue_capacity, rate_scale=self.rate_scale,
                             arrivals=self.arrivals)
        self.sim.start(self.plans)
        self._carried: list[dict[str, float]] = [{} for _ in range(self.n_jobs)]
        self.last_report = None
        return obs, info

    def step(self, action: NDArray[np.int64]) -> tuple[NDArray[np.float32], float, bool, bool,
                                                       dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        report = self.last_report
        assert report is not None
        info["sim_finished"] = tuple(iv.finished for iv in report.jobs)
        info["sim_met"] = tuple(iv.met for iv in report.jobs)
        info["sim_outstanding"] = tuple(iv.outstanding for iv in report.jobs)
        return obs, reward, terminated, truncated, info

    # ------------------------------------------------------------------ the interval
    def _apply_world(self) -> None:
        """Hand the interval's world, plans and departures to the simulator."""
        sim, world = self.sim, self.world
        active = world.job_active.tolist()  # plain lists: a handful of values per interval
        n_active = sum(active)
        n_active = n_active if n_active > 1 else 1  # max(count, 1) without a builtin call
        shares = [s if on else 1.0 / n_active
                  for s, on in zip(self._shares(active), active, strict=True)]
        sim.set_world(world.state, active, world.qoe_scale.tolist(), shares)
        for j, plan in enumerate(self.plans):
            sim.set_plan(j, plan)
        sim.lose_devices(world.state.lists[1])  # the state's usability, as a list
        if self.compare_analytic:
            for j, job in enumerate(sim.jobs):
                plan = self.plans[j]
                job.analytic_ms = math.nan if plan is None else 1e3 * float(
                    self.models[j].evaluate(plan, self.job_view(j), check=False)["latency_s"])

    def _evaluate(self, stall_s: float) -> tuple[float, list[float], list[int], list[float]]:
        """Simulate the interval; energy, per-job latency, violation flags and shortfalls."""
        self._apply_world()
        self.sim.run_until((self.t + 1) * self.interval_s)
        report = self.last_report = self.sim.take_interval()
        state = self.world.state
        active = self.world.job_active.tolist()
        scales = self.world.qoe_scale.tolist()
        interval = self.interval_s
        load = state.lists[0]
        latency = [math.nan] * self.n_jobs
        viol = [0] * self.n_jobs
        short = [0.0] * self.n_jobs
        util = []
        used = [False] * self.n_devices
        for j, iv in enumerate(report.jobs):
            util.append([1.0 if (x := b * (1.0 - ld) / interval) > 1.0 else x  # min(x, 1.0)
                         for b, ld in zip(iv.busy_s, load, strict=True)])
            latency[j] = iv.mean_latency_s * 1e3
            plan = self.plans[j]
            if not active[j]:
                continue
            if plan is None:
                viol[j], short[j], self.slack[j] = 1, 5.0, -1.0
                latency[j] = math.inf
                continue
            for d in plan.devices:
                used[d] = True
            measured = measured_slack(self.sim.jobs[j].spec, iv, scales[j], interval)
            carried = self._carried[j]
            carried.update(measured)
            if carried:
                self.slack[j] = min(carried.values())
            short[j] = sum(min(-s, 5.0) for s in measured.values() if s < 0)
            viol[j] = int(short[j] > 0)
        self.utilisation = util
        self.energy_dev = self._device_energy(report, used)
        return sum(self.energy_dev), latency, viol, short

    def _device_energy(self, report: IntervalReport, used: list[bool]) -> list[float]:
        """Each device's energy over the interval: idle power while on (present; with
        ``unused_devices: off`` only if some active job uses it or it worked), plus compute,
        transmit and receive power above idle over the simulated busy and radio time."""
        interval = self.interval_s
        present = self.world.state.available.tolist()
        tx_w, rx_w = self.power
        out = []
        for d, idle in enumerate(self.idle_list):
            worked = report.busy_s[d] > 0 or report.tx_s[d] > 0 or report.rx_s[d] > 0
            on = present[d] and (not self.power_off or used[d] or worked)
            out.append((idle * interval if on else 0.0) + report.busy_j[d]
                       + tx_w[d] * report.tx_s[d] + rx_w[d] * report.rx_s[d])
        return out


def register_sim_env() -> None:
    """Register ``dora_rl/Sim-v0`` with Gymnasium (idempotent)."""
    if ENV_ID not in gym.registry:
        gym.register(id=ENV_ID, entry_point="dora_rl.sim.env:SimEnv")
