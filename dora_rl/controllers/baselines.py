"""Controllers that are not learned. They see the observation only; the privileged ones
(``greedy``, ``oracle``) are handed an explicit read-only
:class:`~dora_rl.env.edge_env.WorldHandle`.

- ``static``: keep every plan, every device at its nominal mode (never adapts).
- ``static-robust``: the least-energy joint plan meeting QoE with every WiFi link at the 10th
  percentile of its rate over the training traces, kept.
- ``throughput``: the throughput-first plan of every job, kept.
- ``dora``: the rule-based adapter on the observation's candidate scores: per job the
  least-power candidate predicted to keep ``qoe_margin`` of slack, preferring plans whose
  weights are resident, switching only when the saving beats ``hysteresis``; devices that
  may sleep are slept; the power mode of used devices is lowered one level while every active
  job keeps twice the margin and misses at most half of what its attainment target allows
  (plus ``miss_tolerance``), raised back when one falls below the margin or misses more than
  its allowance. A slower mode that had to be raised back at once is tried again only after
  a back-off (``backoff_intervals``, doubled after each such failure up to
  ``backoff_max_intervals``, halved after each slower mode that held), so a device near its
  limit is not switched slower and back every other interval, missing requests each time.
- ``greedy``: privileged one-interval peek: every joint choice of plans is run through the
  interval model on the coming interval and ranked by the env's objective on that interval
  (fewest weighted misses beyond the jobs' attainment allowances, then least energy the jobs
  cause), then each device's power mode (sleep included) in turn. A per-interval greedy
  choice, not an episode bound; it answers in any state, so it can label the states a
  learner reaches (DAgger, :mod:`dora_rl.training.pretrain`).
- ``mpc``: robust model-predictive control on the observation (:mod:`dora_rl.controllers.mpc`).
- ``foresight``: privileged receding-horizon peek over the coming intervals
  (:mod:`dora_rl.controllers.foresight`): sees a switch pay off, answers in any state.
- ``oracle``: privileged hindsight: the episode's best schedule, searched before its first
  step (:mod:`dora_rl.controllers.hindsight`: a search over the interval model's states, or
  the best plan held from the start, or a run of one of :data:`INCUMBENTS` ahead on a twin of
  the env, whichever scores best), then played.
- ``random``: uniform random actions.
"""

from __future__ import annotations

import itertools
from typing import Any

import gymnasium as gym
import numpy as np
from numpy.typing import NDArray

from dora_rl.controllers.base import MID_LEVEL, Action, Controller, ControlSpec
from dora_rl.controllers.baseline_card import DoraSettings, load_baseline_settings
from dora_rl.controllers.foresight import Foresight
from dora_rl.controllers.hindsight import (
    Schedule,
    best_static,
    lookahead,
    rollout,
    search,
    twin,
)
from dora_rl.controllers.hindsight import action as schedule_action
from dora_rl.controllers.mpc import Mpc
from dora_rl.costmodel import Plan
from dora_rl.dynamics import RuntimeDynamics, WorldState
from dora_rl.env.edge_env import EdgeEnv, WorldHandle
from dora_rl.planner.baselines.baseline_planners import throughput as throughput_plan
from dora_rl.world import SLEEP, Decision


class Static(Controller):
    """Never adapts."""


