"""Run every controller on the same held-out episodes and keep what each step reported.

Episodes are seeded deterministically: episode ``e`` of seed ``s`` resets the environment with
``episode_seed(s, e) = s * 1000 + e``, so every controller meets the same trace offsets, churn,
load, job activity and QoE changes, and a run is reproducible. Seeds are per (controller,
seed) unit: each seed's figures do not depend on which other seeds ran.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dora_rl.benchmark.controllers import Contender
from dora_rl.env.edge_env import EdgeEnv

EPISODES_PER_SEED_MAX = 1000
"""Most episodes per seed (keeps :func:`episode_seed` values distinct across seeds)."""


def episode_seed(seed: int, episode: int) -> int:
    """The reset seed of episode ``episode`` of seed ``seed``.

    Example:
        >>> episode_seed(2, 7)
        2007
    """
    return seed * EPISODES_PER_SEED_MAX + episode


@dataclass
class EpisodeTrace:
    """Per-interval series of one episode (for TensorBoard and the episode plot).

    Attributes:
        energy_j: Energy of the whole site per interval.
        latency_ms: Per interval, each job's latency (``nan`` when the job was inactive,
            ``inf`` when it had no plan).
        bandwidth_scale: Mean link-rate multiplier of the devices present (``nan`` if none).
        replans: Plan switches per interval (all jobs).
        violated: Per interval, whether each job missed a QoE target (False when inactive).
        qoe_scale: Per interval, each job's multiplier on its time targets.
    """

    energy_j: list[float] = field(default_factory=list)
    latency_ms: list[tuple[float, ...]] = field(default_factory=list)
    bandwidth_scale: list[float] = field(default_factory=list)
    replans: list[int] = field(default_factory=list)
    violated: list[tuple[bool, ...]] = field(default_factory=list)
    qoe_scale: list[tuple[float, ...]] = field(default_factory=list)

    def record(self, info: dict[str, Any], env: EdgeEnv) -> None:
        """Append one step (call right after ``env.step``: ``env.world`` is that interval)."""
        world = env.world
        present = np.asarray(world.state.available, dtype=bool)
        links = np.asarray(world.state.link_scale, dtype=float)
        active = info.get("job_active") or tuple(world.job_active.tolist())
        self.energy_j.append(float(info["energy_j"]))
        self.latency_ms.append(tuple(float(lat) if on else math.nan for lat, on in
                                     zip(info["latency_ms"], active, strict=True)))
        self.bandwidth_scale.append(float(links[present].mean()) if present.any() else math.nan)
        self.replans.append(int(info["replans"]))
        self.violated.append(tuple(bool(v) and bool(on) for v, on in
                                   zip(info["qoe_violation"], active, strict=True)))
        self.qoe_scale.append(tuple(float(q) for q in world.qoe_scale.tolist()))


@dataclass
class SeedRun:
    """One controller's episodes of one seed.

    Attributes:
        seed: The seed.
        infos: Every step's ``info``, one list per episode.
        rewards: Each episode's total reward.
        trace: The first episode's series.
    """

    seed: int
    infos: list[list[dict[str, Any]]] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    trace: EpisodeTrace = field(default_factory=EpisodeTrace)


@dataclass
class ControllerRun:
    """Everything one controller did.

    Attributes:
        label: The controller's label.
        seeds: One run per seed, in the order asked.
        wall_s: Wall time of all its episodes (controller decisions and env steps).
    """

    label: str
    seeds: list[SeedRun] = field(default_factory=list)
    wall_s: float = 0.0


def run_episode(contender: Contender, reset_seed: int,
                trace: EpisodeTrace | None = None) -> tuple[list[dict[str, Any]], float]:
    """One episode; returns every step's ``info`` and the total reward.

    Args:
        contender: The controller and its environment.
        reset_seed: Seed of ``env.reset``.
        trace: When given, the episode's per-interval series are appended to it.
    """
    env = contender.env
    controller = contender.fresh()
    obs, _ = env.reset(seed=reset_seed)
    inner: EdgeEnv = env.unwrapped  # type: ignore[assignment]
    infos: list[dict[str, Any]] = []
    total, state, start, done = 0.0, None, True, False
    while not done:
        action, state = controller.predict(obs, state=state, episode_start=np.array([start]),
                                           deterministic=True)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        infos.append(dict(info))
        if trace is not None:
            trace.record(info, inner)
        start, done = False, terminated or truncated
    return infos, total


def run_all(contenders: Sequence[Contender], seeds: Sequence[int], episodes: int,
            on_episode: Callable[[str], None] | None = None) -> list[ControllerRun]:
    """Run every controller on episodes ``0 .. episodes - 1`` of every seed.

    Args:
        contenders: Controllers with their environments.
        seeds: Benchmark seeds.
        episodes: Episodes per seed.
        on_episode: Called with the controller's label after each episode (progress).
    """
    runs = []
    for contender in contenders:
        run = ControllerRun(contender.label)
        start = time.perf_counter()
        for seed in seeds:
            unit = SeedRun(seed)
            for e in range(episodes):
                infos, reward = run_episode(contender, episode_seed(seed, e),
                                            unit.trace if e == 0 else None)
                unit.infos.append(infos)
                unit.rewards.append(reward)
                if on_episode is not None:
                    on_episode(contender.label)
            run.seeds.append(unit)
        run.wall_s = time.perf_counter() - start
        runs.append(run)
    return runs


__all__ = ["EPISODES_PER_SEED_MAX", "ControllerRun", "EpisodeTrace", "SeedRun", "episode_seed",
           "run_all", "run_episode"]
