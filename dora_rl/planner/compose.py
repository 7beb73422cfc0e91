"""Compose plans: Dora's runtime adapter operations.

- :func:`time_mix`: for one job, the least-energy mix over time of plans from its set whose
  *average* time per unit meets a target exactly (a small LP; at the optimum at most two plans
  are active). This is how a training job meets a time-to-finish deadline, or a stream an
  average rate, between two discrete plans.
- :func:`choose_plans`: one plan per job such that no device is over-committed, the shared
  media carry everyone's airtime, and every job still meets its QoE once it shares devices
  and airtime with the others; least total power (energy mode) or least total relative
  slowdown (time mode). A multiple-choice integer program, checked against the cost model:
  a combination the cost model rejects is cut off and the program solved again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.optimize import linprog

from dora_rl.costmodel import CostModel, Plan, State
from dora_rl.errors import InfeasibleError
from dora_rl.planner.exact.milp_model import MilpBuilder
from dora_rl.planner.planset import PlanEntry, PlanSet


@dataclass(frozen=True)
class Mix:
    """Fractions of time (summing to 1) each plan runs, and the mixed figures."""

    fractions: tuple[float, ...]
    energy_j: float
    time_s: float


class Timed(Protocol):
    """Anything with a time and an energy per unit (a plan entry, a prediction)."""

    @property
    def time_s(self) -> float: ...

    @property
    def energy_j(self) -> float: ...


def time_mix(entries: Sequence[Timed], target_time_s: float) -> Mix:
    """Least energy per unit with the average time per unit at most ``target_time_s``.

    Example:
        A plan taking 1 s at 10 J and one taking 3 s at 4 J, for a 2 s target: half and half,
        7 J on average.

        >>> from types import SimpleNamespace as N
        >>> a = N(time_s=1.0, energy_j=10.0); b = N(time_s=3.0, energy_j=4.0)
        >>> m = time_mix([a, b], 2.0)
        >>> [round(f, 6) for f in m.fractions], round(m.energy_j, 6)
        ([0.5, 0.5], 7.0)
    """
    times = np.array([e.time_s for e in entries])
    energy = np.array([e.energy_j for e in entries])
    res = linprog(energy, A_ub=times[None, :], b_ub=[target_time_s], A_eq=np.ones((1, len(times))),
                  b_eq=[1.0], bounds=[(0.0, 1.0)] * len(times), method="highs")
    if res.status != 0:
        raise InfeasibleError(f"no mix of the {len(times)} plans averages {target_time_s:g} s "
                              f"per unit: the fastest takes {times.min():g} s")
    x = np.where(res.x > 1e-12, res.x, 0.0)
    x = x / x.sum()
    return Mix(fractions=tuple(float(v) for v in x), energy_j=float(energy @ x),
               time_s=float(times @ x))


@dataclass(frozen=True)
class Selection:
    """One plan per job, with each job's figures once they share the devices and media."""

    plans: tuple[Plan, ...]
    metrics: tuple[dict[str, Any], ...]
    total_power_w: float
    cuts: int


def _usage(model: CostModel, entry: PlanEntry) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-device utilisation, per-domain airtime fraction and power above idle of a plan."""
    m, t = entry.metrics, model.tables
    interval = float(m["interval_s"])
    busy = np.asarray(m["busy_s"]) / interval
    radio = (np.asarray(m["tx_s"]) + np.asarray(m["rx_s"])) / interval
    air = np.zeros(len(t.wifi_domain))
    for d in range(t.n_devices):
        if t.wifi_domain[t.domain_of[d]]:
            air[t.domain_of[d]] += np.asarray(m["tx_s"])[d] / interval
    idle = 0.0 if t.unused_power_off else float(t.idle_w.sum())
    return busy + radio, air, float(m["power_w"]) - idle


def shared_states(models: list[CostModel], entries: list[PlanEntry],
                  state: State) -> list[State]:
    """Each job's view of ``state``: the others' utilisation as background load, and the
    others' airtime taken from the media."""
    usage = [_usage(mo, e) for mo, e in zip(models, entries, strict=True)]
    views = []
    for j in range(len(models)):
        load = state.load + sum(u[0] for i, u in enumerate(usage) if i != j)
        cross = state.cross_traffic + sum(u[1] for i, u in enumerate(usage) if i != j)
        views.append(state.replace(load=np.minimum(load, 0.999),
                                   cross_traffic=np.minimum(cross, 0.999)))
    return views


def choose_plans(models: list[CostModel], sets: list[PlanSet], state: State | None = None,
                 mode: str = "energy", max_cuts: int = 50) -> Selection:
    """One plan per job from its set; see the module docstring."""
    state = state or models[0].nominal
    b = MilpBuilder()
    cols = [b.var(len(s.entries), hi=1.0, integer=True) for s in sets]
    n_dev, n_dom = models[0].tables.n_devices, len(state.cross_traffic)
    dev_rows: list[list[tuple[int, float]]] = [[] for _ in range(n_dev)]
    air_rows: list[list[tuple[int, float]]] = [[] for _ in range(n_dom)]
    cost, powers = np.zeros(0), np.zeros(0)
    for model, pset, c in zip(models, sets, cols, strict=True):
        b.row(c, 1.0, 1.0, 1.0)
        best_time = min(e.time_s for e in pset.entries)
        for col, entry in zip(c, pset.entries, strict=True):
            util, air, power = _usage(model, entry)
            for d in np.flatnonzero(util > 0):
                dev_rows[d].append((int(col), float(util[d])))
            for w in np.flatnonzero(air > 0):
                air_rows[w].append((int(col), float(air[w])))
            value = power if mode == "energy" else entry.time_s / best_time
            cost = np.append(cost, value)
            powers = np.append(powers, power)
    b.cost = cost.tolist()
    for dev, row in enumerate(dev_rows):
        if row:
            b.row([c for c, _ in row], [v for _, v in row], hi=1.0 - float(state.load[dev]))
    for dom, row in enumerate(air_rows):
        if row:
            b.row([c for c, _ in row], [v for _, v in row],
                  hi=1.0 - float(state.cross_traffic[dom]))
    for cut in range(max_cuts + 1):
        res = b.solve()
        if res.x is None:
            raise InfeasibleError("no combination of the jobs' plans fits the devices and "
                                  "media together with every QoE met")
        pick = [int(np.argmax(res.x[c])) for c in cols]
        entries = [s.entries[p] for s, p in zip(sets, pick, strict=True)]
        views = shared_states(models, entries, state)
        metrics = [mo.evaluate(e.plan, v) for mo, e, v in zip(models, entries, views, strict=True)]
        if all(m["feasible"] for m in metrics):
            idle = 0.0 if models[0].tables.unused_power_off else float(
                models[0].tables.idle_w.sum())
            return Selection(plans=tuple(e.plan for e in entries), metrics=tuple(metrics),
                             total_power_w=idle + float(sum(powers[c[p]] for c, p in
                                                            zip(cols, pick, strict=True))),
                             cuts=cut)
        chosen = [int(c[p]) for c, p in zip(cols, pick, strict=True)]
        b.row(chosen, 1.0, hi=len(chosen) - 1.0)  # this combination breaks someone's QoE
    raise InfeasibleError(f"no feasible combination found after {max_cuts} cuts")
