"""Candidate plans per job, from the planner, cached by the set of present devices.

The controller chooses among at most K plans per job. They are the job's plan set
(:func:`dora_rl.planner.planset.plan_set`) for the devices present; when a device leaves or
returns the set is recomputed once and cached, so an episode pays the solver only the first
time it meets a device set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from dora_rl.costmodel import CostModel, Plan, State
from dora_rl.errors import InfeasibleError
from dora_rl.planner.partition import solve
from dora_rl.planner.planset import plan_set

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobCandidates:
    """Up to K plans of one job for one device set (may be empty: nothing fits)."""

    plans: tuple[Plan, ...]
    energy_j: tuple[float, ...]
    """Nominal energy per unit of each plan (the rule-based adapter ranks by it)."""


class CandidateCache:
    """Plan sets of every job, keyed by the tuple of usable devices."""

    def __init__(self, models: list[CostModel], k: int) -> None:
        self.models = models
        self.k = k
        self._cache: dict[tuple[bool, ...], list[JobCandidates]] = {}
        self.solves = 0

    def get(self, usable: np.ndarray) -> list[JobCandidates]:
        """Candidates of every job with exactly the ``usable`` devices present."""
        key = tuple(bool(u) for u in usable)
        if key not in self._cache:
            self._cache[key] = [self._plan(m, np.array(key)) for m in self.models]
        return self._cache[key]

    def _plan(self, model: CostModel, usable: np.ndarray) -> JobCandidates:
        state: State = model.nominal.replace(available=usable)
        self.solves += 1
        try:
            entries = plan_set(model, k=self.k, state=state).entries
            plans = [e.plan for e in entries]
            energy = [e.energy_j for e in entries]
        except InfeasibleError:
            plans, energy = self._fallback(model, state)
        log.info("candidates of %s with %d devices: %d plans", model.tables.job.name,
                 int(usable.sum()), len(plans))
        return JobCandidates(plans=tuple(plans[: self.k]), energy_j=tuple(energy[: self.k]))

    @staticmethod
    def _fallback(model: CostModel, state: State) -> tuple[list[Plan], list[float]]:
        """No plan meets QoE with these devices: keep the fastest that fits memory."""
        from dora_rl.planner.formulation import Limits

        try:
            r = solve(model, "time", state, limits=Limits(ignore_qoe=True))
        except InfeasibleError:
            return [], []
        return [r.plan], [r.energy_j]
