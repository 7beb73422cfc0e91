"""The -v1 environments: the Gymnasium contract, and controllers that see observations only."""

from __future__ import annotations

import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import dora_rl  # noqa: F401  (registers the ids)
from dora_rl.controllers import make
from dora_rl.controllers.evaluate import run_episode_infos
from dora_rl.env.control_env import ControlEnv
from dora_rl.registration import CONTROL_ENV_IDS

FAST_IDS = ["dora_rl/Tiny-v1", "dora_rl/SmartHome-v1", "dora_rl/TrafficAnalytics-v1",
            "dora_rl/Edge-v1"]


def _make(env_id: str, **kwargs: object) -> gym.Env:  # type: ignore[type-arg]
    if env_id == "dora_rl/Edge-v1":
        kwargs.setdefault("scenario", "tiny")
    return gym.make(env_id, **kwargs)


def test_every_v1_id_is_tested() -> None:
    assert set(FAST_IDS) | {"dora_rl/EdgeCluster-v1"} == set(CONTROL_ENV_IDS)


@pytest.mark.parametrize("env_id", FAST_IDS)
def test_checkers_pass_without_warnings(env_id: str) -> None:
    env = _make(env_id)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)


@pytest.mark.slow
def test_checkers_pass_without_warnings_on_edge_cluster() -> None:
    env = _make("dora_rl/EdgeCluster-v1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(env.unwrapped, skip_render_check=True)
        sb3_check_env(env.unwrapped, warn=True)


@pytest.mark.parametrize("env_id", ["dora_rl/SmartHome-v1", "dora_rl/TrafficAnalytics-v1"])
def test_observations_stay_in_the_space_and_masks_allow_every_taken_action(env_id: str) -> None:
    env = _make(env_id, split="test")
    base: ControlEnv = env.unwrapped  # type: ignore[assignment]
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
    for _ in range(60):
        action, _ = dora.predict(obs)
        observations.append(obs)
        actions.append(action)
        obs = env.step(action)[0]
    # a fresh controller on an env that was never reset: it has no world, no control state
    blind_env = _make("dora_rl/SmartHome-v1", split="test")
    assert not hasattr(blind_env.unwrapped, "world")
    blind = make("dora", blind_env)
    for o, a in zip(observations, actions, strict=True):
        assert blind.predict(o)[0].tolist() == a.tolist()


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


@pytest.mark.parametrize("name", ["static", "throughput", "dora", "oracle", "random"])
def test_every_controller_runs_an_episode_on_smart_home(name: str) -> None:
    env = _make("dora_rl/SmartHome-v1", split="test", episode_steps=40)
    controller = make(name, env)
    _, infos = run_episode_infos(env, controller, seed=0)
    assert len(infos) == 40 and all(np.isfinite(i["energy_j"]) for i in infos)
    env.unwrapped.initial_plans = None  # type: ignore[attr-defined]


def test_the_oracle_misses_no_more_requests_than_static_on_the_same_world() -> None:
    env = _make("dora_rl/SmartHome-v1", split="test", episode_steps=150)
    totals = {}
    for name in ("static", "oracle"):
        _, infos = run_episode_infos(env, make(name, env), seed=2)
        totals[name] = (sum(sum(i["requests_missed"]) for i in infos),
                        sum(i["jobs_energy_j"] for i in infos))
    assert totals["oracle"][0] <= totals["static"][0] + 1e-9
