"""Dora's heterogeneity-aware partitioner: the least-energy (or least-time) QoE-compliant plan.

:func:`solve` is the one entry point: it builds the stage candidates, formulates the
mixed-integer program of :mod:`dora_rl.planner.exact.formulation` for each micro-batch count, solves
it to proven optimality with HiGHS, turns the solution into a :class:`Plan`, and checks the plan
with the cost model (each layer once, memory, QoE, and the solver's objective equal to the cost
model's figure). Infeasible problems raise :class:`~dora_rl.errors.InfeasibleError` naming the
binding constraint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from dora_rl.costmodel import CostModel, Plan, State
from dora_rl.errors import DoraError, InfeasibleError
from dora_rl.planner.exact import bounds
from dora_rl.planner.exact.bounds import best_incumbent
from dora_rl.planner.exact.candidates import Candidates, build_candidates
from dora_rl.planner.exact.diagnose import explain_infeasible
from dora_rl.planner.exact.formulation import Formulation, Limits, _Parts
from dora_rl.planner.exact.lagrange import strongest
from dora_rl.planner.exact.pathbound import PathBound
from dora_rl.planner.exact.search import SearchResult, _above, chain_plan, search
from dora_rl.planner.exact.solver import NumericRangeError
from dora_rl.planner.exact.space import SearchSpace

log = logging.getLogger(__name__)
Mode = Literal["energy", "time"]


class HasMetrics:
    """The two figures every planner result is judged by, read from its ``metrics``."""

    metrics: dict[str, Any]

    @property
    def time_s(self) -> float:
        """The job's time figure (request latency, LLM request time or iteration time)."""
        return float(self.metrics["latency_s"])

    @property
    def energy_j(self) -> float:
        """Energy per unit of work."""
        return float(self.metrics["energy_j"])


@dataclass(frozen=True)
class PartitionResult(HasMetrics):
    """The optimum of one mode for one job.

    Attributes:
        plan: The optimal plan (concrete device indices).
        metrics: The cost model's evaluation of it (``CostModel.evaluate``).
        objective: The solver's objective (energy per unit in J, or time in s).
        mode: ``"energy"`` or ``"time"``.
        status: Solver status (``"optimal"``).
        solve_time_s: Wall time of candidate building plus every solve.
        n_candidates: Stage candidates in the largest program.
    """

    plan: Plan
    metrics: dict[str, Any]
    objective: float
    mode: Mode
    status: str
    solve_time_s: float
    n_candidates: int


def objective_value(model: CostModel, metrics: dict[str, Any], mode: Mode) -> float:
    """The figure each mode minimises, read from a cost-model evaluation."""
    return float(metrics["energy_j"] if mode == "energy" else metrics["latency_s"])


SKIP_BANDS = 12
"""Bands of the coarse bound that rules a micro-batch count out (:func:`_beaten`)."""


