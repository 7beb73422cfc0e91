"""The best schedule in hindsight, and what no controller can beat.

The world's exogenous processes (links, churn, background load, job activity, QoE changes) do
not depend on the controller's actions (batteries drain with the energy drawn, but within an
episode none reaches its floor on the shipped cards; :func:`replay` checks it). So with the
episode known in advance the best schedule is a search over the interval model's own states:

- :func:`search` is a dynamic program over :class:`~dora_rl.world.control_state.ControlState`\\ s
  (every job's plan, switch under way with its pending transfers, kept weights, power modes
  and wakes), scored by :meth:`~dora_rl.world.interval.IntervalModel.transition` itself under
  the env's objective (fewest weighted misses beyond the jobs' attainment allowances, then
  least energy the jobs cause). Identical states merge, keeping the better past. Its
  decisions per interval: every job keeps its plan or one job starts a switch to one of its
  candidates (any candidate of the env's list), bandwidth levels stay in the middle, devices
  no plan uses sleep where they may, and the used devices' power modes are searched one
  device at a time for that interval (a mode has no effect beyond its interval, apart from
  sleep). When more than ``beam`` states are alive the worst are dropped, after keeping the
  best state of each configuration of plans (so a costly plan that pays off later is not lost
  to cheap ones before it does): the schedule is then the best found, not proven best, and is
  reported as such (``Schedule.exact``). Its schedule is a real one: replayed through
  ``env.step`` it scores exactly what the search says (a test).
- :func:`rollout` runs a controller ahead on a :func:`twin` of the env (the same worlds): the
  ``oracle`` controller plays the best of its search, the best held plan and such runs of the
  observation's controllers, so none of those ever beats it.
- :func:`~dora_rl.controllers.bound.free_switch_bound` is a relaxation that bounds every
  controller from below in the env's lexicographic order (see its module): switches are free
  and instant, every job has the whole medium and picks its own plan and modes, and sleep
  needs no wake.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dora_rl.costmodel import Plan
from dora_rl.dynamics import WorldState
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.env.plan_choices import JobCandidates
from dora_rl.world import LEVELS, SLEEP, ControlState, Decision, IntervalModel, Outcome
from dora_rl.world.requests import excess_missed

MID_LEVEL = LEVELS // 2
TIE_DIGITS = 6
"""Excess misses are compared rounded to this many decimals (float noise is not a miss)."""


@dataclass(frozen=True)
class Episode:
    """An episode known in advance: per interval, the world it runs in and the candidates an
    action's picks refer to; and the control state it starts from."""

    worlds: tuple[WorldState, ...]
    candidates: tuple[tuple[JobCandidates, ...], ...]
    start: ControlState
    weights: tuple[float, ...]
    attainment: tuple[float, ...]


def lookahead(env: EdgeEnv, steps: int) -> Episode:
    """The next ``steps`` intervals of ``env`` from where it stands, without stepping it: its
    dynamics and random generator are copied and run ahead (batteries are not drained; the
    worlds are the env's own as long as no battery reaches its floor)."""
    dynamics, rng = copy.deepcopy(env.dynamics), copy.deepcopy(env.np_random)
    world, cands = env.next_world, tuple(env.cands)
    worlds, candidates = [world], [cands]
    for _ in range(steps - 1):
        cands = tuple(env.cache.get(world.state.lists[1]))
        world = dynamics.step(rng, None)
        worlds.append(world)
        candidates.append(cands)
    return Episode(tuple(worlds), tuple(candidates), env.ctl, tuple(env.job_weights),
                   tuple(env.attainment))


@dataclass(frozen=True)
class Step:
    """One interval of a schedule: per job the candidate picked (0 keeps), per device its
    mode (:data:`~dora_rl.world.SLEEP` asleep)."""

    picks: tuple[int, ...]
    modes: tuple[int, ...]


@dataclass(frozen=True)
class Schedule:
    """A schedule and its score under the env's objective."""

    steps: tuple[Step, ...]
    missed: float
    """Weighted excess misses over the episode (the reward's violation term)."""
    energy_j: float
    """Energy the jobs caused over the episode."""
    exact: bool
    """No state was dropped: the best schedule of the search's decisions."""
    peak_states: int


