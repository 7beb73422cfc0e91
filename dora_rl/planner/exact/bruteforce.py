"""Exhaustive search over the same plan space as the partitioner, for tiny instances.

Enumerates every chain of contiguous stages, every assignment of groups (respecting how many
devices each class has) and every micro-batch count, scores all plans with the vectorised cost
model, and returns the best feasible one. Exponential: meant for tests on a few devices and
layers, where it certifies the mixed-integer program's optimum.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from dora_rl.costmodel import CostModel, Plan, State
from dora_rl.planner.exact.space import Group, SearchSpace


def _splits(n_layers: int, k: int) -> Iterator[tuple[int, ...]]:
    for cuts in itertools.combinations(range(1, n_layers), k - 1):
        yield (*cuts, n_layers)


def _group_chains(space: SearchSpace, k: int) -> Iterator[tuple[Group, ...]]:
    caps = [len(c) for c in space.classes]
    for chain in itertools.product(space.groups, repeat=k):
        used = [0] * len(caps)
        for g in chain:
            for cls, n in g.class_counts:
                used[cls] += n
        if all(u <= c for u, c in zip(used, caps, strict=True)):
            yield chain


def _concrete(space: SearchSpace, chain: tuple[Group, ...]) -> tuple[tuple[int, ...], ...]:
    taken = [0] * len(space.classes)
    out = []
    for g in chain:
        devices: list[int] = []
        for cls, n in g.class_counts:
            devices.extend(space.classes[cls][taken[cls]:taken[cls] + n])
            taken[cls] += n
        out.append(tuple(sorted(devices)))
    return tuple(out)


def all_plans(model: CostModel, space: SearchSpace) -> list[Plan]:
    """Every plan of the space."""
    n_layers = model.tables.n_layers
    plans: list[Plan] = []
    for k in range(1, space.max_stages + 1):
        chains = [_concrete(space, ch) for ch in _group_chains(space, k)]
        for ends in _splits(n_layers, k):
            for m in space.micro_batches:
                plans.extend(Plan(stage_end=ends, stage_devices=ch, micro_batches=m)
                             for ch in chains)
    return plans


def brute_force(model: CostModel, mode: str, state: State | None = None,
                space: SearchSpace | None = None) -> tuple[Plan, dict[str, Any]] | None:
    """The best feasible plan and its metrics, or None when no plan is feasible."""
    state = state or model.nominal
    space = space or SearchSpace.build(model, state)
    plans = all_plans(model, space)
    if not plans:
        return None
    metrics = model.evaluate_many(model.batch(plans, check=False), state)
    value = metrics.energy_j if mode == "energy" else metrics.latency_s
    budget = model.scenario.objective.energy_budget_j
    ok = metrics.feasible.copy()
    if mode == "time" and budget is not None:
        ok &= metrics.energy_j <= budget
    if not ok.any():
        return None
    best = int(np.argmin(np.where(ok, value, np.inf)))
    return plans[best], metrics.row(best)
