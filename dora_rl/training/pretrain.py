"""Warm start: clone a teacher controller into the policy before PPO fine-tunes it.

PPO from scratch on these environments first learns that switching plans is expensive (a
switch stalls the pipeline while weights move) and settles on never switching, the ``static``
behaviour, long before it can learn *when* a switch pays. Starting from a clone of the
rule-based ``dora`` adapter (which switches whenever its prediction says so, ignoring the
switch cost) lets PPO spend its budget on the question that matters: which of the teacher's
switches are worth their stall. The clone sees only the policy's observation; the value head
is fitted to the teacher's discounted returns so the first PPO updates do not wreck the actor.

The labels name the plan the teacher leaves in force, not its "keep" (:func:`target_action`):
a teacher keeps in almost every interval, so a clone of raw actions learns "always keep" at
high accuracy and never switches; labelled by the plan in force, every interval says which
plan the observation calls for, and a switch is the interval where that label changes.

A clone trained only on the teacher's own episodes has never seen the states its own small
mistakes lead to, and drifts there (a plan kept too long, a mode never raised). DAgger
(Ross, Gordon and Bagnell, 2011) closes that gap: the clone drives further training episodes,
the teacher labels every state the clone reaches, and the clone is refitted on all labels so
far (``pretrain.dagger_rounds``). The teacher must answer in any state: ``greedy`` (the
privileged one-interval peek, cheap enough to label every state), ``foresight`` (the
privileged receding-horizon peek) or an observation controller, not the ``oracle``, whose
schedule holds only on its own trajectory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy

from dora_rl.config import Scenario
from dora_rl.controllers import make
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.world import LEVELS


@dataclass(frozen=True)
class Demonstrations:
    """Teacher rollouts: observations, actions and discounted returns, one row per step."""

    obs: NDArray[np.float32]
    actions: NDArray[np.int64]
    returns: NDArray[np.float32]
    episode_reward: float
    """Mean undiscounted episode reward of the teacher."""


def target_action(env: EdgeEnv, action: NDArray[np.int64]) -> NDArray[np.int64]:
    """``action`` with each job's "keep" replaced by picking the plan it keeps (the target of
    its switch under way, else its serving plan) when that plan is among the candidates and
    its devices are usable: the same decision for the env, named by the plan in force."""
    out = np.array(action, dtype=np.int64)
    usable = env.world.state.lists[1]
    for j, cand in enumerate(env.cands):
        pick, level = divmod(int(out[j]), LEVELS)
        if pick:
            continue
        jc = env.ctl.jobs[j]
        kept = jc.target or jc.plan
        if kept is not None and kept in cand.plans and all(usable[d] for d in kept.devices):
            out[j] = (cand.plans.index(kept) + 1) * LEVELS + level
    return out


Driver = Callable[[EdgeEnv, NDArray[np.float32]], NDArray[np.int64]]
"""Who acts in a rollout: the env and its observation in, an action out."""


def policy_driver(model: BaseAlgorithm) -> Driver:
    """The policy's deterministic action (with the env's action masks for MaskablePPO)."""
    from sb3_contrib import MaskablePPO

    masked = isinstance(model, MaskablePPO)

    def drive(env: EdgeEnv, obs: NDArray[np.float32]) -> NDArray[np.int64]:
        extra: dict[str, Any] = {"action_masks": env.action_masks()} if masked else {}
        action, _ = model.predict(obs, deterministic=True, **extra)
        return np.asarray(action, dtype=np.int64)
    return drive


def collect(scenario: Scenario, teacher: str, episodes: int, seed: int, gamma: float,
            bandwidth: Sequence[str], env_kwargs: dict[str, Any],
            driver: Driver | None = None) -> Demonstrations:
    """Run training episodes (bandwidth models round robin), labelling every state with the
    teacher's action named by the plan in force (:func:`target_action`). The teacher acts,
    unless a ``driver`` is given (DAgger: the policy acts and the teacher only labels the
    states the policy reaches). Returns are those of the episodes as driven."""
    obs_rows: list[NDArray[np.float32]] = []
    act_rows: list[NDArray[np.int64]] = []
    returns: list[float] = []
    totals = []
    envs: dict[str, EdgeEnv] = {}
    for e in range(episodes):
        band = bandwidth[e % len(bandwidth)]
        if band not in envs:
            envs[band] = EdgeEnv(scenario=scenario, bandwidth=band, split="train",
                                 **env_kwargs)
        env = envs[band]
        labeller = make(teacher, env)
        obs, _ = env.reset(seed=seed + e)
        rewards: list[float] = []
        done = False
        while not done:
            label, _ = labeller.predict(obs, deterministic=True)
            label = np.asarray(label, dtype=np.int64)
            obs_rows.append(obs)
            act_rows.append(target_action(env, label))
            action = label if driver is None else driver(env, obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(float(reward))
            done = terminated or truncated
        totals.append(sum(rewards))
        running, back = 0.0, []
        for r in reversed(rewards):
            running = r + gamma * running
            back.append(running)
        returns += back[::-1]
    return Demonstrations(np.array(obs_rows, dtype=np.float32), np.array(act_rows),
                          np.array(returns, dtype=np.float32), float(np.mean(totals)))


def joined(a: Demonstrations, b: Demonstrations) -> Demonstrations:
    """Both sets of labelled states (DAgger's aggregate); the episode reward is ``b``'s."""
    return Demonstrations(np.concatenate([a.obs, b.obs]), np.concatenate([a.actions, b.actions]),
                          np.concatenate([a.returns, b.returns]), b.episode_reward)


def clone(model: BaseAlgorithm, demos: Demonstrations, epochs: int, batch_size: int,
          learning_rate: float, vf_coef: float, seed: int) -> dict[str, float]:
    """Fit the policy to the teacher's actions (cross-entropy) and the value head to its
    returns (squared error). Returns the final loss and the share of steps where the
    deterministic policy picks the teacher's action."""
    policy = cast(ActorCriticPolicy, model.policy)
    policy.set_training_mode(True)
    optimizer = torch.optim.Adam(policy.parameters(), lr=learning_rate)
    obs = torch.as_tensor(demos.obs)
    actions = torch.as_tensor(demos.actions)
    returns = torch.as_tensor(demos.returns)
    rng = np.random.default_rng(seed)
    n = len(obs)
    loss_value = float("nan")
    for _ in range(epochs):
        order = torch.as_tensor(rng.permutation(n))
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            values, log_prob, _ = policy.evaluate_actions(obs[idx], actions[idx])
            value_loss = torch.nn.functional.mse_loss(values.flatten(), returns[idx])
            loss = -log_prob.mean() + vf_coef * value_loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 0.5)
            optimizer.step()
            loss_value = float(loss.detach())
    policy.set_training_mode(False)
    with torch.no_grad():
        predicted, _ = policy.predict(demos.obs, deterministic=True)
    accuracy = float(np.mean(np.all(predicted == demos.actions, axis=1)))
    return {"loss": loss_value, "accuracy": accuracy, "steps": float(n)}