def _key(ctl: ControlState) -> tuple[Any, ...]:
    """What of a control state the future depends on (not the step counter or the time since
    the last cut-over)."""
    return (tuple((jc.plan, jc.target, jc.pending, jc.break_first, jc.outage_s, jc.level)
                  for jc in ctl.jobs), ctl.modes, ctl.wake_left_s, ctl.resident, ctl.temp_c)


def _score(out: Outcome, weights: Sequence[float],
           attainment: Sequence[float]) -> tuple[float, float]:
    """(weighted excess misses, jobs' energy) of one interval: what the env's reward counts."""
    return sum(w * excess_missed(j.missed, j.arrived, a)
               for w, j, a in zip(weights, out.jobs, attainment, strict=True)), \
        out.jobs_energy_j


def _options(ctl: ControlState, cands: Sequence[JobCandidates], world: WorldState
             ) -> list[tuple[int, ...]]:
    """Picks to try: keep everything, or one job starts a switch to one of its candidates."""
    usable = world.state.lists[1]
    n = len(cands)
    out = [(0,) * n]
    for j, cand in enumerate(cands):
        if not world.job_active[j]:
            continue
        current = ctl.jobs[j].target or ctl.jobs[j].plan
        for i, plan in enumerate(cand.plans):
            if plan != current and all(usable[d] for d in plan.devices):
                picks = [0] * n
                picks[j] = i + 1
                out.append(tuple(picks))
    return out


class _Interval:
    """The search's decision for one interval, given picks: devices no plan uses asleep where
    they may, the used devices' power modes searched one device at a time (slower modes kept
    while they score better), remembered per interval and plans (states that differ only in
    transfers under way or kept weights share them)."""

    def __init__(self, model: IntervalModel, weights: Sequence[float],
                 attainment: Sequence[float]) -> None:
        self.model, self.weights, self.attainment = model, weights, attainment
        self.slower = [d for d, f in enumerate(model.devices) if f.n_modes > 1]
        self.levels = (MID_LEVEL,) * model.n_jobs
        self._modes: dict[tuple[Any, ...], tuple[int, ...]] = {}

    def run(self, ctl: ControlState, picks: tuple[int, ...], cands: Sequence[JobCandidates],
            world: WorldState) -> tuple[ControlState, tuple[float, float], tuple[int, ...]]:
        model = self.model
        plans = tuple(cands[j].plans[p - 1] if p else None for j, p in enumerate(picks))
        after = tuple((p or jc.target or jc.plan, jc.plan) for p, jc in zip(plans, ctl.jobs,
                                                                             strict=True))
        key = (ctl.step, after)
        modes = self._modes.get(key)
        if modes is None:  # the search's own best trial is this state's outcome
            modes, nxt, score = self._search_modes(ctl, plans, after, world)
            self._modes[key] = modes
            return nxt, score, modes
        nxt, out = model.transition(ctl, Decision(plans, self.levels, modes), world)
        return nxt, _score(out, self.weights, self.attainment), modes

    def _search_modes(self, ctl: ControlState, plans: tuple[Plan | None, ...],
                      after: tuple[tuple[Plan | None, Plan | None], ...], world: WorldState
                      ) -> tuple[tuple[int, ...], ControlState, tuple[float, float]]:
        """The modes chosen for ``ctl`` and these plans, with the state and score they
        give."""
        model = self.model
        used = {d for pair in after for p in pair if p is not None for d in p.devices}
        modes = [SLEEP if f.can_sleep and d not in used else 0
                 for d, f in enumerate(model.devices)]

        def attempt(trial: Sequence[int]) -> tuple[ControlState, tuple[float, float]]:
            nxt, out = model.transition(ctl, Decision(plans, self.levels, tuple(trial)), world)
            return nxt, _score(out, self.weights, self.attainment)

        def rank(score: tuple[float, float]) -> tuple[float, float]:
            return round(score[0], TIE_DIGITS), score[1]

        nxt, best = attempt(modes)
        for d in self.slower:
            if d not in used:
                continue
            for mode in range(1, model.devices[d].n_modes):
                trial = modes[:d] + [mode] + modes[d + 1:]
                got, score = attempt(trial)
                if rank(score) < rank(best):
                    nxt, best, modes = got, score, trial
        return tuple(modes), nxt, best


