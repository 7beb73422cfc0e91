"""The discrete-event simulator of a scenario: devices, network and jobs on one simpy clock.

The caller drives it interval by interval, as the environment does: :meth:`Simulator.set_world`
applies the interval's link rates, cross traffic, background load, job activity, QoE scales and
airtime shares; :meth:`Simulator.set_plan` switches a job's plan (weights migrate over the
network first), or :meth:`Simulator.serve` with the weights already in place while
:meth:`Simulator.move_weights` carries them (the interval model's make-before-break switch);
:meth:`Simulator.lose_devices` re-executes the work of devices that left;
:meth:`Simulator.run_until` advances the clock; :meth:`Simulator.take_interval` reports what the
interval produced.

Example:
    The doorbell camera of the smart home on the Orin Nano alone, for ten seconds:

    >>> from dora_rl.costmodel import Plan
    >>> from dora_rl.scenarios import load
    >>> sim = Simulator(load("smart_home"), seed=0)
    >>> sim.start([None, Plan.single(0, 14)])
    >>> sim.run_until(10.0)
    >>> report = sim.take_interval()
    >>> report.jobs[1].finished > 30, round(min(report.jobs[1].latency_s) * 1e3, 2)
    (True, 12.49)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import simpy

from dora_rl.config import Scenario
from dora_rl.costmodel import CostModel, Plan, State
from dora_rl.sim.device import ComputeDevice
from dora_rl.sim.job_lifecycle import JobRuntime
from dora_rl.sim.job_spec import JobSpec
from dora_rl.sim.measured import IntervalReport, JobInterval
from dora_rl.sim.medium import Network, Transfer
from dora_rl.sim.serving import ServingJob
from dora_rl.sim.training import TrainingJob
from dora_rl.world.weights import weight_bytes

QUEUE_CAPACITY = 8
"""Default bound of each stage's input queue (and output buffer), in requests."""


