"""The controller's observation in the live runtime, from what the runtime measured.

The ``-v1`` environments observe their world with one function (the env's observation:
:func:`dora_rl.env.observation.encode` over the world, the control state, the last interval's
outcome and the link history, every candidate plan scored by the interval model's
prediction). The runtime does not build a second one: :func:`bind` points the controller's
env at a :class:`Measurement` (the world of the control interval that just closed as the
runtime saw it, the runtime's own control state, the interval's measured outcome, the link
rates measured) and :func:`observe` asks the env for its observation of it. The env is the
decider's alone and never reset or stepped, so everything its observation and decoding read
is the measurement; ``tests/test_runtime_control.py`` checks a never-reset env bound to a
stepped env's world observes exactly what that env does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dora_rl.dynamics import WorldState
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.world import ControlState, Outcome


@dataclass(frozen=True)
class Measurement:
    """What a controller may know at a control step of the live runtime.

    Attributes:
        world: The interval that just closed as measured: ``state.link_scale`` reported by the
            link layer, ``state.available`` the devices present and answering now,
            ``state.load`` zero (no other users on the emulated devices), batteries and cross
            traffic of the emulated world; ``job_active`` only the served job;
            ``qoe_scale`` the card dynamics' multiplier of each job's time targets.
        ctl: The runtime's control state (:class:`~dora_rl.world.ControlState`).
        last: The interval's measured :class:`~dora_rl.world.Outcome` (per job its requests
            completed and missed, their smallest QoE slack against the card's targets, weight
            bytes moved; per device its energy), or None before the first interval closed.
    """

    world: WorldState
    ctl: ControlState
    last: Outcome | None


def bind(env: EdgeEnv, m: Measurement, link_history: Sequence[Sequence[float]]) -> None:
    """Point ``env`` at ``m``: its world and coming world (in the runtime the coming interval
    is not known: a privileged controller sees the measurement), control state, last outcome,
    link history, and the candidates and current choices for the devices available. These
    are what :meth:`EdgeEnv.decode`, :meth:`EdgeEnv.action_masks`, the env's
    observation and the oracle's :class:`~dora_rl.env.edge_env.WorldHandle` read."""
    env.bind(m.world, m.ctl, m.last, link_history)


def observe(env: EdgeEnv, m: Measurement,
            link_history: Sequence[Sequence[float]]) -> NDArray[np.float32]:
    """The observation ``env``'s controllers decide on, of the measurement ``m``
    (``link_history``: the last link-rate rows measured, oldest first)."""
    bind(env, m, link_history)
    return env.observe()


__all__ = ["Measurement", "bind", "observe"]
