"""The interval model: make-before-break switches, resident weights, power modes, sleep,
per-request QoE, and a reward that orders outcomes lexicographically."""

from __future__ import annotations

import itertools
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dora_rl.config.loader import resolve, validate
from dora_rl.config.schema import ScenarioSpec
from dora_rl.costmodel import Plan
from dora_rl.dynamics import WorldState
from dora_rl.env.edge_env import lexicographic_reward
from dora_rl.world import SLEEP, ControlState, Decision, IntervalModel, Outcome
from dora_rl.world.requests import arrivals, queued

ENVS = Path(__file__).resolve().parent.parent / "envs"
A = Plan.single(2, 8)  # all on "fast"
B = Plan(stage_end=(4, 8), stage_devices=((2,), (1,)))  # fast, then mid
D = Plan(stage_end=(4, 8), stage_devices=((1,), (2,)))  # mid, then fast


def _tiny(edit: Any = None) -> Any:
    data = yaml.safe_load((ENVS / "tiny.yaml").read_text())
    if edit is not None:
        edit(data)
    return resolve(validate(ScenarioSpec, data, "<test>"), "<test>", ENVS)


def _no_storage(model: IntervalModel) -> IntervalModel:
    """The same model with every device receiving weights over the network."""
    facts = [replace(f, storage_bytes_per_s=None) for f in model.devices]
    return IntervalModel(model.scenario, model.interval_s, model.models, facts)


def _world(model: IntervalModel, link: list[float] | None = None,
           available: list[bool] | None = None) -> WorldState:
    state = model.models[0].nominal
    if link is not None:
        state = state.replace(link_scale=link)
    if available is not None:
        state = state.replace(available=available)
    n = model.n_jobs
    return WorldState(state=state, job_active=np.ones(n, dtype=bool), qoe_scale=np.ones(n),
                      step=0)


def _run(model: IntervalModel, ctl: ControlState, decisions: list[Decision],
         world: WorldState) -> tuple[ControlState, list[Outcome]]:
    outs = []
    for decision in decisions:
        ctl, out = model.transition(ctl, decision, world)
        outs.append(out)
    return ctl, outs


KEEP = Decision(plans=(None,))


def test_old_plan_serves_while_weights_move_and_cuts_over_when_they_arrive() -> None:
    model = _no_storage(IntervalModel(_tiny()))
    world = _world(model)
    ctl = model.initial([A])
    ctl, out = model.transition(ctl, Decision(plans=(B,)), world)
    assert out.jobs[0].switched and ctl.jobs[0].target == B
    job = model.scenario.jobs[0]
    first = queued(job, model.models[0].evaluate(A))["latency_s"] * 1e3
    steps = [out]
    while ctl.jobs[0].target is not None:
        assert steps[-1].jobs[0].serving and steps[-1].jobs[0].latency_ms == pytest.approx(first)
        assert steps[-1].jobs[0].missed < 1e-3  # the queue's far tail only
        ctl, out = model.transition(ctl, KEEP, world)
        steps.append(out)
        assert len(steps) < 50
    assert len(steps) >= 2, "20 MB over a 100 Mbit/s link takes more than one interval"
    assert steps[-1].jobs[0].cut_over and ctl.jobs[0].plan == B
    moved = sum(o.jobs[0].moved_bytes for o in steps)
    assert moved == pytest.approx(sum(model.layer_bytes[0][4:]))
    ctl, out = model.transition(ctl, KEEP, world)
    share = model.shares([ctl.jobs[0].level], [True])[0]  # the job's share of the medium
    view = model.models[0].nominal.replace(medium_share=[share])
    second = queued(job, model.models[0].evaluate(B, view))["latency_s"] * 1e3
    assert out.jobs[0].latency_ms == pytest.approx(second) and second != pytest.approx(first)


def test_switching_back_to_a_resident_plan_moves_nothing() -> None:
    model = _no_storage(IntervalModel(_tiny()))
    world = _world(model)
    ctl, _ = _run(model, model.initial([A]), [Decision(plans=(B,))] + [KEEP] * 10, world)
    assert ctl.jobs[0].plan == B
    ctl, out = model.transition(ctl, Decision(plans=(A,)), world)
    assert out.jobs[0].switched and out.jobs[0].cut_over
    assert out.jobs[0].moved_bytes == 0 and ctl.jobs[0].plan == A


