"""Properties the cost model must have on any scenario, plan and state."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dora_rl.costmodel import CostModel, Plan, State
from dora_rl.costmodel.formulas import MBPS_TO_BYTES_PER_S
from dora_rl.synthetic_cards import random_plan, random_scenario

WORKLOADS = ["inference", "llm_inference", "training"]
seeds = st.integers(0, 2**32 - 1)


def _setup(
    seed: int, workload: str, **kwargs: object
) -> tuple[CostModel, Plan, np.random.Generator]:
    rng = np.random.default_rng(seed)
    n_dev, n_layers = int(rng.integers(2, 7)), int(rng.integers(2, 13))
    model = CostModel(random_scenario(rng, n_dev, n_layers, workload, **kwargs))  # type: ignore[arg-type]
    plan = random_plan(
        rng, n_dev, n_layers, shares=bool(rng.random() < 0.3), dvfs=bool(rng.random() < 0.3)
    )
    return model, plan, rng


def _time(m: dict[str, object]) -> float:
    return float(m["latency_s"])  # type: ignore[arg-type]


@pytest.mark.parametrize("workload", WORKLOADS)
@settings(max_examples=60, deadline=None)
@given(seed=seeds, factor=st.floats(1.0, 20.0))
def test_more_bandwidth_never_slows_a_plan(workload: str, seed: int, factor: float) -> None:
    model, plan, rng = _setup(seed, workload)
    scale = rng.uniform(0.05, 1.0, model.tables.n_devices)
    low = model.evaluate(plan, model.nominal.replace(link_scale=scale))
    high = model.evaluate(plan, model.nominal.replace(link_scale=scale * factor))
    assert _time(high) <= _time(low) * (1 + 1e-12)
    assert high["period_s"] <= low["period_s"] * (1 + 1e-12)


@pytest.mark.parametrize("workload", WORKLOADS)
@settings(max_examples=60, deadline=None)
@given(seed=seeds, extra=st.floats(0.0, 0.9))
def test_more_background_load_never_speeds_a_plan(workload: str, seed: int, extra: float) -> None:
    model, plan, rng = _setup(seed, workload)
    load = rng.uniform(0.0, 0.09, model.tables.n_devices)
    base = model.evaluate(plan, model.nominal.replace(load=load))
    loaded = model.evaluate(plan, model.nominal.replace(load=load + extra))
    assert _time(loaded) >= _time(base) * (1 - 1e-12)


@pytest.mark.parametrize("workload", WORKLOADS)
@settings(max_examples=40, deadline=None)
@given(seed=seeds)
def test_energy_is_power_times_time_in_each_state(workload: str, seed: int) -> None:
    model, plan, _ = _setup(seed, workload)
    m = model.evaluate(plan)
    t = model.tables
    levels = plan.dvfs_levels or (0,) * t.n_devices
    total = 0.0
    for d in range(t.n_devices):
        busy_w = t.dvfs_busy_w[d, levels[d]]
        if m["used"][d]:
            assert m["busy_s"][d] + m["tx_s"][d] + m["rx_s"][d] + m["idle_s"][d] == pytest.approx(
                m["interval_s"]
            )
            e = (
                busy_w * m["busy_s"][d]
                + t.tx_w[d] * m["tx_s"][d]
                + t.rx_w[d] * m["rx_s"][d]
                + t.idle_w[d] * m["idle_s"][d]
            )
        else:
            e = t.idle_w[d] * m["interval_s"]
        assert m["energy_per_device_j"][d] == pytest.approx(e, rel=1e-9)
        total += e
    assert m["energy_j"] == pytest.approx(total, rel=1e-9)
    assert m["power_w"] == pytest.approx(total / m["interval_s"], rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(seed=seeds)
def test_one_device_plan_costs_the_sum_of_its_layers(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scenario = random_scenario(
        rng, 3, int(rng.integers(1, 10)), "inference", memory_bandwidth=False
    )
    model = CostModel(scenario)
    dev = scenario.devices[0]
    layers = scenario.models["m"].layers
    per_item = sum(
        layer.forward_flops / (dev.compute.peak_flops * dev.compute.default_efficiency)
        for layer in layers
    )
    job = scenario.jobs[0].inference
    assert job is not None
    m = model.evaluate(Plan.single(0, len(layers)))
    assert m["latency_s"] == pytest.approx(per_item * job.batch, rel=1e-9)
    assert m["tx_s"] == [0.0] * 3 and m["transfer_s"] == [0.0] * 3


@settings(max_examples=40, deadline=None)
@given(seed=seeds)
def test_two_identical_devices_halve_a_stage_plus_allreduce(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data_scenario = random_scenario(rng, 3, 6, "training", memory_bandwidth=False)
    twin = data_scenario.devices[0].model_copy(update={"name": "twin"})
    scenario = type(data_scenario)(
        **{**data_scenario.__dict__, "devices": (*data_scenario.devices[:2], twin)}
    )
    model = CostModel(scenario)
    solo = model.evaluate(Plan(stage_end=(6,), stage_devices=((0,),), micro_batches=2))
    pair = model.evaluate(Plan(stage_end=(6,), stage_devices=((0, 2),), micro_batches=2))
    assert pair["stage_s"][0] == pytest.approx(solo["stage_s"][0] / 2, rel=1e-9)
    assert pair["allreduce_s"][0] > 0
    expected = solo["iteration_s"] / 2 + pair["allreduce_s"][0]
    assert pair["iteration_s"] == pytest.approx(expected, rel=1e-9)


def test_memory_infeasibility_is_reported_not_ignored() -> None:
    rng = np.random.default_rng(3)
    data = random_scenario(rng, 2, 4, "inference")
    small = data.devices[0].model_copy(update={"memory_bytes": 1000})
    scenario = type(data)(**{**data.__dict__, "devices": (small, data.devices[1])})
    model = CostModel(scenario)
    m = model.evaluate(Plan.single(0, 4))
    assert m["memory_ok"] is False and m["feasible"] is False
    assert m["memory_bytes"][0] > 1000
    assert not model.evaluate_many([Plan.single(0, 4)]).feasible[0]


@pytest.mark.parametrize("workload", WORKLOADS)
def test_batch_and_single_paths_agree(workload: str) -> None:
    rng = np.random.default_rng(11)
    for _ in range(25):
        n_dev, n_layers = int(rng.integers(2, 8)), int(rng.integers(2, 16))
        model = CostModel(random_scenario(rng, n_dev, n_layers, workload))  # type: ignore[arg-type]
        state = model.nominal.replace(
            link_scale=rng.uniform(0.0, 2.0, n_dev) * (rng.random(n_dev) > 0.1),
            load=rng.uniform(0, 0.8, n_dev),
            available=rng.random(n_dev) > 0.2,
        )
        plans = [
            random_plan(rng, n_dev, n_layers, shares=bool(i % 2), dvfs=bool(i % 3 == 0))
            for i in range(20)
        ]
        batch = model.evaluate_many(plans, state)
        for i, plan in enumerate(plans):
            one, row = model.evaluate(plan, state), batch.row(i)
            assert one.keys() == row.keys()
            for key, value in row.items():
                if key == "qoe_slack":
                    assert value.keys() == one[key].keys()
                    np.testing.assert_allclose(
                        list(value.values()), list(one[key].values()), rtol=1e-9
                    )
                else:
                    np.testing.assert_allclose(
                        np.asarray(value, dtype=float),
                        np.asarray(one[key], dtype=float),
                        rtol=1e-9,
                        err_msg=key,
                    )


@pytest.mark.parametrize("workload", WORKLOADS)
def test_dead_link_gives_infinite_time_never_nan(workload: str) -> None:
    rng = np.random.default_rng(5)
    model = CostModel(random_scenario(rng, 3, 6, workload, wifi_fraction=1.0))  # type: ignore[arg-type]
    plan = Plan(stage_end=(3, 6), stage_devices=((0,), (1,)), micro_batches=2)
    m = model.evaluate(plan, model.nominal.replace(link_scale=[0.0, 1.0, 1.0]))
    assert math.isinf(m["latency_s"]) and m["feasible"] is False
    for key in ("energy_j", "latency_s", "period_s"):
        assert not math.isnan(m[key]), key
    single = model.evaluate(Plan.single(2, 6), model.nominal.replace(link_scale=[0.0, 0.0, 0.0]))
    assert math.isfinite(single["latency_s"])


def test_departed_device_makes_the_plan_infeasible() -> None:
    rng = np.random.default_rng(8)
    model = CostModel(random_scenario(rng, 3, 4, "inference"))
    gone = model.nominal.replace(available=[True, False, True])
    assert model.evaluate(Plan.single(1, 4), gone)["usable_ok"] is False
    assert model.evaluate(Plan.single(0, 4), gone)["usable_ok"] is True


def test_state_rejects_out_of_range_values() -> None:
    rng = np.random.default_rng(9)
    model = CostModel(random_scenario(rng, 2, 3, "inference"))
    with pytest.raises(Exception, match="link_scale"):
        model.nominal.replace(link_scale=[-1.0, 1.0])
    with pytest.raises(Exception, match="load"):
        State.nominal(model.scenario).replace(load=[1.0, 0.0])


def test_relayed_wifi_transfer_uses_airtime_twice() -> None:
    rng = np.random.default_rng(2)
    model = CostModel(random_scenario(rng, 2, 2, "inference", wifi_fraction=1.0))
    t = model.tables
    plan = Plan(stage_end=(1, 2), stage_devices=((0,), (1,)))
    m = model.evaluate(plan, model.nominal.replace(cross_traffic=[0.0, 0.0]))
    job = model.scenario.jobs[0].inference
    assert job is not None
    nbytes = t.activation_bytes[0] * job.batch
    expected = nbytes / t.link_bytes_per_s[0] + nbytes / t.link_bytes_per_s[1]
    assert m["transfer_s"][0] == pytest.approx(expected, rel=1e-9)
    assert t.link_bytes_per_s[0] == pytest.approx(
        model.scenario.devices[0].network.link_mbps * MBPS_TO_BYTES_PER_S
    )


@pytest.mark.parametrize("workload", WORKLOADS)
def test_memoised_results_equal_fresh_evaluation_as_the_state_moves(workload: str) -> None:
    """Results are memoised on the inputs a plan depends on; a walk through states that
    changes one input at a time, revisiting earlier states, must give what a cold evaluator
    gives every time, and a change to any device the plan uses must be seen."""
    rng = np.random.default_rng(5)
    model = CostModel(random_scenario(rng, 4, 6, workload))  # type: ignore[arg-type]
    cold = CostModel(model.scenario)
    plans = [random_plan(rng, 4, 6, shares=bool(i % 2), dvfs=False) for i in range(6)]
    plans.append(Plan.single(0, 6))
    states = [model.nominal]
    for _ in range(60):
        field = rng.choice(["link_scale", "load", "cross_traffic", "available"])
        if rng.random() < 0.3 and len(states) > 1:  # revisit an earlier state
            states.append(states[int(rng.integers(len(states)))])
            continue
        last, d = states[-1], int(rng.integers(4))
        if field == "available":
            value = last.available.copy()
            value[d] = not value[d]
        elif field == "cross_traffic":
            value = rng.uniform(0, 0.5, len(last.cross_traffic))
        else:
            value = getattr(last, field).copy()
            value[d] = rng.uniform(0.1, 1.5) if field == "link_scale" else rng.uniform(0, 0.7)
        states.append(last.replace(**{field: value}))
    for state in states:
        for plan in plans:
            got = model.evaluate(plan, state)
            cold.tables.memo[0].clear()
            cold.tables.memo[1].clear()
            want = cold.evaluate(plan, state)
            assert got.keys() == want.keys()
            for key, value in want.items():
                np.testing.assert_array_equal(np.asarray(got[key] if key != "qoe_slack" else
                                                         list(got[key].values()), dtype=float),
                                              np.asarray(value if key != "qoe_slack" else
                                                         list(value.values()), dtype=float),
                                              err_msg=key)
    one = Plan.single(0, 6)
    base = model.evaluate(one, states[0])
    assert model.evaluate(one, states[0].replace(load=np.r_[0.5, states[0].load[1:]])) \
        is not base
    assert model.evaluate(
        one, states[0].replace(link_scale=states[0].link_scale * 0.3)) is base
