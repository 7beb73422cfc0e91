"""The environment honours the Gymnasium contract and survives adversarial dynamics."""

from __future__ import annotations

import functools
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from stable_baselines3.common.vec_env import SubprocVecEnv

import dora_rl  # noqa: F401  (registers the ids)
from dora_rl.controllers import evaluate, make
from dora_rl.env import EdgeEnv
from dora_rl.env.edge_env import encode_action
from dora_rl.env.transition import weight_bytes
from dora_rl.registration import ENV_IDS

FAST_IDS = ["dora_rl/Tiny-v0", "dora_rl/SmartHome-v0", "dora_rl/TrafficAnalytics-v0"]


def _make(env_id: str, **kwargs: object) -> gym.Env:  # type: ignore[type-arg]
    if env_id == "dora_rl/Edge-v0":
        kwargs.setdefault("scenario", "tiny")
    return gym.make(env_id, **kwargs)


@pytest.mark.parametrize("env_id", [*FAST_IDS, "dora_rl/Edge-v0"])
def test_checkers_pass_without_warnings(env_id: str) -> None:
    env = _make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)


@pytest.fixture(scope="module")
def edge_cluster() -> gym.Env:  # type: ignore[type-arg]
    """One EdgeCluster env for the module: its first reset plans GPT-2 fine-tuning (~35 s)."""
    return _make("dora_rl/EdgeCluster-v0", episode_steps=2000)


def test_checkers_pass_without_warnings_on_edge_cluster(edge_cluster: gym.Env) -> None:  # type: ignore[type-arg]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(edge_cluster.unwrapped, skip_render_check=True)
        sb3_check_env(edge_cluster.unwrapped, warn=True)


def test_edge_cluster_observations_stay_in_space(edge_cluster: gym.Env) -> None:  # type: ignore[type-arg]
    edge_cluster.action_space.seed(1)
    obs, _ = edge_cluster.reset(seed=1)
    for i in range(10_000):
        obs, reward, terminated, truncated, _ = edge_cluster.step(
            edge_cluster.action_space.sample())
        assert edge_cluster.observation_space.contains(obs) and np.isfinite(reward), i
        if terminated or truncated:
            obs, _ = edge_cluster.reset(seed=i)


def test_every_id_is_registered() -> None:
    for env_id in ENV_IDS:
        assert env_id in gym.registry


@pytest.mark.parametrize("env_id", FAST_IDS)
def test_same_seed_same_rollout(env_id: str) -> None:
    runs = []
    for _ in range(2):
        env = _make(env_id)
        env.action_space.seed(3)
        obs, _ = env.reset(seed=11)
        trace = [obs]
        for _ in range(60):
            obs, reward, _, _, info = env.step(env.action_space.sample())
            trace += [obs, np.array([reward, info["energy_j"]])]
        runs.append(np.concatenate([np.ravel(x) for x in trace]))
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("bandwidth", ["trace", "static"])
def test_the_interval_memo_changes_no_figure(bandwidth: str) -> None:
    """An env whose memos are emptied after every step gives the same rollout: the keys hold
    every input the figures depend on."""
    runs = []
    for forget in (False, True):
        env = gym.make("dora_rl/SmartHome-v0", bandwidth=bandwidth)
        inner = env.unwrapped
        env.action_space.seed(4)
        rng = np.random.default_rng(2)
        hold = encode_action([0] * inner.n_jobs, [2] * inner.n_jobs)
        obs, _ = env.reset(seed=5)
        trace = [obs]
        for _ in range(150):
            action = env.action_space.sample() if rng.random() < 0.3 else hold
            obs, reward, _, _, info = env.step(action)
            trace += [obs, np.array([reward, info["energy_j"], *info["latency_ms"]])]
            if forget:
                for memo in inner._outcomes:
                    memo.clear()
                inner._planned_memo.clear()
        runs.append(np.concatenate([np.ravel(x) for x in trace]))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_plans_over_a_fading_wifi_link_skip_the_memo_and_steady_ones_use_it() -> None:
    memo_plans = {}
    for bandwidth in ("trace", "static"):
        env = gym.make("dora_rl/SmartHome-v0", bandwidth=bandwidth)
        inner = env.unwrapped
        env.action_space.seed(0)
        env.reset(seed=0)
        for _ in range(200):
            env.step(env.action_space.sample())
        wifi = inner.dynamics.wifi
        memo_plans[bandwidth] = [any(wifi[d] for d in key[0].devices) and len(key[0].devices) > 1
                                 for memo in inner._outcomes for key in memo]
    assert memo_plans["trace"] and not any(memo_plans["trace"])  # single-device plans only
    assert any(memo_plans["static"])  # the same WiFi-crossing plan, memoised on steady links


