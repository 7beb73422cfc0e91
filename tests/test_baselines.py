"""The comparison planners: valid on every card, as specified, and throughput-optimal."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dora_rl.costmodel import CostModel, Plan, check_plan
from dora_rl.errors import InfeasibleError
from dora_rl.planner.baselines.baseline_planners import (
    BASELINES,
    device_problem,
    even,
    memory,
    memory_counts,
    plan_bottleneck_s,
    single,
    throughput,
)
from dora_rl.planner.baselines.bottleneck import brute_force_bottleneck
from dora_rl.scenarios import available, load
from dora_rl.synthetic_cards import random_scenario

JOBS = [(card, j) for card in available() for j in range(len(load(card).jobs))]


@pytest.fixture(scope="module")
def models() -> dict[tuple[str, int], CostModel]:
    return {(card, j): CostModel(load(card), j) for card, j in JOBS}


@pytest.mark.parametrize(("card", "job"), JOBS)
def test_every_baseline_plans_every_shipped_job(models: dict[tuple[str, int], CostModel],
                                                card: str, job: int) -> None:
    model = models[(card, job)]
    values = {}
    for name, planner in BASELINES.items():
        plan = planner(model, None)
        check_plan(plan, model.tables)
        assert all(len(group) == 1 for group in plan.stage_devices)
        training = model.tables.job.training
        assert plan.micro_batches == (training.micro_batches if training else 1)
        values[name] = plan_bottleneck_s(model, plan)
    assert values["throughput"] <= min(values.values()) * (1 + 1e-12)


def test_even_and_memory_layer_counts_on_tiny() -> None:
    model = CostModel(load("tiny"))
    assert even(model) == Plan(stage_end=(3, 6, 8), stage_devices=((0,), (1,), (2,)))
    # memory 1, 2, 4 GB: 8 layers in shares 4/7, 2/7, 1/7 of 4.57, 2.29, 1.14 -> 5, 2, 1
    assert memory(model) == Plan(stage_end=(5, 7, 8), stage_devices=((2,), (1,), (0,)))
    assert single(model) == Plan.single(2, 8)  # fast: QoE met, least energy


def test_memory_counts_rounding() -> None:
    assert memory_counts([1.0, 1.0, 1.0], 8) == [3, 3, 2]
    assert memory_counts([100.0, 1.0, 1.0], 4) == [2, 1, 1]  # everyone gets a layer
    assert memory_counts([5.0, 3.0, 2.0], 10) == [5, 3, 2]
    assert sum(memory_counts([7.0, 2.0, 1.0, 1.0], 5)) == 5


def test_unusable_devices_are_left_out() -> None:
    model = CostModel(load("tiny"))
    state = model.nominal.replace(available=[True, True, False])
    for planner in BASELINES.values():
        assert 2 not in planner(model, state).devices
    assert even(model, state).stage_end == (4, 8)


def test_no_fit_is_explained_in_words() -> None:
    scenario = load("tiny")
    small = dataclasses.replace(scenario, devices=tuple(
        d.model_copy(update={"memory_bytes": 5_000_000}) for d in scenario.devices))
    model = CostModel(small)
    with pytest.raises(InfeasibleError, match="need .* GB"):
        throughput(model)
    with pytest.raises(InfeasibleError, match="even split: layers .* GB of weights"):
        even(model)
    with pytest.raises(InfeasibleError, match="single device: the weights"):
        single(model)


@pytest.mark.parametrize("workload", ["inference", "llm_inference", "training"])
def test_throughput_equals_brute_force_on_random_scenarios(workload: str) -> None:
    rng = np.random.default_rng(7)
    for _ in range(12):
        model = CostModel(random_scenario(rng, int(rng.integers(1, 5)), int(rng.integers(1, 7)),
                                          workload))  # type: ignore[arg-type]
        try:
            expected = brute_force_bottleneck(device_problem(model).problem).bottleneck_s
        except InfeasibleError:
            with pytest.raises(InfeasibleError):
                throughput(model)
            continue
        plan = throughput(model)
        check_plan(plan, model.tables)
        assert plan_bottleneck_s(model, plan) == pytest.approx(expected, rel=1e-9)