class Simulator:
    """A scenario's devices, network and jobs (see the module docstring).

    Args:
        scenario: The validated scenario.
        models: One cost model per job (card order); built when omitted.
        seed: Seed of the arrival processes.
        queue_capacity: Bound of each stage's queue, in requests.
        rate_scale: Multiplier on every job's request rate.
        arrivals: Arrival times in seconds per job name, replacing its Poisson arrivals.
        partitioned_media: Each job holds its own part of every WiFi medium, its share of
            the free airtime (:class:`dora_rl.sim.medium.Network`).
    """

    def __init__(self, scenario: Scenario, models: Sequence[CostModel] | None = None,
                 seed: int | np.random.SeedSequence = 0,
                 queue_capacity: int = QUEUE_CAPACITY, rate_scale: float = 1.0,
                 arrivals: dict[str, Sequence[float]] | None = None,
                 partitioned_media: bool = False) -> None:
        self.scenario = scenario
        self.models = list(models) if models is not None else [
            CostModel(scenario, j) for j in range(len(scenario.jobs))]
        self.queue_capacity = queue_capacity
        self.rng = np.random.default_rng(seed)
        self.env = simpy.Environment()
        n_jobs = len(self.models)
        tables = self.models[0].tables
        self.n_devices = tables.n_devices
        self.devices = [ComputeDevice(self.env, n_jobs) for _ in range(self.n_devices)]
        self.network = Network(self.env, tables, n_jobs, partitioned_media)
        self.jobs: list[JobRuntime] = []
        for j, model in enumerate(self.models):
            spec = JobSpec.of(scenario, j, rate_scale)
            kind = TrainingJob if spec.kind == "training" else ServingJob
            self.jobs.append(kind(self, spec, model.tables))
        self._arrivals = {name: sorted(float(t) for t in times)
                          for name, times in (arrivals or {}).items()}
        self._mark_s = 0.0
        self.usable = [True] * self.n_devices

    # ------------------------------------------------------------------ driving
    def start(self, plans: Sequence[Plan | None]) -> None:
        """Give every job its starting plan (weights already in place) and start arrivals."""
        for job, plan in zip(self.jobs, plans, strict=True):
            job.set_plan(plan)
            job.start_arrivals(self._arrivals.get(job.spec.name))

    def set_world(self, state: State, job_active: Sequence[bool] | None = None,
                  qoe_scale: Sequence[float] | None = None,
                  job_share: Sequence[float] | None = None,
                  rate_scale: Sequence[float] | None = None) -> None:
        """Apply an interval's world: rates, cross traffic, load, activity, scales, shares,
        and the share of each job's request rate arriving (``rate_scale``; 1: the card's).

        Background load is the state's own (other users); the other jobs' demand is simulated.
        Each WiFi medium offers ``1 - cross traffic`` of its airtime (the state's free
        airtime), of which each job gets ``job_share`` (as a weight, or as its own part with
        ``partitioned_media``).
        """
        load, _, link, free = state.lists
        for dev, ld in zip(self.devices, load, strict=True):
            dev.set_load(min(ld, 0.99))
        n_jobs = len(self.jobs)
        shares = list(job_share) if job_share is not None else [1.0] * n_jobs
        self.network.set_state(link, free, shares)
        for j, job in enumerate(self.jobs):
            job.active = bool(job_active[j]) if job_active is not None else True
            job.scale = float(qoe_scale[j]) if qoe_scale is not None else 1.0
            job.rate_scale = float(rate_scale[j]) if rate_scale is not None else 1.0
            job.pull()

    def set_plan(self, j: int, plan: Plan | None) -> None:
        """Switch job ``j`` to ``plan``; devices gaining layers receive their weights first
        (their stages stall until then) and work in flight finishes on the old plan."""
        job = self.jobs[j]
        old = job.plan
        if plan is old or plan == old:  # identity first: Plan.__eq__ builds tuples
            return
        job.set_plan(plan, weight_bytes(np.diff(job.tables.lists.params).tolist(), old, plan)
                     if plan is not None else None)

    def serve(self, j: int, plan: Plan | None) -> None:
        """Let job ``j`` serve ``plan`` from now with its weights already in place (a switch
        the caller has moved the weights for, a power mode change, an outage: None); work in
        flight finishes on the pipeline that holds it."""
        job = self.jobs[j]
        old = job.plan
        if plan is old or plan == old:
            return
        job.set_plan(plan)

    def move_weights(self, j: int, receiver: int, source: int, nbytes: float,
                     on_done: Callable[[Transfer], Any]) -> Transfer | None:
        """Send ``nbytes`` of job ``j``'s weights from ``source`` (a device, or the origin when
        negative) to ``receiver`` over the simulated network, sharing it with the jobs'
        traffic (:meth:`dora_rl.sim.medium.Network.move`)."""
        return self.network.move(receiver, source, nbytes, j, on_done)

    def lose_devices(self, usable: Sequence[bool]) -> set[int]:
        """Devices no longer usable abort the pipelines on them; their work is re-executed on
        each job's current plan. Returns the devices lost now."""
        gone = {d for d, ok in enumerate(usable) if not ok and self.usable[d]}
        self.usable = [bool(u) for u in usable]
        if gone:
            for job in self.jobs:
                job.lose_devices(gone)
        return gone

    def run_until(self, t_s: float) -> None:
        """Advance the clock to ``t_s`` (events at exactly ``t_s`` run in the next call)."""
        if t_s > self.env.now:
            self.env.run(until=t_s)

    # ------------------------------------------------------------------ reporting
    def take_interval(self) -> IntervalReport:
        """What happened since the last call (or the start)."""
        now = self.env.now
        busy, own, joules = [], [], []
        for dev in self.devices:
            b, a, e = dev.take()
            busy.append(b)  # [device][job]
            own.append(a)
            joules.append(e)
        tx, rx = self.network.take()
        jobs = []
        for j, job in enumerate(self.jobs):
            job.settle_late(now)
            iv = job.new_interval()
            oldest = job.oldest_waiting_s()
            jobs.append(JobInterval(
                arrived=iv["arrived"], latency_s=tuple(iv["latency_s"]),
                ttft_s=tuple(iv["ttft_s"]), tpot_s=tuple(iv["tpot_s"]), met=iv["met"],
                busy_s=tuple([row[j] for row in busy]), outstanding=job.outstanding(),
                oldest_age_s=now - oldest if oldest < math.inf else 0.0,
                scored=iv["scored"], missed=iv["missed"],
                attributed_s=tuple([row[j] for row in own])))
        report = IntervalReport(start_s=self._mark_s, end_s=now, jobs=tuple(jobs),
                                busy_s=tuple([sum(row) for row in busy]), busy_j=tuple(joules),
                                tx_s=tuple(tx), rx_s=tuple(rx),
                                attributed_s=tuple([sum(row) for row in own]))
        self._mark_s = now
        return report
