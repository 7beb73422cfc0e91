"""Warm-start labels name the plan in force: the same decisions as the teacher's, replayed
exactly, but no longer almost all "keep". A clone fits its teacher; DAgger labels the
policy's own states."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from stable_baselines3.common.base_class import BaseAlgorithm

from dora_rl.controllers import make
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.errors import ConfigError
from dora_rl.scenarios import load
from dora_rl.training.ppo_card import load_agent_settings
from dora_rl.training.pretrain import clone, collect, joined, policy_driver, target_action
from dora_rl.training.trainer import build_model, make_training_envs
from dora_rl.world import LEVELS


def test_labels_of_the_plan_in_force_replay_the_teachers_episode_exactly() -> None:
    teacher_env = EdgeEnv("smart_home", bandwidth="trace", split="train", episode_steps=60)
    replay_env = EdgeEnv("smart_home", bandwidth="trace", split="train", episode_steps=60)
    obs, _ = teacher_env.reset(seed=3)
    replay_env.reset(seed=3)
    teacher = make("dora", teacher_env)
    raw_keeps = label_keeps = 0
    done = False
    while not done:
        action, _ = teacher.predict(obs, deterministic=True)
        label = target_action(teacher_env, action)
        raw_keeps += sum(int(a) // LEVELS == 0 for a in action[:teacher_env.n_jobs])
        label_keeps += sum(int(a) // LEVELS == 0 for a in label[:teacher_env.n_jobs])
        obs, reward, _, truncated, info = teacher_env.step(action)
        _, replayed, _, _, again = replay_env.step(label)
        assert replayed == reward
        assert again["plan_ids"] == info["plan_ids"] and again["modes"] == info["modes"]
        assert again["invalid_choices"] == info["invalid_choices"]
        done = truncated
    assert raw_keeps > 100 and label_keeps < raw_keeps / 4
    assert np.array_equal(teacher_env.ctl.modes, replay_env.ctl.modes)


def _policy(card: str, env_kwargs: dict[str, Any]) -> BaseAlgorithm:
    settings = load_agent_settings(card, overrides={"env": env_kwargs})
    vec = make_training_envs(load(card), settings)
    return build_model(vec, settings, None)


def test_a_clone_of_the_oracle_reproduces_its_actions_on_its_training_observations() -> None:
    # smart_home, not tiny: on tiny the oracle holds one action all episode, which any
    # constant policy reproduces; here it uses a dozen joint actions
    kwargs = {"episode_steps": 60}
    model = _policy("smart_home", kwargs)
    demos = collect(load("smart_home"), "oracle", 3, seed=5, gamma=0.95, bandwidth=["trace"],
                    env_kwargs={**kwargs, "k": 4, "interval_s": 1.0})
    assert len(np.unique(demos.actions, axis=0)) >= 5
    fit = clone(model, demos, epochs=250, batch_size=64, learning_rate=3e-3, vf_coef=0.5,
                seed=0)
    assert fit["steps"] == 180
    assert fit["accuracy"] >= 0.9


def test_dagger_labels_the_states_the_policy_reaches() -> None:
    kwargs = {"episode_steps": 40}
    env_kwargs = {**kwargs, "k": 4, "interval_s": 1.0}
    model = _policy("tiny", kwargs)
    scenario = load("tiny")
    driven = collect(scenario, "greedy", 2, seed=7, gamma=0.95, bandwidth=["trace"],
                     env_kwargs=env_kwargs, driver=policy_driver(model))
    # the untrained policy drove: the rows are its states, the labels the teacher's answers
    replay = EdgeEnv(scenario, bandwidth="trace", split="train", **env_kwargs)
    teacher = make("greedy", replay)
    drive = policy_driver(model)
    obs, _ = replay.reset(seed=7)
    for row in range(40):
        assert np.array_equal(obs, driven.obs[row])
        label, _ = teacher.predict(obs, deterministic=True)
        assert np.array_equal(target_action(replay, np.asarray(label)), driven.actions[row])
        obs, *_ = replay.step(drive(replay, obs))
    both = joined(driven, driven)
    assert len(both.obs) == 160 and both.episode_reward == driven.episode_reward


def test_dagger_with_a_teacher_bound_to_its_own_trajectory_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="dagger_rounds needs a teacher"):
        load_agent_settings("tiny", overrides={"pretrain": {"teacher": "oracle",
                                                            "dagger_rounds": 2}})