class Throughput(Controller):
    """The throughput-first plan of every job, kept (set as the env's starting plans)."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        base: EdgeEnv = env.unwrapped  # type: ignore[assignment]
        base.initial_plans = [throughput_plan(m) for m in base.model.models]


class StaticRobust(Controller):
    """The joint plan of least energy whose figures meet every target with every WiFi link at
    the 10th percentile of its rate over the training traces (when none does, the one missing
    fewest requests there), set as the env's starting plans and kept; devices no plan uses
    sleep where they may.

    A planning-time choice from what is known offline (the card and the project's training
    traces), not from the episode.
    """

    PERCENTILE = 10.0

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        base: EdgeEnv = env.unwrapped  # type: ignore[assignment]
        model, scenario = base.model, base.scenario
        links = np.ones(len(scenario.devices))
        if base.dynamics.bandwidth == "trace" and base.dynamics.wifi.any():
            offline = RuntimeDynamics(scenario, bandwidth="trace", split="train")
            for d in np.flatnonzero(base.dynamics.wifi):
                links[d] = np.percentile(offline.trace_multipliers(int(d)), self.PERCENTILE)
        state = model.models[0].nominal
        world = WorldState(state.replace(link_scale=links), np.ones(model.n_jobs, bool),
                           np.ones(model.n_jobs), 0)
        cands = base.cache.get(state.lists[1])
        options: list[list[Plan | None]] = [list(c.plans) or [None] for c in cands]
        best: tuple[float, float, float] = (1.0, float("inf"), float("inf"))
        self.plans: list[Plan | None] = [o[0] for o in options]
        for combo in itertools.product(*options):
            _, out = model.transition(model.initial(list(combo)),
                                      Decision(plans=(None,) * model.n_jobs), world)
            meets = all(j.slack >= 0 for j in out.jobs)
            score = (0.0 if meets else 1.0, 0.0 if meets else round(out.missed, 6),
                     out.jobs_energy_j)
            if score < best:
                best, self.plans = score, list(combo)
        base.initial_plans = self.plans
        used = {d for p in self.plans if p is not None for d in p.devices}
        self.modes = [SLEEP if f.can_sleep and d not in used else 0
                      for d, f in enumerate(model.devices)]

    def act(self, obs: NDArray[np.float32]) -> Action:
        return self.spec.action([0] * self.n_jobs, [MID_LEVEL] * self.n_jobs, self.modes)


class RandomController(Controller):
    """Uniform random actions (seeded)."""

    def __init__(self, env: gym.Env[Any, Any], seed: int | None = None) -> None:
        super().__init__(env)
        self.space = env.action_space
        self.space.seed(load_baseline_settings().random.seed if seed is None else seed)

    def act(self, obs: NDArray[np.float32]) -> Action:
        return np.asarray(self.space.sample(), dtype=np.int64)


class Dora(Controller):
    """The rule-based adapter on the observation (see the module docstring). It remembers,
    per device, its power-mode back-off within an episode (reset when ``predict`` is told an
    episode starts)."""

    def __init__(self, env: gym.Env[Any, Any], settings: DoraSettings | None = None) -> None:
        super().__init__(env)
        settings = settings or load_baseline_settings().dora
        self.margin, self.hysteresis = settings.qoe_margin, settings.hysteresis
        self.tolerance = settings.miss_tolerance
        self.backoff_start, self.backoff_max = settings.backoff_intervals, \
            settings.backoff_max_intervals
        self.reset()

    def reset(self) -> None:
        """Forget the back-offs (a new episode)."""
        n = self.n_devices
        self.backoff = [self.backoff_start] * n
        """Per device, calm intervals to wait before the next slower trial after a failure."""
        self.hold = [0] * n
        """Per device, calm intervals still to wait."""
        self.tried = [False] * n
        """Per device, the last action stepped it slower."""

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Action, Any]:
        if episode_start is not None and bool(np.any(episode_start)):
            self.reset()
        return super().predict(observation, state, episode_start, deterministic)

    def act(self, obs: NDArray[np.float32]) -> Action:
        lay = self.spec.layout
        jobs, cands, devices = lay.job(obs), lay.candidates(obs), lay.device(obs)
        picks = [self._pick(jobs[j], cands[j]) for j in range(self.n_jobs)]
        active = jobs[:, 0] > 0.5
        slack = float(jobs[active, 2].min()) if active.any() else 1.0
        allowance = self.spec.allowance or (0.0,) * self.n_jobs
        missed = [float(jobs[j, 3]) for j in range(self.n_jobs)]
        over = any(missed[j] > allowance[j] + self.tolerance
                   for j in range(self.n_jobs) if active[j])
        calm = all(missed[j] <= 0.5 * allowance[j] + self.tolerance
                   for j in range(self.n_jobs) if active[j])
        modes = []
        for d in range(self.n_devices):
            present, mode_frac, used, may_sleep = devices[d, 0], devices[d, 3], devices[d, 6], \
                devices[d, 7]
            n = self.spec.n_modes[d]
            mode = int(round(float(mode_frac) * max(n - 1, 1))) if n > 1 else 0
            tried, self.tried[d] = self.tried[d], False
            if may_sleep > 0.5 and present > 0.5:
                modes.append(SLEEP)
                continue
            if used > 0.5 and n > 1:
                mode = self._mode(d, mode, n, tried, slack < self.margin or over,
                                  slack > 2 * self.margin and calm)
            else:
                mode = 0
            modes.append(mode)
        return self.spec.action(picks, [MID_LEVEL] * self.n_jobs, modes)

    def _mode(self, d: int, mode: int, n: int, tried: bool, short: bool, ample: bool) -> int:
        """Device ``d``'s next mode from ``mode`` (``tried``: the last step made it slower;
        ``short``: some job is short of slack or over its allowance; ``ample``: every job has
        room to spare)."""
        if short:
            if tried:  # the slower mode failed at once: wait longer before the next trial
                self.hold[d] = self.backoff[d]
                self.backoff[d] = min(2 * self.backoff[d], self.backoff_max)
            return mode - 1 if mode > 0 else 0
        if tried:  # the slower mode held
            self.backoff[d] = max(self.backoff[d] // 2, self.backoff_start)
        if ample and mode < n - 1:
            if self.hold[d] > 0:
                self.hold[d] -= 1
                return mode
            self.tried[d] = True
            return mode + 1
        return mode

    def _pick(self, job: NDArray[np.float32], cand: NDArray[np.float32]) -> int:
        if job[0] < 0.5 or job[5] > 0.5:  # inactive, or a switch under way: keep
            return 0
        present, slack, power, moving, serving = (cand[:, i] for i in range(5))
        ok = (present > 0.5) & (slack >= self.margin)
        current = int(np.argmax(serving)) if serving.max() > 0.5 else -1
        if not ok.any():
            viable = np.flatnonzero(present > 0.5)
            if not len(viable):
                return 0
            best = int(viable[np.argmax(slack[viable])])
            return 0 if best == current else best + 1
        # least power; among near-equal ones the plan with fewer weights to move
        score = np.where(ok, power + 1e-3 * moving, np.inf)
        best = int(np.argmin(score))
        if current >= 0 and ok[current] and power[current] <= power[best] * (1 + self.hysteresis):
            return 0
        return best + 1


class Greedy(Controller):
    """Privileged one-interval peek through the interval model (see the module docstring).

    Args:
        env: The env.
        handle: The read-only world handle (default: the env's own).
    """

    def __init__(self, env: gym.Env[Any, Any], handle: WorldHandle | None = None) -> None:
        super().__init__(env)
        base: EdgeEnv = env.unwrapped  # type: ignore[assignment]
        self.handle = handle or base.handle
        self.max_combinations = load_baseline_settings().greedy.max_combinations

    def act(self, obs: NDArray[np.float32]) -> Action:
        h = self.handle
        model, ctl, world = h.model, h.control(), h.peek()
        usable = world.state.lists[1]
        options: list[list[tuple[int, Any]]] = []
        for j, cand in enumerate(h.candidates()):
            opts: list[tuple[int, Any]] = [(0, None)]
            if world.job_active[j]:
                opts += [(i + 1, p) for i, p in enumerate(cand.plans)
                         if p != (ctl.jobs[j].target or ctl.jobs[j].plan)
                         and all(usable[d] for d in p.devices)]
            options.append(opts)
        levels = (MID_LEVEL,) * self.n_jobs

        def score(choice: tuple[tuple[int, Any], ...], modes: tuple[int, ...]) -> tuple[float,
                                                                                      float]:
            decision = Decision(plans=tuple(p for _, p in choice), levels=levels, modes=modes)
            _, out = model.transition(ctl, decision, world)
            return round(h.violations(out), 9), out.jobs_energy_j

        nominal = (0,) * self.n_devices
        best_choice, best = None, (float("inf"), float("inf"))
        for n, choice in enumerate(itertools.product(*options)):
            if n >= self.max_combinations:
                break
            key = score(choice, nominal)
            if key < best:
                best_choice, best = choice, key
        assert best_choice is not None
        # then each device's mode in turn (sleep included), keeping what scores better
        modes = list(nominal)
        for d, n_modes in enumerate(self.spec.n_modes):
            for mode in [*range(1, n_modes), SLEEP]:
                trial = tuple(modes[:d] + [mode] + modes[d + 1:])
                key = score(best_choice, trial)
                if key < best:
                    modes, best = list(trial), key
        return self.spec.action([pick for pick, _ in best_choice], list(levels), modes)


class Oracle(Controller):
    """Privileged hindsight: at an episode's first step the best schedule of the whole
    episode is searched (:func:`~dora_rl.controllers.hindsight.search` over
    :func:`~dora_rl.controllers.hindsight.lookahead`), then played step by step.

    Args:
        env: The env (a live runtime's cannot look ahead: refused).
        handle: The read-only world handle (default: the env's own).
        beam: States kept alive per interval (default: the baselines card's).
    """

    def __init__(self, env: gym.Env[Any, Any], handle: WorldHandle | None = None,
                 beam: int | None = None) -> None:
        super().__init__(env)
        base: EdgeEnv = env.unwrapped  # type: ignore[assignment]
        self.handle = handle or base.handle
        self.beam = beam if beam is not None else load_baseline_settings().oracle.beam
        self.schedule: Schedule | None = None
        self.played: list[Action] | None = None
        """The actions of an incumbent controller's run ahead, when they score better than
        the search's schedule (played instead)."""
        self._first = 0

    def act(self, obs: NDArray[np.float32]) -> Action:
        env = self.handle.env
        if env.live:
            from dora_rl.errors import DoraError

            raise DoraError("controller 'oracle' needs the whole episode in advance, which a "
                            "live runtime cannot know; use 'greedy' or 'dora'")
        step = env.t - self._first
        if self.schedule is None or env.t == 0 or not 0 <= step < len(self.schedule.steps):
            steps = env.episode_steps - env.t
            episode = lookahead(env, steps)
            found = search(self.handle.model, episode, self.beam)
            held = best_static(self.handle.model, episode)  # an incumbent the search may drop
            self.schedule = held if (held.missed, held.energy_j) < (found.missed,
                                                                    found.energy_j) else found
            self.played = None
            best = (self.schedule.missed, self.schedule.energy_j)
            for name in INCUMBENTS:  # real controllers, played ahead
                ahead = twin(env)
                actions, missed, energy = rollout(ahead, CONTROLLERS[name](ahead), obs, steps)
                if (missed, energy) < best:
                    self.played, best = actions, (missed, energy)
            self._first, step = env.t, 0
        if self.played is not None:
            return self.played[step]
        return schedule_action(env, self.schedule.steps[step])


CONTROLLERS: dict[str, type[Controller]] = {
    "static": Static, "static-robust": StaticRobust, "throughput": Throughput, "dora": Dora,
    "greedy": Greedy, "foresight": Foresight, "mpc": Mpc,
    "oracle": Oracle, "random": RandomController,
}

HINDSIGHT = frozenset({"oracle", "foresight"})
"""Controllers that need the coming intervals in advance (never a live run's)."""

INCUMBENTS = ("static", "static-robust", "greedy", "dora", "mpc", "foresight")
"""Controllers the oracle runs ahead on a twin of the env before its first step: their
schedules are real ones, so the oracle plays one of them when it scores better than its search
(the search drops states beyond its beam and may miss them). The privileged ``greedy`` and
``foresight`` run on the twin's own world handle."""


def make(name: str, env: gym.Env[Any, Any]) -> Controller:
    """Build the controller ``name`` for ``env``."""
    if name not in CONTROLLERS:
        from dora_rl.errors import DoraError

        raise DoraError(f"unknown controller {name!r} (known: {', '.join(CONTROLLERS)})")
    return CONTROLLERS[name](env)


__all__ = ["CONTROLLERS", "HINDSIGHT", "ControlSpec", "Controller", "Dora", "Greedy", "Oracle",
           "RandomController", "Static", "StaticRobust", "Throughput", "make"]
