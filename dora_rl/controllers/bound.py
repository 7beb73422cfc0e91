"""A lower bound on every controller's score: the free-switch relaxation.

Each interval is scored on its own, every job choosing freely among every plan it could serve
in the episode (its starting plan and every candidate the env ever offers), or serving nothing,
with:

- switches free and instant (no transfer, no stall, no wake time or energy);
- each job on the whole medium (its kernels still queue with the other jobs' chosen ones);
- each job choosing the power modes of its plan's devices for itself (two jobs on one device
  may each have their way), whatever the devices' heat (a throttled device runs a mode that is
  among these choices);
- a device no plan uses off where the card powers unused devices off, else asleep where it
  may sleep, else idle; idle and sleep power count as the env counts them (dedicated devices
  only);
- a job serving nothing misses what the interval model must count missed within the interval
  (training: every iteration due; requests: the ones that have waited past their tightest
  wait target by the interval's end, ``rate x max(0, interval - target)``).

Why it is a bound, in the env's order (fewest weighted misses beyond the jobs' attainment
allowances, which follow the arrivals and so no controller changes, then least energy the jobs
cause): in the interval model, a smaller share of the medium, a switch under way, a wake
or a backlog from an outage can only lengthen a plan's figures or add misses and energy (waits
and their tails grow with utilisation and wait; transfers, wakes and backlogs add energy or
misses), and any plan and mode vector a schedule serves is among the choices, so each
interval of any schedule misses at least as many requests as one of the relaxation's choices
(so at least as many beyond the allowance) with at least its energy.
The property test ``test_the_bound_is_never_beaten`` checks it against every baseline on
random episodes.

It is a reference, not a schedule: nothing may be able to reach it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from dora_rl.controllers.hindsight import TIE_DIGITS, Episode, plans_seen
from dora_rl.costmodel import Plan
from dora_rl.dynamics import WorldState
from dora_rl.world import IntervalModel
from dora_rl.world.queues import DeviceQueues, combine, kernel_load
from dora_rl.world.requests import (
    arrivals,
    certain_wait_s,
    excess_missed,
    met_fraction,
    queued,
)


@dataclass(frozen=True)
class Bound:
    """The relaxation's score over an episode."""

    missed: float
    """Weighted misses beyond the jobs' attainment allowances (at most any controller's)."""
    energy_j: float
    """Energy the jobs cause, among choices with that many missed requests."""
    missed_requests: float
    """The same choices' missed requests, unweighted."""
    arrived: float
    """Requests (training: iterations due) that arrived over the episode."""


@dataclass(frozen=True)
class _Choice:
    """One job's choice in one interval: a plan with its devices' modes, or nothing."""

    plan: Plan | None
    figures: dict[str, Any] | None
    load: tuple[list[float], list[float]] | None
    """Its kernels' load per device (:func:`~dora_rl.world.queues.kernel_load`)."""
    energy_j: float
    """Busy and radio energy above idle."""
    devices: frozenset[int]
    alone: float
    """Missed requests with no other job's kernels in the way (a lower bound)."""


def _serving(model: IntervalModel, j: int, plan: Plan, modes: tuple[int, ...],
             world: WorldState, usable: list[bool]) -> _Choice | None:
    """Job ``j`` on ``plan`` with its devices in ``modes`` this interval, on the whole medium;
    None when a plan device is unusable."""
    if not all(usable[d] for d in plan.devices):
        return None
    state = world.state
    cost = model.model_in(world, j)
    job = cost.tables.job
    interval = model.interval_s
    raw = cost.evaluate(model.moded(plan, modes), model.view(state, 1.0, usable), check=False)
    per_unit = raw["interval_s"]
    scale = interval / per_unit if math.isfinite(per_unit) and per_unit > 0 else 0.0
    load = state.lists[0]
    energy = 0.0
    for d in plan.devices:
        f = model.devices[d]
        busy = min(raw["busy_s"][d] * (1.0 - min(load[d], 0.95)) * scale, interval)
        energy += busy * (f.busy_w[modes[d]] - f.idle_w) \
            + raw["tx_s"][d] * scale * (f.tx_w - f.idle_w) \
            + raw["rx_s"][d] * scale * (f.rx_w - f.idle_w)
    choice = _Choice(plan, raw, kernel_load(job, raw, plan.micro_batches), energy,
                     frozenset(plan.devices), 0.0)
    alone = _missed(model, j, choice, DeviceQueues.empty(model.n_devices), world)
    return replace(choice, alone=alone)


def _missed(model: IntervalModel, j: int, choice: _Choice, others: DeviceQueues,
            world: WorldState) -> float:
    """Requests job ``j`` misses on ``choice`` with ``others`` on the devices."""
    job = model.model_in(world, j).tables.job
    qoe_scale = float(world.qoe_scale[j])
    arrived = arrivals(job, model.interval_s, qoe_scale)
    if choice.plan is None or choice.figures is None:
        return _outage_missed(model, j, world)
    figures = queued(job, choice.figures, choice.plan, others)
    return arrived * (1.0 - met_fraction(job, figures, qoe_scale))


