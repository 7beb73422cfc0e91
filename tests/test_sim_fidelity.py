"""One unit of work alone in the simulator costs what the cost model says it costs."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from dora_rl.costmodel import CostModel, Plan, PlanError, check_plan
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.scenarios import load
from dora_rl.sim.fidelity import isolated_unit

TOLERANCE = 0.02
SHARED_LINK_TOLERANCE = 0.05
"""A data-parallel training stage's all-reduce shares its devices' links with the gradients
flowing back to the stage before it; the cost model times the two apart."""
FAST_CARDS = ("tiny", "smart_home", "traffic_analytics")


def _candidates(env: EdgeEnv) -> list[tuple[int, Plan]]:
    """Every job's candidate plans with all devices present and with each leaving device
    away (the plans the environment offers its controllers)."""
    n = env.n_devices
    masks = [np.ones(n, dtype=bool)]
    for d, dev in enumerate(env.scenario.devices):
        if dev.can_leave:
            mask = np.ones(n, dtype=bool)
            mask[d] = False
            masks.append(mask)
    out: list[tuple[int, Plan]] = []
    for mask in masks:
        for j, cand in enumerate(env.cache.get(mask)):
            out += [(j, p) for p in cand.plans if (j, p) not in out]
    return out


def _check(model: CostModel, plan: Plan, tolerance: float = TOLERANCE) -> None:
    analytic = model.evaluate(plan)
    alone = isolated_unit(model, plan)
    assert alone.latency_s == pytest.approx(analytic["latency_s"], rel=tolerance), plan
    if model.tables.job.llm is not None:
        assert alone.ttft_s == pytest.approx(analytic["ttft_s"], rel=TOLERANCE), plan
        assert alone.tpot_s == pytest.approx(analytic["tpot_s"], rel=TOLERANCE), plan


@pytest.mark.parametrize("card", FAST_CARDS)
def test_every_candidate_plan_alone_matches_the_cost_model(card: str) -> None:
    env = EdgeEnv(card)
    plans = _candidates(env)
    assert plans
    for j, plan in plans:
        _check(env.model.models[j], plan)


@pytest.fixture(scope="module")
def edge_cluster() -> EdgeEnv:
    """One EdgeCluster env for the module: planning GPT-2 fine-tuning takes a minute or two."""
    return EdgeEnv("edge_cluster")


def test_every_edge_cluster_candidate_alone_matches_the_cost_model(
        edge_cluster: EdgeEnv) -> None:
    """Training runs one micro-batch at a time here (one unit of work in flight through the
    pipeline); the pipelined schedule is the next test. A plan whose stages are data-parallel
    groups may be slower by its all-reduce sharing links with the gradient flow (since the
    card moved GPT-2 to BF16 the compute hides less of it: 3.9 % on the L4 + AGX Orin then
    two 4090s plan, about 1 % before)."""
    plans = _candidates(edge_cluster)
    assert any(edge_cluster.model.models[j].tables.job.training for j, _ in plans)
    for j, plan in plans:
        tolerance = TOLERANCE
        if edge_cluster.model.models[j].tables.job.training is not None:
            plan = dataclasses.replace(plan, micro_batches=1)
            if any(len(group) > 1 for group in plan.stage_devices):
                tolerance = SHARED_LINK_TOLERANCE
        _check(edge_cluster.model.models[j], plan, tolerance)


def test_pipelined_1f1b_iterations_follow_the_round_trip_bound(edge_cluster: EdgeEnv) -> None:
    """GPT-2 over an Orin, a 4090 and two Xaviers: with 10 ms transfers against 15-25 ms stage
    cycles, the K - k micro-batches 1F1B lets stage k hold do not cover one micro-batch's
    round trip, so the steady-state period is the round trip / (K - k), above the slowest
    stage's cycle. Without that bound the cost model was 46 % optimistic; with it the
    simulated schedule is within 15 % (see experiments/results/sim_fidelity.md), and so is
    the planner's own training plan (13.8 % slower simulated since the card moved GPT-2 to
    BF16, 7.4 % before: faster compute hides less of the flows that share a device's link,
    which the closed form times apart)."""
    models = edge_cluster.model.models
    j = next(j for j, m in enumerate(models) if m.tables.job.training is not None)
    model = edge_cluster.model.models[j]
    bound_binds = Plan(stage_end=(6, 11, 14), stage_devices=((4,), (0,), (1, 5)),
                       micro_batches=16)
    metrics = model.evaluate(bound_binds)
    assert metrics["period_s"] > 1.3 * max(metrics["stage_s"])
    simulated = isolated_unit(model, bound_binds).latency_s
    assert abs(simulated / metrics["iteration_s"] - 1.0) < 0.15
    plan = next(p for jj, p in _candidates(edge_cluster) if jj == j)
    assert plan.micro_batches > plan.n_stages
    simulated = isolated_unit(model, plan).latency_s
    assert abs(simulated / model.evaluate(plan)["iteration_s"] - 1.0) < 0.15


def _random_plan(rng: random.Random, model: CostModel) -> Plan | None:
    t = model.tables
    k = rng.randint(1, min(4, t.n_layers))
    ends = (*sorted(rng.sample(range(1, t.n_layers), k - 1)), t.n_layers)
    devices = [d for d in range(t.n_devices) if t.can_run[d]]
    rng.shuffle(devices)
    if len(devices) < k:
        return None
    groups = [[devices.pop()] for _ in range(k)]
    while devices and rng.random() < 0.4:  # data-parallel groups
        groups[rng.randrange(k)].append(devices.pop())
    plan = Plan(stage_end=ends, stage_devices=tuple(tuple(g) for g in groups),
                boundary_shares=(1.0,) * (k - 1) if k > 1 else None)
    try:
        check_plan(plan, t)
    except PlanError:
        return None
    return plan


@pytest.mark.parametrize("card", FAST_CARDS)
def test_random_plans_alone_match_the_cost_model_under_fades_and_load(card: str) -> None:
    """Any split, data-parallel groups, faded links, busy devices and cross traffic: exact
    when each flow may use the whole medium (a lone request's flows never overlap)."""
    scenario = load(card)
    rng = random.Random(card)
    checked = 0
    for j in range(len(scenario.jobs)):
        model = CostModel(scenario, j)
        n, w = model.tables.n_devices, len(scenario.network.domains)
        state = model.nominal.replace(
            link_scale=[rng.uniform(0.2, 1.2) for _ in range(n)],
            load=[rng.uniform(0.0, 0.6) for _ in range(n)],
            cross_traffic=[rng.uniform(0.0, 0.5) for _ in range(w)])
        for _ in range(60):
            plan = _random_plan(rng, model)
            if plan is None:
                continue
            analytic = model.evaluate(plan, state)["latency_s"]
            assert isolated_unit(model, plan, state).latency_s == pytest.approx(
                analytic, rel=1e-9), plan
            checked += 1
    assert checked > 20


def test_a_lone_request_does_not_pay_the_equal_share_of_flows_that_never_overlap() -> None:
    """Two WiFi flows of one request run one after the other, each with the whole medium;
    the cost model charges each half of it (its pipelined steady state)."""
    model = CostModel(load("tiny"))
    plan = Plan(stage_end=(2, 5, 8), stage_devices=((1,), (2,), (0,)))
    whole = dataclasses.replace(plan, boundary_shares=(1.0, 1.0))
    simulated = isolated_unit(model, plan).latency_s
    assert simulated == pytest.approx(model.evaluate(whole)["latency_s"], rel=1e-9)
    assert simulated < 0.8 * model.evaluate(plan)["latency_s"]
