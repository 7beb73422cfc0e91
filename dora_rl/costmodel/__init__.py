"""The analytic cost model: compute, contended network transfers, energy, memory and QoE.

Pure NumPy over frozen dataclasses; imports no gymnasium, torch, simpy or solver.

Example:
    >>> from dora_rl.scenarios import load
    >>> model = CostModel(load("tiny"))
    >>> slow = model.evaluate(Plan.single(0, model.tables.n_layers))
    >>> round(slow["latency_s"] * 1e3, 1), slow["feasible"]  # misses its 50 ms target
    (80.0, False)
    >>> model.evaluate(Plan.single(2, model.tables.n_layers))["feasible"]
    True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from dora_rl.config import Job, Scenario
from dora_rl.costmodel.evaluate import evaluate_batch
from dora_rl.costmodel.evaluate_one import evaluate_one
from dora_rl.costmodel.metrics import Metrics
from dora_rl.costmodel.plan_spec import Plan, PlanBatch, PlanError, check_plan
from dora_rl.costmodel.state import State
from dora_rl.costmodel.tables import JobTables, build_tables


class CostModel:
    """Cost tables of one job, with helpers to evaluate plans in a state.

    Args:
        scenario: The validated scenario.
        job: Index (card order) or name of the job.
    """

    def __init__(self, scenario: Scenario, job: int | str = 0) -> None:
        index = job if isinstance(job, int) else [j.name for j in scenario.jobs].index(job)
        self.scenario = scenario
        self.tables: JobTables = build_tables(scenario, index)
        self.nominal = State.nominal(scenario)

    @property
    def job_index(self) -> int:
        """The job's index in card order."""
        return self.tables.job_index

    def with_job(self, job: Job) -> CostModel:
        """This job's cost model with ``job``'s figures in its place (the same model and
        devices), e.g. the job at another request rate; its memo starts empty."""
        twin = object.__new__(CostModel)
        twin.scenario, twin.nominal = self.scenario, self.nominal
        twin.tables = dataclasses.replace(self.tables, job=job)
        return twin

    def batch(self, plans: Sequence[Plan], check: bool = True) -> PlanBatch:
        """Pack plans into arrays, checking each first unless ``check`` is False."""
        if check:
            for plan in plans:
                check_plan(plan, self.tables)
        return PlanBatch.from_plans(plans, self.tables.n_devices, self.tables.n_layers)

    def evaluate_many(self, plans: Sequence[Plan] | PlanBatch,
                      state: State | None = None) -> Metrics:
        """Evaluate many plans at once (vectorised)."""
        batch = plans if isinstance(plans, PlanBatch) else self.batch(plans)
        return evaluate_batch(self.tables, batch, state or self.nominal)

    def evaluate(self, plan: Plan, state: State | None = None, check: bool = True,
                 memo: bool = True) -> dict[str, Any]:
        """Evaluate one plan (fast scalar path); same keys as :meth:`Metrics.row`. Results
        are memoised unless ``memo`` is False (see :func:`evaluate_one`)."""
        if check:
            check_plan(plan, self.tables)
        return evaluate_one(self.tables, plan, state or self.nominal, memo)


__all__ = ["CostModel", "JobTables", "Metrics", "Plan", "PlanBatch", "PlanError", "State",
           "build_tables", "check_plan", "evaluate_batch", "evaluate_one"]
