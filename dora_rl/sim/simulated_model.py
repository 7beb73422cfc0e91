"""The interval model with each interval's timing measured event by event.

:class:`SimulatedModel` is an :class:`~dora_rl.world.IntervalModel` whose
:meth:`~SimulatedModel.transition` keeps the interval model's control-state bookkeeping
(switches and the weights they move, residency, power modes, wakes, refusals: the parent's
``transition``) and replaces what the interval model works out in closed form with what
:class:`~dora_rl.sim.Simulator` measures over the interval:

- *serving*: each job serves the plan the interval model says serves (the old plan during a
  make-before-break switch, nothing in an outage or a break-before-make switch), in the
  devices' power modes (:meth:`~dora_rl.world.IntervalModel.moded`); the new plan serves from
  the interval after the interval model cuts over, its weights in place;
- *media*: each job holds its share of every WiFi medium's free airtime (its bandwidth level,
  :meth:`~dora_rl.world.IntervalModel.shares`), as the interval model and the live runtime
  enforce it; a lone flow does not take the other jobs' parts;
- *weights*: the bytes the interval model moves in the interval cross the simulated network
  from its start, in the job's part of the media, taking what its own traffic leaves, while
  the old plan serves (reads from a device's own storage use no network and are not
  simulated);
- *requests*: arrivals are Poisson (or a trace), each request is scored once, when it finishes
  or when its wait makes the miss certain, with its targets scaled by the QoE scale it
  arrived under (:mod:`dora_rl.sim.job_lifecycle`); latency is the mean over the units finished;
- *energy*: :func:`~dora_rl.sim.accounting.simulated_energy`, the interval model's formula
  over the simulated busy (net of background load), transmit and receive seconds.

Unlike its parent, a :class:`SimulatedModel` has state: the simulation. :meth:`start` begins
an episode and :meth:`transition` runs the next interval of it, so it only accepts the control
state it returned last; ask a plain :class:`~dora_rl.world.IntervalModel` for what-ifs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dora_rl.config import Scenario
from dora_rl.costmodel import CostModel, Plan
from dora_rl.dynamics import WorldState
from dora_rl.errors import DoraError
from dora_rl.sim.accounting import simulated_energy
from dora_rl.sim.measured import IntervalReport, measured_slack
from dora_rl.sim.measured import JobInterval as Measured
from dora_rl.sim.simulator import QUEUE_CAPACITY, Simulator
from dora_rl.world import STORAGE, ControlState, Decision, IntervalModel, JobInterval, Outcome
from dora_rl.world.power import capped_modes
from dora_rl.world.weights import gained


class SimulationOrderError(DoraError):
    """A simulated interval was asked for out of turn (not from the last control state)."""


class SimulatedModel(IntervalModel):
    """The interval model with simulated timing (see the module docstring).

    Args:
        scenario, interval_s, models: As :class:`~dora_rl.world.IntervalModel`.
        queue_capacity: Bound of each stage's queue, in requests.
        rate_scale: Multiplier on every job's request rate.
        arrivals: Arrival times per job name (seconds from the start) instead of Poisson.

    Attributes:
        sim: The simulation of the current episode (None before :meth:`start`).
        charged: The interval model's own outcome of the last interval (its closed-form
            figures for the same control and world).
        report: What the simulator measured in the last interval.
        weights_in_flight_bytes: Per job, weight bytes sent and not yet arrived in the
            simulation (the interval model may have cut over before they did).
    """

    def __init__(self, scenario: Scenario, interval_s: float = 1.0,
                 models: Sequence[CostModel] | None = None,
                 queue_capacity: int = QUEUE_CAPACITY, rate_scale: float = 1.0,
                 arrivals: dict[str, Sequence[float]] | None = None) -> None:
        super().__init__(scenario, interval_s, models)
        self.queue_capacity = queue_capacity
        self.rate_scale = rate_scale
        self.arrivals = arrivals
        self.sim: Simulator | None = None
        self.charged: Outcome | None = None
        self.report: IntervalReport | None = None
        self.weights_in_flight_bytes = [0.0] * self.n_jobs
        self._expect: ControlState | None = None
        self._carried: list[dict[str, float]] = []

    def start(self, ctl: ControlState, seed: int | np.random.SeedSequence = 0) -> None:
        """Begin an episode at ``ctl`` (its plans serving, weights in place); ``seed`` draws
        the arrivals."""
        self.sim = Simulator(self.scenario, self.models, seed=seed,
                             queue_capacity=self.queue_capacity, rate_scale=self.rate_scale,
                             arrivals=self.arrivals, partitioned_media=True)
        self.sim.start([self._serving_plan(jc.plan, ctl.modes) for jc in ctl.jobs])
        self.charged = self.report = None
        self.weights_in_flight_bytes = [0.0] * self.n_jobs
        self._carried = [{} for _ in range(self.n_jobs)]
        self._expect = ctl

    def transition(self, ctl: ControlState, decision: Decision,
                   world: WorldState) -> tuple[ControlState, Outcome]:
        """Run the next interval of the simulation (see the module docstring).

        Raises:
            SimulationOrderError: before :meth:`start`, or from another control state than
                the one the last call returned.
        """
        sim = self.sim
        if sim is None or ctl is not self._expect:
            raise SimulationOrderError(
                "SimulatedModel.transition runs the next interval of the simulation: call "
                "start() first, then pass the control state it last returned (ask an "
                "IntervalModel for what-ifs)")
        nxt, charged = super().transition(ctl, decision, world)
        # the modes the devices ran in: the ones chosen, heat-throttled devices (the interval
        # model's temperatures decide) at their throttle level
        ran = capped_modes(self.devices, nxt.modes, charged.throttled or None)
        self._drive(sim, ctl, nxt, charged, world, ran)
        sim.run_until((ctl.step + 1) * self.interval_s)
        report = sim.take_interval()
        out = self._outcome(charged, report, ran)
        self.charged, self.report, self._expect = charged, report, nxt
        return nxt, out

    # ------------------------------------------------------------------ the interval
    def _serving_plan(self, plan: Plan | None, modes: Sequence[int]) -> Plan | None:
        return None if plan is None else self.moded(plan, modes)

    def _drive(self, sim: Simulator, ctl: ControlState, nxt: ControlState, charged: Outcome,
               world: WorldState, ran: Sequence[int]) -> None:
        """Hand the interval's world, serving plans (in the modes the devices ``ran``) and
        weight moves to the simulator."""
        state = world.state
        active = world.job_active.tolist()
        sim.set_world(state, active, world.qoe_scale.tolist(),
                      self.shares([jc.level for jc in nxt.jobs], active),
                      world.rate_scale.tolist() if world.rate_scale is not None else None)
        usable = state.lists[1]
        for j, (before, job) in enumerate(zip(ctl.jobs, charged.jobs, strict=True)):
            plan = before.plan
            keep = job.serving or (not active[j] and plan is not None
                                   and all(usable[d] for d in plan.devices))
            sim.serve(j, self._serving_plan(plan, ran) if keep else None)
            sim.jobs[j].analytic_ms = job.latency_ms
            for receiver, source, nbytes in self.moved(j, ctl, nxt, job):
                self._send(sim, j, receiver, source, nbytes)
        sim.lose_devices(usable)

    def moved(self, j: int, ctl: ControlState, nxt: ControlState,
              job: JobInterval) -> list[tuple[int, int, float]]:
        """``(receiver, source, bytes)`` of job ``j``'s weights the interval model moved over
        the network in the interval from ``ctl`` to ``nxt`` (``job``: its outcome)."""
        if not job.moved_bytes > 0:
            return []
        before, after = ctl.jobs[j], nxt.jobs[j]
        if job.switched:  # the switch started now: what it had to move (as the model did)
            target = after.target if after.target is not None else after.plan
            assert target is not None
            start = gained(self.layer_bytes[j], j, before.plan, target, ctl.resident,
                           self.devices)
        else:
            start = before.pending
        left = {(t.receiver, t.source): t.bytes_left for t in after.pending}
        out = []
        for t in start:
            nbytes = t.bytes_left - left.get((t.receiver, t.source), 0.0)
            if nbytes > 0 and t.source != STORAGE:
                out.append((t.receiver, t.source, nbytes))
        return out

    def _send(self, sim: Simulator, j: int, receiver: int, source: int, nbytes: float) -> None:
        in_flight = self.weights_in_flight_bytes

        def arrived(_xfer: object) -> None:
            in_flight[j] -= nbytes

        in_flight[j] += nbytes
        if sim.move_weights(j, receiver, source, nbytes, arrived) is None:
            in_flight[j] -= nbytes

    def _outcome(self, charged: Outcome, report: IntervalReport,
                 ran: Sequence[int]) -> Outcome:
        """The interval's outcome: control facts from ``charged``, timing from ``report``,
        energy in the modes the devices ``ran``."""
        interval = self.interval_s
        jobs = []
        for j, (c, iv) in enumerate(zip(charged.jobs, report.jobs, strict=True)):
            if iv.latency_s:
                latency = 1e3 * iv.mean_latency_s
            else:
                latency = math.inf if c.active and not c.serving else math.nan
            jobs.append(JobInterval(
                active=c.active, serving=c.serving, arrived=float(iv.arrived),
                scored=float(iv.scored), missed=float(iv.missed), latency_ms=latency,
                slack=self._slack(j, c, iv), switched=c.switched, cut_over=c.cut_over,
                moved_bytes=c.moved_bytes))
        devices = tuple(
            simulated_energy(f, ran[d], interval, charged.devices[d],
                             report.attributed_s[d], report.tx_s[d], report.rx_s[d])
            for d, f in enumerate(self.devices))
        return Outcome(jobs=tuple(jobs), devices=devices, refused=charged.refused,
                       throttled=charged.throttled)

    def _slack(self, j: int, charged: JobInterval, iv: Measured) -> float:
        """Smallest relative slack measured (each target's last measurement carried while
        nothing measures it), against the card's targets as the interval model reports it;
        -1 in an outage, 0 when inactive."""
        if not charged.active:
            return 0.0
        if not charged.serving:
            return -1.0
        assert self.sim is not None
        carried = self._carried[j]
        carried.update(measured_slack(self.sim.jobs[j].spec, iv, 1.0, self.interval_s))
        return min(carried.values()) if carried else 1.0


__all__ = ["SimulatedModel", "SimulationOrderError"]
