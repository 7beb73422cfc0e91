"""What every job does in the simulator, whatever its workload: plans, switches, departures.

A job owns one *current* pipeline (its plan) and the pipelines of earlier plans that still hold
work in flight (*draining*). On a plan switch the current pipeline starts draining: it finishes
what it holds with the weights its devices already have, while new work goes to the new
pipeline, whose stages stall until the weights of the layers their devices gain have crossed
the network. When a device leaves, every pipeline using it is aborted and its work in flight is
re-executed from the start on the current plan (the environment re-plans first): nothing in
flight is lost, which :meth:`JobRuntime.outstanding` lets the caller check.

Requests are scored one by one, as the interval model counts them
(:mod:`dora_rl.world.requests`): a request is scored when it finishes (met or missed), or
earlier, as missed, once it has waited longer than its tightest wait target allows
(:meth:`JobRuntime.settle_late`); it is never scored twice.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from typing import TYPE_CHECKING, Any

from dora_rl.costmodel import JobTables, Plan
from dora_rl.sim.job_spec import JobSpec, Request
from dora_rl.sim.medium import Transfer
from dora_rl.sim.plan_work import CompiledPlan, compile_plan
from dora_rl.world.requests import certain_wait_s

if TYPE_CHECKING:
    from dora_rl.sim.simulator import Simulator


class Pipeline:
    """Common part of a plan's pipeline: weights still to arrive, members, abort.

    Subclasses run the work (:class:`dora_rl.sim.serving.ServingPipeline`,
    :class:`dora_rl.sim.training.TrainingPipeline`) and call :meth:`JobRuntime.finished` and
    :meth:`JobRuntime.emptied`.
    """

    def __init__(self, job: JobRuntime, work: CompiledPlan) -> None:
        self.job = job
        self.sim = job.sim
        self.work = work
        self.n_stages = len(work.stages)
        self.devices = frozenset(work.plan.devices)
        self.ready = [True] * self.n_stages
        self._waiting: list[set[int]] = [set() for _ in range(self.n_stages)]
        self.members: dict[Request, None] = {}
        self.weight_xfers: list[Transfer] = []

    def await_weights(self, device: int, nbytes: float) -> None:
        """Stall the stages of ``device`` until ``nbytes`` of weights have reached it."""
        def arrived(_xfer: Transfer) -> None:
            self._arrived(device)

        xfer = self.sim.network.receive(device, nbytes, self.job.spec.index, arrived)
        if xfer is None:
            return
        self.weight_xfers.append(xfer)
        for k, stage in enumerate(self.work.stages):
            if device in stage.devices:
                self.ready[k] = False
                self._waiting[k].add(device)

    def _arrived(self, device: int) -> None:
        for k, waiting in enumerate(self._waiting):
            if device in waiting:
                waiting.discard(device)
                if not waiting:
                    self.ready[k] = True
                    self.stage_ready(k)

    def stage_ready(self, k: int) -> None:
        """Stage ``k`` has all its weights (subclasses start waiting work)."""

    def abort(self) -> list[Request]:
        """Stop everything in flight; return the members, oldest first."""
        for xfer in self.weight_xfers:
            self.sim.network.cancel(xfer)
        self.cancel_work()
        out = sorted(self.members, key=lambda r: r.arrival_s)
        self.members.clear()
        return out

    def cancel_work(self) -> None:
        """Cancel running ops and transfers (subclasses)."""

    def oldest_arrival_s(self) -> float:
        """Arrival time of the oldest member (inf if none)."""
        return next(iter(self.members)).arrival_s if self.members else math.inf


class JobRuntime(ABC):
    """A job's pipelines, backlog and finished work (see the module docstring).

    Attributes:
        spec: The job's work and targets.
        current: The pipeline of the current plan (None: no plan; work waits in the backlog).
        draining: Pipelines of earlier plans still holding work.
        backlog: Arrived work not yet admitted to a pipeline (oldest first).
        finished_units: Every finished unit, in finishing order.
        active: Whether the job has work this interval (no new arrivals otherwise).
        scale: The QoE scale of the interval (stamped on arrivals).
        analytic_ms: The cost model's latency for the current plan and state (stamped on
            arrivals; NaN unless the caller sets it).
    """

    def __init__(self, sim: Simulator, spec: JobSpec, tables: JobTables) -> None:
        self.sim = sim
        self.spec = spec
        self.tables = tables
        self.current: Pipeline | None = None
        self.draining: list[Pipeline] = []
        self.backlog: deque[Request] = deque()
        self.finished_units: list[Request] = []
        self.active = True
        self.scale = 1.0
        self.rate_scale = 1.0  # share of the card's request rate arriving (load over the day)
        self.analytic_ms = math.nan
        self.restarted = 0
        self._compiled: dict[Plan, CompiledPlan] = {}
        self._certain_s: dict[float, float] = {}
        self.unsettled: deque[Request] = deque()
        """Requests still owing their first result that are not yet certain misses (arrival
        order; finished ones leave lazily)."""
        self.interval: dict[str, Any] = {}
        self.new_interval()

    # ------------------------------------------------------------------ plans
    @property
    def plan(self) -> Plan | None:
        """The current plan."""
        return self.current.work.plan if self.current is not None else None

    def set_plan(self, plan: Plan | None, weights: dict[int, float] | None = None) -> None:
        """Switch to ``plan``; ``weights`` maps devices to bytes they must receive first."""
        old = self.current
        if old is not None:
            if old.members:
                self.draining.append(old)
            else:
                self.drop(old)
        self.current = None
        if plan is not None:
            work = self._compiled.get(plan)
            if work is None:
                work = self._compiled[plan] = compile_plan(self.tables, plan)
            pipe = self.make_pipeline(work)
            for device, nbytes in sorted((weights or {}).items()):
                pipe.await_weights(device, nbytes)
            self.current = pipe
        self.pull()

    def lose_devices(self, gone: set[int]) -> None:
        """Abort the pipelines that use a device in ``gone``; re-execute their work."""
        restart: list[Request] = []
        for pipe in [*self.draining, *([self.current] if self.current else [])]:
            if pipe.devices & gone:
                restart += pipe.abort()
                if pipe is self.current:
                    self.current = None
                else:
                    self.draining.remove(pipe)
        for req in restart:
            req.restarts += 1
            req.prefilled = False
        self.restarted += len(restart)
        self.backlog.extendleft(sorted(restart, key=lambda r: r.arrival_s, reverse=True))
        if restart:
            self.pull()

    def emptied(self, pipe: Pipeline) -> None:
        """A pipeline holds no more work: forget it if it was draining."""
        if pipe in self.draining:
            self.draining.remove(pipe)
            self.drop(pipe)

    def drop(self, pipe: Pipeline) -> None:
        """Forget a pipeline (cancel weights still on their way to it)."""
        for xfer in pipe.weight_xfers:
            self.sim.network.cancel(xfer)

    # ------------------------------------------------------------------ work
    @abstractmethod
    def make_pipeline(self, work: CompiledPlan) -> Pipeline:
        """A pipeline running ``work`` (subclasses)."""

    @abstractmethod
    def start_arrivals(self, times_s: list[float] | None = None) -> None:
        """Start the work: arrivals at ``times_s`` or the job's own process (subclasses)."""

    @abstractmethod
    def pull(self) -> None:
        """Admit backlog work into the current pipeline while it has room (subclasses)."""

    def finished(self, req: Request, pipe: Pipeline) -> None:
        """``req`` is done: book it and let its pipeline go if it was the last."""
        req.done_s = self.sim.env.now
        pipe.members.pop(req, None)
        self.finished_units.append(req)
        iv = self.interval
        iv["latency_s"].append(req.done_s - req.arrival_s)
        met = self.spec.met(req)
        iv["met"] += met
        if not req.settled:
            iv["scored"] += 1
            iv["missed"] += not met
        if not pipe.members:
            self.emptied(pipe)

    def arrived(self, req: Request) -> None:
        """Book the arrival of ``req`` (serving jobs; before it enters the backlog)."""
        self.interval["arrived"] += 1
        self.unsettled.append(req)

    def certain_s(self, scale: float) -> float:
        """The wait after which a request arriving at QoE ``scale`` misses whatever happens
        (:func:`~dora_rl.world.requests.certain_wait_s`)."""
        hit = self._certain_s.get(scale)
        if hit is None:
            hit = self._certain_s[scale] = certain_wait_s(self.tables.job, scale)
        return hit

    def settle_late(self, now_s: float) -> None:
        """Score as missed every request that still owes its first result (an LLM its first
        token) and has waited past its certain wait."""
        keep: deque[Request] = deque()
        llm = self.spec.kind == "llm"
        iv = self.interval
        for req in self.unsettled:
            if req.done_s == req.done_s or (llm and req.tokens > 0):
                continue  # finished, or scored when it finishes
            if now_s - req.arrival_s > self.certain_s(req.scale):
                req.settled = True
                iv["scored"] += 1
                iv["missed"] += 1
            else:
                keep.append(req)
        self.unsettled = keep

    def outstanding(self) -> int:
        """Units arrived but not finished: in the backlog or in a pipeline."""
        pipes = [*self.draining, *([self.current] if self.current else [])]
        return len(self.backlog) + sum(len(p.members) for p in pipes)

    def oldest_waiting_s(self) -> float:
        """Arrival time of the oldest unit still owing its first result (inf if none): the
        oldest unfinished unit, or for an LLM the oldest request without its first token."""
        pipes = [p for p in (*self.draining, self.current) if p is not None and p.members]
        if not self.backlog and not pipes:
            return math.inf
        units = [*self.backlog, *(r for p in pipes for r in p.members)]
        if self.spec.kind == "llm":
            units = [r for r in units if r.tokens == 0]
        return min((r.arrival_s for r in units), default=math.inf)

    def new_interval(self) -> dict[str, Any]:
        """Start a new interval's figures; return the finished interval's."""
        done = self.interval
        self.interval = {"latency_s": [], "ttft_s": [], "tpot_s": [], "met": 0, "arrived": 0,
                         "scored": 0, "missed": 0}
        return done