def solve(model: CostModel, mode: Mode | None = None, state: State | None = None,
          space: SearchSpace | None = None, limits: Limits | None = None,
          time_limit_s: float = 60.0, warm_start: Plan | None = None) -> PartitionResult:
    """The optimal plan of ``model``'s job in ``state`` (nominal by default).

    ``warm_start`` (e.g. the plan of the previous state) is handed to the solver as its first
    incumbent; the cheap incumbent of :func:`~dora_rl.planner.exact.bounds.best_incumbent` is used
    otherwise. Neither changes the optimum, only how fast it is proven.

    Raises:
        InfeasibleError: nothing meets memory and QoE; the message names the binding
            constraint in words.
    """
    start = time.perf_counter()
    state = state or model.nominal
    limits = limits or Limits()
    mode = mode or model.scenario.objective.mode
    space = space or SearchSpace.build(model, state)
    if not space.groups:
        raise InfeasibleError(f"job {model.tables.job.name!r}: no usable device can run "
                              f"model {model.tables.job.model!r}")
    best: tuple[float, Plan, str] | None = None
    n_cands = 0
    # more micro-batches usually shorten the pipeline fill: try them first for a strong bound
    for m in sorted(space.micro_batches, reverse=True):
        cands = build_candidates(model, space, state, m)
        if best is not None and _beaten(model, space, cands, state, m, mode, limits, best[0]):
            continue
        # the first count's cheap plan gives the search a level; later counts start from the
        # best plan found, which their own cheap plans seldom beat
        incumbent, inc_plan, start_plan = _incumbent(model, space, state, m, mode, limits,
                                                     warm_start, cheap=best is None)
        if best is not None:
            incumbent = min(incumbent, best[0])
        cands = cands.subset(bounds.reduce(model, cands, m, mode, incumbent, limits))
        n_cands = max(n_cands, len(cands))
        if not len(cands):
            continue
        found = search(model, space, cands, state, m, mode, limits, cutoff=incumbent)
        if found.status == "budget":
            found = _solve_program(model, space, cands, state, m, mode, limits, time_limit_s,
                                   found, start_plan, incumbent)
        if found.plan is not None and (best is None
                                       or found.objective < best[0] - 1e-12 * abs(best[0])):
            best = (found.objective, found.plan, "optimal")
        elif best is None and inc_plan is not None:
            # nothing in the candidate space beats this incumbent: it is the optimum
            best = (incumbent, inc_plan, "optimal")
    if best is None:
        raise InfeasibleError(explain_infeasible(model, state, space, limits, mode, solve))
    objective, plan, status = best
    metrics = model.evaluate(plan, state)
    _verify(model, plan, metrics, objective, mode, limits)
    return PartitionResult(plan=plan, metrics=metrics, objective=objective, mode=mode,
                           status=status, solve_time_s=time.perf_counter() - start,
                           n_candidates=n_cands)


def _incumbent(model: CostModel, space: SearchSpace, state: State, m: int, mode: Mode,
               limits: Limits, warm_start: Plan | None, cheap: bool = True
               ) -> tuple[float, Plan | None, Plan | None]:
    """The best cheap plan with ``m`` micro-batches (with ``cheap``; or ``warm_start`` when it
    is better): its objective, the plan, and the plan to warm-start a program from."""
    incumbent, inc_plan = np.inf, None
    if cheap and not limits.ignore_qoe:
        incumbent, inc_plan = best_incumbent(model, space, state, m, mode, limits)
    start_plan = inc_plan
    if warm_start is not None and warm_start.micro_batches == m:
        start_plan = warm_start
        value = _value_of(model, warm_start, state, mode, limits)
        if value < incumbent:
            incumbent, inc_plan = value, warm_start
    return incumbent, inc_plan, start_plan


def _beaten(model: CostModel, space: SearchSpace, cands: Candidates, state: State, m: int,
            mode: Mode, limits: Limits, best: float) -> bool:
    """Whether no plan with ``m`` micro-batches can beat ``best``: a coarse path bound over
    its candidates (:data:`SKIP_BANDS` bands, cheap to build) is above it, so the count needs
    no incumbent and no search."""
    bound = PathBound.build(model, space, cands, state, m, mode, max_bands=SKIP_BANDS)
    return bound is None or bound.global_bound() > _above(best)


def _value_of(model: CostModel, plan: Plan, state: State, mode: Mode, limits: Limits) -> float:
    """The objective of ``plan`` if the program admits it in ``state`` (inf otherwise)."""
    try:
        metrics = model.evaluate_many(model.batch([plan], check=False), state)
    except DoraError:  # a plan of devices that no longer exist
        return np.inf
    if not bounds.admissible(model, metrics, mode, limits)[0]:
        return np.inf
    return float(metrics.energy_j[0] if mode == "energy" else metrics.latency_s[0])


def formulate(model: CostModel, space: SearchSpace, cands: Candidates, state: State, m: int,
              mode: Mode, limits: Limits) -> Formulation:
    """Build the program for one micro-batch count
    (see :mod:`~dora_rl.planner.exact.formulation`)."""
    from dora_rl.planner.exact.workloads import add_workload

    parts = _Parts(model, space, cands, state, m)
    parts.chain()
    parts.boundaries()
    form = add_workload(parts, mode, limits)
    return form


def extract_plan(space: SearchSpace, cands: Candidates, x: np.ndarray, m: int) -> Plan:
    """The plan of a solution: chosen candidates in layer order, concrete devices per class."""
    return chain_plan(space, cands, np.flatnonzero(x > 0.5), m)


