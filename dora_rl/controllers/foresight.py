"""``foresight``: a privileged receding-horizon controller that knows the next intervals.

Each interval it looks ``horizon_intervals`` ahead on the env's own coming worlds (links,
load, churn: the exogenous processes, which no action changes,
:func:`~dora_rl.controllers.hindsight.lookahead`) and tries the hindsight search's decisions
for the coming interval: every job keeps its plan, or one job starts a switch to one of its
candidates. Each is run through the interval model with the used devices' power modes searched
for the coming interval (the search's own per-interval rule), then held with those modes for
the rest of the horizon; the one scoring best under the env's objective over the horizon
(fewest weighted misses beyond the attainment allowances, then least energy the jobs cause)
is played, and the rest thrown away.

Unlike ``greedy`` it sees a switch pay off over the intervals after its transfer; unlike the
``oracle`` it answers in any state (its plan is remade from the state it is in), so it can
label every state a learner reaches (DAgger, :mod:`dora_rl.training.pretrain`). It is a
heuristic, not an optimum: one switch per interval, modes held over the horizon.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from dora_rl.controllers.base import MID_LEVEL, Action, Controller
from dora_rl.controllers.baseline_card import load_baseline_settings
from dora_rl.controllers.hindsight import (
    TIE_DIGITS,
    Episode,
    _Interval,
    _options,
    _score,
    lookahead,
)
from dora_rl.dynamics import WorldState
from dora_rl.env.edge_env import EdgeEnv, WorldHandle
from dora_rl.world import Decision


def _same_world(a: WorldState, b: WorldState) -> bool:
    """Whether two worlds agree on what the interval model reads of them."""
    return a.state.lists == b.state.lists and np.array_equal(a.job_active, b.job_active) \
        and np.array_equal(a.qoe_scale, b.qoe_scale)


class Foresight(Controller):
    """Privileged receding-horizon peek (see the module docstring).

    Args:
        env: The env (a live runtime's has no future to look at: refused).
        handle: The read-only world handle (default: the env's own).
        horizon_intervals: Intervals looked ahead (default: the baselines card's).
    """

    def __init__(self, env: gym.Env[Any, Any], handle: WorldHandle | None = None,
                 horizon_intervals: int | None = None) -> None:
        super().__init__(env)
        base: EdgeEnv = env.unwrapped  # type: ignore[assignment]
        self.handle = handle or base.handle
        self.horizon = horizon_intervals if horizon_intervals is not None else \
            load_baseline_settings().foresight.horizon_intervals
        self._episode: Episode | None = None
        self._first = 0

    def _coming(self) -> tuple[Episode, int]:
        """The episode's coming worlds (computed once, again only if the env's world has
        drifted from them) and the index of the coming interval in them."""
        env = self.handle.env
        at = env.t - self._first
        ep = self._episode
        if ep is None or env.t == 0 or not 0 <= at < len(ep.worlds) or \
                not _same_world(ep.worlds[at], env.next_world):
            self._episode = ep = lookahead(env, env.episode_steps - env.t)
            self._first, at = env.t, 0
        return ep, at

    def act(self, obs: NDArray[np.float32]) -> Action:
        env = self.handle.env
        if env.live:
            from dora_rl.errors import DoraError

            raise DoraError("controller 'foresight' needs the coming intervals, which a live "
                            "runtime cannot know; use 'greedy' or 'dora'")
        ep, at = self._coming()
        model, ctl = self.handle.model, self.handle.control()
        worlds = ep.worlds[at:at + self.horizon]
        cands = self.handle.candidates()
        interval = _Interval(model, ep.weights, ep.attainment)
        levels = (MID_LEVEL,) * self.n_jobs
        keep = (None,) * self.n_jobs
        best: tuple[tuple[float, float], tuple[int, ...], tuple[int, ...]] | None = None
        for picks in _options(ctl, cands, worlds[0]):
            state, (missed, energy), modes = interval.run(ctl, picks, cands, worlds[0])
            decision = Decision(keep, levels, modes)
            for world in worlds[1:]:
                state, out = model.transition(state, decision, world)
                m, e = _score(out, ep.weights, ep.attainment)
                missed, energy = missed + m, energy + e
            rank = (round(missed, TIE_DIGITS), energy)
            if best is None or rank < best[0]:
                best = (rank, picks, modes)
        assert best is not None  # keeping everything is always an option
        _, picks, modes = best
        return self.spec.action(list(picks), list(levels), list(modes))
