"""A loaded controller's NumPy decision path gives SB3's deterministic actions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dora_rl.controllers.learned import GreedyActor, load

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = sorted(p.parent for p in (ROOT / "checkpoints").glob("*/*/config.yaml"))


@pytest.mark.parametrize("run_dir", CHECKPOINTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_greedy_actions_equal_sb3_deterministic_predict(run_dir: Path) -> None:
    controller = load(run_dir)
    assert controller.greedy is not None
    env = controller.make_env()
    rng = np.random.default_rng(0)
    shape = env.observation_space.shape
    observations = [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(300)]
    obs, _ = env.reset(seed=0)
    for _ in range(100):  # and observations the env really produces
        observations.append(obs)
        obs, *_ = env.step(env.action_space.sample())
    for obs in observations:
        fast, state = controller.predict(obs, deterministic=True)
        slow, _ = controller.policy.predict(obs, deterministic=True)
        assert state is None
        assert fast.dtype == slow.dtype and fast.tolist() == slow.tolist()


def test_a_stochastic_or_batched_call_keeps_sb3s_path(monkeypatch: pytest.MonkeyPatch) -> None:
    controller = load(CHECKPOINTS[0])
    calls = []
    sb3 = controller.policy.predict

    def spy(obs, state=None, episode_start=None, deterministic=False):  # type: ignore[no-untyped-def]
        calls.append((np.shape(obs), deterministic))
        return sb3(obs, state, episode_start, deterministic)

    monkeypatch.setattr(controller.policy, "predict", spy)
    obs = np.zeros((4, *controller.policy.observation_space.shape), dtype=np.float32)
    action, _ = controller.predict(obs, deterministic=True)
    assert action.shape == (4, len(controller.policy.action_space.nvec))
    controller.predict(obs[0], deterministic=False)
    controller.predict(obs[0], deterministic=True)  # the greedy path: no call
    assert calls == [(obs.shape, True), (obs[0].shape, False)]


def test_a_policy_of_another_shape_has_no_greedy_actor() -> None:
    import gymnasium as gym
    from stable_baselines3.common.policies import ActorCriticPolicy

    box = gym.spaces.Box(-1, 1, (3,))
    policy = ActorCriticPolicy(box, gym.spaces.Box(-1, 1, (2,)), lambda _: 0.0)
    assert GreedyActor.of(policy) is None


def test_a_near_tie_between_logits_defers_to_sb3() -> None:
    # one linear layer, identity head: the logits are the tanh of the observation
    eye = np.eye(3, dtype=np.float32)
    zeros = np.zeros(3, dtype=np.float32)
    actor = GreedyActor([(eye, zeros)], False, (eye, zeros), [3])
    clear = actor(np.array([0.1, 0.5, 0.2], dtype=np.float32))
    assert clear is not None and clear.tolist() == [1]
    assert actor(np.array([0.1, 0.5, 0.5 + 1e-7], dtype=np.float32)) is None
