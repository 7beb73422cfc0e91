"""The -v1 environments: the Gymnasium contract, and controllers that see observations only."""

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
from dora_rl.controllers import make
from dora_rl.controllers.evaluation import run_episode_infos
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.registration import ENV_IDS

FAST_IDS = ["dora_rl/Tiny-v1", "dora_rl/SmartHome-v1", "dora_rl/TrafficAnalytics-v1",
            "dora_rl/Edge-v1"]


def _make(env_id: str, **kwargs: object) -> gym.Env:  # type: ignore[type-arg]
    if env_id == "dora_rl/Edge-v1":
        kwargs.setdefault("scenario", "tiny")
    return gym.make(env_id, **kwargs)


def test_every_v1_id_is_tested() -> None:
    assert set(FAST_IDS) | {"dora_rl/EdgeCluster-v1"} == set(ENV_IDS)


@pytest.mark.parametrize("env_id", FAST_IDS)
def test_checkers_pass_without_warnings(env_id: str) -> None:
    env = _make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)


@pytest.mark.parametrize("env_id", ["dora_rl/SmartHome-v1", "dora_rl/TrafficAnalytics-v1"])
def test_observations_stay_in_the_space_and_masks_allow_every_taken_action(env_id: str) -> None:
    env = _make(env_id, split="test")
    base: EdgeEnv = env.unwrapped  # type: ignore[assignment]
    env.action_space.seed(3)
    obs, _ = env.reset(seed=3)
    for i in range(600):
        action = env.action_space.sample()
        obs, reward, terminated, truncated, info = env.step(action)
        assert env.observation_space.contains(obs) and np.isfinite(reward), i
        assert -1.0 - 1e-9 <= reward <= 0.0
        assert info["jobs_energy_j"] <= info["energy_j"] + 1e-9
        masks = base.action_masks()
        assert masks.shape == (int(np.sum(env.action_space.nvec)),) and masks.any()
        if truncated:
            obs, _ = env.reset()


def test_same_seed_gives_the_same_rollout_and_the_env_pickles() -> None:
    def rollout(env: gym.Env) -> list[float]:  # type: ignore[type-arg]
        env.action_space.seed(7)
        env.reset(seed=7)
        return [env.step(env.action_space.sample())[1] for _ in range(50)]

    env = _make("dora_rl/SmartHome-v1")
    first = rollout(env)
    assert rollout(env) == first
    assert rollout(pickle.loads(pickle.dumps(env))) == first


def test_a_controller_given_only_observations_acts_the_same_with_the_env_hidden() -> None:
    env = _make("dora_rl/SmartHome-v1", split="test")
    dora = make("dora", env)
    _, infos = run_episode_infos(env, dora, seed=1)
    env.reset(seed=1)
    observations, actions = [], []
    obs = env.reset(seed=1)[0]
    for i in range(60):
        action, _ = dora.predict(obs, episode_start=[i == 0])
        observations.append(obs)
        actions.append(action)
        obs = env.step(action)[0]
    # a fresh controller on an env that was never reset: it has no world, no control state
    blind_env = _make("dora_rl/SmartHome-v1", split="test")
    assert not hasattr(blind_env.unwrapped, "world")
    blind = make("dora", blind_env)
    for i, (o, a) in enumerate(zip(observations, actions, strict=True)):
        assert blind.predict(o, episode_start=[i == 0])[0].tolist() == a.tolist()


def test_dora_reacts_to_what_it_observes() -> None:
    env = _make("dora_rl/SmartHome-v1", split="test")
    dora = make("dora", env)
    obs = env.reset(seed=0)[0]
    lay = dora.spec.layout
    low = obs.copy()
    low[lay.job_start: lay.candidate_start] = -1.0  # every job's slack and state at the floor
    high = obs.copy()
    high[lay.candidate_start:] = 0.0  # no candidate present
    assert dora.predict(low)[0].tolist() != dora.predict(high)[0].tolist()


@pytest.mark.parametrize("name", ["static", "static-robust", "throughput", "dora", "greedy",
                                  "mpc", "foresight", "oracle", "random"])
def test_every_controller_runs_an_episode_on_smart_home(name: str) -> None:
    env = _make("dora_rl/SmartHome-v1", split="test", episode_steps=40)
    controller = make(name, env)
    _, infos = run_episode_infos(env, controller, seed=0)
    assert len(infos) == 40 and all(np.isfinite(i["energy_j"]) for i in infos)
    env.unwrapped.initial_plans = None  # type: ignore[attr-defined]


