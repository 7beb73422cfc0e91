"""The simulator against the interval model over whole episodes.

:func:`compare` runs one controller on the same seeds and episodes of a card in
:class:`~dora_rl.env.edge_env.EdgeEnv` (the interval model) and in
:class:`~dora_rl.sim.env.SimEnv` (the same control, each interval simulated), and
summarises per job and per card what both report: mean latency, requests that missed QoE,
energy (all, and the jobs' part). ``experiments/sim_fidelity.py --part interval`` prints and
writes the figures (``docs/simulator.md``).

Latency is compared like for like. The interval model's figure is the mean of its per-interval
``latency_ms`` over the intervals the job served (an outage has none: its waiting requests
count in the missed requests, not in the latency). The simulator's is the mean latency of the
units that arrived in those intervals (the interval model's figure stamped on each unit is
finite), each from its arrival to its last result, queueing and waiting included. Two more
figures locate a gap: the stamped figure averaged over the same units (the interval model
scoring each unit at the interval it arrived in), and :func:`progress_latency_s`, which runs
each unit through the interval model's figures of every interval it spans.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dora_rl.config import Scenario
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.sim.env import SimEnv


@dataclass(frozen=True)
class JobFigures:
    """One job over every episode of a comparison (ms; rates are fractions of requests).

    Attributes:
        name, kind: The job and its workload (``inference``, ``llm``, ``training``).
        model_latency_ms: The interval model's mean latency over the intervals it served.
        sim_latency_ms: The simulated mean latency of the units that arrived while the
            interval model said the job served.
        sim_latency_p50_ms: The median of the units behind ``sim_latency_ms``.
        sim_latency_all_ms: The simulated mean over every finished unit.
        stamped_latency_ms: The interval model's latency of the interval each of those units
            arrived in, averaged over the same units.
        progress_latency_ms: :func:`progress_latency_s` over the same units.
        units: Units behind ``sim_latency_ms``.
        model_violation_rate, sim_violation_rate: Scored requests that missed QoE.
    """

    name: str
    kind: str
    model_latency_ms: float
    sim_latency_ms: float
    sim_latency_p50_ms: float
    sim_latency_all_ms: float
    stamped_latency_ms: float
    progress_latency_ms: float
    units: int
    model_violation_rate: float
    sim_violation_rate: float

    @property
    def latency_error(self) -> float:
        """Simulated over the interval model's mean latency, less one."""
        return self.sim_latency_ms / self.model_latency_ms - 1.0


@dataclass(frozen=True)
class CardFigures:
    """A card over every episode: per job, and energy per interval (J) in both worlds."""

    card: str
    controller: str
    bandwidth: str
    seeds: tuple[int, ...]
    steps: int
    jobs: tuple[JobFigures, ...]
    model_energy_j: float
    sim_energy_j: float
    model_jobs_energy_j: float
    sim_jobs_energy_j: float
    wall_s: float

    @property
    def energy_error(self) -> float:
        """Simulated over the interval model's energy per interval, less one."""
        return self.sim_energy_j / self.model_energy_j - 1.0

    @property
    def jobs_energy_error(self) -> float:
        """The same for the energy the jobs caused."""
        return self.sim_jobs_energy_j / self.model_jobs_energy_j - 1.0