def test_pickle_round_trip_keeps_the_episode() -> None:
    env = _make("dora_rl/Tiny-v0").unwrapped
    env.reset(seed=1)
    clone = pickle.loads(pickle.dumps(env))
    action = np.array([1 * 4 + 2])  # candidate 0, bandwidth level 2
    a = env.step(action)
    b = clone.step(action)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]


def test_subproc_vec_env_of_two_works() -> None:
    # gym.make by reference (the workers need not import this module); "dora_rl:" imports the
    # package in the worker, which registers the ids
    vec = SubprocVecEnv([functools.partial(gym.make, "dora_rl:dora_rl/Tiny-v0") for _ in range(2)])
    try:
        obs = vec.reset()
        assert obs.shape == (2, vec.observation_space.shape[0])
        for _ in range(5):
            obs, _, _, _ = vec.step(np.array([vec.action_space.sample() for _ in range(2)]))
        assert np.isfinite(obs).all()
    finally:
        vec.close()


@pytest.mark.parametrize("env_id", [*FAST_IDS, "dora_rl/Edge-v0"])
def test_observations_stay_in_space_under_random_actions(env_id: str) -> None:
    env = _make(env_id, episode_steps=2000)
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    space = env.observation_space
    for i in range(10_000):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert space.contains(obs), (i, obs)
        assert np.isfinite(reward) and np.isfinite(info["energy_j"])
        if terminated or truncated:
            obs, _ = env.reset(seed=i)


def test_adversarial_dynamics_never_give_nan_and_report_violations() -> None:
    env: EdgeEnv = _make("dora_rl/SmartHome-v0").unwrapped  # type: ignore[assignment]
    env.reset(seed=0)
    laptop_only = np.zeros(len(env.scenario.devices), dtype=bool)
    laptop_only[env.scenario.device_index("laptop")] = True
    battery = env.world.state.battery_wh * 0.0
    for step in range(40):
        world = env.next_world
        state = world.state.replace(link_scale=np.zeros_like(world.state.link_scale),
                                    available=laptop_only, battery_wh=battery,
                                    cross_traffic=np.full_like(world.state.cross_traffic, 0.9))
        env.next_world = type(world)(state=state, job_active=world.job_active,
                                     qoe_scale=np.full_like(world.qoe_scale, 0.01),
                                     step=world.step)
        obs, reward, _, _, info = env.step(env.action_space.sample())
        assert np.isfinite(obs).all() and np.isfinite(reward), step
        assert env.observation_space.contains(obs)
        assert info["qoe_violation_any"] == 1


def test_oracle_is_never_worse_than_static_and_dora_beats_static_in_a_deep_fade() -> None:
    env = _make("dora_rl/Tiny-v0", bandwidth="synthetic", episode_steps=120)
    seeds = [0, 1, 2]
    static = evaluate(env, make("static", env), seeds)
    oracle = evaluate(env, make("oracle", env), seeds)
    assert oracle["qoe_violation_rate"] <= static["qoe_violation_rate"] + 1e-9
    assert oracle["reward"] >= static["reward"] - 1e-6


