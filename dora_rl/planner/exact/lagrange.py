"""A tighter path bound on energy when a time cap binds: the Lagrangian relaxation of the cap.

Every admissible plan meets its time cap, so for any price ``lam >= 0`` on time,

    energy(plan) >= sum over the chain of (energy weight + lam * time weight) - lam * cap,

a shortest path again (:class:`~dora_rl.planner.exact.pathbound.PathBound`). The bound is concave in
``lam``; the price is set by bisection on the sign of its slope, the time of the chain that
attains the bound minus the cap. Where the cheapest chain is too slow (a large model on a few
fast devices under a latency target) this closes most of the gap the plain bound leaves.
Inference and LLM jobs only: a training job's cycle term makes the bound non-additive.

Example:
    >>> from dora_rl.scenarios import load
    >>> from dora_rl.costmodel import CostModel
    >>> from dora_rl.planner.exact.candidates import build_candidates
    >>> from dora_rl.planner.exact.formulation import Limits
    >>> from dora_rl.planner.exact.space import SearchSpace
    >>> model = CostModel(load("tiny"))
    >>> space = SearchSpace.build(model)
    >>> cands = build_candidates(model, space, model.nominal, 1)
    >>> plain = PathBound.build(model, space, cands, model.nominal, 1, "energy")
    >>> strong = strongest(model, space, cands, model.nominal, 1, "energy", Limits())
    >>> strong.global_bound() >= plain.global_bound()
    True
"""

from __future__ import annotations

import numpy as np

from dora_rl.costmodel import CostModel, State
from dora_rl.planner.exact.bounds import time_caps
from dora_rl.planner.exact.candidates import Candidates
from dora_rl.planner.exact.formulation import Limits
from dora_rl.planner.exact.pathbound import PathBound, Terms, objective_terms, time_terms
from dora_rl.planner.exact.space import SearchSpace

BISECTIONS = 16
"""Halvings of the price interval once a price that makes the best chain fast enough is found."""


def strongest(model: CostModel, space: SearchSpace, c: Candidates, state: State, m: int,
              mode: str, limits: Limits) -> PathBound | None:
    """The tightest path bound on ``mode``'s objective: the plain one, or in energy mode
    under a finite time cap the best Lagrangian one (None when there are no candidates)."""
    plain = PathBound.build(model, space, c, state, m, mode)
    cap = time_caps(model, m, limits)
    if plain is None or mode != "energy" or not np.isfinite(cap) or cap <= 0:
        return plain
    energy = objective_terms(model, c, state, m, mode)
    timing = time_terms(model, c, state, m)
    if energy.slope > 0 or timing.slope > 0:
        return plain

    def priced(lam: float) -> tuple[PathBound | None, float]:
        """The bound at price ``lam`` and its slope (the best chain's time minus the cap)."""
        terms = Terms(energy.weight + lam * timing.weight, energy.floor, 0.0,
                      energy.offset - lam * cap)
        bound = PathBound.build(model, space, c, state, m, mode, terms=terms)
        if bound is None:
            return None, -1.0
        chain = bound.best_chain(c)
        return bound, float(timing.weight[chain].sum()) - cap if len(chain) else -1.0

    best, slope = plain, priced(0.0)[1]
    if slope <= 0:  # the cheapest chain already meets the cap: no price helps
        return plain
    scale = abs(plain.global_bound()) / cap + 1e-12
    lo, hi = 0.0, scale
    for _ in range(60):  # a price high enough that the best chain meets the cap
        bound, slope = priced(hi)
        if bound is not None and bound.global_bound() > best.global_bound():
            best = bound
        if slope <= 0:
            break
        lo, hi = hi, 2.0 * hi
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        bound, slope = priced(mid)
        if bound is not None and bound.global_bound() > best.global_bound():
            best = bound
        lo, hi = (mid, hi) if slope > 0 else (lo, mid)
    return best
