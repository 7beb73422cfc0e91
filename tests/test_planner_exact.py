"""The partitioner's optimum equals brute force, and its objective equals the cost model."""

from __future__ import annotations

import numpy as np
import pytest

from dora_rl.costmodel import CostModel
from dora_rl.errors import InfeasibleError
from dora_rl.planner.bruteforce import brute_force
from dora_rl.planner.partition import solve
from dora_rl.planner.space import SearchSpace
from dora_rl.synthetic import random_scenario

WORKLOADS = ("inference", "llm_inference", "training")


def _instances(seed: int, count: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    for i in range(count):
        workload = WORKLOADS[i % 3]
        scenario = random_scenario(rng, int(rng.integers(1, 5)), int(rng.integers(1, 9)),
                                   workload, unused_off=bool(rng.random() < 0.3))  # type: ignore[arg-type]
        yield i, CostModel(scenario), ("energy", "time")[int(rng.integers(0, 2))]


@pytest.mark.parametrize("seed", [101, 202, 303, 404])
def test_milp_optimum_equals_brute_force_on_random_tiny_instances(seed: int) -> None:
    checked = feasible = 0
    for i, model, mode in _instances(seed, 60):
        space = SearchSpace.build(model, max_stages=4)
        best = brute_force(model, mode, space=space)
        try:
            result = solve(model, mode, space=space)
        except InfeasibleError:
            assert best is None, f"instance {i}: MILP infeasible, brute force found {best}"
            checked += 1
            continue
        assert best is not None, f"instance {i}: brute force found nothing, MILP {result.plan}"
        expected = best[1]["energy_j"] if mode == "energy" else best[1]["latency_s"]
        assert result.objective == pytest.approx(expected, rel=1e-6), (i, best[0], result.plan)
        checked += 1
        feasible += 1
    assert checked == 60 and feasible >= 30


def test_solver_objective_equals_cost_model_of_returned_plan() -> None:
    for _, model, mode in _instances(7, 30):
        try:
            result = solve(model, mode)
        except InfeasibleError:
            continue
        again = model.evaluate(result.plan)
        value = again["energy_j"] if mode == "energy" else again["latency_s"]
        assert result.objective == pytest.approx(value, rel=1e-9)
        assert again["feasible"]


def test_milp_matches_brute_force_where_the_1f1b_round_trip_binds() -> None:
    """Training optima whose steady-state period is the round trip / (K - k) rather than the
    slowest stage (slow links, several micro-batches): the program's linearised bound must
    give brute force's optimum exactly."""
    rng = np.random.default_rng(17)
    binding = 0
    for _ in range(400):
        scenario = random_scenario(rng, int(rng.integers(2, 5)), int(rng.integers(2, 9)),
                                   "training")
        model = CostModel(scenario)
        space = SearchSpace.build(model, max_stages=4)
        for mode in ("energy", "time"):
            best = brute_force(model, mode, space=space)
            if best is None:
                continue
            m = best[1]
            finite = [s for s in m["stage_s"] if s > 0]
            if not (best[0].micro_batches > 1 and m["period_s"] > 1.01 * max(finite)):
                continue
            binding += 1
            result = solve(model, mode, space=space)
            expected = m["energy_j"] if mode == "energy" else m["latency_s"]
            assert result.objective == pytest.approx(expected, rel=1e-6), (best[0], result.plan)
        if binding >= 4:
            break
    assert binding >= 4