def _with_fade(env: EdgeEnv, start: int, end: int, scale: float,
               devices: list[int] | None = None) -> None:
    """Make the links of ``devices`` (default all) fade to ``scale`` of their rate during steps
    [start, end)."""
    step = env.dynamics.step
    factor = np.full(len(env.scenario.devices), scale)
    if devices is not None:
        factor = np.where(np.isin(np.arange(len(factor)), devices), scale, 1.0)

    def faded(rng, energy=None):  # type: ignore[no-untyped-def]
        world = step(rng, energy)
        if start <= world.step < end:
            state = world.state.replace(link_scale=world.state.link_scale * factor)
            world = type(world)(state=state, job_active=world.job_active,
                                qoe_scale=world.qoe_scale, step=world.step)
        return world

    env.dynamics.step = faded  # type: ignore[method-assign]


def test_dora_beats_static_through_a_deep_fade() -> None:
    """The phone (the assistant's first stage) walks out of WiFi range: dora moves the stage to
    devices whose links still carry its weights; static keeps missing QoE."""
    results = {}
    for name in ("static", "dora"):
        env = gym.make("dora_rl/SmartHome-v0", bandwidth="static", episode_steps=100)
        phone = env.unwrapped.scenario.device_index("phone")  # type: ignore[attr-defined]
        _with_fade(env.unwrapped, 20, 80, 0.002, [phone])  # type: ignore[arg-type]
        results[name] = evaluate(env, make(name, env), [0])
    assert results["static"]["qoe_violation_rate"] > 0.3
    # moving the stage's weights to a device still in range stalls the assistant ~30 s
    assert results["dora"]["qoe_violation_rate"] < 0.75 * results["static"]["qoe_violation_rate"]
    assert results["dora"]["reward"] > results["static"]["reward"]


def test_dora_time_mixes_two_plans_for_a_time_to_finish_deadline() -> None:
    from pathlib import Path

    from dora_rl.config.loader import resolve, validate
    from dora_rl.config.schema import ScenarioSpec
    from dora_rl.planner.compose import time_mix
    from dora_rl.synthetic import scenario_dict

    data = scenario_dict(np.random.default_rng(5), 3, 4, "training", wifi_fraction=0.0,
                         unused_off=True)
    data["jobs"][0]["training"]["iterations"] = 100
    data["jobs"][0]["qoe"] = {"deadline_s": 30.0}  # 0.3 s per iteration on average
    data["dynamics"] = {"bandwidth": "static"}
    env = EdgeEnv(resolve(validate(ScenarioSpec, data, "<test>"), "<test>", Path(".")),
                  episode_steps=40, k=8)
    env.reset(seed=0)
    cand = env.cache.get(env.world.state.usable)[0]
    # someone loads the devices of the cheapest plan: it now misses the deadline alone
    load = np.zeros(len(env.scenario.devices))
    load[list(cand.plans[0].devices)] = 0.2
    step = env.dynamics.step

    def loaded(rng, energy=None):  # type: ignore[no-untyped-def]
        world = step(rng, energy)
        return type(world)(state=world.state.replace(load=load), job_active=world.job_active,
                           qoe_scale=world.qoe_scale, step=world.step)

    env.dynamics.step = loaded  # type: ignore[method-assign]
    state = env.models[0].nominal.replace(load=load)
    figures = [env.models[0].evaluate(p, state) for p in cand.plans]

    class F:
        def __init__(self, m: dict) -> None:  # type: ignore[type-arg]
            self.time_s, self.energy_j = m["iteration_s"], m["energy_j"]

    mix = time_mix([F(m) for m in figures], 0.3)
    single = min(m["energy_j"] for m in figures if m["iteration_s"] <= 0.3)
    assert figures[0]["iteration_s"] > 0.3 and mix.energy_j < single  # mixing pays here
    dora = make("dora", env)
    obs, _ = env.reset(seed=0)
    used = []
    for _ in range(40):
        obs, _, _, _, info = env.step(dora.predict(obs)[0])
        used.append(cand.plans.index(env.plans[0]))
    shares = np.bincount(used[1:], minlength=len(cand.plans)) / len(used[1:])
    np.testing.assert_allclose(shares, mix.fractions, atol=0.08)


