"""What every controller is: SB3's ``predict`` over one observation, and what it may know of
an env besides observations (:class:`ControlSpec`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from dora_rl.env.edge_env import EdgeEnv
from dora_rl.env.observation import DecisionLayout
from dora_rl.world import LEVELS, SLEEP

Action = NDArray[np.int64]
MID_LEVEL = LEVELS // 2


@dataclass(frozen=True)
class ControlSpec:
    """What a controller may know of an env besides observations: the layout, each
    device's number of power modes and each job's allowed share of missed requests (card
    facts, fixed for the env's life)."""

    layout: DecisionLayout
    n_modes: tuple[int, ...]
    sleep_value: int
    allowance: tuple[float, ...] = ()
    """Per job, ``1 - attainment``: the share of its requests it may miss."""

    @classmethod
    def of(cls, env: gym.Env[Any, Any]) -> ControlSpec:
        """The spec of a ``-v1`` env (wrapped or not)."""
        base = env.unwrapped
        if not isinstance(base, EdgeEnv):
            from dora_rl.errors import DoraError

            raise DoraError(f"{type(base).__name__} is not a dora_rl environment")
        return cls(base.layout, tuple(f.n_modes for f in base.model.devices), base.n_modes,
                   tuple(1.0 - a for a in base.attainment))

    def action(self, picks: list[int], levels: list[int], modes: list[int]) -> Action:
        """The env action: per job ``pick * LEVELS + level``, then per device its mode value
        (:data:`~dora_rl.world.SLEEP` becomes the sleep value).

        Example:
            >>> from dora_rl.env.observation import DecisionLayout
            >>> spec = ControlSpec(DecisionLayout(2, 1, 1, 4), (2, 1), 2)
            >>> spec.action([3], [1], [1, SLEEP]).tolist()
            [13, 1, 2]
        """
        values = [p * LEVELS + lv for p, lv in zip(picks, levels, strict=True)]
        values += [self.sleep_value if m == SLEEP else m for m in modes]
        return np.array(values, dtype=np.int64)


class Controller:
    """Base: SB3's ``predict`` over a single observation."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        self.spec = ControlSpec.of(env)
        self.n_jobs, self.n_devices = self.spec.layout.n_jobs, self.spec.layout.n_devices

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Action, Any]:
        """The action for ``observation``."""
        return self.act(np.asarray(observation, dtype=np.float32)), state

    def act(self, obs: NDArray[np.float32]) -> Action:
        """Keep every plan at the middle level, every device at its nominal mode."""
        return self.spec.action([0] * self.n_jobs, [MID_LEVEL] * self.n_jobs,
                                [0] * self.n_devices)



__all__ = ["MID_LEVEL", "Action", "ControlSpec", "Controller"]
