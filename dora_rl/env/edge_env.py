"""The ``-v1`` environments: a thin Gymnasium shell over the interval model.

Physics live in :mod:`dora_rl.world`; this module only encodes actions and observations,
computes the reward and keeps episode bookkeeping.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from dora_rl.config import Scenario
from dora_rl.costmodel import Plan
from dora_rl.dynamics import RuntimeDynamics, WorldState
from dora_rl.dynamics.daily import RATE_STEP
from dora_rl.env.observation import (
    FINISH_SCALE_S,
    OUTAGE_SCALE_S,
    QOE_SCALE_MAX,
    DecisionLayout,
    encode,
)
from dora_rl.env.plan_choices import JobCandidates, shared_cache
from dora_rl.errors import DoraError
from dora_rl.scenarios import load
from dora_rl.world import LEVELS, SLEEP, ControlState, Decision, IntervalModel, Outcome
from dora_rl.world.predict import RoundedView, predict_in_view
from dora_rl.world.queues import DeviceQueues, at_load, combine
from dora_rl.world.requests import arrivals, excess_missed
from dora_rl.world.weights import Resident, gained, held_mask, mask_bytes, plan_masks


def lexicographic_reward(missed_requests: float, jobs_energy_j: float, price_j: float,
                         requests_per_interval: float, penalty_j: float = 0.0) -> float:
    """The reward of one interval: missed requests priced at ``price_j`` joules each, plus the
    energy the jobs caused and any penalty (in joules), scaled so that an interval whose
    requests all miss scores about -1.

    Example:
        >>> lexicographic_reward(0.0, 50.0, 1e6, 5.0)
        -1e-05
        >>> lexicographic_reward(5.0, 0.0, 1e6, 5.0)
        -1.0
    """
    return -(price_j * missed_requests + jobs_energy_j + penalty_j) / (
        price_j * requests_per_interval)


class StepInfo(dict[str, Any]):
    """A step's ``info``: plain numbers and tuples of numbers, so a shallow copy is a deep one.

    SB3's vectorised envs deep-copy every ``info`` on every step; for this dict that is a
    shallow copy (what wrappers add is never mutated afterwards), which keeps the copy off the
    training loop's profile.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> StepInfo:
        return StepInfo(self)


PREDICT_STEP = 0.02
"""Resolution of the link rates, loads and free airtime candidates are predicted under."""
PREDICT_MEMO = 8192


@dataclass(frozen=True)
class WorldHandle:
    """A read-only window on the env's world for privileged baselines (never for a policy):
    the interval model, the control state and the world of the coming interval."""

    env: EdgeEnv

    @property
    def model(self) -> IntervalModel:
        """The interval model the env steps."""
        return self.env.model

    def control(self) -> ControlState:
        """The control state the next action will act on (frozen)."""
        return self.env.ctl

    def peek(self) -> WorldState:
        """The world of the coming interval (what the next action will run in)."""
        return self.env.next_world

    def candidates(self) -> list[JobCandidates]:
        """The candidates the next action's picks refer to."""
        return self.env.cands

    def violations(self, out: Outcome) -> float:
        """The weighted misses of ``out`` beyond the jobs' attainment allowances: what the
        env's reward counts as violations (before energy)."""
        return self.env.weighted(self.env.excess(out))


