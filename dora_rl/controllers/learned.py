"""Load a trained controller from its run folder alone, without executing code from it.

stable-baselines3's ``.zip`` also holds pickled Python objects; loading those would run code
from the file. :func:`load` reads only the policy's tensors (``policy.pth``, with
``torch.load(weights_only=True)``, within size limits and refusing non-finite weights: see
:mod:`dora_rl.controllers.checkpoint`) and rebuilds the policy from the settings in ``config.yaml``
(plain YAML data) and the scenario card recorded there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

import gymnasium as gym
import numpy as np
import torch
from gymnasium.envs.registration import load_env_creator
from pydantic import BaseModel, ConfigDict, Field
from stable_baselines3.common.policies import ActorCriticPolicy

from dora_rl.config import Scenario
from dora_rl.config.loader import load_scenario_text, read_yaml, validate
from dora_rl.controllers.checkpoint import CheckpointError, read_weights, require_complete
from dora_rl.paths import find, from_portable
from dora_rl.scenarios import ENVS_DIR

ACTIVATIONS = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
CONFIG_FORMAT = 1


def policy_kwargs(net_arch: list[int], activation: str) -> dict[str, Any]:
    """Arguments of the actor-critic policy: the same hidden layers for actor and critic.

    Training builds the policy with these and :func:`load` rebuilds it with them.
    """
    return {"net_arch": {"pi": list(net_arch), "vf": list(net_arch)},
            "activation_fn": ACTIVATIONS[activation]}


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _ScenarioRecord(_Open):
    name: str
    path: str
    base_dir: str
    sha256: str
    content: str


class _PolicyRecord(_Open):
    net_arch: list[Annotated[int, Field(gt=0)]]
    activation: Literal["tanh", "relu"]


class RunConfig(_Open):
    """The fields of ``config.yaml`` the loader needs (the rest is kept for people)."""

    format: int
    env_id: str
    env_version: int
    env_kwargs: dict[str, Any]
    observation_size: int
    action_nvec: list[int]
    algorithm: Literal["ppo", "maskable_ppo"]
    policy: _PolicyRecord
    scenario: _ScenarioRecord


TIE_GAP = 1e-5
"""Relative gap between a dimension's two largest logits below which the NumPy path defers to
SB3's (float32 rounding differs between the two by about 1e-7 relative)."""


class GreedyActor:
    """The policy's deterministic action, computed with NumPy from the actor's weights.

    SB3's ``predict`` builds a distribution object per call (about 0.5-1 ms on this class of
    CPU); the deterministic action of a ``MultiDiscrete`` policy is only the arg-max of each
    dimension's logits after the actor MLP, which NumPy computes in tens of microseconds.
    The live runtime decides with it; :func:`GreedyActor.of` returns ``None`` for a policy of
    another shape (then ``predict`` stays SB3's).
    """

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray]], relu: bool,
                 head: tuple[np.ndarray, np.ndarray], nvec: list[int]) -> None:
        self.layers, self.relu, self.head = layers, relu, head
        self.bounds = np.cumsum([0, *nvec]).tolist()

    @classmethod
    def of(cls, policy: ActorCriticPolicy) -> GreedyActor | None:
        """The greedy actor of ``policy`` (flattened Box observation, MLP actor with one
        activation type, ``MultiDiscrete`` actions), else ``None``."""
        from gymnasium import spaces
        from stable_baselines3.common.torch_layers import FlattenExtractor

        if not (isinstance(policy.action_space, spaces.MultiDiscrete)
                and isinstance(policy.observation_space, spaces.Box)
                and isinstance(policy.pi_features_extractor, FlattenExtractor)):
            return None
        layers, kinds = [], set()
        for module in policy.mlp_extractor.policy_net:
            if isinstance(module, torch.nn.Linear):
                layers.append(_weights(module))
            elif isinstance(module, (torch.nn.Tanh, torch.nn.ReLU)):
                kinds.add(type(module))
            else:
                return None
        if len(kinds) > 1 or not isinstance(policy.action_net, torch.nn.Linear):
            return None
        return cls(layers, torch.nn.ReLU in kinds, _weights(policy.action_net),
                   [int(n) for n in policy.action_space.nvec])

    def __call__(self, observation: np.ndarray) -> np.ndarray | None:
        """The action (one index per dimension) for one observation, or ``None`` when two
        logits of a dimension are so close (:data:`TIE_GAP`) that float rounding, which
        differs between NumPy and torch, could pick either: then only SB3's own computation
        gives SB3's action."""
        h = np.asarray(observation, dtype=np.float32).reshape(-1)
        for w, b in self.layers:
            h = h @ w + b
            h = np.maximum(h, 0.0) if self.relu else np.tanh(h)
        logits = h @ self.head[0] + self.head[1]
        b = self.bounds
        out = []
        for i in range(len(b) - 1):
            row = logits[b[i]:b[i + 1]]
            best = int(row.argmax())
            if len(row) > 1 and row[best] - np.partition(row, -2)[-2] <= TIE_GAP * max(
                    1.0, abs(float(row[best]))):
                return None
            out.append(best)
        return np.array(out, dtype=np.int64)


def _weights(layer: torch.nn.Linear) -> tuple[np.ndarray, np.ndarray]:
    return (layer.weight.detach().numpy().T.astype(np.float32).copy(),
            layer.bias.detach().numpy().astype(np.float32).copy())


