"""Train a PPO controller on a scenario and write its run folder."""

from __future__ import annotations

import functools
import json
import math
import re
import shutil
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv

from dora_rl.config import Scenario
from dora_rl.controllers import make
from dora_rl.controllers.learned import policy_kwargs as learned_policy_kwargs
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.env.summary import finite_or_none
from dora_rl.errors import DoraError
from dora_rl.registration import ENV_IDS
from dora_rl.training.callbacks import (
    DoraMetricsCallback,
    ValidationCallback,
    reference_figures,
)
from dora_rl.training.ppo_card import AgentSettings, settings_dict
from dora_rl.training.pretrain import clone, collect, joined, policy_driver
from dora_rl.training.run_folder import (
    mark_complete,
    mark_interrupted,
    mark_started,
    new_run_dir,
    scenario_record,
    write_config,
    write_provenance,
)

VALIDATION_SEED = 10_000  # validation episodes use seeds 10000, 10001, ...
PRETRAIN_SEED = 30_000  # teacher demonstrations use training traces from seeds 30000, ...


def env_id_for(scenario: Scenario) -> str:
    """The registered id of a shipped card (``dora_rl/SmartHome-v1``), else ``dora_rl/Edge-v1``."""
    for env_id, kwargs in ENV_IDS.items():
        if kwargs.get("scenario") == scenario.name:
            return env_id
    return "dora_rl/Edge-v1"


def env_version(env_id: str) -> int:
    """The version number of an id (``dora_rl/Tiny-v1`` -> 1)."""
    match = re.search(r"-v(\d+)$", env_id)
    return int(match.group(1)) if match else 0


def env_kwargs(settings: AgentSettings) -> dict[str, Any]:
    """The env arguments that fix the spaces and the interval (not the bandwidth model)."""
    out: dict[str, Any] = {"k": settings.env.k, "episode_steps": settings.env.episode_steps,
                           "interval_s": settings.env.interval_s}
    if settings.env.violation_price_j is not None:
        out["violation_price_j"] = settings.env.violation_price_j
    return out


def validation_env_kwargs(settings: AgentSettings) -> dict[str, Any]:
    """The validation env's arguments: the training env's spaces and interval, the validation
    episode length, and the env's own (lexicographic) objective whatever price of a miss the
    training reward uses, so the best model is the best by the objective.

    Example:
        >>> from dora_rl.training.ppo_card import load_agent_settings
        >>> s = load_agent_settings("tiny", overrides={"env": {"violation_price_j": 50.0}})
        >>> env_kwargs(s)["violation_price_j"], "violation_price_j" in validation_env_kwargs(s)
        (50.0, False)
    """
    return without_price({**env_kwargs(settings), "episode_steps": settings.eval.episode_steps})


