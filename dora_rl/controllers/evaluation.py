"""One evaluation loop for every controller (learned or not)."""

from __future__ import annotations

from typing import Any, Protocol

import gymnasium as gym
import numpy as np


class Predictor(Protocol):
    """SB3's policy protocol."""

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Any, Any]: ...


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


def run_episode(env: gym.Env[Any, Any], controller: Predictor, seed: int) -> dict[str, float]:
    """One episode's totals: reward, energy (all of it and the jobs' part, J per episode),
    the share of requests missed and the misses beyond the jobs' attainment allowances (the
    ``-v1`` envs), the share of intervals with any miss, replans and steps."""
    reward, infos = run_episode_infos(env, controller, seed)
    steps = max(len(infos), 1)
    totals = {"reward": reward,
              "energy_j": sum(float(i["energy_j"]) for i in infos),
              "qoe_violation_rate": sum(float(i["qoe_violation_any"]) for i in infos) / steps,
              "replans": float(sum(i["replans"] for i in infos)), "steps": float(len(infos))}
    if infos and "requests_excess" in infos[0]:
        scored = sum(sum(i["requests"]) for i in infos)
        totals["jobs_energy_j"] = sum(float(i["jobs_energy_j"]) for i in infos)
        totals["request_violation_rate"] = \
            sum(sum(i["requests_missed"]) for i in infos) / scored if scored > 0 else 0.0
        totals["excess_missed"] = float(sum(sum(i["requests_excess"]) for i in infos))
    return totals


def evaluate(env: gym.Env[Any, Any], controller: Predictor,
             seeds: list[int]) -> dict[str, float]:
    """Mean totals over one episode per seed."""
    runs = [run_episode(env, controller, s) for s in seeds]
    return {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
