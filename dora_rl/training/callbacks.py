"""stable-baselines3 callbacks: ``dora/`` scalars in TensorBoard, and validation with the best
model kept."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HParam

from dora_rl.controllers.evaluation import run_episode_infos
from dora_rl.env.summary import finite_or_none, summarise


class DoraMetricsCallback(BaseCallback):
    """After every rollout, writes the training episodes' figures from ``info`` under
    ``dora/`` (:func:`dora_rl.env.summary.summarise`: energy, violation rate, p95 latency,
    replans, migrated MB, per job), and the run's hyperparameters once at the start.

    Args:
        job_names: The scenario's jobs (card order).
        episode_steps: Intervals per training episode.
        hparams: Flat hyperparameters to show in TensorBoard's HPARAMS tab.
    """

    def __init__(self, job_names: list[str], episode_steps: int,
                 hparams: dict[str, float | int | str | bool] | None = None) -> None:
        super().__init__()
        self.job_names, self.episode_steps = job_names, episode_steps
        self.hparams = hparams or {}
        self._infos: list[dict[str, Any]] = []

    def _on_training_start(self) -> None:
        if self.hparams:
            metrics = {"dora/energy_j": 0.0, "dora/qoe_violation_rate": 0.0,
                       "eval/mean_reward": 0.0}
            self.logger.record("hparams", HParam(self.hparams, metrics),
                               exclude=("stdout", "log", "json", "csv"))

    def _on_step(self) -> bool:
        self._infos.extend(self.locals.get("infos", ()))
        return True

    def _on_rollout_end(self) -> None:
        if not self._infos:
            return
        for key, value in summarise(self._infos, self.job_names, self.episode_steps).items():
            if math.isfinite(value):
                self.logger.record(f"dora/{key}", value)
        self._infos = []


def reference_figures(env: gym.Env[Any, Any], controller: Any, seeds: list[int],
                      job_names: list[str], episode_steps: int) -> dict[str, float]:
    """``controller``'s mean reward and summary figures on the validation episodes (what a
    policy's regret is measured against)."""
    rewards, infos = [], []
    for seed in seeds:
        reward, episode = run_episode_infos(env, controller, seed)
        rewards.append(reward)
        infos.extend(episode)
    return {"mean_reward": float(np.mean(rewards)),
            **summarise(infos, job_names, episode_steps)}


REGRET_KEYS = ("mean_reward", "jobs_energy_j", "excess_missed", "request_violation_rate")
"""Figures logged as regret against the reference (policy minus reference; for the reward,
reference minus policy, so that every regret is 0 at the reference and worse above it)."""


class ValidationCallback(BaseCallback):
    """Every ``freq_steps`` environment steps, runs the policy (deterministic) on the same
    validation episodes, logs ``eval/mean_reward`` and ``eval/dora/...``, saves the best model
    by mean episode reward to ``best_path`` and appends every result to ``history_path``.
    Given the ``reference`` figures of the hindsight oracle on the same episodes, it also logs
    ``eval/regret/<figure>`` (:data:`REGRET_KEYS`), so TensorBoard shows how far the policy is
    from the best schedule.

    Args:
        env: The validation environment (validation traces).
        seeds: Reset seeds of the validation episodes (the same every time).
        freq_steps: Environment steps (all training envs together) between validations.
        best_path: Where the best model is saved (``best_model.zip``).
        history_path: JSON list of every validation's figures.
        job_names, episode_steps: For the summary figures.
        reference: The oracle's figures (:func:`reference_figures`), or None.
    """

    def __init__(self, env: gym.Env[Any, Any], seeds: list[int], freq_steps: int,
                 best_path: Path, history_path: Path, job_names: list[str],
                 episode_steps: int, reference: dict[str, float] | None = None) -> None:
        super().__init__()
        self.reference = reference
        self.env, self.seeds, self.freq_steps = env, seeds, freq_steps
        self.best_path, self.history_path = best_path, history_path
        self.job_names, self.episode_steps = job_names, episode_steps
        self.best_reward = -math.inf
        self.history: list[dict[str, float]] = []
        self._next = freq_steps

    def _on_training_start(self) -> None:
        # the starting policy (a warm start's clone) competes for the best model too
        self.validate()

    def _on_step(self) -> bool:
        if self.num_timesteps >= self._next:
            self._next += self.freq_steps
            self.validate()
        return True

    def _on_training_end(self) -> None:
        if not self.history or self.history[-1]["timesteps"] != self.num_timesteps:
            self.validate()

    def validate(self) -> dict[str, float]:
        """Run the validation episodes now; save the model if it is the best so far."""
        rewards, infos = [], []
        for seed in self.seeds:
            reward, episode = run_episode_infos(self.env, self.model, seed)
            rewards.append(reward)
            infos.extend(episode)
        figures = summarise(infos, self.job_names, self.episode_steps)
        mean_reward = float(np.mean(rewards))
        row = {"timesteps": float(self.num_timesteps), "mean_reward": mean_reward, **figures}
        self.history.append(row)
        self.logger.record("eval/mean_reward", mean_reward)
        for key, value in figures.items():
            if math.isfinite(value):
                self.logger.record(f"eval/dora/{key}", value)
        if self.reference is not None:
            mine = {"mean_reward": mean_reward, **figures}
            for key in REGRET_KEYS:
                if key in mine and key in self.reference:
                    regret = mine[key] - self.reference[key]
                    regret = -regret if key == "mean_reward" else regret
                    row[f"regret/{key}"] = regret
                    if math.isfinite(regret):
                        self.logger.record(f"eval/regret/{key}", regret)
        if mean_reward > self.best_reward:
            self.best_reward = mean_reward
            self.model.save(self.best_path)
        self.history_path.write_text(json.dumps(finite_or_none(self.history), indent=1))
        return row
