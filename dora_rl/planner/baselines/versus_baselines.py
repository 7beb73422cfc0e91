"""Dora's optimum against a baseline planner's plan, both judged by the cost model.

Two comparisons per job, shared by ``experiments/bench_planner.py`` (every baseline) and
``experiments/headline.py`` (the throughput-first baseline, next to the paper's figures):

- **energy**: the least-energy QoE-compliant plan (:func:`~dora_rl.planner.exact.partition.solve`
  in energy mode) against the baseline's plan, per unit of work (request or iteration);
  ``energy_saving_pct = 100 * (1 - E_dora / E_baseline)``;
- **time**: the least-time QoE-compliant plan (time mode) against the baseline's plan;
  ``speedup = T_baseline / T_dora`` with ``T`` the job's time figure (request latency, LLM
  request time or training iteration time).

A baseline plan that misses QoE or memory is still compared (it is what that planner would
run) and flagged by ``baseline_feasible`` and ``baseline_verdict``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dora_rl.costmodel import CostModel, Plan, State
from dora_rl.errors import InfeasibleError
from dora_rl.planner.baselines.baseline_planners import BASELINES, Baseline
from dora_rl.planner.exact.partition import PartitionResult, solve


@dataclass(frozen=True)
class Optima:
    """Dora's two optima of one job.

    Attributes:
        energy: The least-energy QoE-compliant plan.
        time: The least-time QoE-compliant plan.
    """

    energy: PartitionResult
    time: PartitionResult


@dataclass(frozen=True)
class Versus:
    """Dora's optima against one baseline's plan for one job.

    Attributes:
        baseline: The baseline's name.
        plan: Its plan (None if it has none: ``reason`` says why).
        metrics: The cost model's figures of ``plan``.
        reason: Why the baseline has no plan, else None.
        energy_j: Energy per unit of Dora's least-energy plan.
        time_s: Time figure of Dora's least-time plan.
    """

    baseline: str
    plan: Plan | None
    metrics: dict[str, Any] | None
    reason: str | None
    energy_j: float
    time_s: float

    @property
    def baseline_energy_j(self) -> float:
        """Energy per unit of the baseline's plan (nan without a plan)."""
        return float(self.metrics["energy_j"]) if self.metrics is not None else float("nan")

    @property
    def baseline_time_s(self) -> float:
        """Time figure of the baseline's plan (nan without a plan)."""
        return float(self.metrics["latency_s"]) if self.metrics is not None else float("nan")

    @property
    def baseline_feasible(self) -> bool:
        """Whether the baseline's plan meets memory and every QoE target."""
        return self.metrics is not None and bool(self.metrics["feasible"])

    @property
    def baseline_verdict(self) -> str:
        """``meets QoE``, ``does not fit (...)``, ``misses memory`` or ``misses <targets>``."""
        if self.metrics is None:
            return f"does not fit ({self.reason})"
        if self.metrics["feasible"]:
            return "meets QoE"
        if not self.metrics["memory_ok"]:
            return "misses memory"
        missed = [k for k, v in self.metrics["qoe_slack"].items() if not v >= 0]
        return "misses " + ", ".join(missed) if missed else "misses QoE"

    @property
    def energy_saving_pct(self) -> float:
        """``100 * (1 - E_dora / E_baseline)``: positive when Dora uses less energy."""
        return 100.0 * (1.0 - self.energy_j / self.baseline_energy_j)

    @property
    def speedup(self) -> float:
        """``T_baseline / T_dora`` of the least-time plan."""
        return self.baseline_time_s / self.time_s


def optima(model: CostModel, state: State | None = None,
           time_limit_s: float = 60.0) -> Optima:
    """Both optima of ``model``'s job.

    Raises:
        InfeasibleError: no plan meets memory and QoE.
    """
    return Optima(energy=solve(model, "energy", state, time_limit_s=time_limit_s),
                  time=solve(model, "time", state, time_limit_s=time_limit_s))


def versus(model: CostModel, best: Optima, name: str, baseline: Baseline,
           state: State | None = None) -> Versus:
    """Dora's optima against the plan of ``baseline``."""
    try:
        plan = baseline(model, state)
    except InfeasibleError as error:
        return Versus(name, None, None, str(error), best.energy.energy_j, best.time.time_s)
    return Versus(name, plan, model.evaluate(plan, state), None, best.energy.energy_j,
                  best.time.time_s)


def versus_all(model: CostModel, best: Optima,
               baselines: Mapping[str, Baseline] = BASELINES,
               state: State | None = None) -> list[Versus]:
    """Dora's optima against every baseline of ``baselines`` (default: all four)."""
    return [versus(model, best, name, fn, state) for name, fn in baselines.items()]


__all__ = ["Optima", "Versus", "optima", "versus", "versus_all"]
