"""Run a controller in the simulator for a while and summarise what every job experienced.

:func:`simulate` builds a :class:`dora_rl.sim.env.SimEnv` (``dora_rl/Sim-v1``) for
the card, lets the controller (a baseline by name, or a trained one from its run folder) act
every control interval on the observation the environment builds, and returns a
:class:`SimRun`: per job the latency percentiles over every finished unit, throughput, QoE
attainment (the fraction of finished units that met every per-unit target), the fraction of
scored requests that missed QoE, units finished, still in flight and lost (arrived, but neither
finished nor in flight: always 0, checked), and the interval model's latency for the interval
each unit arrived in next to the simulated mean; plus the run's energy (all of it and the
part the jobs caused), request violation rate, plan switches and migrated bytes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dora_rl.config import Scenario
from dora_rl.controllers import CONTROLLERS, make
from dora_rl.errors import UsageError
from dora_rl.paths import find
from dora_rl.sim.env import SimEnv
from dora_rl.sim.simulator import QUEUE_CAPACITY

PERCENTILES = (50, 95, 99)


class SimUsageError(UsageError):
    """A simulation request is inconsistent (unknown controller, wrong scenario, bad number)."""


@dataclass(frozen=True)
class JobSummary:
    """What one job experienced over the run (times in ms; NaN where nothing finished).

    Attributes:
        name: The job.
        latency_ms: ``mean``, ``p50``, ``p95``, ``p99`` over finished units (request latency,
            LLM request time from arrival to last token, or iteration time).
        ttft_ms, tpot_ms: Mean time to first token and per further token (LLM only).
        completed: Units finished; ``in_flight``: arrived but unfinished at the end;
            ``lost``: arrived and neither (must be 0).
        throughput_per_s: Units finished per simulated second.
        qoe_attainment: Fraction of finished units that met every per-unit target.
        request_violation_rate: Fraction of the scored requests (training: iterations) that
            missed QoE, counting requests whose wait made the miss certain before they
            finished.
        restarts: Re-executions after a device left.
        sim_latency_ms_mean: The simulated mean latency (``latency_ms['mean']``).
        analytic_latency_ms: The interval model's mean latency for the intervals the finished
            units arrived in, over those where it is finite (an outage makes it infinite).
    """

    name: str
    latency_ms: dict[str, float]
    ttft_ms: float
    tpot_ms: float
    completed: int
    in_flight: int
    lost: int
    throughput_per_s: float
    qoe_attainment: float
    request_violation_rate: float
    restarts: int
    sim_latency_ms_mean: float
    analytic_latency_ms: float


@dataclass(frozen=True)
class SimRun:
    """A run's summary (see the module docstring)."""

    scenario: str
    controller: str
    seed: int
    duration_s: float
    jobs: tuple[JobSummary, ...]
    energy_j: float
    jobs_energy_j: float
    """The part of ``energy_j`` the jobs caused."""
    request_violation_rate: float
    """Fraction of all scored requests (and iterations) that missed QoE."""
    replans: int
    migrated_bytes: float
    requests_completed: int
    requests_lost: int
    wall_s: float
    """Wall time of the simulated intervals (controller decisions included, set-up not)."""

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``json.dump`` (NaN becomes None)."""
        return _clean(asdict(self))


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _controller(name: str, scenario: Scenario,
                env_kwargs: dict[str, Any]) -> tuple[Any, SimEnv]:
    """The controller and its environment (a trained one fixes ``k`` and ``interval_s``)."""
    if name in CONTROLLERS:
        env = SimEnv(scenario, **env_kwargs)
        return make(name, env), env
    if not find(name).is_dir():
        raise SimUsageError(f"--controller: {name!r} is neither a controller "
                            f"({', '.join(CONTROLLERS)}) nor a run directory")
    from dora_rl.controllers import load

    trained = load(name)
    if trained.scenario.name != scenario.name:
        raise SimUsageError(f"--controller: {name} was trained on scenario "
                            f"{trained.scenario.name!r}, not {scenario.name!r}")
    fixed = {k: v for k, v in trained.env_kwargs.items() if k in ("k", "interval_s")}
    return trained, SimEnv(scenario, **{**env_kwargs, **fixed})


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"mean": math.nan, **{f"p{q}": math.nan for q in PERCENTILES}}
    arr = np.asarray(values) * 1e3
    return {"mean": float(arr.mean()),
            **{f"p{q}": float(np.percentile(arr, q)) for q in PERCENTILES}}


def _rate(missed: float, scored: float) -> float:
    return missed / scored if scored > 0 else math.nan


def _summary(env: SimEnv, j: int, arrived: int, scored: float, missed: float,
             duration_s: float) -> JobSummary:
    job = env.sim.jobs[j]
    units = job.finished_units
    latency = _percentiles([u.done_s - u.arrival_s for u in units])
    llm = job.spec.kind == "llm"
    analytic = [u.analytic_ms for u in units if math.isfinite(u.analytic_ms)]
    in_flight = job.outstanding()
    return JobSummary(
        name=job.spec.name, latency_ms=latency,
        ttft_ms=float(np.mean([u.ttft_s for u in units]) * 1e3) if llm and units else math.nan,
        tpot_ms=float(np.mean([u.tpot_s for u in units]) * 1e3) if llm and units else math.nan,
        completed=len(units), in_flight=in_flight, lost=arrived - len(units) - in_flight,
        throughput_per_s=len(units) / duration_s,
        qoe_attainment=sum(job.spec.met(u) for u in units) / len(units) if units else math.nan,
        request_violation_rate=_rate(missed, scored), restarts=job.restarted,
        sim_latency_ms_mean=latency["mean"],
        analytic_latency_ms=float(np.mean(analytic)) if analytic else math.nan)


def simulate(scenario: Scenario, controller: str, duration_s: float = 600.0, seed: int = 0,
             split: str = "test", bandwidth: str | None = None, compare_analytic: bool = False,
             rate_scale: float = 1.0, queue_capacity: int = QUEUE_CAPACITY,
             arrivals: dict[str, Sequence[float]] | None = None,
             progress: Callable[[int, int], None] | None = None) -> SimRun:
    """Run ``controller`` (a baseline name or a run directory) for ``duration_s`` seconds.

    ``progress(done, total)`` is called after every control interval with the intervals
    simulated so far (for a progress bar on long runs).

    Raises:
        SimUsageError: unknown controller, a trained controller of another scenario, or a
            duration that is not a positive number of control intervals.
        DoraError: an unusable checkpoint or card (from the loaders).
    """
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise SimUsageError(f"--duration: must be a finite number of seconds above 0, "
                            f"got {duration_s}")
    kwargs: dict[str, Any] = {"split": split, "bandwidth": bandwidth,
                              "compare_analytic": compare_analytic, "rate_scale": rate_scale,
                              "queue_capacity": queue_capacity, "arrivals": arrivals}
    ctl, env = _controller(controller, scenario, kwargs)
    steps = max(int(round(duration_s / env.interval_s)), 1)
    env.episode_steps = steps
    obs, _ = env.reset(seed=seed)
    start = time.perf_counter()
    energy, jobs_energy, replans, moved = 0.0, 0.0, 0, 0.0
    arrived = [0] * env.n_jobs
    scored, missed = [0.0] * env.n_jobs, [0.0] * env.n_jobs
    nan = (math.nan,) * env.n_jobs
    state, first = None, True
    for step in range(steps):
        if progress is not None:
            progress(step, steps)
        action, state = ctl.predict(obs, state, episode_start=np.array([first]),
                                    deterministic=True)
        obs, _, _, _, info = env.step(action)
        first = False
        energy += info["energy_j"]
        jobs_energy += info.get("jobs_energy_j", math.nan)
        replans += info["replans"]
        moved += info["migration_bytes"]
        assert env.last_report is not None
        for j, iv in enumerate(env.last_report.jobs):
            arrived[j] += iv.arrived
            scored[j] += info.get("requests", nan)[j]
            missed[j] += info.get("requests_missed", nan)[j]
    wall = time.perf_counter() - start
    simulated = steps * env.interval_s
    jobs = tuple(_summary(env, j, arrived[j], scored[j], missed[j], simulated)
                 for j in range(env.n_jobs))
    return SimRun(scenario=scenario.name, controller=controller, seed=seed,
                  duration_s=simulated, jobs=jobs, energy_j=energy, jobs_energy_j=jobs_energy,
                  request_violation_rate=_rate(sum(missed), sum(scored)), replans=replans,
                  migrated_bytes=moved, requests_completed=sum(s.completed for s in jobs),
                  requests_lost=sum(s.lost for s in jobs), wall_s=wall)