class LearnedController:
    """A trained policy behind SB3's ``predict``.

    Attributes:
        policy: The actor-critic policy (evaluation mode, CPU).
        config: The run's ``config.yaml`` (validated).
        scenario: The card it was trained on (rebuilt from the recorded text).
        env_kwargs: Env arguments that fix its spaces (``k``, ``interval_s``, ...).
        run_dir: The run folder; ``model_file`` the checkpoint read.
    """

    def __init__(self, policy: ActorCriticPolicy, config: RunConfig, scenario: Scenario,
                 run_dir: Path, model_file: Path) -> None:
        self.policy, self.config, self.scenario = policy, config, scenario
        self.env_kwargs = dict(config.env_kwargs)
        self.run_dir, self.model_file = run_dir, model_file
        self.greedy = GreedyActor.of(policy)
        self._obs_shape = tuple(policy.observation_space.shape or ())

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """SB3's ``predict``: the action for one observation (or a batch). A deterministic
        action for one observation comes from :class:`GreedyActor` (the same action)."""
        if deterministic and state is None and self.greedy is not None \
                and np.shape(observation) == self._obs_shape:
            fast = self.greedy(observation)
            if fast is not None:
                return fast, None
        action, state = self.policy.predict(observation, state, episode_start, deterministic)
        return action, state

    def make_env(self, **overrides: Any) -> gym.Env[Any, Any]:
        """An environment of the trained scenario with the trained spaces."""
        return _env_class(self.config.env_id)(scenario=self.scenario,
                                              **{**self.env_kwargs, **overrides})


def load(run_dir: str | Path, which: Literal["best", "final"] = "best") -> LearnedController:
    """The controller of a run folder (``best_model.zip`` by default, else ``model.zip``).

    A relative ``checkpoints/...`` folder missing from the working directory is the shipped one
    (:func:`dora_rl.paths.find`).

    Raises:
        CheckpointError: one line naming the file and the problem (an incomplete run folder,
            missing, truncated or oversized files, non-finite weights, another env version,
            another observation or action size).
    """
    run_dir = find(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run folder")
    require_complete(run_dir)
    config = _read_config(run_dir / "config.yaml")
    scenario = _scenario(config, run_dir / "config.yaml")
    env = _check_env(config, scenario, run_dir / "config.yaml")
    names = ["best_model.zip", "model.zip"] if which == "best" else ["model.zip"]
    model_file = next((run_dir / n for n in names if (run_dir / n).exists()), None)
    if model_file is None:
        raise CheckpointError(f"{run_dir}: no {' or '.join(names)} in the run folder")
    state = read_weights(model_file)
    policy = _build_policy(config, env)
    try:
        policy.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        detail = next((ln.strip() for ln in first if "size mismatch" in ln or "Missing" in ln),
                      first[0] if first else "")
        raise CheckpointError(f"{model_file}: the weights do not fit the policy that "
                              f"config.yaml describes ({detail})") from None
    policy.set_training_mode(False)
    return LearnedController(policy, config, scenario, run_dir, model_file)


def _read_config(path: Path) -> RunConfig:
    if not path.exists():
        raise CheckpointError(f"{path}: missing (a run folder needs its config.yaml)")
    config = validate(RunConfig, read_yaml(path), str(path))
    if config.format != CONFIG_FORMAT:
        raise CheckpointError(f"{path}: format: run folder format {config.format}, this "
                              f"dora_rl reads format {CONFIG_FORMAT}")
    return config


def _scenario(config: RunConfig, path: Path) -> Scenario:
    rec = config.scenario
    if hashlib.sha256(rec.content.encode()).hexdigest() != rec.sha256:
        raise CheckpointError(f"{path}: scenario.content: does not match scenario.sha256 "
                              "(the recorded card was edited)")
    base = from_portable(rec.base_dir)  # a relative folder is in the shipped data
    return load_scenario_text(rec.content, f"{path}: scenario.content",
                              base if base.is_dir() else ENVS_DIR)


def _check_env(config: RunConfig, scenario: Scenario, path: Path) -> gym.Env[Any, Any]:
    """The trained scenario's env, after checking it still has the trained spaces."""
    if config.env_id not in gym.registry:
        known = ", ".join(sorted(k for k in gym.registry if k.startswith("dora_rl/")))
        raise CheckpointError(f"{path}: env_id: trained on {config.env_id}, which this dora_rl "
                              f"does not provide (it has {known})")
    try:
        env: gym.Env[Any, Any] = _env_class(config.env_id)(scenario=scenario,
                                                             **config.env_kwargs)
    except TypeError as exc:
        raise CheckpointError(f"{path}: env_kwargs: not accepted by this env ({exc})") from None
    size = int(env.observation_space.shape[0])  # type: ignore[index]
    if size != config.observation_size:
        raise CheckpointError(f"{path}: observation_size: trained on {config.observation_size} "
                              f"values, this env version observes {size}")
    nvec = [int(n) for n in env.action_space.nvec]  # type: ignore[attr-defined]
    if nvec != list(config.action_nvec):
        raise CheckpointError(f"{path}: action_nvec: trained on {config.action_nvec}, this env "
                              f"version acts with {nvec}")
    return env


def _env_class(env_id: str) -> Any:
    """The env class registered under ``env_id``."""
    entry = gym.registry[env_id].entry_point
    return load_env_creator(entry) if isinstance(entry, str) else entry


def _build_policy(config: RunConfig, env: gym.Env[Any, Any]) -> ActorCriticPolicy:
    kwargs = policy_kwargs(config.policy.net_arch, config.policy.activation)
    if config.algorithm == "maskable_ppo":
        from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy

        return MaskableActorCriticPolicy(env.observation_space, env.action_space,  # type: ignore[return-value]
                                         lambda _: 0.0, **kwargs)
    return ActorCriticPolicy(env.observation_space, env.action_space, lambda _: 0.0, **kwargs)
