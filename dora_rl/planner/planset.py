"""The compact set of QoE-compliant plans the runtime controller chooses among.

The set holds the optimum of the requested mode, the Pareto frontier of (time, energy) traced
with the epsilon-constraint method (least energy subject to time at most epsilon, for epsilon
spread between the least-time and the least-energy plans), and the most robust plans (least
energy among plans that still meet QoE when every link runs at a fraction of its rate). It is
thinned to ``k`` plans so that no plan is dominated in (time, energy, robustness).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from dora_rl.costmodel import CostModel, Plan, State
from dora_rl.errors import InfeasibleError
from dora_rl.planner import disk
from dora_rl.planner.exact.formulation import Limits
from dora_rl.planner.exact.partition import HasMetrics, Mode, PartitionResult, solve
from dora_rl.planner.exact.space import SearchSpace

log = logging.getLogger(__name__)
ROBUST_SCALES = (0.5, 0.25, 0.1)


@dataclass(frozen=True)
class PlanEntry(HasMetrics):
    """One plan of the set with its figures.

    Attributes:
        plan: The plan.
        metrics: Cost-model figures in the state the set was built for.
        robustness: Largest uniform drop of every link rate (0..1) it tolerates with QoE met.
        role: ``"optimum"``, ``"pareto"`` or ``"robust"``.
    """

    plan: Plan
    metrics: dict[str, Any]
    robustness: float
    role: str


@dataclass(frozen=True)
class PlanSet:
    """The plan set of one job; ``entries[0]`` is the optimum of ``mode``."""

    job: str
    mode: Mode
    entries: tuple[PlanEntry, ...]
    solve_time_s: float

    @property
    def plans(self) -> list[Plan]:
        """The plans, optimum first."""
        return [e.plan for e in self.entries]


def robustness(model: CostModel, plan: Plan, state: State | None = None,
               tolerance: float = 1e-3) -> float:
    """Largest uniform drop of all link rates (fraction, 0..1) under which ``plan`` meets QoE.

    Transfer times never shrink as bandwidth falls, so the QoE verdict is monotone in the
    scale and bisection finds the threshold. A plan without transfers tolerates any drop.

    Example:
        >>> from dora_rl.scenarios import load
        >>> m = CostModel(load("tiny"))
        >>> robustness(m, Plan.single(2, 8))
        1.0
    """
    state = state or model.nominal

    def ok(scale: float) -> bool:
        return bool(model.evaluate(plan, state.replace(link_scale=state.link_scale * scale),
                                   check=False)["feasible"])

    if not ok(1.0):
        return 0.0
    if ok(1e-9):
        return 1.0
    lo, hi = 1e-9, 1.0  # infeasible at lo, feasible at hi
    while hi - lo > tolerance:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if ok(mid) else (mid, hi)
    return 1.0 - hi


def _dominates(a: PlanEntry, b: PlanEntry) -> bool:
    no_worse = (a.time_s <= b.time_s and a.energy_j <= b.energy_j
                and a.robustness >= b.robustness)
    better = a.time_s < b.time_s or a.energy_j < b.energy_j or a.robustness > b.robustness
    return no_worse and better


def _thin(entries: list[PlanEntry], k: int) -> list[PlanEntry]:
    """Drop duplicates and dominated plans, then keep ``k`` spread over (time, energy)."""
    unique: dict[Plan, PlanEntry] = {}
    for e in entries:
        unique.setdefault(e.plan, e)
    pool = [e for e in unique.values()
            if not any(_dominates(o, e) for o in unique.values() if o is not e)]
    first = entries[0] if entries[0] in pool else pool[0]
    chosen = [first]
    rest = [e for e in pool if e is not first]
    if not rest:
        return chosen
    t = np.log([e.time_s for e in pool])
    en = np.log([e.energy_j for e in pool])
    span_t, span_e = max(np.ptp(t), 1e-12), max(np.ptp(en), 1e-12)

    def point(e: PlanEntry) -> np.ndarray:
        return np.array([np.log(e.time_s) / span_t, np.log(e.energy_j) / span_e,
                         e.robustness])

    while rest and len(chosen) < k:
        far = max(rest, key=lambda e: min(np.linalg.norm(point(e) - point(c)) for c in chosen))
        chosen.append(far)
        rest.remove(far)
    return chosen


def plan_set(model: CostModel, mode: Mode | None = None, k: int = 8, state: State | None = None,
             space: SearchSpace | None = None, time_limit_s: float = 60.0,
             cache: bool = True) -> PlanSet:
    """The compact plan set of ``model``'s job.

    With ``cache`` (and no ``space`` given), a plan set solved before for the same job
    figures, request and code is read from the disk cache (:mod:`dora_rl.planner.disk`)
    instead of solved again, and a new one is stored there; ``solve_time_s`` is then the time
    this call took.

    Raises:
        InfeasibleError: no plan meets memory and QoE (from the optimum's solve).
    """
    start = time.perf_counter()
    state = state or model.nominal
    mode = mode or model.scenario.objective.mode
    key = disk.plan_set_key(model, mode, k, state, time_limit_s) \
        if cache and space is None else None
    stored = disk.load_entry(key, lambda data: _entries(data, model, state)) \
        if key is not None else None
    if stored:
        return PlanSet(job=model.tables.job.name, mode=mode, entries=stored,
                       solve_time_s=time.perf_counter() - start)
    result = _solve_plan_set(model, mode, k, state, space or SearchSpace.build(model, state),
                             time_limit_s, start)
    if key is not None:
        disk.store_entry(key, [{"plan": disk.plan_to_json(e.plan), "robustness": e.robustness,
                                "role": e.role} for e in result.entries])
    return result


def _entries(data: list[dict[str, Any]], model: CostModel, state: State) -> tuple[PlanEntry, ...]:
    """Stored plan-set entries with their figures recomputed in ``state``."""
    out = []
    for raw in data:
        plan = disk.plan_from_json(raw["plan"], model)
        out.append(PlanEntry(plan, model.evaluate(plan, state), float(raw["robustness"]),
                             str(raw["role"])))
    return tuple(out)


def _solve_plan_set(model: CostModel, mode: Mode, k: int, state: State, space: SearchSpace,
                    time_limit_s: float, start: float) -> PlanSet:
    """:func:`plan_set` by the solver."""
    optimum = solve(model, mode, state, space, time_limit_s=time_limit_s)
    other = solve(model, "time" if mode == "energy" else "energy", state, space,
                  time_limit_s=time_limit_s)
    fastest, greenest = (other, optimum) if mode == "energy" else (optimum, other)
    found: list[PartitionResult] = [optimum, other]
    n_eps = max(0, k - 2 - len(ROBUST_SCALES))
    lo, hi = fastest.time_s, greenest.time_s
    for i in range(1, n_eps + 1):
        eps = hi - (hi - lo) * i / (n_eps + 1)
        if eps <= lo * (1 + 1e-9):
            break
        # the least-energy plan found so far that meets this limit starts the solve
        seed = min((r for r in found if r.time_s <= eps), key=lambda r: r.energy_j,
                   default=fastest)
        try:
            found.append(solve(model, "energy", state, space, Limits(max_time_s=eps),
                               time_limit_s=time_limit_s, warm_start=seed.plan))
        except InfeasibleError:
            continue
    entries = [PlanEntry(r.plan, r.metrics, robustness(model, r.plan, state),
                         "optimum" if i == 0 else "pareto") for i, r in enumerate(found)]
    for scale in ROBUST_SCALES:
        faded = state.replace(link_scale=state.link_scale * scale)
        # the least-energy plan so far that still meets QoE at this fade starts the solve
        tolerant = [e for e in entries if e.robustness >= 1.0 - scale]
        start_plan = min(tolerant, key=lambda e: e.energy_j).plan if tolerant else None
        try:
            r = solve(model, "energy", faded, SearchSpace.build(model, faded),
                      time_limit_s=time_limit_s, warm_start=start_plan)
        except InfeasibleError:
            break
        metrics = model.evaluate(r.plan, state)
        entries.append(PlanEntry(r.plan, metrics, robustness(model, r.plan, state), "robust"))
    kept = _thin(entries, k)
    log.info("plan set of %s: %d plans in %.2f s", model.tables.job.name, len(kept),
             time.perf_counter() - start)
    return PlanSet(job=model.tables.job.name, mode=mode, entries=tuple(kept),
                   solve_time_s=time.perf_counter() - start)
