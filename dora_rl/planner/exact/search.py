"""Exact plan search: enumerate every plan whose lower bound can beat a level, score them all.

A depth-first search grows chains of stage candidates from layer 0, keeping the device count of
every class within what the space has, and cuts a branch as soon as the chain's cost so far
plus the least completion cost of :class:`~dora_rl.planner.exact.pathbound.PathBound` exceeds the
level (and, in energy mode, as soon as the time figure's bound exceeds the job's time limit).
Every complete chain is a plan; the cost model scores them all at once, and the best one that
meets memory, QoE and the limits is kept. Since no plan whose objective is at most the level is
cut, a best plan at or under the level is the optimum over the whole space; otherwise the
level rises (from just above the global bound towards the cutoff) and the search repeats.

The search stops with ``"budget"`` when a level admits more than ``max_plans`` chains or grows
extends more than :data:`MAX_NODES` chains; the partitioner then solves the mixed-integer program
over the candidates the bound keeps.

Example:
    >>> from dora_rl.scenarios import load
    >>> from dora_rl.costmodel import CostModel
    >>> from dora_rl.planner.exact.candidates import build_candidates
    >>> from dora_rl.planner.exact.formulation import Limits
    >>> from dora_rl.planner.exact.space import SearchSpace
    >>> model = CostModel(load("tiny"))
    >>> space = SearchSpace.build(model)
    >>> cands = build_candidates(model, space, model.nominal, 1)
    >>> r = search(model, space, cands, model.nominal, 1, "energy", Limits())
    >>> r.status, r.plan is not None
    ('optimal', True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from dora_rl.costmodel import CostModel, Plan, State
from dora_rl.planner.exact.bounds import admissible
from dora_rl.planner.exact.candidates import Candidates
from dora_rl.planner.exact.formulation import Limits
from dora_rl.planner.exact.lagrange import strongest
from dora_rl.planner.exact.pathbound import PathBound, time_limits
from dora_rl.planner.exact.space import SearchSpace

IntArray = NDArray[np.int64]
TOL = 1e-9
MAX_PLANS = 50_000
"""Chains one level may admit before the search hands over to the mixed-integer program."""
MAX_WORK = 60_000_000
"""Children one level may weigh before it hands over likewise."""
MAX_NODES = 50_000
"""Chains one level may extend (each costs a few numpy calls) before it hands over
likewise."""
FIRST_GAP = 0.01
"""The first level lies this fraction above the global bound; each next one four times as
far."""


@dataclass(frozen=True)
class SearchResult:
    """Outcome of :func:`search`.

    Attributes:
        status: ``"optimal"`` (``plan`` is the best plan with objective at most the cutoff),
            ``"none"`` (no plan meets the constraints at or under the cutoff) or ``"budget"``
            (a level admitted more than ``max_plans`` chains; ``plan`` is the best seen).
        plan: The best admissible plan found (None if none).
        objective: Its objective (inf if none).
        plans_scored: Chains scored by the cost model over all levels.
        level: The last level searched.
    """

    status: Literal["optimal", "none", "budget"]
    plan: Plan | None
    objective: float
    plans_scored: int
    level: float


class _Budget(Exception):
    """A level admits more chains than the budget."""


def chain_plan(space: SearchSpace, cands: Candidates, chain: IntArray | Sequence[int],
               m: int) -> Plan:
    """The plan of a chain of candidates: stages in layer order, concrete devices per class."""
    chosen = np.asarray(chain, dtype=np.int64)
    chosen = chosen[np.argsort(cands.first[chosen], kind="stable")]
    taken = [0] * len(space.classes)
    groups = []
    for ci in chosen:
        devices: list[int] = []
        for cls, count in space.groups[cands.group[ci]].class_counts:
            devices.extend(space.classes[cls][taken[cls]:taken[cls] + count])
            taken[cls] += count
        groups.append(tuple(sorted(devices)))
    return Plan(stage_end=tuple(int(cands.end[ci]) for ci in chosen),
                stage_devices=tuple(groups), micro_batches=m)


class _Walk:
    """The depth-first enumeration of one level."""

    def __init__(self, space: SearchSpace, cands: Candidates, n_layers: int, bound: PathBound,
                 timing: list[tuple[PathBound, float]], max_plans: int) -> None:
        self.space, self.c, self.bound, self.timing = space, cands, bound, timing
        self.max_plans = max_plans
        self.n_layers = n_layers
        self.by_first = [np.flatnonzero(cands.first == j) for j in range(self.n_layers)]
        self.use = bound.usage.use[cands.group]  # devices per class of each candidate
        self.caps = bound.usage.caps
        self.chains: list[tuple[int, ...]] = []
        self.work = self.nodes = 0
        self.next_level = np.inf
        """Least bound of a chain the level cut (inf: the level cut none)."""

    def run(self, level: float) -> list[tuple[int, ...]]:
        self.level, self.chains, self.work, self.nodes = level, [], 0, 0
        self.next_level = np.inf
        k = len(self.caps)
        self._grow(0, np.zeros(k, dtype=np.int64), 0.0, 0.0,
                   tuple((0.0, 0.0) for _ in self.timing), ())
        return self.chains

    def _cut(self, b: PathBound, idx: IntArray, used: IntArray, acc: float,
             floor: float) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        """Bounds of the children ``idx`` of a chain, their sums and their floors."""
        sums = acc + b.terms.weight[idx]
        floors = np.maximum(floor, b.terms.floor[idx])
        code = int(used @ b.usage.radix) + self.use[idx] @ b.usage.radix
        rest = b.completion(self.c.end[idx], code, floors)
        return sums + rest + b.terms.offset, sums, floors

    def _grow(self, layer: int, used: IntArray, acc: float, floor: float,
              t_accs: tuple[tuple[float, float], ...], chain: tuple[int, ...]) -> None:
        """Extend ``chain`` (ending at ``layer``); ``t_accs`` holds each time bound's sum and
        floor so far."""
        if len(chain) >= self.space.max_stages:
            return
        idx = self.by_first[layer]
        self.work += len(idx)
        self.nodes += 1
        if self.work > MAX_WORK or self.nodes > MAX_NODES:
            raise _Budget
        idx = idx[np.all(used[None, :] + self.use[idx] <= self.caps[None, :], axis=1)]
        if not len(idx):
            return
        lower, sums, floors = self._cut(self.bound, idx, used, acc, floor)
        fast = np.ones(len(idx), dtype=bool)
        timed = []
        for (bound, cap), (t_acc, t_floor) in zip(self.timing, t_accs, strict=True):
            t_lower, t_sums, t_floors = self._cut(bound, idx, used, t_acc, t_floor)
            fast &= t_lower <= _above(cap)
            timed.append((t_sums, t_floors))
        ok = fast & (lower <= _above(self.level))
        over = lower[fast & ~ok]
        if len(over):  # the least bound cut by the level: where the next level starts
            self.next_level = min(self.next_level, float(over.min()))
        for i in np.flatnonzero(ok):
            ci = int(idx[i])
            nxt = chain + (ci,)
            end = int(self.c.end[ci])
            if end == self.n_layers:
                self.chains.append(nxt)
                if len(self.chains) > self.max_plans:
                    raise _Budget
            else:
                self._grow(end, used + self.use[ci], float(sums[i]), float(floors[i]),
                           tuple((float(ts[i]), float(tf[i])) for ts, tf in timed), nxt)


def search(model: CostModel, space: SearchSpace, cands: Candidates, state: State, m: int,
           mode: str, limits: Limits, cutoff: float = np.inf,
           max_plans: int | None = None) -> SearchResult:
    """The best plan over ``cands`` with ``m`` micro-batches, if its objective is <= cutoff.

    ``max_plans`` defaults to :data:`MAX_PLANS`.
    """
    max_plans = MAX_PLANS if max_plans is None else max_plans
    bound = strongest(model, space, cands, state, m, mode, limits)
    if bound is None:
        return SearchResult("none", None, np.inf, 0, np.nan)
    timing = _timing(model, space, cands, state, m, limits) if mode == "energy" else []
    walk = _Walk(space, cands, model.tables.n_layers, bound, timing, max_plans)
    lowest = bound.global_bound()
    if not np.isfinite(lowest):  # no chain of candidates covers every layer
        return SearchResult("none", None, np.inf, 0, lowest)
    # the chain attaining the bound first: when it is admissible it is often the optimum
    # (many plans may tie with it, which no enumeration could afford to list)
    first = tuple(int(ci) for ci in bound.best_chain(cands))
    seen: set[tuple[int, ...]] = {first}
    best: tuple[float, Plan | None] = (np.inf, None)
    if first and len(first) <= space.max_stages:
        plan = chain_plan(space, cands, first, m)
        value = float(_score(model, [plan], state, mode, limits)[0])
        if value <= _above(lowest):
            return SearchResult("optimal", plan, value, 1, lowest)
        if np.isfinite(value):
            best = (value, plan)
    scored, gap = 1, FIRST_GAP
    level = min(cutoff, best[0], lowest + FIRST_GAP * max(abs(lowest), 1e-12))
    while True:
        try:
            chains = [ch for ch in walk.run(level) if ch not in seen]
        except _Budget:
            return SearchResult("budget", best[1], best[0], scored, level)
        seen.update(chains)
        if chains:
            plans = [chain_plan(space, cands, ch, m) for ch in chains]
            values = _score(model, plans, state, mode, limits)
            i = int(np.argmin(values))
            scored += len(plans)
            if values[i] < best[0]:
                best = (float(values[i]), plans[i])
        if best[0] <= _above(level):
            return SearchResult("optimal", best[1], best[0], scored, level)
        if level >= cutoff or not np.isfinite(walk.next_level):
            return SearchResult("none", None, np.inf, scored, level)
        # at least the next chain's bound, and a geometric step so that levels stay few
        gap *= 4.0
        level = min(cutoff, best[0],
                    max(walk.next_level, lowest + gap * max(abs(lowest), 1e-12)))


def _timing(model: CostModel, space: SearchSpace, cands: Candidates, state: State, m: int,
            limits: Limits) -> list[tuple[PathBound, float]]:
    """The bound and cap of every time figure the program caps (energy mode cuts by them)."""
    out = []
    for terms, cap in time_limits(model, cands, state, m, limits):
        # one band: a cut on feasibility, cheap to build, however loose on the cycle
        t_bound = PathBound.build(model, space, cands, state, m, "time", terms=terms,
                                  max_bands=1)
        if t_bound is not None:
            out.append((t_bound, cap))
    return out


def _score(model: CostModel, plans: list[Plan], state: State, mode: str,
           limits: Limits) -> NDArray[np.float64]:
    """Objective of each plan, inf where the program does not admit it."""
    metrics = model.evaluate_many(model.batch(plans, check=False), state)
    value = metrics.energy_j if mode == "energy" else metrics.latency_s
    return np.where(admissible(model, metrics, mode, limits), value, np.inf)


def _above(level: float) -> float:
    """``level`` with the tolerance a bound may exceed it by."""
    return level * (1 + TOL) + TOL * abs(level)