def test_a_switch_whose_plans_do_not_fit_together_stalls_until_its_weights_arrive() -> None:
    def small_fast(data: dict[str, Any]) -> None:
        data["devices"][2]["memory_bytes"] = 25_000_000  # D's 20 MB fit, A's 14 MB + D's do not

    model = _no_storage(IntervalModel(_tiny(small_fast)))
    world = _world(model)
    ctl, out = model.transition(model.initial([B]), Decision(plans=(D,)), world)
    assert ctl.jobs[0].break_first and not out.jobs[0].serving
    assert out.jobs[0].missed > 0


def test_a_slower_power_mode_lowers_busy_power_and_lengthens_compute_as_the_catalog_says() -> None:
    model = IntervalModel(_tiny())
    world = _world(model)
    _, nominal = model.transition(model.initial([A]), KEEP, world)
    _, slow = model.transition(model.initial([A]), Decision(plans=(None,), modes=(0, 0, 1)),
                               world)
    fast = model.scenario.devices[2]
    half = fast.dvfs[0]
    job, model0 = model.scenario.jobs[0], model.models[0]
    slow_plan = model.moded(A, (0, 0, 1))
    assert model0.evaluate(slow_plan)["latency_s"] == pytest.approx(
        model0.evaluate(A)["latency_s"] / half.speed)
    assert slow.jobs[0].latency_ms == pytest.approx(
        queued(job, model0.evaluate(slow_plan))["latency_s"] * 1e3)
    busy_s = nominal.devices[2].busy_j / (fast.power.busy_w - fast.power.idle_w)
    assert slow.devices[2].busy_j == pytest.approx(
        busy_s / half.speed * (half.busy_w - fast.power.idle_w))
    assert slow.devices[2].busy_j < nominal.devices[2].busy_j


def _sleepy(data: dict[str, Any]) -> None:
    data["devices"][0]["dedicated"] = True
    data["devices"][0]["sleep"] = {"sleep_w": 0.5, "wake_s": 2.0, "wake_j": 10.0}


def test_sleep_and_wake_are_charged_and_a_waking_device_is_unusable() -> None:
    model = IntervalModel(_tiny(_sleepy))
    world = _world(model)
    ctl, out = model.transition(model.initial([A]), Decision(plans=(None,),
                                                             modes=(SLEEP, 0, 0)), world)
    slow = out.devices[0]
    assert slow.sleep_j == pytest.approx(0.5) and slow.idle_j == 0 and slow.total_j == 0.5
    assert slow.jobs_j == pytest.approx(0.5), "a dedicated device's sleep is the jobs' cost"
    plan = Plan(stage_end=(1, 8), stage_devices=((0,), (2,)))
    ctl, out = model.transition(ctl, Decision(plans=(plan,), modes=(0, 0, 0)), world)
    assert out.devices[0].wake_j == pytest.approx(10.0) and ctl.wake_left_s[0] > 0
    assert not out.jobs[0].cut_over, "the switch waits while its device wakes"
    for _ in range(3):
        ctl, out = model.transition(ctl, KEEP, world)
    assert ctl.jobs[0].plan == plan and ctl.wake_left_s[0] == 0


def test_a_device_some_plan_uses_cannot_sleep() -> None:
    model = IntervalModel(_tiny(_sleepy))
    _, out = model.transition(model.initial([Plan.single(0, 8)]),
                              Decision(plans=(None,), modes=(SLEEP, 0, 0)), _world(model))
    assert out.refused == 1 and out.devices[0].sleep_j == 0 and out.devices[0].idle_j > 0


def test_idle_power_is_the_jobs_cost_only_on_dedicated_devices() -> None:
    model = IntervalModel(_tiny(_sleepy))
    _, out = model.transition(model.initial([A]), KEEP, _world(model))
    assert out.devices[0].jobs_j == pytest.approx(out.devices[0].idle_j)  # dedicated, unused
    assert out.devices[1].jobs_j == 0  # on anyway, unused
    assert out.jobs_energy_j < out.energy_j


