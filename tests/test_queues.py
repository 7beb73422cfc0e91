"""Jobs sharing a device queue their kernels; LLM requests share their plan."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dora_rl.costmodel import Plan
from dora_rl.dynamics import WorldState
from dora_rl.scenarios import load
from dora_rl.world import Decision, IntervalModel
from dora_rl.world.queues import DeviceQueues, combine, fcfs_wait_s, kernel_load
from dora_rl.world.requests import in_flight, met_fraction, queued, shared_met_fraction

XAVIER, L4 = 3, 4  # traffic_analytics devices


def _traffic_world(model: IntervalModel) -> WorldState:
    state = model.models[0].nominal
    n = model.n_jobs
    return WorldState(state=state, job_active=np.ones(n, bool), qoe_scale=np.ones(n), step=0)


def _latencies(plans: list[Plan]) -> list[float]:
    model = IntervalModel(load("traffic_analytics"))
    ctl = model.initial(plans)
    _, out = model.transition(ctl, Decision(plans=(None,) * model.n_jobs),
                              _traffic_world(model))
    return [j.latency_ms for j in out.jobs]


def test_short_kernels_wait_behind_another_jobs_long_ones_on_a_shared_device() -> None:
    """The vehicle streams' 2.4 ms frames wait behind the plate reader's 22 ms reads when the
    two share the Xavier NX, and not when the plates run elsewhere."""
    alone = _latencies([Plan.single(XAVIER, 18), Plan.single(XAVIER, 18),
                        Plan.single(L4, 14), Plan.single(5, 14)])
    shared = _latencies([Plan.single(XAVIER, 18), Plan.single(XAVIER, 18),
                         Plan.single(XAVIER, 14), Plan.single(5, 14)])
    assert shared[0] > alone[0] + 4.0  # several ms of plate reads ahead, in the mean
    assert shared[2] > 22.0  # the plates' own read, plus their wait


def test_the_device_wait_is_pollaczek_khinchine_over_every_jobs_kernels() -> None:
    """Two jobs' kernel loads on one device: the mean wait is the summed residual work over
    one less the summed utilisation; the job's own M/D/1 wait when it is alone."""
    home = load("smart_home")
    doorbell = home.jobs[1]
    mine = kernel_load(doorbell, {"busy_s": [0.01], "interval_s": 0.2})
    other = ([0.3], [0.3 * 0.02 / 2])
    both = combine([mine, other], 1)
    assert both.utilisation[0] == pytest.approx(0.35)
    assert fcfs_wait_s(both.utilisation[0], both.residual_s[0]) == pytest.approx(
        (0.05 * 0.01 / 2 + 0.003) / 0.65)
    figures = {"latency_s": 0.01, "ttft_s": math.nan, "period_s": 0.01, "interval_s": 0.2,
               "busy_s": [0.01], "qoe_slack": {"latency_ms": 0.95, "throughput": 0.95}}
    plan = Plan.single(0, 1)
    alone = queued(doorbell, figures, plan, DeviceQueues.empty(1))
    assert alone["latency_s"] == pytest.approx(0.01 + 0.05 * 0.01 / (2 * 0.95))
    behind = queued(doorbell, figures, plan, combine([other], 1))
    assert behind["latency_s"] == pytest.approx(0.01 + (0.05 * 0.01 / 2 + 0.003) / 0.65)
    assert behind["qoe_slack"]["latency_ms"] < alone["qoe_slack"]["latency_ms"]


def test_llm_requests_share_the_plan_and_meet_per_token_targets_when_few_are_in_flight() -> None:
    """At 91 % utilisation an arrival meets 10 requests in flight in the mean, each adding a
    pass to its time per token; about half of the requests find few enough to meet 50 ms."""
    chat = load("edge_cluster").jobs[1]
    tpot, ttft, service = 0.00625, 0.1, 0.1 + 127 * 0.00625
    rate = 0.91 / service
    figures = {"latency_s": service, "ttft_s": ttft, "tpot_s": tpot, "period_s": service,
               "interval_s": 1 / rate, "busy_s": [service], "memory_ok": True,
               "usable_ok": True,
               "qoe_slack": {"throughput": 0.09, "ttft_ms": 0.8, "tpot_ms": 0.875}}
    scaled = chat.model_copy(update={"llm": chat.llm.model_copy(  # type: ignore[union-attr]
        update={"request_rate_per_s": rate})})
    out = queued(scaled, figures, Plan.single(0, 1), DeviceQueues.empty(1))
    ahead = in_flight(0.91)
    assert out["tpot_s"] == pytest.approx(tpot * (1 + ahead))
    assert out["latency_s"] == pytest.approx(service / (1 - 0.91))
    assert out["qoe_slack"]["tpot_ms"] < 0  # the mean request misses ...
    share = met_fraction(scaled, out, 1.0)
    assert share == pytest.approx(1 - 0.91 ** 8, abs=1e-9)  # ... but half of them meet
    assert shared_met_fraction(scaled, 0.5, out["sharing"][1], 1.0) > share  # lighter load


def test_misses_within_the_attainment_allowance_cost_nothing_in_the_reward() -> None:
    """Traffic cabinet at its busiest hour, static plans: the south vehicle stream's queue
    tail misses 0.5 % of its frames, within its p99 allowance, so only the north stream's
    misses beyond 1 % enter the reward; the info keeps both the misses and the excess."""
    import dataclasses

    import gymnasium as gym

    import dora_rl  # noqa: F401
    from dora_rl.env.edge_env import EdgeEnv, lexicographic_reward

    card = load("traffic_analytics")  # every job at its card's (busiest hour's) rate
    card = dataclasses.replace(card, jobs=tuple(j.model_copy(update={"rate_profile": None})
                                                for j in card.jobs))
    env: EdgeEnv = gym.make("dora_rl/TrafficAnalytics-v1", scenario=card, bandwidth="static",
                            episode_steps=5, interval_s=1.0).unwrapped  # type: ignore[assignment]
    env.reset(seed=0)
    keep = np.zeros(env.action_space.shape, dtype=np.int64)
    keep[: env.n_jobs] = 2  # keep every plan at the middle level
    _, reward, *_, info = env.step(keep)
    missed, excess = info["requests_missed"], info["requests_excess"]
    assert missed[1] > 0 and excess[1] == 0.0
    assert excess[0] == pytest.approx(missed[0] - 0.01 * 30.0)
    weighted = sum(w * x for w, x in zip(env.job_weights, excess, strict=True))
    assert reward == pytest.approx(lexicographic_reward(
        weighted, info["jobs_energy_j"], env.violation_price_j, env.requests_per_interval))
    env.attainment = [1.0] * env.n_jobs  # no allowance: every miss counts
    env.reset(seed=0)
    _, strict, *_ = env.step(keep)
    assert strict < reward