def test_the_greedy_peek_scores_no_worse_than_static_on_the_same_world() -> None:
    env = _make("dora_rl/SmartHome-v1", split="test", episode_steps=150)
    weights = env.unwrapped.job_weights  # type: ignore[attr-defined]
    totals = {}
    for name in ("static", "greedy"):
        _, infos = run_episode_infos(env, make(name, env), seed=2)
        totals[name] = (sum(sum(w * x for w, x in zip(weights, i["requests_excess"],
                                                      strict=True)) for i in infos),
                        sum(i["jobs_energy_j"] for i in infos))
    # the env's order: fewer weighted excess misses, or as few and no more energy
    assert totals["greedy"][0] < totals["static"][0] - 1e-9 or (
        totals["greedy"][0] <= totals["static"][0] + 1e-9
        and totals["greedy"][1] <= totals["static"][1] + 1e-9)


def test_subproc_vec_env_of_two_works() -> None:
    # gym.make by reference: "dora_rl:" imports the package in the worker, which registers ids
    vec = SubprocVecEnv([functools.partial(gym.make, "dora_rl:dora_rl/Tiny-v1")
                         for _ in range(2)])
    try:
        obs = vec.reset()
        assert obs.shape == (2, vec.observation_space.shape[0])
        for _ in range(5):
            obs, _, _, _ = vec.step(np.array([vec.action_space.sample() for _ in range(2)]))
        assert np.isfinite(obs).all()
    finally:
        vec.close()


def test_adversarial_dynamics_never_give_nan_and_count_missed_requests() -> None:
    env: EdgeEnv = _make("dora_rl/SmartHome-v1").unwrapped  # type: ignore[assignment]
    env.reset(seed=0)
    laptop_only = np.zeros(env.n_devices, dtype=bool)
    laptop_only[env.scenario.device_index("laptop")] = True
    missed = 0.0
    for step in range(40):
        world = env.next_world
        state = world.state.replace(link_scale=np.zeros_like(world.state.link_scale),
                                    available=laptop_only,
                                    battery_wh=world.state.battery_wh * 0.0,
                                    cross_traffic=np.full_like(world.state.cross_traffic, 0.9))
        env.next_world = type(world)(state=state, job_active=world.job_active,
                                     qoe_scale=np.full_like(world.qoe_scale, 0.01),
                                     step=world.step)
        obs, reward, _, _, info = env.step(env.action_space.sample())
        assert np.isfinite(obs).all() and np.isfinite(reward), step
        assert env.observation_space.contains(obs)
        missed += sum(info["requests_missed"])
    assert missed > 0


def _with_fade(env: EdgeEnv, start: int, end: int, scale: float,
               devices: list[int]) -> None:
    """The links of ``devices`` fade to ``scale`` of their rate during steps [start, end)."""
    step = env.dynamics.step
    factor = np.where(np.isin(np.arange(env.n_devices), devices), scale, 1.0)

    def faded(rng, energy=None):  # type: ignore[no-untyped-def]
        world = step(rng, energy)
        if start <= world.step < end:
            state = world.state.replace(link_scale=world.state.link_scale * factor)
            world = type(world)(state=state, job_active=world.job_active,
                                qoe_scale=world.qoe_scale, step=world.step)
        return world

    env.dynamics.step = faded  # type: ignore[method-assign]


def test_dora_misses_fewer_requests_than_static_through_a_deep_fade() -> None:
    """The phone, in the assistant's plan, walks out of WiFi range: dora moves the assistant
    to devices still in range (make-before-break: the old plan serves meanwhile)."""
    missed = {}
    for name in ("static", "dora"):
        env = _make("dora_rl/SmartHome-v1", bandwidth="static", episode_steps=100)
        base: EdgeEnv = env.unwrapped  # type: ignore[assignment]
        phone = base.scenario.device_index("phone")
        env.reset(seed=0)
        assert any(phone in (jc.plan.devices if jc.plan else ()) for jc in base.ctl.jobs)
        _with_fade(base, 20, 80, 0.0, [phone])
        _, infos = run_episode_infos(env, make(name, env), seed=0)
        missed[name] = sum(sum(i["requests_missed"]) for i in infos)
    assert missed["static"] > 0
    assert missed["dora"] < 0.5 * missed["static"]