def test_a_job_with_one_request_per_20_s_is_scored_per_request() -> None:
    def rare(data: dict[str, Any]) -> None:
        data["jobs"][0]["inference"]["request_rate_per_s"] = 0.05
        data["jobs"][0]["qoe"]["latency_ms"] = 2000.0

    model = IntervalModel(_tiny(rare))
    assert arrivals(model.scenario.jobs[0], 1.0, 1.0) == pytest.approx(0.05)
    world, gone = _world(model), _world(model, available=[True, True, False])
    ctl = model.initial([A])
    decisions = [(KEEP, gone if t == 5 else world) for t in range(20)]
    scored = missed = 0.0
    for decision, w in decisions:
        ctl, out = model.transition(ctl, decision, w)
        scored, missed = scored + out.jobs[0].scored, missed + out.jobs[0].missed
    assert scored == pytest.approx(1.0), "20 s at one request per 20 s is one request"
    assert missed <= 0.05 + 1e-9


def test_a_link_reading_zero_is_a_fade_that_requests_wait_through() -> None:
    def patient(data: dict[str, Any]) -> None:
        data["jobs"][0]["qoe"]["latency_ms"] = 3000.0

    model = IntervalModel(_tiny(patient))
    ok, faded = _world(model), _world(model, link=[1.0, 0.0, 1.0])
    ctl = model.initial([B])
    ctl, out = model.transition(ctl, KEEP, faded)
    assert not out.jobs[0].serving and out.jobs[0].missed == 0
    ctl, out = model.transition(ctl, KEEP, ok)
    assert out.jobs[0].serving and out.jobs[0].missed == 0
    assert out.jobs[0].scored == pytest.approx(20.0), "the waiting requests are scored on return"


def test_the_reward_order_is_fewest_missed_requests_then_least_energy() -> None:
    """Every 3-interval schedule over three plans and the fast device's two modes: the one
    with the highest reward has the fewest missed requests and, among those, the least
    energy the jobs caused."""
    base = IntervalModel(_tiny())  # every device reads weights from a fast local disk
    model = IntervalModel(base.scenario, 1.0, base.models,
                          [replace(f, storage_bytes_per_s=1e9) for f in base.devices])
    world = _world(model, link=[1.0, 1.0, 1.0])
    plans = [Plan.single(0, 8), Plan.single(1, 8), A]  # slow misses 50 ms; mid and fast meet it
    choices = [Decision(plans=(p,), modes=(0, 0, m)) for p in plans for m in (0, 1)]
    requests = arrivals(model.scenario.jobs[0], 1.0, 1.0)
    max_j = sum(max(f.busy_w) for f in model.devices)
    price = max_j * 3 / requests
    results = []
    for schedule in itertools.product(choices, repeat=3):
        ctl, total, missed, energy = model.initial([plans[0]]), 0.0, 0.0, 0.0
        for decision in schedule:
            ctl, out = model.transition(ctl, decision, world)
            total += lexicographic_reward(out.missed, out.jobs_energy_j, price, requests)
            missed, energy = missed + out.missed, energy + out.jobs_energy_j
        results.append((total, round(missed, 9), energy))
    best = max(results, key=lambda r: r[0])
    assert (best[1], best[2]) == min((r[1], r[2]) for r in results)
    assert len({r[1] for r in results}) > 1 and len({round(r[2], 6) for r in results}) > 1


def test_a_device_powered_off_while_unused_boots_like_a_wake_before_a_switch_cuts_over() -> None:
    """``unused_devices: off``: the devices no plan uses draw nothing; switching to a plan on
    one of them waits its wake time (the old plan serving) and pays its wake energy."""
    def off(data: dict[str, Any]) -> None:
        data["objective"]["unused_devices"] = "off"

    model = IntervalModel(_tiny(off))
    world = _world(model)
    ctl = model.initial([A])
    ctl, out = model.transition(ctl, KEEP, world)
    assert ctl.modes[0] == SLEEP and ctl.modes[1] == SLEEP  # off: recorded as asleep
    assert out.devices[0].total_j == 0 and out.devices[1].total_j == 0
    slow = Plan.single(1, 8)
    wake_s = model.devices[1].wake_s
    ctl, out = model.transition(ctl, Decision(plans=(slow,)), world)
    assert ctl.wake_left_s[1] == pytest.approx(wake_s - 1.0) and out.jobs[0].serving
    assert out.devices[1].wake_j == pytest.approx(model.devices[1].wake_j)
    steps = 0
    while ctl.jobs[0].target is not None:
        ctl, out = model.transition(ctl, KEEP, world)
        steps += 1
        assert out.jobs[0].serving  # the old plan serves while the device boots
    assert steps >= wake_s - 1.0 and ctl.jobs[0].plan == slow