@dataclass
class _Node:
    cost: tuple[float, float]
    """(weighted missed requests rounded to TIE_DIGITS, jobs' energy) so far."""
    raw_missed: float
    ctl: ControlState
    parent: _Node | None
    step: Step | None


def _keep(nodes: Iterable[_Node], beam: int) -> list[_Node]:
    """The ``beam`` states to keep alive: first the best of each configuration (the plans
    serving and being switched to), so a costly configuration that pays off later survives
    the cheap ones, then the best of the rest."""
    ranked = sorted(nodes, key=lambda n: n.cost)
    if len(ranked) <= beam:
        return ranked
    leaders: dict[tuple[Any, ...], _Node] = {}
    for node in ranked:
        leaders.setdefault(tuple((jc.plan, jc.target) for jc in node.ctl.jobs), node)
    first = list(leaders.values())[:beam]
    chosen = {id(n) for n in first}
    rest = [n for n in ranked if id(n) not in chosen][: beam - len(first)]
    return sorted(first + rest, key=lambda n: n.cost)


def search(model: IntervalModel, episode: Episode, beam: int = 16) -> Schedule:
    """The best schedule of the episode over the decisions described in the module docstring
    (exact while no more than ``beam`` distinct states are alive)."""
    interval = _Interval(model, episode.weights, episode.attainment)
    alive = [_Node((0.0, 0.0), 0.0, episode.start, None, None)]
    exact, peak = True, 1
    for world, cands in zip(episode.worlds, episode.candidates, strict=True):
        nodes: dict[tuple[Any, ...], _Node] = {}
        for node in alive:
            for picks in _options(node.ctl, cands, world):
                nxt, (missed, energy), modes = interval.run(node.ctl, picks, cands, world)
                raw = node.raw_missed + missed
                cost = (round(raw, TIE_DIGITS), node.cost[1] + energy)
                key = _key(nxt)
                held = nodes.get(key)
                if held is None or cost < held.cost:
                    nodes[key] = _Node(cost, raw, nxt, node, Step(picks, modes))
        peak = max(peak, len(nodes))
        if len(nodes) > beam:
            exact = False
        alive = _keep(nodes.values(), beam)
    best = alive[0]
    steps: list[Step] = []
    back: _Node | None = best
    while back is not None and back.step is not None:
        steps.append(back.step)
        back = back.parent
    return Schedule(tuple(reversed(steps)), best.cost[0], best.cost[1], exact, peak)


def twin(env: EdgeEnv) -> EdgeEnv:
    """A copy of ``env`` that steps on its own from where ``env`` stands: the same worlds
    ahead (its dynamics and random generator copied), sharing the immutable parts (cards,
    cost models, candidate cache, memos of pure functions)."""
    out = copy.copy(env)
    out.dynamics = copy.deepcopy(env.dynamics)
    out._np_random = copy.deepcopy(env.np_random)
    out.history = copy.copy(env.history)
    out.choice = list(env.choice)
    out.handle = type(env.handle)(out)
    return out


def rollout(env: EdgeEnv, controller: Any, obs: np.ndarray, steps: int
            ) -> tuple[list[np.ndarray], float, float]:
    """``controller`` (SB3's ``predict``) run for ``steps`` intervals on a :func:`twin` of
    ``env`` from observation ``obs``: its actions, weighted missed requests beyond the
    allowances (rounded as the search rounds them) and the jobs' energy."""
    actions: list[np.ndarray] = []
    missed = energy = 0.0
    for i in range(steps):
        act, _ = controller.predict(obs, episode_start=np.array([i == 0]), deterministic=True)
        actions.append(np.asarray(act, dtype=np.int64))
        obs, _, _, _, info = env.step(act)
        missed += sum([w * m for w, m in zip(env.job_weights, info["requests_excess"],
                                             strict=True)])
        energy += info["jobs_energy_j"]
    return actions, round(missed, TIE_DIGITS), energy


def action(env: EdgeEnv, step: Step) -> np.ndarray:
    """The env action of one schedule step (middle bandwidth level)."""
    values = [p * LEVELS + MID_LEVEL for p in step.picks]
    values += [env.n_modes if m == SLEEP else m for m in step.modes]
    return np.array(values, dtype=np.int64)