def progress_latency_s(arrival_s: float, figures_s: Sequence[float], interval_s: float) -> float:
    """When a unit arriving at ``arrival_s`` would finish if it progressed, in each interval
    ``k``, at ``1 / figures_s[k]`` of its work per second (the interval model's latency of that
    interval; inf: an outage, no progress), less its arrival; NaN if it would not finish
    within the figures.

    Example:
        Arriving at 0.5 s: half a second at a 2 s figure does a quarter of the work, then a
        fade (a 30 s figure) does 1/30 in the next second, then 1 s figures finish it in
        0.7167 s: 2.2167 s in all, where the stamped figure says 2 s and the fade's 30 s.

        >>> round(progress_latency_s(0.5, [2.0, 30.0, 1.0, 1.0], 1.0), 4)
        2.2167
    """
    left, t = 1.0, arrival_s
    k = int(arrival_s // interval_s)
    while k < len(figures_s):
        end = (k + 1) * interval_s
        figure = figures_s[k]
        if figure > 0 and math.isfinite(figure):
            if left * figure <= end - t:
                return t + left * figure - arrival_s
            left -= (end - t) / figure
        t, k = end, k + 1
    return math.nan


def _filled(values: Sequence[float]) -> list[float]:
    """NaN (job inactive) replaced by the last figure before it (work in flight goes on)."""
    out, last = [], math.inf
    for v in values:
        last = last if v != v else v
        out.append(last)
    return out


class _Tally:
    """Sums over episodes of one world."""

    def __init__(self, n_jobs: int) -> None:
        self.latency: list[list[float]] = [[] for _ in range(n_jobs)]
        self.scored = [0.0] * n_jobs
        self.missed = [0.0] * n_jobs
        self.energy_j = self.jobs_energy_j = 0.0
        self.intervals = 0
        self.units: list[list[tuple[float, float, float]]] = [[] for _ in range(n_jobs)]
        """Per job, (simulated, stamped, progress) latency in s of units that arrived while
        the job served (simulator only)."""
        self.all_units: list[list[float]] = [[] for _ in range(n_jobs)]

    def add(self, info: dict[str, Any]) -> None:
        self.intervals += 1
        self.energy_j += info["energy_j"]
        self.jobs_energy_j += info["jobs_energy_j"]
        for j, latency in enumerate(info["latency_ms"]):
            self.scored[j] += info["requests"][j]
            self.missed[j] += info["requests_missed"][j]
            if math.isfinite(latency):
                self.latency[j].append(latency)

    def add_units(self, env: SimEnv, figures_ms: list[list[float]]) -> None:
        interval = env.interval_s
        for j, job in enumerate(env.sim.jobs):
            figures = [f / 1e3 for f in _filled(figures_ms[j])]
            for u in job.finished_units:
                latency = u.done_s - u.arrival_s
                self.all_units[j].append(latency)
                if math.isfinite(u.analytic_ms):
                    self.units[j].append((latency, u.analytic_ms / 1e3,
                                          progress_latency_s(u.arrival_s, figures, interval)))


def _episodes(env: EdgeEnv, controller: str, seeds: Iterable[int], steps: int) -> _Tally:
    from dora_rl.controllers import make, run_episode_infos

    tally = _Tally(env.n_jobs)
    env.episode_steps = steps
    for seed in seeds:
        _, infos = run_episode_infos(env, make(controller, env), seed)
        figures: list[list[float]] = [[] for _ in range(env.n_jobs)]
        for info in infos:
            tally.add(info)
            for j, f in enumerate(info.get("model_latency_ms", ())):
                figures[j].append(f)
        if isinstance(env, SimEnv):
            tally.add_units(env, figures)
    return tally


def _mean(values: Iterable[float]) -> float:
    arr = np.array([v for v in values if math.isfinite(v)])
    return float(arr.mean()) if arr.size else math.nan


def compare(scenario: Scenario, controller: str = "static", seeds: Sequence[int] = range(10),
            steps: int = 300, split: str = "test", bandwidth: str | None = None) -> CardFigures:
    """Run ``controller`` for ``steps`` intervals from every seed in both worlds (see the
    module docstring)."""
    start = time.perf_counter()
    kwargs: dict[str, Any] = {"split": split, "bandwidth": bandwidth, "episode_steps": steps}
    plain = EdgeEnv(scenario, **kwargs)
    model = _episodes(plain, controller, seeds, steps)
    sim = _episodes(SimEnv(scenario, **kwargs), controller, seeds, steps)
    jobs = []
    for j, job in enumerate(scenario.jobs):
        units = sim.units[j]
        kind = "llm" if job.llm is not None else "training" if job.training else "inference"
        jobs.append(JobFigures(
            name=job.name, kind=kind, model_latency_ms=_mean(model.latency[j]),
            sim_latency_ms=1e3 * _mean(u[0] for u in units),
            sim_latency_p50_ms=1e3 * float(np.median([u[0] for u in units])) if units else
            math.nan,
            sim_latency_all_ms=1e3 * _mean(sim.all_units[j]),
            stamped_latency_ms=1e3 * _mean(u[1] for u in units),
            progress_latency_ms=1e3 * _mean(u[2] for u in units), units=len(units),
            model_violation_rate=model.missed[j] / model.scored[j] if model.scored[j] else
            math.nan,
            sim_violation_rate=sim.missed[j] / sim.scored[j] if sim.scored[j] else math.nan))
    n = max(model.intervals, 1)
    return CardFigures(
        card=scenario.name, controller=controller,
        bandwidth=bandwidth or plain.dynamics.bandwidth, seeds=tuple(seeds), steps=steps,
        jobs=tuple(jobs), model_energy_j=model.energy_j / n, sim_energy_j=sim.energy_j / n,
        model_jobs_energy_j=model.jobs_energy_j / n, sim_jobs_energy_j=sim.jobs_energy_j / n,
        wall_s=time.perf_counter() - start)


__all__ = ["CardFigures", "JobFigures", "compare", "progress_latency_s"]