class EdgeEnv(gym.Env[NDArray[np.float32], NDArray[np.int64]]):
    """Meet every request's QoE at the least energy the jobs cause.

    ## Description
    One step is one control interval of :class:`~dora_rl.world.IntervalModel`: switches are
    make-before-break with weights kept resident, power modes and sleep are actions, QoE is
    counted per request (per iteration for training).

    ## Observation Space
    ``Box(-1, 1, (n,), float32)`` laid out by :class:`~dora_rl.env.observation.DecisionLayout`
    (the world, the control state, and each candidate's predicted slack, power and weights to
    move under the last interval's measurements, at nominal power modes with an equal share of
    the media).

    ## Action Space
    ``MultiDiscrete([(K + 1) * 4] * J + [M + 1] * D)``: per job ``pick * 4 + level`` (pick 0
    keeps the plan or the switch under way, ``i`` takes candidate ``i - 1``), then per device
    its power mode (``0`` nominal, ``v`` its ``v``-th slower level, ``M`` sleep, M the largest
    number of modes of any device). :meth:`action_masks` gives the feasible values; an
    infeasible plan pick becomes the least-energy feasible candidate and an infeasible mode
    the nominal one, each counted in ``invalid_choices``.

    ## Rewards
    ``r = -(price * sum_j weight_j * excess_j + E_jobs + invalid * E_max) / (price * q)``:
    ``excess_j`` the job's requests that missed QoE this interval beyond what its attainment
    target allows (``(1 - attainment) x`` its arrivals; info ``requests_excess``, the misses
    themselves in ``requests_missed``), ``E_jobs`` the energy the jobs caused (J), ``E_max``
    every device at full busy power for one interval, ``q`` the requests of one interval.
    ``price = E_max * episode_steps / q_min`` (``q_min``: the rarest job's requests per
    interval, at the lowest rate its load profile reaches) makes the order lexicographic:
    one interval of the rarest job's requests outweighs all the energy of an episode, so
    fewer excess misses always win and energy decides among equals (QoE the constraint, energy
    the objective). A fully missed interval scores about ``-1``.

    ## Starting State
    Each job on its first candidate at the middle bandwidth level, devices awake at nominal.

    ## Episode End
    Never terminates; truncated after ``episode_steps`` intervals.

    ## Arguments
    ``scenario``, ``bandwidth``, ``traces_dir`` (every trace of a user's folder is used),
    ``split`` (for the project's own traces), ``episode_steps`` and ``interval_s`` (None: the
    card's ``dynamics.episode_s`` over its ``dynamics.interval_s``, and that interval), ``k``
    (4), ``violation_price_j`` (None: the lexicographic price below; a number prices one
    weighted excess miss at that many joules, the scaled objective a learner can see energy
    in).
    """

    metadata = {"render_modes": []}

    def __init__(self, scenario: str | Path | Scenario = "smart_home", bandwidth: str | None = None,
                 traces_dir: str | Path | None = None, split: str = "train",
                 episode_steps: int | None = None, k: int = 4,
                 interval_s: float | None = None,
                 violation_price_j: float | None = None) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load(scenario)
        dyn = self.scenario.dynamics
        if interval_s is None:
            interval_s = dyn.interval_s
        if episode_steps is None:
            episode_steps = max(1, round(dyn.episode_s / interval_s))
        self.model = IntervalModel(self.scenario, interval_s)
        self.n_jobs, self.n_devices = self.model.n_jobs, self.model.n_devices
        self.k, self.interval_s, self.episode_steps = k, interval_s, episode_steps
        self.dynamics = RuntimeDynamics(self.scenario, bandwidth=bandwidth,  # type: ignore[arg-type]
                                        traces_dir=traces_dir, split=split, interval_s=interval_s)
        self.cache = shared_cache(self.scenario, self.model.models, k)
        self.layout = DecisionLayout(self.n_devices, self.model.n_domains, self.n_jobs, k,
                                     rates=any(j.rate_profile for j in self.scenario.jobs),
                                     thermal=self.model.thermal)
        self.n_modes = max(f.n_modes for f in self.model.devices)
        self.observation_space = spaces.Box(-1.0, 1.0, (self.layout.size,), np.float32)
        self.action_space = spaces.MultiDiscrete(
            [(k + 1) * LEVELS] * self.n_jobs + [self.n_modes + 1] * self.n_devices)
        facts = self.model.devices
        self.max_energy_j = sum(max(f.busy_w) for f in facts) * interval_s
        per_interval = [arrivals(job, interval_s, 1.0) for job in self.scenario.jobs]
        self.requests_per_interval = sum(per_interval)
        fewest = min(n * (RATE_STEP if job.rate_profile is not None else 1.0)
                     for n, job in zip(per_interval, self.scenario.jobs, strict=True))
        self.violation_price_j = self.max_energy_j * episode_steps / fewest \
            if violation_price_j is None else float(violation_price_j)
        if not (math.isfinite(self.violation_price_j) and self.violation_price_j > 0):
            raise DoraError(f"violation_price_j must be a positive number, got "
                            f"{violation_price_j}")
        """Joules one missed request is worth in the reward (see Rewards)."""
        self.job_weights = [job.weight for job in self.scenario.jobs]
        self.attainment = [job.qoe.attainment for job in self.scenario.jobs]
        self.total_weight_bytes = [sum(b) for b in self.model.layer_bytes]
        self.capacity_wh = [d.battery_wh for d in self.scenario.devices]
        self.handle = WorldHandle(self)
        self._predictions: dict[tuple[Any, ...], tuple[float, float]] = {}
        self._mask_bytes: dict[tuple[int, int], float] = {}
        self._nominal_modes = (0,) * self.n_devices
        self._weights_memo: dict[Any, tuple[list[list[float]], list[list[float]]]] = {}
        self.initial_plans: list[Plan | None] | None = None
        """Plans to start every episode from instead of the first candidates."""
        self.live = False
        """Bound to a live runtime's measurements (:meth:`bind`): no future to look ahead to."""

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        self.world = self.dynamics.reset(self.np_random)
        self.next_world = self.dynamics.step(self.np_random, [0.0] * self.n_devices)
        self.t = 0
        self.cands = self.cache.get(self.world.state.lists[1])
        self.choice = [1 if c.plans else 0 for c in self.cands]
        start = self.initial_plans if self.initial_plans is not None else \
            [c.plans[0] if c.plans else None for c in self.cands]
        self.ctl = self.model.initial(start)
        self._sync_choice()
        self.history: deque[list[float]] = deque([self.world.state.lists[2]] * 4, maxlen=4)
        self.last: Outcome | None = None
        return self._obs(), {"plan_ids": tuple(self.choice)}

    def step(self, action: NDArray[np.int64]) -> tuple[NDArray[np.float32], float, bool, bool,
                                                       dict[str, Any]]:
        decision, invalid = self.decode(action)
        world = self.next_world
        self.ctl, out = self.model.transition(self.ctl, decision, world)
        invalid += out.refused
        self.world, self.last = world, out
        self.t += 1
        self.history.append(world.state.lists[2])
        self.next_world = self.dynamics.step(self.np_random, [d.total_j for d in out.devices])
        self.cands = self.cache.get(world.state.lists[1])
        self._sync_choice()
        excess = self.excess(out)
        missed = self.weighted(excess)
        jobs_j = out.jobs_energy_j
        reward = lexicographic_reward(
            missed, jobs_j, self.violation_price_j, self.requests_per_interval,
            invalid * self.max_energy_j * self.scenario.reward.invalid_weight)
        info = StepInfo(
            energy_j=out.energy_j, jobs_energy_j=jobs_j,
            latency_ms=tuple(j.latency_ms for j in out.jobs),
            requests=tuple(j.scored for j in out.jobs),
            requests_missed=tuple(j.missed for j in out.jobs),
            requests_excess=tuple(excess),
            qoe_violation=tuple(int(j.missed > 1e-12) for j in out.jobs),
            qoe_violation_any=int(out.missed > 1e-12),
            replans=sum(j.switched for j in out.jobs),
            cut_overs=sum(j.cut_over for j in out.jobs),
            migration_bytes=sum(j.moved_bytes for j in out.jobs), invalid_choices=invalid,
            plan_ids=tuple(self.choice), modes=self.ctl.modes,
            throttled=out.throttled or (False,) * self.n_devices,
            available=tuple(world.state.available.tolist()),
            job_active=tuple(world.job_active.tolist()))
        return self._obs(), float(reward), False, self.t >= self.episode_steps, info

    def excess(self, out: Outcome) -> list[float]:
        """Per job, the missed requests of ``out`` beyond its attainment target's allowance
        (:func:`~dora_rl.world.requests.excess_missed`): what the reward counts."""
        return [excess_missed(j.missed, j.arrived, a)
                for j, a in zip(out.jobs, self.attainment, strict=True)]

    def weighted(self, per_job: Sequence[float]) -> float:
        """``per_job`` figures (excess misses) summed with the jobs' weights: the violations
        the reward counts."""
        return sum(w * x for w, x in zip(self.job_weights, per_job, strict=True))

    def action_masks(self) -> NDArray[np.bool_]:
        """Feasible values per action dimension, concatenated (MaskablePPO's format)."""
        usable = self.world.state.lists[1]
        masks = []
        for j, cand in enumerate(self.cands):
            m = np.zeros(self.k + 1, dtype=bool)
            current = self.ctl.jobs[j].target or self.ctl.jobs[j].plan
            m[0] = current is not None and all(usable[d] for d in current.devices)
            for i, plan in enumerate(cand.plans):
                m[i + 1] = all(usable[d] for d in plan.devices)
            if not m.any():
                m[0] = True
            masks.append(np.repeat(m, LEVELS))
        busy = self.model.used_devices(self.ctl.jobs)
        for d, f in enumerate(self.model.devices):
            m = np.zeros(self.n_modes + 1, dtype=bool)
            m[: f.n_modes] = True
            m[self.n_modes] = f.can_sleep and d not in busy
            masks.append(m)
        return np.concatenate(masks)

    # ------------------------------------------------------------------ measured worlds
    def bind(self, world: WorldState, ctl: ControlState, last: Outcome | None,
             link_history: Sequence[Sequence[float]]) -> None:
        """Point the env at a world it did not step (a live runtime's measurements): the
        interval that just closed (also shown to a privileged controller as the coming one,
        which a runtime cannot know), the control state, that interval's outcome and the
        last link-rate rows, oldest first. :meth:`observe`, :meth:`decode` and
        :meth:`action_masks` then read only these."""
        self.world = self.next_world = world
        self.ctl, self.last = ctl, last
        self.live = True
        self.history = deque([list(r) for r in link_history], maxlen=self.layout.history)
        self.cands = self.cache.get(world.state.lists[1])
        self.choice = [0] * self.n_jobs
        self._sync_choice()

    def observe(self) -> NDArray[np.float32]:
        """The observation of the env's current world and control state."""
        return self._obs()

    # ------------------------------------------------------------------ encoding
    def decode(self, action: NDArray[np.int64] | list[int]) -> tuple[Decision, int]:
        """The decision an action asks for, through the safety layer, and how many of its
        choices were infeasible."""
        flat = np.asarray(action).ravel()
        values = flat.tolist() if flat.dtype.kind in "iu" else [int(a) for a in flat.tolist()]
        if len(values) != self.n_jobs + self.n_devices:
            raise ValueError(f"action: expected {self.n_jobs + self.n_devices} values (one per "
                             f"job, then one per device), got {len(values)}")
        usable = self.world.state.lists[1]
        plans: list[Plan | None] = []
        levels, invalid = [], 0
        for j, cand in enumerate(self.cands):
            pick, level = divmod(values[j], LEVELS)
            levels.append(level)
            if pick == 0:
                plans.append(None)
                continue
            wanted = cand.plans[pick - 1] if 0 < pick <= len(cand.plans) else None
            if wanted is not None:
                for d in wanted.devices:
                    if not usable[d]:
                        break
                else:  # every device of it usable
                    plans.append(wanted)
                    continue
            invalid += 1
            options = [i for i, p in enumerate(cand.plans) if all(usable[d] for d in p.devices)]
            plans.append(cand.plans[min(options, key=lambda i: cand.energy_j[i])]
                         if options else None)
        modes = []
        n_jobs, sleep = self.n_jobs, self.n_modes
        for d, f in enumerate(self.model.devices):
            v = values[n_jobs + d]
            if v == sleep:
                modes.append(SLEEP)
            elif v < len(f.busy_w):  # its power modes (DeviceFacts.n_modes)
                modes.append(v)
            else:
                invalid += 1
                modes.append(0)
        return Decision(plans=tuple(plans), levels=tuple(levels), modes=tuple(modes)), invalid

    def _sync_choice(self) -> None:
        """Each job's serving plan as a candidate index + 1 (0: not among the candidates)."""
        for j, jc in enumerate(self.ctl.jobs):
            plans = self.cands[j].plans
            self.choice[j] = plans.index(jc.plan) + 1 if jc.plan in plans else 0

    def _obs(self) -> NDArray[np.float32]:
        world, ctl, model = self.world, self.ctl, self.model
        state = world.state
        load, usable, _, _ = state.lists
        present = state.available.tolist()
        battery = state.battery_wh.tolist()
        used = model.used_devices(ctl.jobs)
        # per device: battery capacity, the power-mode scale and whether it may sleep
        # (fixed by the card)
        fixed: list[tuple[float | None, int, bool]] | None = self.__dict__.get("_device_fixed")
        if fixed is None:
            fixed = [(self.capacity_wh[d], max(f.n_modes - 1, 1), f.can_sleep)
                     for d, f in enumerate(model.devices)]
            self._device_fixed = fixed
        modes, wake_left = ctl.modes, ctl.wake_left_s
        thermal = self.layout.thermal
        devices = []
        for d, (cap, scale, can_sleep) in enumerate(fixed):
            mode = modes[d]
            busy = d in used
            row = [float(present[d]), load[d], 1.0 if cap is None else battery[d] / cap,
                   (mode if mode >= 0 else 0) / scale, float(mode == SLEEP and wake_left[d] <= 0),
                   float(wake_left[d] > 0), float(busy), float(can_sleep and not busy)]
            if thermal:
                row.append(model.devices[d].heat(ctl.temp_c[d]))
            devices.append(row)
        residency, moving = self._weights_block()
        last = self.last
        active = world.job_active.tolist()
        qoe_scales = world.qoe_scale.tolist()
        # candidates are scored at nominal modes with an equal share of the media: what a
        # plan would do in the measured world, apart from the levers the action sets anew
        share = 1.0 / max(sum(active), 1)
        rates = world.rate_scale.tolist() if world.rate_scale is not None else \
            [1.0] * len(active)
        serving = [model.kernel_load(i, jc.plan, rates[i]) if active[i] and jc.plan is not None
                   else None for i, jc in enumerate(ctl.jobs)]
        view = RoundedView(model.view(state, share, usable), PREDICT_STEP)
        loaded: dict[int, DeviceQueues] = {}  # per job, ``others`` at the view's loads
        kept: dict[int, tuple[list[Any], DeviceQueues, list[tuple[float, float]]]] | None = \
            self.__dict__.get("_others_kept")
        if kept is None:
            kept = {}
            self._others_kept = kept
        jobs, cands = [], []
        for j, jc in enumerate(ctl.jobs):
            out = last.jobs[j] if last is not None else None
            finish = self._finish_s(j) if jc.target is not None else 0.0
            total = self.total_weight_bytes[j] or 1.0
            row = [float(active[j]), qoe_scales[j] / QOE_SCALE_MAX,
                   out.slack if out is not None else 0.0,
                   out.missed / out.scored if out is not None and out.scored > 0 else 0.0,
                   self.choice[j] / self.k, float(jc.target is not None),
                   jc.pending_bytes / total, finish / FINISH_SCALE_S,
                   jc.outage_s / OUTAGE_SCALE_S, jc.level / (LEVELS - 1)]
            if self.layout.rates:
                row.append(rates[j])
            jobs.append(row)
            # the other jobs' kernel loads: the last ones of this job while the serving
            # loads are the very same objects (held, so their identities stay theirs)
            last_others = kept.get(j)
            if last_others is not None and all([a is b for a, b in zip(
                    last_others[0], serving, strict=True)]):
                others, queue = last_others[1], last_others[2]
            else:
                others = combine(serving, self.n_devices, skip=j)
                queue = list(zip(others.utilisation, others.residual_s, strict=True))
                kept[j] = (serving, others, queue)
            rows = []
            plans = self.cands[j].plans
            for i in range(self.k):
                if i >= len(plans):
                    rows.append([0.0, -1.0, 1.0, 1.0, 0.0])
                    continue
                plan = plans[i]
                ok = True
                for d in plan.devices:
                    if not usable[d]:
                        ok = False
                        break
                slack, power = self._predicted(j, plan, view, others, queue, qoe_scales[j],
                                               rates[j], loaded) if ok else (-1.0, 0.0)
                rows.append([float(ok), slack, power * self.interval_s / self.max_energy_j,
                             moving[j][i] / total, float(plan is jc.plan or plan == jc.plan)])
            cands.append(rows)
        cross = state.cross_traffic.tolist()
        return encode(self.layout, self.history, devices, residency, cross, jobs, cands)

    def _weights_block(self) -> tuple[list[list[float]], list[list[float]]]:
        """The residency rows and, per job and candidate, the bytes a switch would move.

        Both depend on the serving plans, the kept weights and the candidates (and the switch
        under way, whose bytes shrink as it moves: read anew), which change only when a switch
        cuts over or devices come and go. They are memoised on those, each candidate's bytes
        worked out when first asked for (NaN until then); while they are the very same
        objects as at the last call (held, so their identities stay theirs) not even the
        memo key is built."""
        ctl, cands = self.ctl, self.cands
        resident = ctl.resident
        serving = tuple([jc.plan for jc in ctl.jobs])
        held: tuple[Resident, tuple[Plan | None, ...], list[JobCandidates],
                    tuple[list[list[float]], list[list[float]]]] | None = \
            self.__dict__.get("_weights_held")
        if held is None or held[0] is not resident or held[1] != serving \
                or held[2] is not cands:
            key = (serving, resident, tuple([c.plans for c in cands]))
            hit = self._weights_memo.get(key)
            if hit is None:
                residency = []
                for d in range(self.n_devices):
                    row = []
                    for j, jc in enumerate(ctl.jobs):
                        mask = plan_masks(jc.plan).get(d, 0) | held_mask(resident, d, j)
                        total = self.total_weight_bytes[j]
                        row.append(self._bytes(j, mask) / total if total else 0.0)
                    residency.append(row)
                if len(self._weights_memo) >= PREDICT_MEMO:
                    self._weights_memo.clear()
                hit = self._weights_memo[key] = (
                    residency, [[math.nan] * len(c.plans) for c in cands])
            held = (resident, serving, cands, hit)
            self._weights_held = held
        residency, moves = held[3]
        moving = []
        for j, c in enumerate(cands):
            jc = ctl.jobs[j]
            known = moves[j]
            row = []
            for i, p in enumerate(c.plans):
                if p is jc.plan or p == jc.plan:
                    row.append(0.0)
                elif jc.target is not None and (p is jc.target or p == jc.target):
                    row.append(jc.pending_bytes)
                else:
                    x = known[i]
                    if x != x:  # not worked out yet
                        x = known[i] = self._to_move(j, p)
                    row.append(x)
            moving.append(row)
        return residency, moving

    def _predicted(self, j: int, plan: Plan, view: RoundedView, others: DeviceQueues,
                   queue: list[tuple[float, float]], qoe_scale: float, rate: float,
                   loaded: dict[int, DeviceQueues]) -> tuple[float, float]:
        """Job ``j``'s predicted slack and power running ``plan`` (every device of it usable)
        at nominal power modes in ``view`` (its share of each medium in the measured world,
        with loads, link rates and free airtime rounded to :data:`PREDICT_STEP`: the
        observation needs no finer figure, and the rounded view is what is evaluated), the
        other jobs' kernels putting ``others`` (``queue``: per device its utilisation and
        residual work, at nominal load) on the devices
        (:func:`~dora_rl.world.predict.predict_in_view`), memoised on exactly what that
        evaluation reads. The plan's devices are all usable here, so usability is no part of
        the key. ``loaded`` keeps, per job, ``others`` at the rounded view's loads (the same
        for every candidate of the job)."""
        at = plan.at_devices
        key: tuple[Any, ...] = \
            (j, plan, at(view.loads), at(view.links), view.frees, at(queue), qoe_scale, rate) \
            if len(plan.devices) > 1 else (j, plan, at(view.loads), at(queue), qoe_scale, rate)
        hit = self._predictions.get(key)
        if hit is None:
            rounded = view.rounded()
            queues = loaded.get(j)
            if queues is None:
                queues = loaded[j] = at_load(others, rounded.lists[0])
            if len(self._predictions) >= PREDICT_MEMO:
                self._predictions.clear()
            hit = self._predictions[key] = predict_in_view(
                self.model, self._nominal_modes, j, plan, rounded, qoe_scale, queues, rate)
        return hit

    def _to_move(self, j: int, plan: Plan) -> float:
        """Weight bytes a switch of job ``j`` to ``plan`` would move now."""
        jc = self.ctl.jobs[j]
        if plan == jc.plan:
            return 0.0
        if plan == jc.target:
            return jc.pending_bytes
        moves = gained(self.model.layer_bytes[j], j, jc.plan, plan, self.ctl.resident,
                       self.model.devices)
        return sum(t.bytes_left for t in moves)

    def _bytes(self, j: int, mask: int) -> float:
        """Weight bytes of job ``j``'s layers in ``mask`` (memoised)."""
        key = (j, mask)
        hit = self._mask_bytes.get(key)
        if hit is None:
            hit = self._mask_bytes[key] = mask_bytes(self.model.layer_bytes[j], mask)
        return hit

    def _finish_s(self, j: int) -> float:
        """Rough seconds left of job ``j``'s switch at the last interval's pace."""
        last = self.last
        moved = last.jobs[j].moved_bytes if last is not None else 0.0
        left = self.ctl.jobs[j].pending_bytes
        return left / moved * self.interval_s if moved > 0 else (FINISH_SCALE_S if left else 0.0)


__all__ = ["EdgeEnv", "WorldHandle", "lexicographic_reward"]
