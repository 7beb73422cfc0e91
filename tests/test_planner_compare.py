"""Dora's optima against a baseline's plan (the comparison behind the headline figures)."""

from __future__ import annotations

import math

import pytest

from dora_rl.costmodel import CostModel
from dora_rl.errors import InfeasibleError
from dora_rl.planner.baselines.baseline_planners import BASELINES, throughput
from dora_rl.planner.baselines.versus_baselines import optima, versus, versus_all
from dora_rl.scenarios import load


def test_throughput_comparison_on_tiny() -> None:
    model = CostModel(load("tiny"), "classify")
    best = optima(model)
    v = versus(model, best, "throughput", throughput)
    assert v.plan is not None and v.metrics is not None and v.baseline_feasible
    assert v.baseline_verdict == "meets QoE"
    # figures are the cost model's: Dora's optima can only be as good or better
    assert v.energy_j <= v.baseline_energy_j and v.time_s <= v.baseline_time_s
    assert v.energy_saving_pct == pytest.approx(100 * (1 - v.energy_j / v.baseline_energy_j))
    assert v.speedup == pytest.approx(v.baseline_time_s / best.time.time_s)


def test_every_baseline_is_compared_and_misses_are_named() -> None:
    model = CostModel(load("tiny"), "classify")
    rows = versus_all(model, optima(model))
    assert [v.baseline for v in rows] == list(BASELINES)
    even = next(v for v in rows if v.baseline == "even")
    assert not even.baseline_feasible and even.baseline_verdict.startswith("misses")


def test_a_baseline_without_a_plan_says_why() -> None:
    model = CostModel(load("tiny"), "classify")

    def nothing(*_: object) -> None:
        raise InfeasibleError("no device fits")

    v = versus(model, optima(model), "none", nothing)  # type: ignore[arg-type]
    assert v.plan is None and v.baseline_verdict == "does not fit (no device fits)"
    assert math.isnan(v.baseline_energy_j) and not v.baseline_feasible