def _solve_program(model: CostModel, space: SearchSpace, cands: Candidates, state: State,
                   m: int, mode: Mode, limits: Limits, time_limit_s: float,
                   seen: SearchResult, start_plan: Plan | None,
                   cutoff: float) -> SearchResult:
    """The mixed-integer program over the candidates the path bound keeps, for a search that
    ran out of budget; ``seen`` is the best plan the search scored."""
    level = min(cutoff, seen.objective)
    bound = strongest(model, space, cands, state, m, mode, limits)
    if bound is not None and np.isfinite(level):
        cands = cands.subset(bound.through(cands) <= level * (1 + 1e-9) + 1e-12)
    if seen.plan is not None:
        start_plan = seen.plan
    if not len(cands):
        return seen
    form = formulate(model, space, cands, state, m, mode, limits)
    try:
        res = form.builder.solve(time_limit_s=time_limit_s,
                                 warm_start=warm_start_of(space, cands, form, start_plan),
                                 cutoff=level * (1 + 1e-9) if np.isfinite(level) else None)
    except NumericRangeError as error:
        raise InfeasibleError(f"job {model.tables.job.name!r}: {error}; the card holds an "
                              "extreme value (link_mbps, activation_bytes, peak_flops, "
                              "token counts or QoE targets)") from None
    if res.x is None:
        return seen if seen.plan is not None else SearchResult("none", None, np.inf,
                                                                seen.plans_scored, level)
    if res.status != "optimal":
        raise DoraError(f"job {model.tables.job.name!r}: solver stopped with status "
                        f"{res.status!r} after {res.solve_time_s:.1f} s (gap "
                        f"{res.mip_gap:.2%}); raise the time limit")
    plan = extract_plan(space, cands, res.x[form.x], m)
    if seen.plan is not None and seen.objective <= res.objective:
        return seen
    return SearchResult("optimal", plan, float(res.objective), seen.plans_scored, level)


def _verify(model: CostModel, plan: Plan, metrics: dict[str, Any], objective: float,
            mode: Mode, limits: Limits) -> None:
    """Every returned plan is checked by the cost model; a mismatch is a bug, not user error."""
    ok = metrics["memory_ok"] and metrics["usable_ok"] if limits.ignore_qoe else metrics["feasible"]
    if not ok:
        raise AssertionError(f"planner returned a plan the cost model rejects: {plan} "
                             f"(slack {metrics['qoe_slack']}, memory_ok {metrics['memory_ok']})")
    value = objective_value(model, metrics, mode)
    if not np.isclose(value, objective, rtol=1e-6, atol=1e-12):
        raise AssertionError(f"solver objective {objective!r} != cost model {value!r} for {plan}")
    if limits.max_time_s is not None and metrics["latency_s"] > limits.max_time_s * (1 + 1e-6):
        raise AssertionError(f"plan exceeds the time limit {limits.max_time_s}: {plan}")


def warm_start_of(space: SearchSpace, cands: Candidates, form: Formulation,
                  plan: Plan | None) -> tuple[np.ndarray, np.ndarray] | None:
    """Column values fixing ``form``'s candidates to ``plan`` (None if it is not expressible)."""
    if plan is None:
        return None
    by_counts = {tuple(sorted(g.class_counts)): gi for gi, g in enumerate(space.groups)}
    cls_of = {d: ci for ci, cls in enumerate(space.classes) for d in cls}
    chosen = []
    for k, group in enumerate(plan.stage_devices):
        counts: dict[int, int] = {}
        for d in group:
            if d not in cls_of:
                return None
            counts[cls_of[d]] = counts.get(cls_of[d], 0) + 1
        gi = by_counts.get(tuple(sorted(counts.items())))
        first, end = plan.stage_layers(k)
        hit = np.flatnonzero((cands.first == first) & (cands.end == end) & (cands.group == gi))
        if gi is None or not len(hit):
            return None
        chosen.append(int(hit[0]))
    values = np.zeros(len(form.x))
    values[chosen] = 1.0
    return form.x, values
