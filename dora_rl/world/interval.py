"""One model of a control interval: explicit state in, new state and outcome out.

Shaped like Gymnasium's ``FuncEnv``: :meth:`IntervalModel.initial` gives the starting
:class:`~dora_rl.world.control_state.ControlState`, :meth:`IntervalModel.transition` maps
(state, decision, world of the interval) to the next state and an
:class:`~dora_rl.world.control_state.Outcome`. There are no hidden attributes: the env, the
simulator's accounting and the live runtime call these functions with their own world.

Per interval, in order: power modes and wakes apply; switches start (make-before-break: the old
plan keeps serving while the new plan's weights move; break-before-make when the two do not fit
in memory together); each job's serving plan is evaluated by the cost model in its view (its
share of the media, its devices' power modes), its kernels queuing first come, first served
with the other jobs' kernels on the devices they share (:mod:`dora_rl.world.queues`); weights
move in the airtime the job's own traffic leaves in its share; requests are scored
(:mod:`dora_rl.world.requests`, with the mean waits added by
:func:`~dora_rl.world.requests.queued`); each device's energy is charged by cause
(:func:`~dora_rl.world.devices.interval_energy`); a switch whose weights have all arrived cuts
over for the next interval, and the layers given up stay resident while memory allows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from dora_rl.config import Scenario
from dora_rl.costmodel import CostModel, Plan, State
from dora_rl.dynamics import WorldState
from dora_rl.world.control_state import ControlState, Decision, JobControl, JobInterval, Outcome
from dora_rl.world.devices import SLEEP, DeviceFacts, device_facts
from dora_rl.world.power import apply_modes, devices_energy, heated, hot_devices, idle_temps
from dora_rl.world.queues import combine, kernel_load
from dora_rl.world.requests import (
    arrivals,
    certain_wait_s,
    met_fraction,
    queued,
    scaled_rate,
    score_outage,
    score_serving,
    wait_headroom_s,
)
from dora_rl.world.slack import own_demand, scaled_slacks
from dora_rl.world.weights import advance, gained, keep, mask_bytes, plan_masks

LEVELS = 4
"""Bandwidth levels: level ``l`` asks for ``(l + 1) / LEVELS`` of every medium."""
MAX_VIEW_LOAD = 0.95


class IntervalModel:
    """The interval model of one scenario (immutable: every method is a pure function of its
    arguments and the scenario).

    Args:
        scenario: The validated scenario.
        interval_s: Length of one control interval.
        models: Cost models of the jobs (card order); built when omitted.
        devices: Device facts (card order); the card's when omitted (a runtime passes the
            devices it emulates).
    """

    def __init__(self, scenario: Scenario, interval_s: float = 1.0,
                 models: Sequence[CostModel] | None = None,
                 devices: Sequence[DeviceFacts] | None = None) -> None:
        self.scenario = scenario
        self.interval_s = interval_s
        self.models = list(models) if models is not None else \
            [CostModel(scenario, j) for j in range(len(scenario.jobs))]
        self.devices: tuple[DeviceFacts, ...] = tuple(devices) if devices is not None else \
            device_facts(scenario)
        self.n_jobs, self.n_devices = len(self.models), len(self.devices)
        self.n_domains = len(scenario.network.domains)
        self.layer_bytes = [[b - a for a, b in zip(p[:-1], p[1:], strict=True)]
                            for p in (m.tables.lists.params for m in self.models)]
        self.power_off_unused = scenario.objective.unused_devices == "off"
        self.thermal = any(f.thermal is not None for f in self.devices)
        """Some device heats and throttles (the control state then tracks temperatures)."""
        self._moded: dict[tuple[Plan, tuple[int, ...]], Plan] = {}
        self._nominal: dict[tuple[int, Plan], dict[str, Any]] = {}
        self._kernel_load: dict[tuple[int, Plan, float],
                                tuple[list[float], list[float]]] = {}
        self._at_rate: dict[tuple[int, float], CostModel] = {}

    def at_rate(self, j: int, scale: float) -> CostModel:
        """Job ``j``'s cost model with its request rate times ``scale`` (memoised; the card's
        own at 1). The world's rates take few values (:mod:`dora_rl.dynamics.daily`)."""
        if scale == 1.0:
            return self.models[j]
        key = (j, scale)
        hit = self._at_rate.get(key)
        if hit is None:
            base = self.models[j]
            hit = self._at_rate[key] = base.with_job(scaled_rate(base.tables.job, scale))
        return hit

    def model_in(self, world: WorldState, j: int) -> CostModel:
        """Job ``j``'s cost model at its request rate in ``world``."""
        rates = world.rate_scale
        return self.models[j] if rates is None else self.at_rate(j, float(rates[j]))

    def rate_models(self, world: WorldState) -> list[CostModel]:
        """Every job's cost model at the interval's request rates."""
        if world.rate_scale is None:
            return self.models
        return [self.at_rate(j, s) for j, s in enumerate(world.rate_scale.tolist())]

    # ------------------------------------------------------------------ state
    def initial(self, plans: Sequence[Plan | None], level: int = LEVELS // 2) -> ControlState:
        """Every job serving ``plans`` at bandwidth ``level``, every device awake in its
        nominal mode at its idle temperature, nothing kept beyond the serving plans."""
        jobs = tuple(JobControl(plan=p, level=level) for p in plans)
        return ControlState(jobs=jobs, modes=(0,) * self.n_devices,
                            wake_left_s=(0.0,) * self.n_devices,
                            resident=((),) * self.n_devices,
                            temp_c=idle_temps(self.devices))

    def nominal(self, j: int, plan: Plan) -> dict[str, Any]:
        """Job ``j``'s figures for ``plan`` in the card's nominal state (memory, demand)."""
        key = (j, plan)
        hit = self._nominal.get(key)
        if hit is None:
            model = self.models[j]
            hit = self._nominal[key] = model.evaluate(plan, model.nominal, check=False)
        return hit

    def moded(self, plan: Plan, modes: Sequence[int]) -> Plan:
        """``plan`` running its devices in ``modes`` (asleep counts as nominal)."""
        levels = tuple(0 if modes[d] < 0 else modes[d] for d in range(self.n_devices))
        if not any(levels):
            return plan if plan.dvfs_levels is None else replace(plan, dvfs_levels=None)
        key = (plan, levels)
        hit = self._moded.get(key)
        if hit is None:
            hit = self._moded[key] = replace(plan, dvfs_levels=levels)
        return hit

    # ------------------------------------------------------------------ transition
    def transition(self, ctl: ControlState, decision: Decision,
                   world: WorldState) -> tuple[ControlState, Outcome]:
        """Run one interval; see the module docstring for the order of events."""
        interval = self.interval_s
        state = world.state
        active = world.job_active.tolist()
        models = self.rate_models(world)
        levels = list(decision.levels) if decision.levels is not None else \
            [jc.level for jc in ctl.jobs]
        decided = [self._decide(j, jc, decision.plans[j], ctl, levels[j])
                   for j, jc in enumerate(ctl.jobs)]
        jobs = [jc for jc, _ in decided]
        used = self.used_devices(jobs)
        power = apply_modes(self.devices, ctl.modes, ctl.wake_left_s, decision.modes, used,
                            self.power_off_unused, hot_devices(self.devices, ctl.temp_c))
        modes, wake_left = power.modes, power.wake_left_s
        awake = [modes[d] != SLEEP and wake_left[d] <= 0 for d in range(self.n_devices)]
        usable = [u and a for u, a in zip(state.usable.tolist(), awake, strict=True)]
        link = state.lists[2]
        serving = [self._serving(jc, usable, link) if active[j] else None
                   for j, jc in enumerate(jobs)]
        shares = self.shares(levels, active)
        raws: list[dict[str, Any] | None] = []
        loads: list[tuple[list[float], list[float]] | None] = []
        views = [self.view(state, share, usable) for share in shares]
        for j, plan in enumerate(serving):
            if plan is None:
                raws.append(None)
                loads.append(None)
                continue
            figures = models[j].evaluate(self.moded(plan, modes), views[j], check=False)
            raws.append(figures)
            loads.append(kernel_load(models[j].tables.job, figures, plan.micro_batches))
        busy = [0.0] * self.n_devices
        tx = [0.0] * self.n_devices
        rx = [0.0] * self.n_devices
        out_jobs, new_jobs = [], []
        resident = ctl.resident
        for j, jc in enumerate(jobs):
            plan, raw = serving[j], raws[j]
            metrics = None
            if plan is not None and raw is not None:
                metrics = queued(models[j].tables.job, raw, plan,
                                 combine(loads, self.n_devices, skip=j), loads[j])
                mine = own_demand(raw, views[j])
                scale = interval / raw["interval_s"] if raw["interval_s"] > 0 else 0.0
                for d in plan.devices:
                    busy[d] += mine[d] * interval
                    tx[d] += raw["tx_s"][d] * scale
                    rx[d] += raw["rx_s"][d] * scale
            left, moved = jc.pending, 0.0
            if left:
                air = self._airtime_left(plan is not None, metrics, shares[j], state)
                progress = advance(left, self.devices, link, air, interval)
                for d, s in progress.tx_s.items():
                    tx[d] += s
                for d, s in progress.rx_s.items():
                    rx[d] += s
                left = progress.left
                moved = jc.pending_bytes - sum(t.bytes_left for t in left)
            scored = self._score(models[j], jc, active[j], metrics, world)
            outage = 0.0 if plan is not None or not active[j] else jc.outage_s + interval
            target = jc.target
            if target is not None and not left and all(usable[d] for d in target.devices):
                cut = True
                resident = keep(resident, j, jc.plan, target, ctl.step,
                                self._budget(jobs, j, target), self.layer_bytes)
                nxt = JobControl(target, None, (), False, outage, jc.level, 0)
            else:
                cut = False
                nxt = JobControl(jc.plan, target, left, jc.break_first, outage, jc.level,
                                 jc.since + 1)
            new_jobs.append(nxt)
            out_jobs.append(self._job_interval(active[j], metrics, scored, decided[j][1], cut,
                                               moved, float(world.qoe_scale[j])))
        energy = devices_energy(self.devices, power, state.available.tolist(),
                                self.used_devices(new_jobs), busy, tx, rx, interval,
                                self.power_off_unused)
        temps = heated(self.devices, ctl.temp_c, [e.total_j / interval for e in energy],
                       interval) if ctl.temp_c else ()
        nxt_ctl = ControlState(jobs=tuple(new_jobs), modes=power.kept,
                               wake_left_s=tuple(max(w - interval, 0.0) for w in wake_left),
                               resident=resident, step=ctl.step + 1, temp_c=temps)
        return nxt_ctl, Outcome(jobs=tuple(out_jobs), devices=energy, refused=power.refused,
                                throttled=power.throttled)

    # ------------------------------------------------------------------ parts
    def _decide(self, j: int, jc: JobControl, wanted: Plan | None, ctl: ControlState,
                level: int) -> tuple[JobControl, bool]:
        """Apply a job's plan choice: keep, call a switch off, or start one (it cuts over at
        the end of this interval when nothing has to move). Returns the job's control and
        whether a switch started."""
        if level != jc.level:
            jc = JobControl(jc.plan, jc.target, jc.pending, jc.break_first, jc.outage_s, level,
                            jc.since)
        if wanted is None or wanted is jc.target or wanted is jc.plan \
                or wanted == (jc.target or jc.plan):
            if wanted is not None and wanted is jc.plan and jc.target is not None:
                return JobControl(jc.plan, None, (), False, jc.outage_s, level, jc.since), False
            return jc, False
        if wanted == jc.plan:  # back to the serving plan: the switch is called off
            return JobControl(jc.plan, None, (), False, jc.outage_s, level, jc.since), False
        pending = gained(self.layer_bytes[j], j, jc.plan, wanted, ctl.resident, self.devices)
        fits = self._fits_together(j, jc.plan, wanted, ctl)
        return JobControl(jc.plan, wanted, pending, not fits, jc.outage_s, level,
                          jc.since), True

    def _fits_together(self, j: int, old: Plan | None, new: Plan, ctl: ControlState) -> bool:
        """Whether every device of ``new`` can hold its part beside what the serving plans
        (every job's) already hold there: the condition for make-before-break."""
        if old is None:
            return True
        need = self._serving_memory(ctl.jobs)
        new_mem = self.nominal(j, new)["memory_bytes"]
        mem = self.models[j].tables.lists.mem
        old_masks, new_masks = plan_masks(old), plan_masks(new)
        for d in new.devices:
            shared = mask_bytes(self.layer_bytes[j], old_masks.get(d, 0) & new_masks[d])
            if need[d] + new_mem[d] - shared > mem[d]:
                return False
        return True

    def _serving_memory(self, jobs: Sequence[JobControl]) -> list[float]:
        need = [0.0] * self.n_devices
        for j, jc in enumerate(jobs):
            if jc.plan is not None and not jc.break_first:
                for d, b in enumerate(self.nominal(j, jc.plan)["memory_bytes"]):
                    need[d] += b
        return need

    def _budget(self, jobs: Sequence[JobControl], j: int, new: Plan) -> list[float]:
        """Memory per device left for kept weights once job ``j`` serves ``new``."""
        after = [replace(jc, plan=new, break_first=False) if i == j else jc
                 for i, jc in enumerate(jobs)]
        need = self._serving_memory(after)
        mem = self.models[0].tables.lists.mem
        return [max(m - n, 0.0) for m, n in zip(mem, need, strict=True)]

    @staticmethod
    def used_devices(jobs: Sequence[JobControl]) -> set[int]:
        """Devices a serving plan or a switch's target uses."""
        used: set[int] = set()
        for jc in jobs:
            for p in (jc.plan, jc.target):
                if p is not None:
                    used.update(p.devices)
        return used

    @staticmethod
    def _serving(jc: JobControl, usable: Sequence[bool], link: Sequence[float]) -> Plan | None:
        """The plan that serves this interval, or None in an outage: a break-before-make
        switch, a plan device unusable, or a link it crosses faded to 0."""
        plan = jc.plan
        if plan is None or jc.break_first:
            return None
        devices = plan.devices
        for d in devices:
            if not usable[d] or (len(devices) > 1 and not link[d] > 0):
                return None
        return plan

    @staticmethod
    def shares(levels: Sequence[int], active: Sequence[bool]) -> list[float]:
        """Each job's fraction of every medium from its bandwidth level, scaled so the active
        jobs' requests sum to at most 1 (an inactive job's share is what it would get).

        Example:
            >>> IntervalModel.shares([3, 1], [True, True])
            [0.6666666666666666, 0.3333333333333333]
        """
        asked = [(lv + 1.0) / LEVELS for lv in levels]
        total = sum(a for a, on in zip(asked, active, strict=True) if on)
        scale = 1.0 / total if total > 1.0 else 1.0
        return [a * scale for a in asked]

    def kernel_load(self, j: int, plan: Plan, scale: float = 1.0
                    ) -> tuple[list[float], list[float]]:
        """Job ``j``'s kernel load per device running ``plan`` in the nominal state at
        ``scale`` times its request rate (:func:`~dora_rl.world.queues.kernel_load`;
        memoised; shared: read only)."""
        key = (j, plan, scale)
        hit = self._kernel_load.get(key)
        if hit is None:
            model = self.at_rate(j, scale)
            figures = self.nominal(j, plan) if scale == 1.0 else \
                model.evaluate(plan, model.nominal, check=False)
            hit = self._kernel_load[key] = kernel_load(model.tables.job, figures,
                                                       plan.micro_batches)
        return hit

    @staticmethod
    def view(state: State, share: float, usable: Sequence[bool]) -> State:
        """A job's view of ``state``: its share of the free airtime and ``usable`` (presence,
        battery and sleep). Other jobs do not slow its kernels: they queue with them
        (:mod:`dora_rl.world.queues`)."""
        load, _, link, free = state.lists
        view = object.__new__(State)  # arrays and cached views of ``state``, unchecked (hot)
        view.__dict__.update(state.__dict__)
        share = share if share > 1e-3 else 1e-3
        view.__dict__["lists"] = (
            [MAX_VIEW_LOAD if x > MAX_VIEW_LOAD else x for x in load],
            list(usable), link, [f * share for f in free])
        return view

    def _airtime_left(self, serving: bool, metrics: dict[str, Any] | None, share: float,
                      state: State) -> list[float]:
        """Per domain, the fraction of the medium a job's weight transfers may use: its share
        of the free airtime less what its own traffic occupies."""
        free = state.lists[3]
        out = [f * share for f in free]
        if serving and metrics is not None and metrics["interval_s"] > 0:
            used = [0.0] * self.n_domains
            for d, facts in enumerate(self.devices):
                if facts.wifi:
                    used[facts.domain] += (metrics["tx_s"][d] + metrics["rx_s"][d]) \
                        / metrics["interval_s"]
            out = [max(o - u, 0.0) for o, u in zip(out, used, strict=True)]
        return out

    def _score(self, model: CostModel, jc: JobControl, active: bool,
               metrics: dict[str, Any] | None, world: WorldState) -> tuple[float, float, float]:
        """(arrived, scored, missed) of a job this interval (``model``: its cost model at the
        interval's rate; ``metrics`` with its waits, :func:`~dora_rl.world.requests.queued`)."""
        if not active:
            return 0.0, 0.0, 0.0
        job, interval = model.tables.job, self.interval_s
        qoe_scale = float(world.qoe_scale[model.job_index])
        arrived = arrivals(job, interval, qoe_scale)
        if job.training is not None:  # the iterations the target pace asks for, met or not
            if metrics is None or not metrics["iteration_s"] > 0:
                return arrived, arrived, arrived
            return arrived, arrived, arrived * (1.0 - met_fraction(job, metrics, qoe_scale))
        rate = arrived / interval
        certain = certain_wait_s(job, qoe_scale)
        if metrics is None:
            s = score_outage(arrived, jc.outage_s, interval, rate, certain)
        else:
            s = score_serving(arrived, met_fraction(job, metrics, qoe_scale), jc.outage_s, rate,
                              wait_headroom_s(job, metrics, qoe_scale), certain)
        return s.arrived, s.scored, s.missed

    @staticmethod
    def _job_interval(active: bool, metrics: dict[str, Any] | None,
                      scored: tuple[float, float, float], started: bool, cut: bool,
                      moved: float, qoe_scale: float) -> JobInterval:
        if metrics is not None:
            slacks = scaled_slacks(metrics, qoe_scale)  # against the targets in force
            latency, slack = metrics["latency_s"] * 1e3, min(slacks) if slacks else 1.0
        else:
            latency, slack = (math.inf, -1.0) if active else (math.nan, 0.0)
        return JobInterval(active=active, serving=metrics is not None, arrived=scored[0],
                           scored=scored[1], missed=scored[2], latency_ms=latency,
                           slack=slack, switched=started,
                           cut_over=cut, moved_bytes=moved)


__all__ = ["LEVELS", "IntervalModel"]