def _mode_choices(model: IntervalModel, plan: Plan) -> list[tuple[int, ...]]:
    """Every power-mode vector over the plan's devices (the rest nominal)."""
    devices = plan.devices
    out = []
    for combo in itertools.product(*(range(model.devices[d].n_modes) for d in devices)):
        modes = [0] * model.n_devices
        for d, m in zip(devices, combo, strict=True):
            modes[d] = m
        out.append(tuple(modes))
    return out


def _outage_missed(model: IntervalModel, j: int, world: WorldState) -> float:
    job = model.model_in(world, j).tables.job
    qoe_scale = float(world.qoe_scale[j])
    arrived = arrivals(job, model.interval_s, qoe_scale)
    if job.training is not None:
        return arrived
    certain = certain_wait_s(job, qoe_scale)
    return arrived / model.interval_s * max(0.0, model.interval_s - certain)


def _base_energy(model: IntervalModel, d: int, used: bool, present: bool) -> float:
    """Idle or sleep energy of device ``d`` the env charges to the jobs, at its cheapest."""
    f = model.devices[d]
    if not present or not f.dedicated:
        return 0.0
    if used:
        return f.idle_w * model.interval_s
    if model.power_off_unused:
        return 0.0
    return (f.sleep_w if f.can_sleep and f.sleep_w is not None else f.idle_w) \
        * model.interval_s


def _pareto(options: list[_Choice]) -> list[_Choice]:
    """Drop choices another one on the same devices beats on missed requests alone, energy
    and kernel load on every device."""
    kept: list[_Choice] = []
    for o in sorted(options, key=lambda o: (round(o.alone, TIE_DIGITS), o.energy_j)):
        if not any(k.devices == o.devices and round(k.alone, TIE_DIGITS) <= round(o.alone,
                                                                                TIE_DIGITS)
                   and k.energy_j <= o.energy_j and _lighter(k, o) for k in kept):
            kept.append(o)
    return kept


def _lighter(a: _Choice, b: _Choice) -> bool:
    if a.load is None or b.load is None:
        return a.load is None
    return all(x <= y for x, y in zip(a.load[0], b.load[0], strict=True)) and \
        all(x <= y for x, y in zip(a.load[1], b.load[1], strict=True))


def _interval(model: IntervalModel, world: WorldState, plans: list[list[Plan]],
              weights: Sequence[float], attainment: Sequence[float]
              ) -> tuple[float, float, float]:
    """(weighted excess misses, energy, missed) of the relaxation's best choice this
    interval."""
    usable = world.state.lists[1]
    present = world.state.available.tolist()
    nothing = _Choice(None, None, None, 0.0, frozenset(), 0.0)
    options: list[list[_Choice]] = []
    for j in range(model.n_jobs):
        if not world.job_active[j]:
            options.append([nothing])
            continue
        opts = [replace(nothing, alone=_outage_missed(model, j, world))]
        for plan in plans[j]:
            for modes in _mode_choices(model, plan):
                got = _serving(model, j, plan, modes, world, usable)
                if got is not None:
                    opts.append(got)
        options.append(_pareto(opts))
    active = [bool(a) for a in world.job_active.tolist()]
    arrived = [arrivals(model.model_in(world, j).tables.job, model.interval_s,
                        float(world.qoe_scale[j])) if active[j] else 0.0
               for j in range(model.n_jobs)]

    def excess(missed: Sequence[float]) -> float:
        return sum(w * excess_missed(m, n, a)
                   for w, m, n, a in zip(weights, missed, arrived, attainment, strict=True))

    best = (math.inf, math.inf, math.inf, math.inf)
    for combo in itertools.product(*options):
        if round(excess([o.alone for o in combo]), TIE_DIGITS) > best[0]:
            continue  # interference only adds misses
        loads = [o.load for o in combo]
        missed = [_missed(model, j, o, combine(loads, model.n_devices, skip=j), world)
                  if active[j] else 0.0 for j, o in enumerate(combo)]
        raw = excess(missed)
        if round(raw, TIE_DIGITS) > best[0]:
            continue
        used = frozenset().union(*(o.devices for o in combo))
        energy = sum(o.energy_j for o in combo) + sum(
            _base_energy(model, d, d in used, present[d]) for d in range(model.n_devices))
        best = min(best, (round(raw, TIE_DIGITS), energy, raw, sum(missed)))
    return best[2], best[1], best[3]


def free_switch_bound(model: IntervalModel, episode: Episode) -> Bound:
    """The relaxation's score over ``episode`` (see the module docstring)."""
    plans = plans_seen(episode)
    missed = energy = plain = arrived = 0.0
    for world in episode.worlds:
        for j in range(model.n_jobs):
            if world.job_active[j]:
                arrived += arrivals(model.model_in(world, j).tables.job, model.interval_s,
                                    float(world.qoe_scale[j]))
        m, e, p = _interval(model, world, plans, episode.weights, episode.attainment)
        missed, energy, plain = missed + m, energy + e, plain + p
    return Bound(round(missed, TIE_DIGITS), energy, plain, arrived)


__all__ = ["Bound", "free_switch_bound"]