def test_action_masks_forbid_keeping_a_plan_on_a_device_that_left_and_empty_slots() -> None:
    from dora_rl.env.edge_env import BANDWIDTH_LEVELS, decode_action, encode_action

    env: EdgeEnv = _make("dora_rl/SmartHome-v0", bandwidth="static").unwrapped  # type: ignore[assignment]
    env.reset(seed=0)
    assert decode_action(encode_action([3, 0], [1, 3])) == ([3, 0], [1, 3])
    world = env.world
    gone = world.state.available.copy()
    lost = min(d for p in env.plans if p is not None for d in p.devices)
    gone[lost] = False  # a device a current plan uses has left
    env.world = type(world)(state=world.state.replace(available=gone),
                            job_active=world.job_active, qoe_scale=world.qoe_scale,
                            step=world.step)
    mask = env.action_masks().reshape(env.n_jobs, -1)
    assert mask.shape[1] == (env.k + 1) * BANDWIDTH_LEVELS
    cands = env.cache.get(env.world.state.usable)
    for j, plan in enumerate(env.plans):
        keep = mask[j, :BANDWIDTH_LEVELS]
        assert keep.all() == (plan is not None and lost not in plan.devices) == keep.any()
        for i in range(env.k):
            levels = mask[j, (i + 1) * BANDWIDTH_LEVELS:(i + 2) * BANDWIDTH_LEVELS]
            allowed = i < len(cands[j].plans) and lost not in cands[j].plans[i].devices
            assert levels.all() == allowed == levels.any()
        assert mask[j].any()
    assert not mask[:, :BANDWIDTH_LEVELS].all()  # some job may not keep its plan


def test_devices_switched_off_draw_nothing_and_jobs_start_on_plans_that_fit_together() -> None:
    """traffic_analytics powers unused devices off: the interval's energy must follow the plan
    (not only idle power), and the four streams start on a combination that fits the shared
    devices (each job's own optimum would pile them onto one Jetson)."""
    results = {}
    for name in ("static", "throughput"):
        env = gym.make("dora_rl/TrafficAnalytics-v0", bandwidth="static", episode_steps=30)
        results[name] = evaluate(env, make(name, env), [0])
        inner: EdgeEnv = env.unwrapped  # type: ignore[assignment]
        used = {d for p in inner.plans if p is not None for d in p.devices}
        idle_on = sum(inner.idle_list[d] for d in used) * inner.interval_s
        assert results[name]["energy_j"] / 30 >= idle_on - 1e-9
    assert results["static"]["qoe_violation_rate"] == 0.0
    assert results["static"]["energy_j"] < 0.79 * results["throughput"]["energy_j"]


def test_a_switch_stalls_the_job_until_its_weights_arrive() -> None:
    """Moving the assistant (GBs of weights over WiFi) stalls it for several intervals: its
    QoE is missed and its latency carries the wait until the last byte has arrived."""
    env = gym.make("dora_rl/SmartHome-v0", bandwidth="static", episode_steps=200).unwrapped
    env.reset(seed=0)
    cand = env.cache.get(env.world.state.usable)[0]
    target = next(i for i, p in enumerate(cand.plans)
                  if p != env.plans[0] and sum(weight_bytes(env.models[0].tables,
                                                            env.plans[0], p).values()) > 1e9)
    keep = encode_action([0] * env.n_jobs, [2] * env.n_jobs)
    _, _, _, _, info = env.step(encode_action([target + 1] + [0] * (env.n_jobs - 1),
                                              [2] * env.n_jobs))
    assert info["replans"] >= 1 and env.down_s[0] > 0
    stalled_steps = 0
    while env.pending[0] or env.down_s[0] > 0:
        if env.down_s[0] >= env.interval_s:  # a whole interval without service
            assert info["qoe_violation"][0] == 1
        _, _, _, _, info = env.step(keep)
        stalled_steps += 1
        assert stalled_steps < 200
    assert stalled_steps >= 2
    alone = env.models[0].evaluate(env.plans[0], env.job_view(0), check=False)
    assert info["latency_ms"][0] == pytest.approx(alone["latency_s"] * 1e3)
