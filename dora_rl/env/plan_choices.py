"""Candidate plans per job, from the planner, cached by the set of present devices.

The controller chooses among at most K plans per job. With every device present they are the
job's plan set (:func:`dora_rl.planner.planset.plan_set`). When a device leaves or returns,
the candidates for the new device set are the plans of that set that only use present
devices, plus the planner's optimum for exactly the present devices (one solve, cached), so an
episode pays the solver once per device set it meets and never a whole plan set mid-episode.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from dora_rl.costmodel import CostModel, Plan, State
from dora_rl.errors import InfeasibleError
from dora_rl.planner import disk
from dora_rl.planner.exact.partition import solve
from dora_rl.planner.planset import plan_set
from dora_rl.world.slack import own_demand

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
        self._cache: dict[bytes, list[JobCandidates]] = {}
        self.solves = 0
        self.unplannable: dict[str, str] = {}
        """Per job with no plan at all on every device: the planner's reason, in words."""

    def get(self, usable: np.ndarray | list[bool]) -> list[JobCandidates]:
        """Candidates of every job with exactly the ``usable`` devices present."""
        key = bytes(usable) if isinstance(usable, list) else \
            np.asarray(usable, dtype=bool).tobytes()
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        everyone = np.ones(len(usable), dtype=bool)
        full = everyone.tobytes()
        if full not in self._cache:
            self._cache[full] = self._stored(full) or self._keep(
                full, self._joint([self._plan(m, everyone) for m in self.models]))
        if key != full:
            present = np.asarray(usable, dtype=bool)
            self._cache[key] = self._stored(key) or self._keep(
                key, [self._subset(m, present, c)
                      for m, c in zip(self.models, self._cache[full], strict=True)])
        return self._cache[key]

    def _stored(self, usable: bytes) -> list[JobCandidates] | None:
        """The candidates of ``usable`` from the disk cache (:mod:`dora_rl.planner.disk`),
        with the planner's reasons for jobs no plan fits."""
        def parse(data: dict[str, Any]) -> list[JobCandidates]:
            out = []
            for model, job in zip(self.models, data["jobs"], strict=True):
                plans = tuple(disk.plan_from_json(p, model) for p in job["plans"])
                energy = tuple(float(e) for e in job["energy_j"])
                if len(plans) != len(energy) or len(plans) > self.k:
                    raise ValueError("plans and energies do not match")
                out.append(JobCandidates(plans=plans, energy_j=energy))
            self.unplannable.update({str(k): str(v) for k, v in data["unplannable"].items()})
            return out

        return disk.load_entry(disk.candidates_key(self.models, self.k, usable), parse)

    def _keep(self, usable: bytes, cands: list[JobCandidates]) -> list[JobCandidates]:
        """Store ``cands`` of ``usable`` in the disk cache and return them."""
        disk.store_entry(disk.candidates_key(self.models, self.k, usable), {
            "jobs": [{"plans": [disk.plan_to_json(p) for p in c.plans],
                      "energy_j": list(c.energy_j)} for c in cands],
            "unplannable": self.unplannable})
        return cands

    def require_plannable(self, source: str) -> None:
        """Raise unless every job has a plan (QoE aside) with every device present.

        The one check behind ``plan``, ``sim``, ``bench`` and ``train`` agreeing on a card
        whose model fits nowhere: the same line, before any simulation or training.

        Raises:
            InfeasibleError: ``<card>: job 'x': <the binding constraint>``.
        """
        n_devices = self.models[0].tables.n_devices
        cands = self.get(np.ones(n_devices, dtype=bool))
        for model, cand in zip(self.models, cands, strict=True):
            name = model.tables.job.name
            if not cand.plans:
                reason = self.unplannable.get(name, f"job {name!r}: no plan fits")
                raise InfeasibleError(f"{source}: {reason}")

    def _joint(self, cands: list[JobCandidates]) -> list[JobCandidates]:
        """Put first, for every job, the plan of the least-energy *combination* that fits the
        shared devices and media with every QoE met (``compose.choose_plans``): each job's
        own optimum may pile several jobs onto the same cheap device."""
        if len(cands) < 2 or any(not c.plans for c in cands):
            return cands
        from dora_rl.planner.compose import choose_plans
        from dora_rl.planner.planset import PlanEntry, PlanSet

        sets = []
        for model, cand in zip(self.models, cands, strict=True):
            entries = [PlanEntry(plan=plan, metrics=model.evaluate(plan), robustness=0.0,
                                 role="candidate") for plan in cand.plans]
            sets.append(PlanSet(job=model.tables.job.name, mode="energy",
                                entries=tuple(entries), solve_time_s=0.0))
        try:
            chosen = choose_plans(self.models, sets).plans
        except InfeasibleError:
            log.info("no combination of the plan sets fits together; planning jobs in turn")
            return self._in_turn(cands)
        out = []
        for cand, plan in zip(cands, chosen, strict=True):
            i = cand.plans.index(plan)
            order = [i] + [n for n in range(len(cand.plans)) if n != i]
            out.append(JobCandidates(plans=tuple(cand.plans[n] for n in order),
                                     energy_j=tuple(cand.energy_j[n] for n in order)))
        return out

    def _in_turn(self, cands: list[JobCandidates]) -> list[JobCandidates]:
        """Greedy joint plan: each job (card order) gets the planner's optimum on the devices
        the earlier jobs left free (or, if nothing fits there, sharing them with their demand
        as background load), put first among its candidates."""
        n_dev = self.models[0].tables.n_devices
        load, taken = np.zeros(n_dev), np.zeros(n_dev, dtype=bool)
        out = []
        for model, cand in zip(self.models, cands, strict=True):
            free = model.nominal.replace(available=model.nominal.available & ~taken)
            shared = model.nominal.replace(load=np.minimum(load, 0.95))
            best = None
            for state in (free, shared):
                self.solves += 1
                try:
                    best = solve(model, None, state)
                    break
                except InfeasibleError:
                    continue
            if best is None:
                out.append(cand)
                continue
            rest = [(p, e) for p, e in zip(cand.plans, cand.energy_j, strict=True)
                    if p != best.plan][: self.k - 1]
            out.append(JobCandidates(plans=(best.plan, *(p for p, _ in rest)),
                                     energy_j=(best.energy_j, *(e for _, e in rest))))
            load = load + np.array(own_demand(model.evaluate(best.plan, state), state))
            taken[list(best.plan.devices)] = True
        return out

    def _subset(self, model: CostModel, usable: np.ndarray,
                full: JobCandidates) -> JobCandidates:
        kept = [(p, e) for p, e in zip(full.plans, full.energy_j, strict=True)
                if all(usable[d] for d in p.devices)]
        state = model.nominal.replace(available=usable)
        self.solves += 1
        try:
            # warm-started from the plan that served before the device left
            best = solve(model, None, state, warm_start=full.plans[0] if full.plans else None)
            extra = [(best.plan, best.energy_j)]
        except InfeasibleError:
            plans, energy, _ = self._fallback(model, state)
            extra = list(zip(plans, energy, strict=True))
        merged = extra + [pe for pe in kept if pe[0] not in {p for p, _ in extra}]
        return JobCandidates(plans=tuple(p for p, _ in merged[: self.k]),
                             energy_j=tuple(e for _, e in merged[: self.k]))

    def _plan(self, model: CostModel, usable: np.ndarray) -> JobCandidates:
        state: State = model.nominal.replace(available=usable)
        self.solves += 1
        try:
            entries = plan_set(model, k=self.k, state=state).entries
            plans = [e.plan for e in entries]
            energy = [e.energy_j for e in entries]
        except InfeasibleError:
            plans, energy, why = self._fallback(model, state)
            if not plans and usable.all():
                self.unplannable[model.tables.job.name] = why
        log.info("candidates of %s with %d devices: %d plans", model.tables.job.name,
                 int(usable.sum()), len(plans))
        return JobCandidates(plans=tuple(plans[: self.k]), energy_j=tuple(energy[: self.k]))

    @staticmethod
    def _fallback(model: CostModel, state: State) -> tuple[list[Plan], list[float], str]:
        """No plan meets QoE with these devices: keep the fastest that fits memory (none, and
        the planner's reason, when nothing fits)."""
        from dora_rl.planner.exact.formulation import Limits

        try:
            r = solve(model, "time", state, limits=Limits(ignore_qoe=True))
        except InfeasibleError as error:
            return [], [], str(error)
        return [r.plan], [r.energy_j], ""


_SHARED: dict[int, tuple[object, dict[int, CandidateCache]]] = {}


def shared_cache(scenario: object, models: list[CostModel], k: int) -> CandidateCache:
    """One cache per (scenario object, K) in this process, so several envs of one scenario
    (training envs, the validation env, controllers' envs) plan each device set once.

    The scenario is kept alive with its caches, so its ``id`` is never reused.

    Raises:
        InfeasibleError: some job has no plan at all with every device present (see
            :meth:`CandidateCache.require_plannable`).
    """
    entry = _SHARED.setdefault(id(scenario), (scenario, {}))
    caches = entry[1]
    if k not in caches:
        caches[k] = CandidateCache(models, k)
    caches[k].require_plannable(str(getattr(scenario, "source", "") or "<scenario>"))
    return caches[k]
