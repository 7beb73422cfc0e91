"""Controller cards: PPO hyperparameters keyed by scenario (``agents/ppo.yaml``).

A card has a ``default`` entry and, under ``scenarios``, per-scenario entries that override it
field by field (sections merge key by key)::

    default:
      timesteps: 200000
      ppo: {learning_rate: 3.0e-4, gamma: 0.95}
    scenarios:
      tiny: {timesteps: 2000, ppo: {n_steps: 256}}

Values are data: nothing is evaluated. Unknown keys and bad values are reported on one line
naming the file and the field (``agents/ppo.yaml: scenarios.tiny.ppo.lr: unknown key``).
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from dora_rl.config.loader import read_yaml, validate
from dora_rl.config.schema import (
    NonNegFloat,
    NonNegInt,
    PositiveFloat,
    PositiveInt,
    UnitFraction,
)
from dora_rl.errors import ConfigError
from dora_rl.paths import find, shipped

AGENTS_DIR = shipped("agents")
"""The shipped controller cards (``agents/`` of the repository)."""
DEFAULT_CARD = AGENTS_DIR / "ppo.yaml"

# the scenario schema's strict numbers: ``true`` is not 1 and ``"3"`` is not 3
UnitFloat = UnitFraction
Bandwidth = Literal["trace", "synthetic", "static"]
TRAIN_BANDWIDTH: tuple[Bandwidth, ...] = ("trace", "synthetic")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvSettings(_Frozen):
    """How the training environments are built."""

    bandwidth: list[Bandwidth] = Field(default_factory=lambda: list(TRAIN_BANDWIDTH),
                                       min_length=1)
    """Bandwidth model of each training env, assigned round robin (real training-split traces
    and the synthetic generator's fades for breadth)."""
    episode_steps: PositiveInt = 300
    k: PositiveInt = 4
    """Candidate plans per job (fixes the action space)."""
    interval_s: PositiveFloat = 1.0
    violation_price_j: PositiveFloat | None = None
    """Joules one weighted excess miss costs in the training reward (None: the env's
    lexicographic price, under which energy moves the reward only in the fourth decimal).
    Validation, and so the choice of the best model, keeps the env's lexicographic price."""


class PPOSettings(_Frozen):
    """stable-baselines3 PPO arguments (same names)."""

    learning_rate: PositiveFloat = 3e-4
    n_steps: PositiveInt = 512
    batch_size: PositiveInt = 128
    n_epochs: PositiveInt = 10
    gamma: UnitFloat = 0.95
    gae_lambda: UnitFloat = 0.95
    clip_range: PositiveFloat = 0.2
    ent_coef: NonNegFloat = 0.01
    vf_coef: NonNegFloat = 0.5
    max_grad_norm: PositiveFloat = 0.5
    target_kl: PositiveFloat | None = None


class PolicySettings(_Frozen):
    """The actor-critic MLP."""

    net_arch: list[PositiveInt] = Field(default_factory=lambda: [64, 64], min_length=1)
    """Hidden layer widths, the same for the policy and the value network."""
    activation: Literal["tanh", "relu"] = "tanh"


class EvalSettings(_Frozen):
    """Validation while training: the same episodes every time, best model kept."""

    freq_steps: PositiveInt = 10_000
    """Environment steps (all envs together) between validations."""
    episodes: PositiveInt = 3
    episode_steps: PositiveInt = 300
    oracle_regret: StrictBool = True
    """Score the hindsight ``oracle`` on the validation episodes once, before training, and log
    each validation's regret against it (``eval/regret/...``)."""


class PretrainSettings(_Frozen):
    """Warm start by cloning a teacher controller (:mod:`dora_rl.training.pretrain`)."""

    teacher: Literal["none", "dora", "static", "greedy", "mpc", "foresight", "oracle"] = "dora"
    """``none`` trains from scratch; ``greedy``, ``foresight`` and ``oracle`` clone privileged
    decisions (the policy still only sees its observation)."""
    episodes: PositiveInt = 20
    """Teacher episodes on training traces (the first, teacher-driven round)."""
    dagger_rounds: NonNegInt = 0
    """Rounds of DAgger after the first fit: the policy drives ``episodes`` more training
    episodes, the teacher labels every state it visits, and the policy is refitted on all
    labels so far. Needs a teacher that can answer in any state (not ``oracle``, whose
    schedule holds only on its own trajectory)."""
    epochs: PositiveInt = 10
    batch_size: PositiveInt = 256
    learning_rate: PositiveFloat = 1e-3

    @model_validator(mode="after")
    def _teacher_answers_anywhere(self) -> PretrainSettings:
        if self.dagger_rounds and self.teacher in ("none", "oracle"):
            raise ValueError(f"dagger_rounds needs a teacher that answers in any state "
                             f"(dora, static, greedy, mpc, foresight), not {self.teacher}")
        return self


class AgentSettings(_Frozen):
    """Every resolved training setting of one run."""

    algorithm: Literal["ppo", "maskable_ppo"] = "ppo"
    """``maskable_ppo`` (sb3-contrib) samples only feasible plan choices (``action_masks``)."""
    timesteps: PositiveInt = 200_000
    n_envs: PositiveInt = 2
    vec_env: Literal["dummy", "subproc"] = "dummy"
    seed: NonNegInt = 0
    torch_threads: PositiveInt = 1
    env: EnvSettings = EnvSettings()
    ppo: PPOSettings = PPOSettings()
    policy: PolicySettings = PolicySettings()
    eval: EvalSettings = EvalSettings()
    pretrain: PretrainSettings = PretrainSettings()


class _CardFile(_Frozen):
    default: dict[str, Any] = Field(default_factory=dict)
    scenarios: dict[str, dict[str, Any]] = Field(default_factory=dict)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, merging nested mappings key by key.

    Example:
        >>> merge({"ppo": {"gamma": 0.9, "n_steps": 8}}, {"ppo": {"gamma": 0.99}})
        {'ppo': {'gamma': 0.99, 'n_steps': 8}}
    """
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def card_hash(path: Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_agent_settings(scenario: str, path: str | Path | None = None,
                        overrides: dict[str, Any] | None = None) -> AgentSettings:
    """The resolved settings for ``scenario``: the card's default, its scenario entry, then
    ``overrides`` (e.g. from the command line).

    Raises:
        ConfigError: naming the card, the field path and the problem.
    """
    path = find(path) if path is not None else DEFAULT_CARD
    label = str(path)
    raw = read_yaml(path, label)
    card = validate(_CardFile, raw if raw is not None else {}, label)
    validate(AgentSettings, card.default, label, "default")
    entry = card.scenarios.get(scenario, {})
    merged = merge(card.default, entry)
    where = f"scenarios.{scenario}" if scenario in card.scenarios else "default"
    validate(AgentSettings, merged, label, where)
    if overrides:
        merged = merge(merged, overrides)
        validate(AgentSettings, merged, "command line", "")
    settings = AgentSettings.model_validate(merged)
    rollout = settings.ppo.n_steps * settings.n_envs
    if settings.ppo.batch_size > rollout:
        raise ConfigError(label, f"{where}.ppo.batch_size", f"must be at most ppo.n_steps x "
                          f"n_envs = {rollout}, got {settings.ppo.batch_size}")
    return settings


def settings_dict(settings: AgentSettings) -> dict[str, Any]:
    """Plain-data form (for ``config.yaml`` and TensorBoard's hyperparameters)."""
    return settings.model_dump(mode="json")


__all__ = ["AGENTS_DIR", "DEFAULT_CARD", "AgentSettings", "ConfigError", "EnvSettings",
           "EvalSettings", "PPOSettings", "PolicySettings", "PretrainSettings", "card_hash",
           "load_agent_settings", "merge", "settings_dict"]