def test_action_masks_forbid_plans_on_a_device_that_left_and_empty_slots() -> None:
    env: EdgeEnv = _make("dora_rl/SmartHome-v1", bandwidth="static").unwrapped  # type: ignore[assignment]
    env.reset(seed=0)
    lost = min(d for jc in env.ctl.jobs if jc.plan is not None for d in jc.plan.devices)
    gone = env.world.state.available.copy()
    gone[lost] = False
    world = env.world
    env.world = type(world)(state=world.state.replace(available=gone),
                            job_active=world.job_active, qoe_scale=world.qoe_scale,
                            step=world.step)
    masks = env.action_masks()
    width = (env.k + 1) * 4
    for j, jc in enumerate(env.ctl.jobs):
        mask = masks[j * width:(j + 1) * width].reshape(env.k + 1, 4)
        plans = env.cands[j].plans
        allowed = [i < len(plans) and lost not in plans[i].devices for i in range(env.k)]
        for i in range(env.k):
            assert mask[i + 1].all() == allowed[i] == mask[i + 1].any()
        keep_ok = jc.plan is not None and lost not in jc.plan.devices
        assert mask[0].all() == (keep_ok or not any(allowed))  # keeping is the last resort
    modes = masks[env.n_jobs * width:].reshape(env.n_devices, env.n_modes + 1)
    for d, f in enumerate(env.model.devices):
        assert modes[d, :f.n_modes].all() and not modes[d, f.n_modes:env.n_modes].any()


def test_devices_switched_off_draw_nothing_and_static_beats_throughput_on_energy() -> None:
    """traffic_analytics powers unused devices off: the interval's energy follows the plans."""
    energy = {}
    for name in ("static", "throughput"):
        env = _make("dora_rl/TrafficAnalytics-v1", bandwidth="static", episode_steps=30)
        _, infos = run_episode_infos(env, make(name, env), seed=0)
        base: EdgeEnv = env.unwrapped  # type: ignore[assignment]
        used = {d for jc in base.ctl.jobs if jc.plan is not None for d in jc.plan.devices}
        idle_on = sum(base.model.devices[d].idle_w for d in used) * base.interval_s
        assert all(i["energy_j"] >= idle_on - 1e-9 for i in infos)
        unused = [d for d in range(base.n_devices) if d not in used]
        assert all(base.last.devices[d].total_j == 0 for d in unused)  # type: ignore[union-attr]
        energy[name] = (sum(i["energy_j"] for i in infos),
                        sum(sum(i["requests_missed"]) for i in infos))
        requests = base.requests_per_interval
        env.unwrapped.initial_plans = None  # type: ignore[attr-defined]
    assert energy["static"][1] < 0.02 * 30 * requests  # queue tails only (1.2 % measured)
    assert energy["static"][0] < energy["throughput"][0]


@pytest.fixture(scope="module")
def edge_cluster() -> gym.Env:  # type: ignore[type-arg]
    """One EdgeCluster env for the module: its first reset plans GPT-2 fine-tuning."""
    return _make("dora_rl/EdgeCluster-v1", episode_steps=500)


def test_checkers_pass_on_edge_cluster_and_observations_stay_in_space(
        edge_cluster: gym.Env) -> None:  # type: ignore[type-arg]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(edge_cluster.unwrapped, skip_render_check=True)
        sb3_check_env(edge_cluster.unwrapped, warn=True)
    edge_cluster.action_space.seed(1)
    obs, _ = edge_cluster.reset(seed=1)
    for i in range(1000):
        obs, reward, terminated, truncated, _ = edge_cluster.step(
            edge_cluster.action_space.sample())
        assert edge_cluster.observation_space.contains(obs) and np.isfinite(reward), i
        if terminated or truncated:
            obs, _ = edge_cluster.reset()


def test_a_training_price_for_misses_makes_energy_visible_and_a_bad_price_is_refused() -> None:
    """The same step under the lexicographic price and under 10 J a miss: the reward follows
    the formula with the price given, and a cheaper miss puts energy in plain sight."""
    from dora_rl.env.edge_env import lexicographic_reward
    from dora_rl.errors import DoraError

    rewards = []
    for price in (None, 10.0):
        env = EdgeEnv("traffic_analytics", split="test", episode_steps=3,
                      violation_price_j=price)
        env.reset(seed=0)
        _, reward, *_, info = env.step(np.zeros(env.action_space.shape, dtype=np.int64))
        weighted = sum(w * x for w, x in zip(env.job_weights, info["requests_excess"],
                                             strict=True))
        assert reward == pytest.approx(lexicographic_reward(
            weighted, info["jobs_energy_j"], env.violation_price_j, env.requests_per_interval))
        rewards.append(reward)
    assert env.violation_price_j == 10.0
    assert abs(rewards[1]) > 100 * abs(rewards[0])  # the energy term, no longer a rounding error
    with pytest.raises(DoraError, match="violation_price_j"):
        EdgeEnv("tiny", violation_price_j=0.0)
