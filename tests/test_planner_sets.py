"""Plan sets, composition, the network scheduler, warm starts and infeasibility messages."""

from __future__ import annotations

import numpy as np
import pytest

from dora_rl.costmodel import CostModel, Plan, check_plan
from dora_rl.errors import InfeasibleError
from dora_rl.planner.compose import choose_plans, time_mix
from dora_rl.planner.exact.partition import solve
from dora_rl.planner.planset import PlanEntry, _dominates, plan_set, robustness
from dora_rl.planner.scheduler import schedule
from dora_rl.scenarios import load
from dora_rl.synthetic_cards import benchmark_scenario, random_plan, random_scenario


@pytest.fixture(scope="module")
def assistant_set():  # type: ignore[no-untyped-def]
    model = CostModel(load("smart_home"), "assistant")
    return model, plan_set(model, k=8)


def test_plan_set_starts_with_the_optimum_and_holds_only_compliant_plans(assistant_set) -> None:  # type: ignore[no-untyped-def]
    model, pset = assistant_set
    optimum = solve(model, "energy")
    assert pset.entries[0].plan == optimum.plan and pset.entries[0].role == "optimum"
    assert 2 <= len(pset.entries) <= 8
    for entry in pset.entries:
        check_plan(entry.plan, model.tables)
        assert model.evaluate(entry.plan)["feasible"]


def test_no_plan_in_a_set_is_dominated_by_another(assistant_set) -> None:  # type: ignore[no-untyped-def]
    _, pset = assistant_set
    for a in pset.entries:
        for b in pset.entries:
            assert a is b or not _dominates(a, b), (a.plan, b.plan)


def test_plan_set_spans_the_frontier_between_fastest_and_greenest(assistant_set) -> None:  # type: ignore[no-untyped-def]
    model, pset = assistant_set
    fastest = solve(model, "time")
    assert min(e.time_s for e in pset.entries) == pytest.approx(fastest.time_s)
    assert min(e.energy_j for e in pset.entries) == pytest.approx(pset.entries[0].energy_j)


def test_robustness_is_the_threshold_where_qoe_breaks() -> None:
    model = CostModel(benchmark_scenario(12, 4, "inference"))
    plan = Plan(stage_end=(6, 12), stage_devices=((0,), (1,)))
    drop = robustness(model, plan)
    state = model.nominal
    if 0.0 < drop < 1.0:
        scale = 1.0 - drop
        assert model.evaluate(plan, state.replace(link_scale=state.link_scale * scale * 1.01))[
            "feasible"]
        assert not model.evaluate(plan, state.replace(link_scale=state.link_scale * scale * 0.95))[
            "feasible"]


def test_time_mix_meets_an_average_target_at_least_energy() -> None:
    class E:
        def __init__(self, t: float, e: float) -> None:
            self.time_s, self.energy_j = t, e

    entries = [E(1.0, 10.0), E(2.0, 6.0), E(4.0, 5.0)]
    mix = time_mix(entries, 1.5)  # type: ignore[arg-type]
    assert mix.time_s == pytest.approx(1.5)
    assert sum(f > 0 for f in mix.fractions) <= 2
    assert mix.energy_j == pytest.approx(8.0)  # half of 10 J and half of 6 J
    with pytest.raises(InfeasibleError, match="fastest takes 1"):
        time_mix(entries, 0.5)  # type: ignore[arg-type]


def test_choose_plans_keeps_every_job_feasible_when_sharing_devices() -> None:
    scenario = load("traffic_analytics")
    models = [CostModel(scenario, j) for j in range(len(scenario.jobs))]
    sets = [plan_set(m, k=4) for m in models]
    selection = choose_plans(models, sets)
    assert len(selection.plans) == len(models)
    assert all(m["feasible"] for m in selection.metrics)
    for plan, pset in zip(selection.plans, sets, strict=True):
        assert plan in pset.plans


def test_scheduler_is_never_worse_than_equal_sharing_and_usually_better() -> None:
    rng = np.random.default_rng(4)
    gains = []
    for i in range(15):
        model = CostModel(random_scenario(rng, 5, 10, ("inference", "training")[i % 2],
                                          wifi_fraction=1.0))  # type: ignore[arg-type]
        plan = random_plan(rng, 5, 10)
        s = schedule(model, plan)
        assert s.time_s <= s.time_equal_s * (1 + 1e-9)
        assert s.energy_j <= s.energy_equal_j * (1 + 1e-9)  # a shorter interval idles less
        check_plan(s.plan, model.tables)
        gains.append(s.speedup)
    assert max(gains) > 1.05


def test_warm_start_from_the_previous_plan_gives_the_same_optimum() -> None:
    model = CostModel(benchmark_scenario(16, 6, "inference", qoe_scale=3.0))
    first = solve(model, "energy")
    faded = model.nominal.replace(link_scale=np.full(6, 0.7))
    cold = solve(model, "energy", faded)
    warm = solve(model, "energy", faded, warm_start=first.plan)
    assert warm.objective == pytest.approx(cold.objective, rel=1e-9)


def test_model_that_fits_nowhere_names_memory() -> None:
    scenario = load("tiny")
    small = tuple(d.model_copy(update={"memory_bytes": 1000}) for d in scenario.devices)
    model = CostModel(type(scenario)(**{**scenario.__dict__, "devices": small}))
    pattern = r"not enough memory: .* needs .* of weights; .* holds 1000 B"
    with pytest.raises(InfeasibleError, match=pattern):
        solve(model, "energy")


def test_unreachable_qoe_names_the_missed_target() -> None:
    scenario = load("tiny")
    job = scenario.jobs[0].model_copy(update={"qoe": scenario.jobs[0].qoe.model_copy(
        update={"latency_ms": 1.0})})
    model = CostModel(type(scenario)(**{**scenario.__dict__, "jobs": (job,)}))
    with pytest.raises(InfeasibleError, match=r"latency_ms 8\.0 against the target 1"):
        solve(model, "energy")


def test_entries_expose_time_and_energy() -> None:
    model = CostModel(load("tiny"))
    plan = Plan.single(2, 8)
    e = PlanEntry(plan, model.evaluate(plan), 1.0, "optimum")
    assert e.time_s == pytest.approx(0.008) and e.energy_j > 0
