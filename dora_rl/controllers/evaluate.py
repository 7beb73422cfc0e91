"""One evaluation loop for every controller (learned or not)."""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np


class Predictor(Protocol):
    """SB3's policy protocol."""

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Any, Any]: ...


def run_episode(env: gym.Env[Any, Any], controller: Predictor, seed: int) -> dict[str, float]:
    """One episode; returns its totals (reward, energy, violation rate, replans, steps)."""
    obs, _ = env.reset(seed=seed)
    totals = {"reward": 0.0, "energy_j": 0.0, "qoe_violation_rate": 0.0, "replans": 0.0,
              "steps": 0.0}
    done, state = False, None
    while not done:
        action, state = controller.predict(obs, state, deterministic=True)
        obs, reward, terminated, truncated, info = env.step(action)
        totals["reward"] += float(reward)
        totals["energy_j"] += info["energy_j"]
        totals["qoe_violation_rate"] += info["qoe_violation_any"]
        totals["replans"] += info["replans"]
        totals["steps"] += 1
        done = terminated or truncated
    totals["qoe_violation_rate"] /= max(totals["steps"], 1.0)
    return totals


def run_episode_infos(env: gym.Env[Any, Any], controller: Predictor,
                      seed: int) -> tuple[float, list[dict[str, Any]]]:
    """One episode; returns its total reward and every step's ``info``."""
    obs, _ = env.reset(seed=seed)
    total, infos, state = 0.0, [], None
    done, start = False, True
    while not done:
        action, state = controller.predict(obs, state, episode_start=np.array([start]),
                                           deterministic=True)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        infos.append(info)
        done, start = terminated or truncated, False
    return total, infos


def evaluate(env: gym.Env[Any, Any], controller: Predictor,
             seeds: list[int]) -> dict[str, float]:
    """Mean totals over one episode per seed."""
    runs = [run_episode(env, controller, s) for s in seeds]
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