def replay(env: EdgeEnv, schedule: Schedule) -> tuple[float, float]:
    """Run ``schedule`` through ``env.step`` from where the env stands; the weighted missed
    requests and the jobs' energy it scored."""
    missed = energy = 0.0
    for step in schedule.steps:
        _, _, _, _, info = env.step(action(env, step))
        missed += sum([w * m for w, m in zip(env.job_weights, info["requests_excess"],
                                             strict=True)])
        energy += info["jobs_energy_j"]
    return round(missed, TIE_DIGITS), energy


def plans_seen(episode: Episode) -> list[list[Plan]]:
    """Per job, every plan a controller could serve in the episode: its starting plan and
    every candidate of every interval."""
    out: list[list[Plan]] = [[] for _ in episode.start.jobs]
    for j, jc in enumerate(episode.start.jobs):
        if jc.plan is not None:
            out[j].append(jc.plan)
    for cands in episode.candidates:
        for j, cand in enumerate(cands):
            for p in cand.plans:
                if p not in out[j]:
                    out[j].append(p)
    return out


def static_schedules(model: IntervalModel, episode: Episode) -> list[Schedule]:
    """Every schedule that picks one joint choice of the first interval's candidates at once
    and holds it (devices no chosen plan uses asleep where they may): unscored."""
    options = [range(len(c.plans) + 1) for c in episode.candidates[0]]
    out = []
    n = len(episode.worlds)
    for combo in itertools.product(*options):
        plans = [c.plans[p - 1] if p else jc.plan
                 for p, c, jc in zip(combo, episode.candidates[0], episode.start.jobs,
                                     strict=True)]
        used = {d for p in plans if p is not None for d in p.devices}
        modes = tuple(SLEEP if f.can_sleep and d not in used else 0
                      for d, f in enumerate(model.devices))
        out.append(_held(tuple(combo), modes, n))
    return out


def score(model: IntervalModel, episode: Episode, schedule: Schedule) -> Schedule:
    """``schedule`` scored by the interval model over ``episode`` (as :func:`replay` would
    through the env)."""
    ctl, raw, energy = episode.start, 0.0, 0.0
    levels = (MID_LEVEL,) * model.n_jobs
    for step, world, cands in zip(schedule.steps, episode.worlds, episode.candidates,
                                  strict=True):
        plans = tuple(cands[j].plans[p - 1] if p else None for j, p in enumerate(step.picks))
        ctl, out = model.transition(ctl, Decision(plans, levels, step.modes), world)
        missed, used = _score(out, episode.weights, episode.attainment)
        raw += missed
        energy += used
    return Schedule(schedule.steps, round(raw, TIE_DIGITS), energy, schedule.exact,
                    schedule.peak_states)


def best_static(model: IntervalModel, episode: Episode) -> Schedule:
    """The best schedule of :func:`static_schedules` (switching at the first interval from
    the episode's start, as every controller must), each with the power modes of its plans'
    devices held too, chosen one device at a time (a slower mode kept while it scores better
    over the episode): the best single joint plan and modes held for the whole episode,
    chosen in hindsight."""
    best: Schedule | None = None
    for held in static_schedules(model, episode):
        held = score(model, episode, held)
        first = held.steps[0]
        modes = list(first.modes)
        for d, f in enumerate(model.devices):
            if modes[d] == SLEEP:
                continue
            for mode in range(1, f.n_modes):
                trial = tuple(modes[:d] + [mode] + modes[d + 1:])
                got = score(model, episode, _held(first.picks, trial, len(held.steps)))
                if (got.missed, got.energy_j) < (held.missed, held.energy_j):
                    held, modes = got, list(trial)
        if best is None or (held.missed, held.energy_j) < (best.missed, best.energy_j):
            best = held
    assert best is not None
    return best


def _held(picks: tuple[int, ...], modes: tuple[int, ...], steps: int) -> Schedule:
    """Pick ``picks`` in the first interval, then keep; ``modes`` throughout (unscored)."""
    keep = Step((0,) * len(picks), modes)
    return Schedule((Step(picks, modes),) + (keep,) * (steps - 1), 0.0, 0.0, True, 0)


__all__ = ["Episode", "Schedule", "Step", "action", "best_static", "lookahead", "plans_seen",
           "replay", "score", "search", "static_schedules"]