def without_price(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Env arguments judged by the env's own (lexicographic) objective: any training price of
    a miss dropped."""
    return {key: value for key, value in kwargs.items() if key != "violation_price_j"}


def policy_kwargs(settings: AgentSettings) -> dict[str, Any]:
    """Arguments of the actor-critic policy (the loader rebuilds it from these)."""
    return learned_policy_kwargs(settings.policy.net_arch, settings.policy.activation)


def _make_env(scenario: Scenario, bandwidth: str, split: str, kwargs: dict[str, Any],
              traces_dir: Path | None = None) -> gym.Env[Any, Any]:
    return Monitor(EdgeEnv(scenario=scenario, bandwidth=bandwidth, split=split,
                              traces_dir=traces_dir, **kwargs))


def _subproc_env(scenario: Scenario, bandwidth: str, split: str,
                 kwargs: dict[str, Any]) -> gym.Env[Any, Any]:
    """A training env in a worker process, which leaves Ctrl-C to the trainer (no traceback
    from every worker; the trainer closes them)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return _make_env(scenario, bandwidth, split, kwargs)


def make_training_envs(scenario: Scenario, settings: AgentSettings) -> VecEnv:
    """``n_envs`` training envs (training traces), bandwidth models assigned round robin."""
    kwargs = env_kwargs(settings)
    bands = settings.env.bandwidth
    make = _subproc_env if settings.vec_env == "subproc" else _make_env
    fns: list[Callable[[], gym.Env[Any, Any]]] = [
        functools.partial(make, scenario, bands[i % len(bands)], "train", kwargs)
        for i in range(settings.n_envs)]
    vec: VecEnv = SubprocVecEnv(fns) if settings.vec_env == "subproc" else DummyVecEnv(fns)
    vec.seed(settings.seed)
    return vec


def build_model(env: VecEnv, settings: AgentSettings, tb_dir: Path | None) -> BaseAlgorithm:
    """PPO (or sb3-contrib's MaskablePPO) with the card's hyperparameters."""
    ppo = settings.ppo.model_dump()
    common = {"policy": "MlpPolicy", "env": env, "seed": settings.seed, "device": "cpu",
              "verbose": 0, "policy_kwargs": policy_kwargs(settings),
              "tensorboard_log": str(tb_dir) if tb_dir else None, **ppo}
    if settings.algorithm == "maskable_ppo":
        from sb3_contrib import MaskablePPO

        return MaskablePPO(**common)
    return PPO(**common)


@dataclass(frozen=True)
class TrainResult:
    """Where the run went and how its best model did on validation."""

    run_dir: Path
    best_validation_reward: float
    validations: list[dict[str, float]]


class TrainingInterrupted(DoraError):
    """Training stopped by SIGINT or SIGTERM; the partial run folder is marked incomplete.

    Attributes:
        run_dir: The partial run folder (None when nothing worth keeping was written).
        step: Environment steps done when it stopped.
        exit_code: 130 for SIGINT, 143 for SIGTERM.
    """

    def __init__(self, message: str, run_dir: Path | None, step: int, exit_code: int) -> None:
        super().__init__(message)
        self.run_dir, self.step, self.exit_code = run_dir, step, exit_code


class Terminated(KeyboardInterrupt):
    """Raised by the CLI's SIGTERM handler so that SIGTERM stops training like Ctrl-C."""


def preflight(scenario: Scenario, settings: AgentSettings) -> gym.Env[Any, Any]:
    """The validation env, built first: it plans the card, so a job with no plan at all fails
    here in one line (``<card>: job 'x': ...``), before any folder or training.

    Raises:
        InfeasibleError: some job of the card has no plan with every device present.
    """
    return _make_env(scenario, "trace", "validation", validation_env_kwargs(settings))


def train(scenario: Scenario, settings: AgentSettings, out_dir: Path, command: str,
          run_id: str | None = None, progress: bool = True,
          val_env: gym.Env[Any, Any] | None = None) -> TrainResult:
    """Train, validating as it goes, and write the whole run folder (see
    :mod:`dora_rl.training.run_folder`); ``run.json`` says complete only at the end.

    ``val_env`` is :func:`preflight`'s env when the caller checked the card already.

    Raises:
        InfeasibleError: a job of the card has no plan at all (before any folder is made).
        TrainingInterrupted: SIGINT (``KeyboardInterrupt``) or SIGTERM (:class:`Terminated`)
            during training; the folder is kept, marked incomplete, if it holds a best model.
    """
    torch.set_num_threads(settings.torch_threads)
    set_random_seed(settings.seed)
    val_env = val_env or preflight(scenario, settings)
    run_dir = new_run_dir(out_dir, scenario.name, run_id)
    mark_started(run_dir)
    holder: list[BaseAlgorithm] = []
    try:
        result = _train(scenario, settings, run_dir, command, progress, val_env, holder)
    except BaseException as exc:
        step = int(holder[0].num_timesteps) if holder else 0
        kept = (run_dir / "best_model.zip").exists()
        reason = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        if kept:
            mark_interrupted(run_dir, step, reason if isinstance(exc, KeyboardInterrupt)
                             else type(exc).__name__)
        else:
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth keeping
        if not isinstance(exc, KeyboardInterrupt):
            raise
        where = (f"partial run folder {run_dir} is marked incomplete" if kept
                 else f"nothing worth keeping: run folder {run_dir} removed")
        raise TrainingInterrupted(f"interrupted by {reason} at step {step}; {where}",
                                  run_dir if kept else None, step,
                                  143 if reason == "SIGTERM" else 130) from None
    mark_complete(run_dir, int(holder[0].num_timesteps))
    return result


def _train(scenario: Scenario, settings: AgentSettings, run_dir: Path, command: str,
           progress: bool, val_env: gym.Env[Any, Any],
           holder: list[BaseAlgorithm]) -> TrainResult:
    env_id = env_id_for(scenario)
    vec = make_training_envs(scenario, settings)
    obs_size = int(vec.observation_space.shape[0])  # type: ignore[index]
    nvec = [int(n) for n in vec.action_space.nvec]  # type: ignore[attr-defined]
    commit = write_provenance(run_dir, command)
    write_config(run_dir, {
        "env_id": env_id, "env_version": env_version(env_id), "env_kwargs": env_kwargs(settings),
        "observation_size": obs_size, "action_nvec": nvec, "algorithm": settings.algorithm,
        "policy": settings_dict(settings)["policy"], "git_commit": commit,
        "scenario": scenario_record(scenario), "agent": settings_dict(settings),
    })
    jobs = [job.name for job in scenario.jobs]
    seeds = [VALIDATION_SEED + i for i in range(settings.eval.episodes)]
    reference = None
    if settings.eval.oracle_regret:
        reference = reference_figures(val_env, make("oracle", val_env), seeds, jobs,
                                      settings.eval.episode_steps)
        (run_dir / "oracle_validation.json").write_text(
            json.dumps(finite_or_none(reference), indent=1))
    validation = ValidationCallback(
        val_env, seeds, settings.eval.freq_steps, run_dir / "best_model.zip",
        run_dir / "validation.json", jobs, settings.eval.episode_steps, reference)
    metrics = DoraMetricsCallback(jobs, settings.env.episode_steps, _hparams(settings))
    model = build_model(vec, settings, run_dir / "tb")
    holder.append(model)
    if settings.pretrain.teacher != "none":
        warm_start(model, scenario, settings, run_dir)
    try:
        model.learn(settings.timesteps, callback=[metrics, validation], progress_bar=progress,
                    tb_log_name="ppo")
        model.save(run_dir / "model.zip")
    finally:
        vec.close()
    return TrainResult(run_dir, validation.best_reward, validation.history)


def warm_start(model: BaseAlgorithm, scenario: Scenario, settings: AgentSettings,
               run_dir: Path) -> dict[str, Any]:
    """Clone the card's teacher into the policy, then refine the clone by DAgger rounds
    (:mod:`dora_rl.training.pretrain`); writes ``pretrain.json`` (per round: labelled states,
    fit accuracy, and the mean training-episode reward of whoever drove that round)."""
    pre = settings.pretrain
    seed = PRETRAIN_SEED + settings.seed
    bands, kwargs = list(settings.env.bandwidth), env_kwargs(settings)
    demos = collect(scenario, pre.teacher, pre.episodes, seed, settings.ppo.gamma, bands, kwargs)
    rounds = []
    for r in range(pre.dagger_rounds + 1):
        if r:
            seed += pre.episodes
            demos = joined(demos, collect(scenario, pre.teacher, pre.episodes, seed,
                                          settings.ppo.gamma, bands, kwargs,
                                          policy_driver(model)))
        fit = clone(model, demos, pre.epochs, pre.batch_size, pre.learning_rate,
                    settings.ppo.vf_coef, settings.seed)
        rounds.append({"round": r, "driver": "teacher" if r == 0 else "policy",
                       "driver_episode_reward": demos.episode_reward, **fit})
    result = {"teacher": pre.teacher, **rounds[-1], "rounds": rounds}
    (run_dir / "pretrain.json").write_text(json.dumps(result, indent=1))
    return result


def _hparams(settings: AgentSettings) -> dict[str, float | int | str | bool]:
    """Flat ``section.key`` hyperparameters for TensorBoard."""
    flat: dict[str, float | int | str | bool] = {}
    for key, value in settings_dict(settings).items():
        if isinstance(value, dict):
            for sub, v in value.items():
                flat[f"{key}.{sub}"] = v if isinstance(v, int | float | str | bool) else str(v)
        else:
            flat[key] = value if isinstance(value, int | float | str | bool) else str(value)
    return {k: v for k, v in flat.items() if not (isinstance(v, float) and not math.isfinite(v))}


def write_evaluation(run_dir: Path, rows: list[dict[str, Any]]) -> None:
    """``evaluation.json``: the trained controller's and the baselines' test-trace figures."""
    (run_dir / "evaluation.json").write_text(json.dumps(finite_or_none(rows), indent=1))
