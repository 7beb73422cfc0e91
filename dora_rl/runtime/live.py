"""The runtime's control record: what it measured, and the control state decisions act on.

:class:`LiveControl` keeps, for the served job, what :class:`~dora_rl.world.ControlState`
holds in the interval model (the bandwidth level, a switch waiting for devices to wake, the
outage, each device's power mode and wake timer, the weights each device keeps) and the
figures of the last closed interval as a measured :class:`~dora_rl.world.Outcome`.
:meth:`LiveControl.measurement` turns them, with the
runtime's current plan and workers, into the :class:`~dora_rl.runtime.observe.Measurement` a
decider sees; :meth:`LiveControl.apply` applies a :class:`~dora_rl.world.Decision` by the
interval model's rules (a plan already serving or under way is kept, going back to the
serving plan calls a switch off, a device a plan needs cannot sleep and wakes) and says which
plan to switch to now. Switches themselves (moving weights, cutting over) are the runner's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dora_rl.costmodel import Plan, State
from dora_rl.dynamics import WorldState
from dora_rl.runtime.observe import Measurement
from dora_rl.runtime.power_modes import PowerRecord
from dora_rl.runtime.telemetry import IntervalTelemetry
from dora_rl.world import (
    LEVELS,
    ControlState,
    Decision,
    DeviceEnergy,
    IntervalModel,
    JobControl,
    JobInterval,
    Outcome,
)
from dora_rl.world.weights import Resident, gained, plan_masks


class LiveControl:
    """The control record of a live run (guarded by the runtime's lock).

    Args:
        model: The interval model of the card (device facts, weight sizes, shares).
        job: The job served.
    """

    def __init__(self, model: IntervalModel, job: int) -> None:
        self.model, self.job = model, job
        self.power = PowerRecord(model.devices, model.power_off_unused)
        self.level = LEVELS - 1
        """The served job's bandwidth level (it starts with the whole medium)."""
        self.target: Plan | None = None
        """A plan chosen while some of its devices were waking: switched to once awake."""
        self.outage_s = 0.0
        self.slack = 0.0
        """The served job's last measured QoE slack (kept through intervals without
        completions)."""
        self.link_scale = [1.0] * model.n_devices
        self.world: WorldState | None = None
        """The emulated world of the interval last closed."""
        self.last: Outcome | None = None
        """The interval last closed, as measured."""
        self.step = 0
        self.plan_id = 0

    # ------------------------------------------------------------------ measuring
    def closed(self, tel: IntervalTelemetry, world: WorldState,
               energies: tuple[DeviceEnergy, ...], plan_broken: bool,
               moved_bytes: float) -> None:
        """Record the interval just closed: its telemetry and device energies, the emulated
        world it ran in, whether the serving plan had a device unusable at its end (an
        outage: its slack counts as -1, as in the interval model) and the weight bytes that
        moved in it."""
        self.world, self.step = world, tel.index + 1
        self.link_scale = list(tel.link_scale)
        self.power.tick(tel.duration_s, energies)
        self.outage_s = self.outage_s + tel.duration_s if plan_broken else 0.0
        if plan_broken:
            self.slack = -1.0
        elif tel.slack is not None:
            self.slack = tel.slack
        switched, self.plan_id = tel.plan_id != self.plan_id, tel.plan_id
        latency = tel.latency_ms_mean if tel.latency_ms_mean is not None else math.nan
        mine = JobInterval(active=True, serving=not plan_broken, arrived=float(tel.completed),
                           scored=float(tel.completed), missed=float(tel.requests_missed),
                           latency_ms=latency, slack=self.slack, switched=switched,
                           cut_over=switched, moved_bytes=moved_bytes)
        idle = JobInterval(active=False, serving=False, arrived=0.0, scored=0.0, missed=0.0,
                           latency_ms=math.nan, slack=0.0, switched=False, cut_over=False,
                           moved_bytes=0.0)
        self.last = Outcome(jobs=tuple(mine if j == self.job else idle
                                       for j in range(self.model.n_jobs)), devices=energies)

    def share(self) -> float:
        """The served job's share of every medium (the only job with work here)."""
        active = [j == self.job for j in range(self.model.n_jobs)]
        levels = [self.level if j == self.job else 0 for j in range(self.model.n_jobs)]
        return self.model.shares(levels, active)[self.job]

    def resident(self, plan: Plan | None, held: dict[int, set[int]],
                 alive: Sequence[bool]) -> Resident:
        """Per device, the served job's layers it holds beyond what ``plan`` uses there."""
        masks = plan_masks(plan)
        out = []
        for d in range(self.model.n_devices):
            mask = sum(1 << i for i in held.get(d, ())) & ~masks.get(d, 0) if alive[d] else 0
            out.append(((self.job, mask, self.step),) if mask else ())
        return tuple(out)

    def control_state(self, plan: Plan | None, since: int, held: dict[int, set[int]],
                      alive: Sequence[bool]) -> ControlState:
        """The runtime's :class:`~dora_rl.world.ControlState` (other jobs: nothing serving)."""
        resident = self.resident(plan, held, alive)
        pending = () if self.target is None else gained(
            self.model.layer_bytes[self.job], self.job, plan, self.target, resident,
            self.model.devices)
        mine = JobControl(plan=plan, target=self.target, pending=pending,
                          outage_s=self.outage_s, level=self.level, since=since)
        jobs = tuple(mine if j == self.job else JobControl(plan=None, level=LEVELS // 2)
                     for j in range(self.model.n_jobs))
        p = self.power
        return ControlState(jobs=jobs, modes=tuple(p.modes), wake_left_s=tuple(p.wake_left_s),
                            resident=resident, step=self.step, temp_c=tuple(p.temp_c))

    def measurement(self, available: Sequence[bool], plan: Plan | None, since: int,
                    held: dict[int, set[int]]) -> Measurement:
        """What the decider sees now: the last closed interval's world and figures, the
        devices ``available`` (present and answering) now, the runtime's control state."""
        world = self.world
        assert world is not None, "measurement() before the first interval"
        base = world.state
        state = State(link_scale=np.array(self.link_scale, dtype=np.float64),
                      available=np.array(available, dtype=bool),
                      load=np.zeros(self.model.n_devices),
                      battery_wh=np.array(base.battery_wh, dtype=np.float64),
                      cross_traffic=np.array(base.cross_traffic, dtype=np.float64),
                      medium_share=np.ones(self.model.n_domains))
        active = np.array([j == self.job for j in range(self.model.n_jobs)])
        measured = WorldState(state=state, job_active=active,
                              qoe_scale=np.array(world.qoe_scale, dtype=np.float64),
                              step=self.step)
        return Measurement(world=measured,
                           ctl=self.control_state(plan, since, held, available),
                           last=self.last)

    # ------------------------------------------------------------------ deciding
    def apply(self, decision: Decision | None, plan: Plan | None,
              usable: Sequence[bool]) -> Plan | None:
        """Apply ``decision`` (None keeps everything) to the record; the plan to switch to
        now, or None. ``usable``: per device present, answering (asleep or not)."""
        if decision is not None and decision.levels is not None:
            self.level = decision.levels[self.job]
        wanted = decision.plans[self.job] if decision is not None else None
        if wanted is not None and wanted != (self.target or plan):
            self.target = None if wanted == plan else wanted  # back to the plan: called off
        if self.target is not None and not all(usable[d] for d in self.target.devices):
            self.target = None  # a device it needs is gone
        used = set(plan.devices if plan is not None else ())
        if self.target is not None:
            used.update(self.target.devices)
        self.power.apply(decision.modes if decision is not None else None, used)
        target = self.target
        if target is not None and all(self.power.awake(d) for d in target.devices):
            self.target = None
            return target
        return None

    def awake(self) -> tuple[bool, ...]:
        """Per device: not asleep and not waking."""
        return tuple(self.power.awake(d) for d in range(self.model.n_devices))


__all__ = ["LiveControl"]
