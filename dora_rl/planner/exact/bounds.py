"""Exact candidate reduction by bounds, before the mixed-integer program is built.

A candidate can only be in a plan whose time (and, given an incumbent, whose objective) is at
most a bound if the cheapest way to cover the layers before it, plus the candidate, plus the
cheapest way to cover the layers after it, stays within that bound. Prefix and suffix costs are
shortest paths over candidates (ignoring device sharing and transfers, which only add), so the
test never removes a candidate of an optimal plan; it typically removes most of them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dora_rl.costmodel import CostModel, Plan, State
from dora_rl.costmodel.metrics import Metrics
from dora_rl.planner.exact.candidates import Candidates
from dora_rl.planner.exact.formulation import Limits
from dora_rl.planner.exact.space import SearchSpace

FloatArray = NDArray[np.float64]
TOL = 1e-9


def through_cost(first: NDArray[np.int64], end: NDArray[np.int64], weight: FloatArray,
                 n_layers: int) -> FloatArray:
    """Least total weight of a chain of candidates covering all layers and using each one.

    Example:
        Layers 0..2; candidates [0,1) w=1, [1,2) w=1, [0,2) w=5:

        >>> import numpy as np
        >>> through_cost(np.array([0, 1, 0]), np.array([1, 2, 2]), np.array([1.0, 1.0, 5.0]), 2)
        array([2., 2., 5.])
    """
    prefix = np.full(n_layers + 1, np.inf)
    prefix[0] = 0.0
    order = np.argsort(end, kind="stable")
    bounds = np.searchsorted(end[order], np.arange(n_layers + 2))
    for j in range(1, n_layers + 1):
        idx = order[bounds[j]:bounds[j + 1]]
        if len(idx):
            prefix[j] = np.min(prefix[first[idx]] + weight[idx])
    suffix = np.full(n_layers + 1, np.inf)
    suffix[n_layers] = 0.0
    order = np.argsort(first, kind="stable")
    bounds = np.searchsorted(first[order], np.arange(n_layers + 2))
    for j in range(n_layers - 1, -1, -1):
        idx = order[bounds[j]:bounds[j + 1]]
        if len(idx):
            suffix[j] = np.min(weight[idx] + suffix[end[idx]])
    return prefix[first] + weight + suffix[end]


Bound = tuple[FloatArray, FloatArray, float]
"""(additive weight per candidate, extra charge of the candidate itself, bound)."""


def time_weights(model: CostModel, c: Candidates, m: int) -> list[Bound]:
    """Lower-bound terms of the job's time figures and the QoE targets that bound them."""
    job, q = model.tables.job, model.tables.job.qoe
    none = np.zeros(len(c))
    out: list[Bound] = []
    if job.inference is not None:
        if q.latency_ms is not None:
            out.append((c.time_s, none, q.latency_ms / 1e3))
    elif job.llm is not None:
        w = job.llm
        if q.ttft_ms is not None:
            out.append((c.time_s, none, q.ttft_ms / 1e3))
        if q.tpot_ms is not None:
            out.append((c.decode_s, none, q.tpot_ms / 1e3))
        out.append((c.time_s + (w.output_tokens - 1) * c.decode_s, none,
                    1.0 / w.request_rate_per_s))
    else:
        tr = job.training
        assert tr is not None
        limits = [v for v in (q.iteration_ms and q.iteration_ms / 1e3,
                              q.deadline_s and tr.iterations and q.deadline_s / tr.iterations)
                  if v]
        if limits:
            weight, extra = _time_figure(model, c, m)
            out.append((weight, extra, min(limits)))
    return out


def _time_figure(model: CostModel, c: Candidates, m: int) -> tuple[FloatArray, FloatArray]:
    """Lower-bound terms of the job's time figure (``latency_s``): additive weight and extra.

    Training: an iteration lasts at least the sum of its stage cycles plus ``m - 1`` times the
    slowest, hence at least the sum plus ``m - 1`` times any one chosen cycle.
    """
    job = model.tables.job
    if job.llm is not None:
        return c.time_s + (job.llm.output_tokens - 1) * c.decode_s, np.zeros(len(c))
    if job.training is not None:
        return c.time_s, c.time_s * (m - 1.0)
    return c.time_s, np.zeros(len(c))


def objective_weights(model: CostModel, c: Candidates, mode: str,
                      m: int) -> tuple[FloatArray, FloatArray, float]:
    """Lower-bound terms of the objective: additive weight, extra, and the constant part."""
    t, job = model.tables, model.tables.job
    if mode == "time":
        weight, extra = _time_figure(model, c, m)
        return weight, extra, 0.0
    if job.training is not None:
        idle = 0.0 if t.unused_power_off else float(t.idle_w.sum())
        return c.energy_j + idle * c.time_s, idle * c.time_s * (m - 1.0), 0.0
    rate = (job.inference or job.llm).request_rate_per_s  # type: ignore[union-attr]
    none = np.zeros(len(c))
    if t.unused_power_off:
        return c.energy_j + c.idle_w / rate, none, 0.0
    return c.energy_j, none, float(t.idle_w.sum()) / rate


