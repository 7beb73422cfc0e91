"""Dora's contention-aware network scheduler: how a plan's concurrent flows share airtime.

A plan's stage-to-stage flows (activations, and gradients back when training) and its
data-parallel all-reduces run concurrently on the WiFi media they cross. Equal sharing gives
every flow the same airtime whatever its size, so a big transfer on the critical path waits
while a small one holds airtime it cannot use. The scheduler chooses each flow's share of every
medium (shares of one medium sum to at most 1) to minimise the job's time figure (request
latency, LLM request time or iteration time), starting from the closed form that is optimal
for a sum of transfer times (shares proportional to the square root of each flow's airtime,
by Cauchy-Schwarz) and refining with SLSQP on the cost model itself. Flows are then ordered by
priority (largest share first), the order a transmit queue should serve them in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import minimize

from dora_rl.costmodel import CostModel, Plan, State


@dataclass(frozen=True)
class Schedule:
    """A plan with scheduled shares, and what the schedule changes.

    Attributes:
        plan: The plan with ``boundary_shares`` / ``allreduce_shares`` set.
        priority: Flow names in serving order (``"1->2"`` boundaries, ``"ar3"`` all-reduces).
        time_equal_s, time_s: The job's time figure with equal sharing and with the schedule.
        energy_equal_j, energy_j: Energy per unit of work before and after.
    """

    plan: Plan
    priority: tuple[str, ...]
    time_equal_s: float
    time_s: float
    energy_equal_j: float
    energy_j: float

    @property
    def speedup(self) -> float:
        """Equal-sharing time over scheduled time."""
        return self.time_equal_s / self.time_s if self.time_s > 0 else 1.0


def _flows(model: CostModel, plan: Plan) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Flow names, their WiFi airtime per unit [F, W] (by domain), and the all-reduce mask."""
    t = model.tables
    m = model.evaluate(plan, model.nominal.replace(cross_traffic=np.zeros(len(t.wifi_domain))),
                       check=False)
    names: list[str] = []
    air = []
    is_ar = []
    for k in range(plan.n_stages - 1):
        names.append(f"{k + 1}->{k + 2}")
        row = np.zeros(len(t.wifi_domain))
        for d in (*plan.stage_devices[k], *plan.stage_devices[k + 1]):
            if t.wifi_domain[t.domain_of[d]]:
                row[t.domain_of[d]] += m["tx_s"][d] if d in plan.stage_devices[k] else 0.0
                row[t.domain_of[d]] += m["rx_s"][d] if d in plan.stage_devices[k + 1] else 0.0
        air.append(row)
        is_ar.append(False)
    for k, group in enumerate(plan.stage_devices):
        names.append(f"ar{k + 1}")
        row = np.zeros(len(t.wifi_domain))
        if m["allreduce_s"][k] > 0:
            for d in group:
                if t.wifi_domain[t.domain_of[d]]:
                    row[t.domain_of[d]] += 1.0
        air.append(row)
        is_ar.append(True)
    return names, np.array(air).reshape(len(names), -1), np.array(is_ar, dtype=bool)


def _with_shares(plan: Plan, shares: np.ndarray) -> Plan:
    k = plan.n_stages
    return replace(plan, boundary_shares=tuple(float(s) for s in shares[: k - 1]),
                   allreduce_shares=tuple(float(s) for s in shares[k - 1:]))


def schedule(model: CostModel, plan: Plan, state: State | None = None) -> Schedule:
    """Choose airtime shares for ``plan``'s flows in ``state`` (nominal by default)."""
    state = state or model.nominal
    base = model.evaluate(replace(plan, boundary_shares=None, allreduce_shares=None), state)
    names, air, _ = _flows(model, plan)
    active = air.sum(axis=1) > 0
    if active.sum() <= 1 or not np.isfinite(base["latency_s"]):
        return Schedule(plan=plan, priority=tuple(n for n, a in zip(names, active, strict=True)
                                                  if a),
                        time_equal_s=base["latency_s"], time_s=base["latency_s"],
                        energy_equal_j=base["energy_j"], energy_j=base["energy_j"])
    media = [w for w in range(air.shape[1]) if (air[:, w] > 0).sum() > 0]
    root = np.sqrt(air.max(axis=1))
    start = np.ones(len(names))
    for w in media:
        on = air[:, w] > 0
        start[on] = np.minimum(start[on], root[on] / root[on].sum()) if on.any() else 1.0

    def figure(s: np.ndarray) -> float:
        return float(model.evaluate(_with_shares(plan, s), state, check=False)["latency_s"])

    constraints = [{"type": "ineq", "fun": (lambda s, on=air[:, w] > 0: 1.0 - s[on].sum())}
                   for w in media]
    res = minimize(figure, start, method="SLSQP", bounds=[(1e-3, 1.0)] * len(names),
                   constraints=constraints, options={"maxiter": 200, "ftol": 1e-12})
    best = res.x if res.success and figure(res.x) <= figure(start) else start
    best = np.clip(best, 1e-3, 1.0)
    for w in media:  # keep the sums at most 1 after clipping
        on = air[:, w] > 0
        best[on] = best[on] / max(1.0, best[on].sum())
    best = np.where(active, best, 1.0)
    scheduled = _with_shares(plan, best)
    after = model.evaluate(scheduled, state)
    if after["latency_s"] > base["latency_s"]:  # never worse than equal sharing
        scheduled, after = replace(plan, boundary_shares=None, allreduce_shares=None), base
    order = sorted((i for i in range(len(names)) if active[i]), key=lambda i: -best[i])
    return Schedule(plan=scheduled, priority=tuple(names[i] for i in order),
                    time_equal_s=base["latency_s"], time_s=after["latency_s"],
                    energy_equal_j=base["energy_j"], energy_j=after["energy_j"])
