"""A lower bound on every controller's score: the free-switch relaxation.

Each interval is scored on its own, every job choosing freely among every plan it could serve
in the episode (its starting plan and every candidate the env ever offers), or serving nothing,
with:

- switches free and instant (no transfer, no stall, no wake time or energy);
- each job alone on the whole medium, its kernels never waiting behind another job's;
- each job choosing the power modes of its plan's devices for itself (two jobs on one device
  may each have their way);
- a device no plan uses off where the card powers unused devices off, else asleep where it
  may sleep, else idle; idle and sleep power count as the env counts them (dedicated devices
  only);
- a job serving nothing misses what the interval model must count missed within the interval
  (training: every iteration due; requests: the ones that have waited past their tightest
  wait target by the interval's end, ``rate x max(0, interval - target)``).

Why it is a bound, in the env's order (fewest weighted missed requests, then least energy the
jobs cause): in the interval model, sharing the medium, queueing behind other jobs' kernels, a
slower power mode, a switch under way, a wake or a backlog from an outage can only lengthen a
plan's figures or add misses and energy (its waits and tails grow with utilisation and wait;
transfers, wakes and backlogs add energy or misses; any mode vector a schedule uses is among
each job's choices), so each interval of any schedule scores at
least the relaxation's best choice for the plans it serves, missed requests first. The
property test ``test_the_bound_is_never_beaten`` checks it against every baseline on random
episodes.

It is a reference, not a schedule: nothing may be able to reach it.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from dora_rl.controllers.hindsight import TIE_DIGITS, Episode, plans_seen
from dora_rl.costmodel import Plan
from dora_rl.world import IntervalModel
from dora_rl.world.queues import DeviceQueues
from dora_rl.world.requests import arrivals, certain_wait_s, met_fraction, queued


@dataclass(frozen=True)
class Bound:
    """The relaxation's score over an episode."""

    missed: float
    """Weighted missed requests (at most any controller's)."""
    energy_j: float
    """Energy the jobs cause, among choices with that many missed requests."""


def _serving(model: IntervalModel, j: int, plan: Plan, modes: tuple[int, ...],
             world: object, usable: list[bool]) -> tuple[float, list[float]] | None:
    """(missed, busy-and-radio energy per device above idle) of job ``j`` alone on ``plan``
    with its devices in ``modes`` this interval; None when a plan device is unusable."""
    if not all(usable[d] for d in plan.devices):
        return None
    state = world.state  # type: ignore[attr-defined]
    qoe_scale = float(world.qoe_scale[j])  # type: ignore[attr-defined]
    job = model.models[j].tables.job
    interval = model.interval_s
    raw = model.models[j].evaluate(model.moded(plan, modes), model.view(state, 1.0, usable),
                                   check=False)
    figures = queued(job, raw, plan, DeviceQueues.empty(model.n_devices))
    arrived = arrivals(job, interval, qoe_scale)
    missed = arrived * (1.0 - met_fraction(job, figures, qoe_scale))
    per_unit = raw["interval_s"]
    scale = interval / per_unit if math.isfinite(per_unit) and per_unit > 0 else 0.0
    load = state.lists[0]
    energy = [0.0] * model.n_devices
    for d in plan.devices:
        f = model.devices[d]
        busy = min(raw["busy_s"][d] * (1.0 - min(load[d], 0.95)) * scale, interval)
        energy[d] = busy * (f.busy_w[modes[d]] - f.idle_w) \
            + raw["tx_s"][d] * scale * (f.tx_w - f.idle_w) \
            + raw["rx_s"][d] * scale * (f.rx_w - f.idle_w)
    return missed, energy


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


def _outage_missed(model: IntervalModel, j: int, world: object) -> float:
    job = model.models[j].tables.job
    qoe_scale = float(world.qoe_scale[j])  # type: ignore[attr-defined]
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


def free_switch_bound(model: IntervalModel, episode: Episode) -> Bound:
    """The relaxation's score over ``episode`` (see the module docstring)."""
    plans = plans_seen(episode)
    weights = episode.weights
    total_missed = total_energy = 0.0
    for world in episode.worlds:
        usable = world.state.lists[1]
        present = world.state.available.tolist()
        options: list[list[tuple[float, list[float], frozenset[int]]]] = []
        for j in range(model.n_jobs):
            if not world.job_active[j]:
                options.append([(0.0, [0.0] * model.n_devices, frozenset())])
                continue
            nothing = weights[j] * _outage_missed(model, j, world)
            opts: list[tuple[float, list[float], frozenset[int]]] = [
                (nothing, [0.0] * model.n_devices, frozenset())]
            for plan in plans[j]:
                for modes in _mode_choices(model, plan):
                    got = _serving(model, j, plan, modes, world, usable)
                    if got is not None:
                        opts.append((weights[j] * got[0], got[1], frozenset(plan.devices)))
            options.append(opts)
        best = (math.inf, math.inf, math.inf)
        for combo in itertools.product(*options):
            raw = sum(o[0] for o in combo)
            missed = round(raw, TIE_DIGITS)
            if missed > best[0]:
                continue
            used = frozenset().union(*(o[2] for o in combo))
            energy = sum(sum(o[1]) for o in combo) + sum(
                _base_energy(model, d, d in used, present[d]) for d in range(model.n_devices))
            best = min(best, (missed, energy, raw))
        total_missed += best[2]
        total_energy += best[1]
    return Bound(round(total_missed, TIE_DIGITS), total_energy)


__all__ = ["Bound", "free_switch_bound"]