def reduce(model: CostModel, c: Candidates, m: int, mode: str, incumbent: float | None,
           limits: Limits) -> NDArray[np.bool_]:
    """Mask of candidates that may belong to a plan meeting QoE and beating ``incumbent``."""
    n_layers = model.tables.n_layers
    keep = np.ones(len(c), dtype=bool)
    bounds = [] if limits.ignore_qoe else time_weights(model, c, m)
    job = model.tables.job
    if job.inference is not None and not limits.ignore_qoe:
        keep &= c.time_s <= (1 + TOL) / job.inference.request_rate_per_s  # pipeline period
    if limits.max_time_s is not None:
        bounds.append((*_time_figure(model, c, m), limits.max_time_s))
    for weight, extra, bound in bounds:
        keep &= through_cost(c.first, c.end, weight, n_layers) + extra <= bound * (1 + TOL)
    if incumbent is not None and np.isfinite(incumbent):
        weight, extra, offset = objective_weights(model, c, mode, m)
        cost = (through_cost(c.first[keep], c.end[keep], weight[keep], n_layers) + extra[keep]
                + offset)
        idx = np.flatnonzero(keep)
        keep[idx[cost > incumbent * (1 + TOL) + TOL]] = False
    return keep


def admissible(model: CostModel, metrics: Metrics, mode: str,
               limits: Limits) -> NDArray[np.bool_]:
    """Plans the program of ``mode`` under ``limits`` admits: memory, devices, QoE (unless
    ignored), the plan-set limits and, in time mode, the card's energy budget."""
    ok = metrics.memory_ok & metrics.usable_ok
    if not limits.ignore_qoe:
        ok = ok & metrics.feasible
    if limits.max_time_s is not None:
        ok = ok & (metrics.latency_s <= limits.max_time_s * (1 + TOL))
    if limits.max_energy_j is not None:
        ok = ok & (metrics.energy_j <= limits.max_energy_j * (1 + TOL))
    budget = model.scenario.objective.energy_budget_j
    if mode == "time" and budget is not None and not limits.ignore_qoe:
        ok = ok & (metrics.energy_j <= budget * (1 + TOL))
    return np.asarray(ok, dtype=bool)


def time_caps(model: CostModel, m: int, limits: Limits) -> float:
    """The tightest cap on the job's time figure (``latency_s``) the program imposes."""
    job, q = model.tables.job, model.tables.job.qoe
    caps = [limits.max_time_s]
    if not limits.ignore_qoe:
        if job.inference is not None:
            caps.append(q.latency_ms and q.latency_ms / 1e3)
        elif job.llm is not None:
            caps.append(1.0 / job.llm.request_rate_per_s)
        elif job.training is not None:
            caps.append(q.iteration_ms and q.iteration_ms / 1e3)
            if q.deadline_s and job.training.iterations:
                caps.append(q.deadline_s / job.training.iterations)
    return min((float(v) for v in caps if v), default=np.inf)


def incumbent_plans(model: CostModel, space: SearchSpace, m: int) -> list[Plan]:
    """Cheap plans to start from: every single-group plan and every two-stage singleton split."""
    n_layers = model.tables.n_layers
    plans = []
    for g in space.groups:
        plans.append(Plan(stage_end=(n_layers,), stage_devices=(g.members,), micro_batches=m))
    singles = [cls[0] for cls in space.classes]
    pairs = [(a, b) for a in singles for b in singles if a != b]
    for cut in range(1, n_layers):
        for a, b in pairs:
            plans.append(Plan(stage_end=(cut, n_layers), stage_devices=((a,), (b,)),
                              micro_batches=m))
    return plans


def best_incumbent(model: CostModel, space: SearchSpace, state: State, m: int,
                   mode: str, limits: Limits) -> tuple[float, Plan | None]:
    """Objective and plan of the best feasible :func:`incumbent_plans` (inf, None if none)."""
    plans = incumbent_plans(model, space, m)
    if not plans:
        return np.inf, None
    metrics = model.evaluate_many(model.batch(plans, check=False), state)
    value = metrics.energy_j if mode == "energy" else metrics.latency_s
    ok = admissible(model, metrics, mode, limits)
    if not ok.any():
        return np.inf, None
    best = int(np.argmin(np.where(ok, value, np.inf)))
    return float(value[best]), plans[best]
