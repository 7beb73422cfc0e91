"""Warm-start labels name the plan in force: the same decisions as the teacher's, replayed
exactly, but no longer almost all "keep"."""

from __future__ import annotations

import numpy as np

from dora_rl.controllers import make
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.training.pretrain import target_action
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
