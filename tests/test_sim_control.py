"""``dora_rl/Sim-v1``: the interval model's control with every interval simulated."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from dora_rl.costmodel import Plan
from dora_rl.dynamics import RuntimeDynamics
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.scenarios import load
from dora_rl.sim.env import ENV_ID, SimEnv
from dora_rl.sim.simulated_model import SimulatedModel, SimulationOrderError
from dora_rl.world import LEVELS, Decision, IntervalModel
from dora_rl.world.requests import queued

FAST = Plan.single(2, 8)
SPLIT = Plan(stage_end=(4, 8), stage_devices=((1,), (2,)))  # mid then fast, over WiFi


def _keep(env: EdgeEnv) -> np.ndarray:
    """Keep every plan at the middle bandwidth level, every device at its nominal mode."""
    return np.array([LEVELS // 2] * env.n_jobs + [0] * env.n_devices)


def test_sim_v1_passes_the_gymnasium_checker_and_is_registered() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(SimEnv("tiny"), skip_render_check=True)
    import dora_rl  # noqa: F401  (registers the ids)

    env = gym.make(ENV_ID, scenario="tiny", episode_steps=5)
    assert isinstance(env.unwrapped, SimEnv)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert math.isfinite(reward)
    plain = EdgeEnv("tiny", episode_steps=5)
    plain.reset(seed=0)
    assert set(plain.step(_keep(plain))[4]) < set(info)
    assert {"sim_finished", "model_latency_ms", "model_energy_j"} <= set(info)


def test_same_seed_same_simulation_and_the_world_of_control_env() -> None:
    runs, worlds = [], []
    for cls in (SimEnv, SimEnv, EdgeEnv):
        env = cls("smart_home", split="test", episode_steps=80)
        env.reset(seed=7)
        trace, rows = [], []
        for _ in range(80):
            _, reward, _, _, info = env.step(_keep(env))
            trace.append((reward, info["energy_j"], info["latency_ms"], info["requests"]))
            w = env.world
            rows.append(np.concatenate([w.state.link_scale, w.state.available, w.state.load,
                                        w.state.cross_traffic, w.job_active, w.qoe_scale]))
        runs.append(repr(trace))
        worlds.append(np.array(rows))
    assert runs[0] == runs[1]
    np.testing.assert_array_equal(worlds[0], worlds[2])  # batteries aside, the same world


def test_requests_are_conserved_and_scored_once_under_random_control() -> None:
    env = SimEnv("smart_home", bandwidth="synthetic", episode_steps=300)
    env.action_space.seed(5)
    env.reset(seed=5)
    arrived, scored = [0, 0], [0.0, 0.0]
    for _ in range(300):
        info = env.step(env.action_space.sample())[4]
        for j, job in enumerate(env.sim.jobs):
            arrived[j] += info["sim_arrived"][j]
            scored[j] += info["requests"][j]
            assert arrived[j] == len(job.finished_units) + job.outstanding()
            assert info["requests_missed"][j] <= info["requests"][j]
        assert info["sim_outstanding"] == tuple(job.outstanding() for job in env.sim.jobs)
    for j, job in enumerate(env.sim.jobs):
        settled = sum(u.settled for u in job.finished_units) + sum(
            r.settled for r in job.backlog)
        # every finished request scored once, plus the ones whose miss became certain first
        assert scored[j] <= len(job.finished_units) + job.outstanding()
        assert scored[j] >= len(job.finished_units) - settled
    assert sum(len(job.finished_units) for job in env.sim.jobs) > 1000


def test_a_late_request_is_missed_as_soon_as_the_miss_is_certain() -> None:
    """Three requests at 0.9 s on the slow device (80 ms each against a 50 ms target): the
    first finishes at 0.98 s (missed), the others are still queued at 1.0 s, 100 ms old, and
    are scored missed then; when they finish (1.06 and 1.14 s) they are not scored again."""
    env = SimEnv("tiny", episode_steps=3, arrivals={"classify": [0.9, 0.9, 0.9]})
    env.initial_plans = [Plan.single(0, 8)]
    env.reset(seed=0)
    info = env.step(_keep(env))[4]
    assert info["requests"] == (3.0,) and info["requests_missed"] == (3.0,)
    assert info["sim_finished"] == (1,) and info["sim_outstanding"] == (2,)
    info = env.step(_keep(env))[4]
    assert info["requests"] == (0.0,) and info["sim_finished"] == (2,)
    assert info["latency_ms"][0] == pytest.approx((160.0 + 240.0) / 2)


def _model(storage: bool) -> tuple[SimulatedModel, IntervalModel, list]:
    scenario = load("tiny")
    dynamics = RuntimeDynamics(scenario)
    rng = np.random.default_rng(0)
    dynamics.reset(rng)
    worlds = [dynamics.step(rng) for _ in range(5)]
    plain = IntervalModel(scenario)
    model = SimulatedModel(scenario, models=plain.models,
                           arrivals={"classify": [0.5, 1.5, 2.5, 3.5, 4.5]})
    if not storage:  # weights cross the network from the device holding them
        plain.devices = model.devices = tuple(
            replace(f, storage_bytes_per_s=None) for f in model.devices)
    return model, plain, worlds


def test_a_switch_is_make_before_break_over_the_simulated_network() -> None:
    """Tiny, FAST -> SPLIT: ``mid`` gains 10 MB from ``fast`` through the access point at
    level 2 (0.75 of the airtime: 6.25 MB a second). The old plan serves both intervals of
    the move (8 ms), the weights' radio time is the interval model's, and the split plan
    serves from the interval after the cut-over (29.2 ms, the interval model's figure)."""
    model, plain, worlds = _model(storage=False)
    ctl = pctl = model.initial([FAST])
    model.start(ctl)
    latency, plain_latency, cuts = [], [], []
    for t, world in enumerate(worlds):
        decision = Decision(plans=(SPLIT if t == 0 else None,))
        ctl, out = model.transition(ctl, decision, world)
        pctl, pout = plain.transition(pctl, decision, world)
        assert ctl == pctl  # the control state is the interval model's
        latency.append(out.jobs[0].latency_ms)
        plain_latency.append(pout.jobs[0].latency_ms)
        cuts.append(out.jobs[0].cut_over)
        report = model.report
        assert report is not None
        if t < 2:  # the weights' interval: same radio seconds as the interval model charges
            for d in range(3):
                assert out.devices[d].tx_j == pytest.approx(pout.devices[d].tx_j, rel=1e-9)
                assert out.devices[d].rx_j == pytest.approx(pout.devices[d].rx_j, rel=1e-9)
            assert report.rx_s[1] > 0.2 and report.tx_s[2] > 0.1
    assert cuts == [False, True, False, False, False]
    assert latency[:2] == [pytest.approx(8.0)] * 2
    assert latency[2:] == [pytest.approx(29.2)] * 3
    # the interval model adds the mean M/D/1 wait of Poisson arrivals on the split's period
    # (this test's arrivals come one at a time: the simulated requests never queue)
    cost = plain.models[0]
    share = plain.shares([2], [True])[0]
    split = queued(cost.tables.job, cost.evaluate(SPLIT, cost.nominal.replace(
        medium_share=[share])))
    assert plain_latency[2:] == [pytest.approx(split["latency_s"] * 1e3)] * 3
    assert split["latency_s"] * 1e3 > 29.2
    assert model.weights_in_flight_bytes == [0.0]


def test_weights_read_from_storage_stay_off_the_network() -> None:
    model, _, worlds = _model(storage=True)
    ctl = model.initial([FAST])
    model.start(ctl)
    ctl, out = model.transition(ctl, Decision(plans=(SPLIT,)), worlds[0])
    assert out.jobs[0].cut_over and out.jobs[0].moved_bytes > 0
    assert model.report is not None and model.report.rx_s == (0.0, 0.0, 0.0)


def test_the_simulation_only_runs_forward_and_what_ifs_use_the_plain_model() -> None:
    env = SimEnv("tiny", episode_steps=5)
    env.reset(seed=0)
    before = env.ctl
    env.step(_keep(env))
    with pytest.raises(SimulationOrderError):
        env.model.transition(before, Decision(plans=(None,)), env.next_world)
    assert type(env.handle.model) is IntervalModel
    env.handle.model.transition(env.ctl, Decision(plans=(None,)), env.handle.peek())
    env.step(_keep(env))  # the what-if left the simulation alone
