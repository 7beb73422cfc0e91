"""The receding-horizon peek: it scores each decision over the coming intervals, answers in
any state, and refuses a live runtime."""

from __future__ import annotations

import gymnasium as gym
import pytest

import dora_rl  # noqa: F401  (registers the ids)
from dora_rl.controllers import make, run_episode_infos
from dora_rl.controllers.foresight import Foresight
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.errors import DoraError


def _score(env_id: str, controller: str, seed: int, steps: int,
           horizon: int | None = None) -> tuple[float, float, int]:
    env = gym.make(env_id, split="test", episode_steps=steps)
    chosen = make(controller, env)
    if horizon is not None:
        chosen = Foresight(env, horizon_intervals=horizon)
    _, infos = run_episode_infos(env, chosen, seed=seed)
    weights = env.unwrapped.job_weights  # type: ignore[attr-defined]
    return (round(sum(sum(w * m for w, m in zip(weights, i["requests_excess"], strict=True))
                      for i in infos), 6),
            sum(i["jobs_energy_j"] for i in infos), sum(i["replans"] for i in infos))


def test_a_longer_horizon_switches_where_one_interval_sees_only_the_cost() -> None:
    # on smart_home a switch's transfer costs energy at once and pays off later: scored over
    # one interval, keeping always looks cheaper
    one = _score("dora_rl/SmartHome-v1", "foresight", 1, 120, horizon=1)
    ahead = _score("dora_rl/SmartHome-v1", "foresight", 1, 120, horizon=30)
    assert one[2] == 0 < ahead[2]
    assert ahead[0] < one[0] or (ahead[0] == one[0] and ahead[1] < one[1])


def test_it_answers_in_a_state_it_did_not_lead_to() -> None:
    env = gym.make("dora_rl/SmartHome-v1", split="test", episode_steps=30)
    other = make("random", env)
    peek = make("foresight", env)
    obs, _ = env.reset(seed=2)
    for _ in range(10):  # a random walk leaves the state where foresight's plan would be
        obs, *_ = env.step(other.predict(obs)[0])
    action, _ = peek.predict(obs, deterministic=True)
    assert env.action_space.contains(action)
    base: EdgeEnv = env.unwrapped  # type: ignore[assignment]
    assert peek._first == base.t  # type: ignore[attr-defined]  (its worlds start here)


def test_a_live_runtime_is_refused_in_one_line() -> None:
    env = gym.make("dora_rl/Tiny-v1", split="test", episode_steps=10)
    obs, _ = env.reset(seed=0)
    env.unwrapped.live = True  # type: ignore[attr-defined]
    with pytest.raises(DoraError, match="foresight.*needs the coming intervals"):
        make("foresight", env).predict(obs)
