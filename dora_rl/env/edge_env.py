"""The Gymnasium environment: re-plan and share bandwidth under real runtime dynamics."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from dora_rl.config import Scenario
from dora_rl.costmodel import CostModel, Plan, State
from dora_rl.dynamics import RuntimeDynamics, WorldState
from dora_rl.env.candidates import JobCandidates, shared_cache
from dora_rl.env.observation import ObservationLayout, encode_observation, scaled_links
from dora_rl.env.transition import (
    MAX_STALL_S,
    demand,
    receive,
    stall_wait_s,
    stalled,
    violation,
    wait_targets_s,
    weight_bytes,
)
from dora_rl.scenarios import load

BANDWIDTH_LEVELS = 4
MEMO_ENTRIES = 4096  # per memo of the env's interval figures; a full memo is emptied


class JobOutcome(NamedTuple):
    """One job's figures for one interval (:meth:`EdgeEnv._outcome`); shared: read only."""

    latency_ms: float
    shortfall: float
    violated: int
    slack: float
    extra_w: float | None
    """Power above the idle baseline, net of time waiting behind other jobs (None: the cost
    model's power is not finite, and the job adds nothing)."""
    util: tuple[float, ...]
    """Compute demand per device (:func:`~dora_rl.env.transition.demand`); a tuple, so the
    garbage collector stops tracking memoised outcomes."""


def encode_action(picks: list[int], levels: list[int]) -> NDArray[np.int64]:
    """The env action for per-job plan picks (0 keeps, ``i`` takes candidate ``i - 1``) and
    bandwidth levels: one value per job, ``pick * BANDWIDTH_LEVELS + level``.

    Example:
        >>> encode_action([0, 3], [2, 1]).tolist()
        [2, 13]
    """
    return np.array([p * BANDWIDTH_LEVELS + lv for p, lv in zip(picks, levels, strict=True)],
                    dtype=np.int64)


def decode_action(action: NDArray[np.int64] | list[int]) -> tuple[list[int], list[int]]:
    """Per-job plan picks and bandwidth levels of an env action (inverse of
    :func:`encode_action`).

    Example:
        >>> decode_action([2, 13])
        ([0, 3], [2, 1])
    """
    arr = np.asarray(action)
    values = arr.ravel().tolist()
    if arr.dtype.kind not in "iu":  # integer arrays already give Python ints
        values = [int(a) for a in values]
    return [v // BANDWIDTH_LEVELS for v in values], [v % BANDWIDTH_LEVELS for v in values]


class StepInfo(dict[str, Any]):
    """A step's ``info``: plain numbers and tuples of numbers, so a shallow copy is a deep one.

    SB3's vectorised envs deep-copy every ``info`` on every step; for this dict that is a
    shallow copy (what wrappers add, Monitor's episode summary and the terminal observation,
    is never mutated afterwards), which keeps the copy off the training loop's profile.
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> StepInfo:
        return StepInfo(self)


class EdgeEnv(gym.Env[NDArray[np.float32], NDArray[np.int64]]):
    """Keep every job's QoE at least energy while links fade and devices come and go.

    ## Description
    One step is one control interval (``interval_s`` of the modelled world). The world moves on
    by the scenario's dynamics (real WiFi traces or a synthetic generator, devices leaving and
    rejoining, background load, battery drain, jobs starting and stopping, QoE targets
    changing), the controller's action is applied, the analytic cost model evaluates the
    interval, and the reward follows.

    ## Observation Space
    ``Box(-1, 1, (n,), float32)``, built by :func:`dora_rl.env.observation.encode_observation`
    (see its table): per device a short history of link-rate multipliers, availability,
    background load and battery; per domain cross traffic; per job activity, QoE scale,
    smallest QoE slack, current candidate, bandwidth level and time since its last switch.

    ## Action Space
    ``MultiDiscrete([(K + 1) * 4] * J)``: one value per job, ``pick * 4 + l``
    (:func:`encode_action`). ``pick`` 0 keeps the current plan and ``i`` switches to candidate
    ``i - 1`` (the job's plan set for the devices present); ``l`` is the job's bandwidth level:
    it asks for ``(l + 1) / 4`` of each medium, scaled down so the active jobs' requests sum to
    at most 1. Plan and level share one categorical per job, so a policy has one head per job.
    A choice that is infeasible (an empty slot, a plan on a device that left, memory) is
    replaced by the safety layer with the least-energy feasible candidate, and penalised.
    :meth:`action_masks` gives the feasible choices (every level of a feasible pick).

    ## Rewards
    ``r = -w_e * E / E_max - w_q * sum_j weight_j * shortfall_j - w_s * stall_s / interval_s
    - w_i * invalid``: ``E`` is the energy of all devices over the interval (each job's power
    above idle plus every device's idle power), ``E_max`` every device at full busy power;
    ``shortfall_j`` is how far the job's targets were missed, ``sum(max(0, -slack))`` over its
    targets with relative slack (capped at 5 per target); ``stall_s`` the time spent moving
    weights to devices that gain layers after a switch; ``invalid`` the number of choices the
    safety layer replaced. Weights come from the card's ``reward`` section.

    A switching job also serves nothing until its weights arrive (carried into later
    intervals when longer than one): its requests wait (latency and TTFT add the mean wait,
    :func:`~dora_rl.env.transition.stall_wait_s`) and its rates thin out (throughput and
    iteration targets stretch by ``I / (I - stall)``), so the stall counts in its QoE and
    shortfall, not only in the ``w_s`` term (:func:`~dora_rl.env.transition.stalled`).

    ## Starting State
    Every job starts on its first candidate (the optimum of the card's mode) with the middle
    bandwidth level; the dynamics draw traces, offsets and device states from the seed.

    ## Episode End
    Never terminates; truncated after ``episode_steps`` intervals.

    ## Arguments
    ``scenario`` (card name or path, or a Scenario), ``bandwidth`` (trace, synthetic, static;
    default the card's), ``traces_dir`` (your own traces), ``split`` (train, validation, test),
    ``episode_steps`` (300), ``k`` (candidate plans per job, 4), ``interval_s`` (1.0).
    """

    metadata = {"render_modes": []}

    def __init__(self, scenario: str | Path | Scenario = "smart_home", bandwidth: str | None = None,
                 traces_dir: str | Path | None = None, split: str = "train",
                 episode_steps: int = 300, k: int = 4, interval_s: float = 1.0) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else load(scenario)
        self.models = [CostModel(self.scenario, j) for j in range(len(self.scenario.jobs))]
        self.n_jobs, self.k, self.interval_s = len(self.models), k, interval_s
        self.episode_steps = episode_steps
        self.dynamics = RuntimeDynamics(self.scenario, bandwidth=bandwidth,  # type: ignore[arg-type]
                                        traces_dir=traces_dir, split=split, interval_s=interval_s)
        self.cache = shared_cache(self.scenario, self.models, k)
        n_dev, n_dom = len(self.scenario.devices), len(self.scenario.network.domains)
        self.layout = ObservationLayout(n_dev, n_dom, self.n_jobs)
        self.observation_space = spaces.Box(-1.0, 1.0, (self.layout.size,), np.float32)
        self.action_space = spaces.MultiDiscrete([(k + 1) * BANDWIDTH_LEVELS] * self.n_jobs)
        self.capacity_wh = np.array([d.battery_wh if d.battery_wh else np.nan
                                     for d in self.scenario.devices])
        t = self.models[0].tables
        self.max_energy_j = float(np.nanmax(t.dvfs_busy_w, axis=1).sum()) * interval_s
        self.idle_w = t.idle_w
        self.busy_above_idle = t.dvfs_busy_w[:, 0] - t.idle_w
        self.busy_list: list[float] = self.busy_above_idle.tolist()
        self.idle_total_w = float(t.idle_w.sum())
        self.idle_list: list[float] = t.idle_w.tolist()
        self.power_off = bool(t.unused_power_off)
        self.job_weights = [job.weight for job in self.scenario.jobs]
        self.n_devices = n_dev
        self._demand: dict[tuple[int, Plan], list[float]] = {}
        self.wait_targets = [wait_targets_s(m) for m in self.models]
        self.capacity_list: list[float] = self.capacity_wh.tolist()
        self._zero = (0.0,) * n_dev
        self._planned_memo: dict[tuple[Any, ...], tuple[list[list[float]], list[float]]] = {}
        self._outcomes: list[dict[tuple[Any, ...], JobOutcome]] = [{} for _ in self.models]
        self._fading = frozenset() if self.dynamics.bandwidth == "static" else \
            frozenset(np.flatnonzero(self.dynamics.wifi).tolist())
        """Devices whose link rate follows a trace or the generator (new every interval)."""
        self.initial_plans: list[Plan | None] | None = None
        """Plans to start every episode from instead of the first candidates."""

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[NDArray[np.float32], dict[str, Any]]:
        super().reset(seed=seed)
        self.world: WorldState = self.dynamics.reset(self.np_random)
        self.t = 0
        self.energy_dev: list[float] = [0.0] * len(self.scenario.devices)
        """Each device's energy over the last interval (drains the batteries)."""
        # the interval the next action will run in, drawn now so a privileged oracle can see it
        self.next_world: WorldState = self.dynamics.step(self.np_random, self.energy_dev)
        # per-step state in plain lists: a handful of numbers, NumPy calls would dominate
        self.history: deque[list[float]] = deque(
            [scaled_links(self.world.state.lists[2])] * self.layout.history,
            maxlen=self.layout.history)
        """Link-rate multipliers of the last intervals, newest last, as the observation
        encodes them (:func:`~dora_rl.env.observation.scaled_links`; rows shared: read only)."""
        cands = self._candidates()
        self.choice = [1 if c.plans else 0 for c in cands]
        self.plans: list[Plan | None] = [c.plans[0] if c.plans else None for c in cands]
        if self.initial_plans is not None:  # a fixed-plan controller starts from its own plans
            self.plans = list(self.initial_plans)
            self.choice = [0] * self.n_jobs
        self.level = [BANDWIDTH_LEVELS // 2] * self.n_jobs
        self.since = [0] * self.n_jobs
        self.slack = [0.0] * self.n_jobs
        self.pending: list[dict[int, float]] = [{} for _ in range(self.n_jobs)]
        """Per job, weight bytes each device still has to receive after a switch."""
        self.down_s = [0.0] * self.n_jobs
        self.utilisation: Sequence[Sequence[float]] = [[0.0] * self.n_devices
                                                       for _ in range(self.n_jobs)]
        """Per job, the compute demand per device it served in the last interval."""
        return self._obs(), {"plan_ids": list(self.choice)}

    def step(self, action: NDArray[np.int64]) -> tuple[NDArray[np.float32], float, bool, bool,
                                                       dict[str, Any]]:
        picks, levels = decode_action(action)
        world = self.world = self.next_world
        state = world.state
        self.history.append(scaled_links(state.lists[2]))
        cands = self._candidates()
        invalid, replans, moved_bytes, stall_s = 0, 0, 0.0, 0.0
        plans, since, models = self.plans, self.since, self.models
        for j in range(self.n_jobs):
            plan, bad = self._apply_choice(j, picks[j], cands[j])
            invalid += bad
            old = plans[j]
            if plan is not old and plan != old:  # identity first: Plan.__eq__ builds tuples
                # the new plan waits for its weights (the reward's stall term charges the
                # whole transfer at today's links; the QoE charge follows them as they arrive)
                pending = weight_bytes(models[j].tables, old, plan) if plan is not None else {}
                moved_bytes += sum(pending.values())
                stall_s += receive(pending, models[j], state, MAX_STALL_S)[0]
                self.pending[j] = pending
                replans += 1
                since[j] = 0
            else:
                since[j] += 1
            plans[j] = plan
        top = BANDWIDTH_LEVELS - 1  # clip without builtin min/max: ~0.3 us a call on 3.11
        self.level = [0 if lv < 0 else top if lv > top else lv for lv in levels]
        # weights arrive at each interval's link rates; a long transfer stalls later ones too
        for j, pending in enumerate(self.pending):
            if pending:
                self.down_s[j], self.pending[j] = receive(pending, models[j], state,
                                                          self.interval_s)
            else:  # what receive() returns for nothing to receive
                self.down_s[j] = 0.0
        energy_j, latency_ms, viol, short = self._evaluate(stall_s)
        w = self.scenario.reward
        stall_frac = min(stall_s / self.interval_s, 10.0)
        shortfall = sum([wt * sh for wt, sh in zip(self.job_weights, short, strict=True)])
        reward = -(w.energy_weight * energy_j / self.max_energy_j + w.qoe_weight * shortfall
                   + w.switch_weight * stall_frac + w.invalid_weight * invalid)
        self.t += 1
        self.next_world = self.dynamics.step(self.np_random, self.energy_dev)
        flags = tuple(viol)
        info = StepInfo(energy_j=energy_j, latency_ms=tuple(latency_ms), qoe_violation=flags,
                        qoe_violation_any=int(any(flags)), qoe_slack=tuple(self.slack),
                        replans=replans, migration_bytes=moved_bytes, invalid_choices=invalid,
                        plan_ids=tuple(self.choice), available=tuple(state.available.tolist()),
                        job_active=tuple(world.job_active.tolist()))
        return self._obs(), float(reward), False, self.t >= self.episode_steps, info

    def action_masks(self) -> NDArray[np.bool_]:
        """Feasible choices per action dimension, concatenated (MaskablePPO's format)."""
        usable = self.world.state.usable
        masks = []
        for j, cand in enumerate(self._candidates()):
            m = np.zeros(self.k + 1, dtype=bool)
            current = self.plans[j]
            m[0] = current is not None and all(usable[d] for d in current.devices)
            for i, plan in enumerate(cand.plans):
                m[i + 1] = all(usable[d] for d in plan.devices)
            if not m.any():
                m[0] = True
            masks.append(np.repeat(m, BANDWIDTH_LEVELS))  # every level of a feasible pick
        return np.concatenate(masks)

    # ------------------------------------------------------------------ internals
    def _candidates(self) -> list[JobCandidates]:
        return self.cache.get(self.world.state.lists[1])

    def _apply_choice(self, j: int, pick: int, cand: JobCandidates) -> tuple[Plan | None, int]:
        """The safety layer: an infeasible choice becomes the least-energy feasible candidate."""
        usable = self.world.state.lists[1]
        wanted = self.plans[j] if pick == 0 else (
            cand.plans[pick - 1] if 0 < pick <= len(cand.plans) else None)
        if wanted is not None and all(usable[d] for d in wanted.devices):
            if pick > 0:
                self.choice[j] = pick
            return wanted, 0
        options = [i for i, p in enumerate(cand.plans) if all(usable[d] for d in p.devices)]
        if not options:
            self.choice[j] = 0
            return None, 1
        best = min(options, key=lambda i: cand.energy_j[i])
        self.choice[j] = best + 1
        return cand.plans[best], 1

    def _shares(self, active: NDArray[np.bool_] | list[bool]) -> list[float]:
        """Each job's fraction of every medium from its bandwidth level (0 when inactive)."""
        on_off = active if isinstance(active, list) else active.tolist()
        share = [(lv + 1.0) / BANDWIDTH_LEVELS if on else 0.0
                 for lv, on in zip(self.level, on_off, strict=True)]
        total = sum(share)
        scale = 1.0 / (total if total > 1.0 else 1.0)  # max(1.0, total), without a call
        return [s * scale for s in share]

    def plan_demand(self, j: int, plan: Plan) -> list[float]:
        """Compute demand per device (fraction of time) of job ``j`` running ``plan``, in the
        card's nominal state (cached): what it adds to other jobs' background load."""
        key = (j, plan)
        if key not in self._demand:
            model = self.models[j]
            self._demand[key] = demand(model.evaluate(plan, model.nominal, check=False),
                                       model.nominal)
        return self._demand[key]

    def demands(self, plans: list[Plan | None],
                job_active: NDArray[np.bool_]) -> list[list[float]]:
        """Per job the demand of its plan (zeros when inactive or without a plan)."""
        zero = [0.0] * self.n_devices
        return [self.plan_demand(j, p) if on and p is not None else zero
                for j, (p, on) in enumerate(zip(plans, job_active.tolist(), strict=True))]

    def job_view(self, j: int, state: State | None = None,
                 job_active: NDArray[np.bool_] | None = None,
                 utilisation: list[list[float]] | None = None) -> State:
        """Job ``j``'s view of ``state`` (default: the current interval's): the other jobs'
        compute demand (default: of the current plans) added to each device's background load,
        and the job's share of every medium. The env evaluates each job in this view, and so
        do the controllers that predict with the cost model."""
        state = state if state is not None else self.world.state
        active = job_active if job_active is not None else self.world.job_active
        util = utilisation if utilisation is not None else self.demands(self.plans, active)
        total = [sum(col) for col in zip(*util, strict=True)]
        return self._view(j, state, self._shares(active), active.tolist(), total, util[j])

    def job_slacks(self, j: int, metrics: dict[str, Any], down_s: float,
                   qoe_scale: float) -> list[float]:
        """Job ``j``'s QoE slacks for the interval: the cost model's figures, stalled for
        ``down_s`` seconds (:func:`~dora_rl.env.transition.stalled`), targets scaled."""
        if down_s > 0:
            metrics = {"qoe_slack": stalled(metrics["qoe_slack"], down_s, self.interval_s,
                                            self.wait_targets[j])}
        return violation(metrics, qoe_scale)

    def stall_ahead(self, j: int, plan: Plan | None, state: State) -> float:
        """Seconds of the coming interval job ``j`` would serve nothing running ``plan``: the
        weights still in transit if it keeps its plan, else those ``plan`` needs, received
        over ``state``'s links (what the env will charge)."""
        if plan is None:
            return 0.0
        pending = self.pending[j] if plan == self.plans[j] else \
            weight_bytes(self.models[j].tables, self.plans[j], plan)
        return receive(pending, self.models[j], state, self.interval_s)[0] if pending else 0.0

    @staticmethod
    def _view(j: int, state: State, shares: list[float], active: list[bool],
              total: list[float], mine: list[float]) -> State:
        """:meth:`job_view` from the step's shares and summed demand (computed once)."""
        share = shares[j] if active[j] else 1.0 / max(sum(active), 1)
        load, usable, link, free = state.lists
        view = object.__new__(State)  # the state's arrays and cached views, unchecked (hot)
        view.__dict__.update(state.__dict__)
        share = 1e-3 if share < 1e-3 else share  # max(share, 1e-3), min below, without calls
        view.__dict__["lists"] = (
            [0.95 if (x := ld + tot - me) > 0.95 else x
             for ld, tot, me in zip(load, total, mine, strict=True)],
            usable, link, [f * share for f in free])
        return view

    def _evaluate(self, stall_s: float) -> tuple[float, list[float], list[int], list[float]]:
        """Energy of the interval, per-job latency, violation flags and shortfalls.

        Energy: every device that is on draws its idle power (with ``unused_devices: off``
        only the devices some active job uses are on), plus each job's power above the idle
        power of the devices it counts; migration stalls keep the devices on for longer.
        (Plain Python over a handful of devices and jobs: NumPy's per-call cost would dominate.)
        """
        world = self.world
        state = world.state
        active = world.job_active.tolist()
        n_dev, n_jobs = self.n_devices, self.n_jobs
        latency = [0.0] * n_jobs
        viol = [0] * n_jobs
        short = [0.0] * n_jobs
        slack = self.slack
        active_w = 0.0
        # every job sees the others' current plans' demand (symmetric, no lag); ``util``
        # collects the demand actually served, for the devices' energy and battery
        planned, total = self._planned(active)
        shares = self._shares(active)
        util = [self._zero] * n_jobs
        used = [False] * n_dev
        scales = world.qoe_scale.tolist()
        for j in range(n_jobs):
            if not active[j]:
                continue
            plan = self.plans[j]
            if plan is None:
                viol[j], short[j], slack[j] = 1, 5.0, -1.0
                latency[j] = math.inf
                continue
            out = self._outcome(j, plan, state, shares, active, total, planned[j], scales[j])
            latency[j], short[j], viol[j], slack[j] = out[:4]
            for d in plan.devices:
                used[d] = True
            if out.extra_w is not None:
                active_w += out.extra_w
            util[j] = out.util
        self.utilisation = util
        available = state.available.tolist()
        on = [a and u for a, u in zip(available, used, strict=True)] if self.power_off \
            else available
        idle_w = [w if o else 0.0 for w, o in zip(self.idle_list, on, strict=True)]
        idle_sum = sum(idle_w)
        energy = (idle_sum + max(active_w, 0.0)) * self.interval_s + stall_s * idle_sum
        busy = [sum(col) for col in zip(*util, strict=True)]
        self.energy_dev = [(w + b * x) * self.interval_s
                           for w, b, x in zip(idle_w, busy, self.busy_list, strict=True)]
        return energy, latency, viol, short

    def _planned(self, active: list[bool]) -> tuple[list[list[float]], list[float]]:
        """Per job the demand of its current plan (:meth:`demands`) and their sum per device,
        memoised on the plans and job activity."""
        key = (*self.plans, *active)
        hit = self._planned_memo.get(key)
        if hit is None:
            planned = self.demands(self.plans, np.array(active))
            if len(self._planned_memo) >= MEMO_ENTRIES:
                self._planned_memo.clear()
            hit = self._planned_memo[key] = (planned,
                                             [sum(col) for col in zip(*planned, strict=True)])
        return hit

    def _outcome(self, j: int, plan: Plan, state: State, shares: list[float],
                 active: list[bool], total: list[float], mine: list[float],
                 qoe_scale: float) -> JobOutcome:
        """Job ``j``'s figures for the interval in its view (:meth:`job_view`), memoised on
        exactly what they depend on: the plan, the stall, the QoE scale and, on the plan's
        devices, the load outside the jobs and in the view, usability and (when the plan
        crosses the network) link rates and the job's free airtime. Loads elsewhere do not
        matter: the job is never busy there. A plan over a WiFi link that follows a trace or
        the generator is computed afresh every time (its link rate is new each interval)."""
        load, usable = state.lists[0], state.lists[1]
        down = self.down_s[j]
        devices = plan.devices
        # flat keys (the plan fixes their layout): one tuple to allocate, hash and keep
        key: tuple[Any, ...] | None = None
        if len(devices) == 1:  # the common case
            d = devices[0]
            x = load[d] + total[d] - mine[d]
            key = (plan, down, qoe_scale, load[d], 0.95 if x > 0.95 else x, usable[d])
        elif self._fading.isdisjoint(devices):
            link, free = state.lists[2], state.lists[3]
            share = shares[j]  # the job is active: its share is its level's
            share = 1e-3 if share < 1e-3 else share
            key = (plan, down, qoe_scale, *[load[d] for d in devices],
                   *[0.95 if (x := load[d] + total[d] - mine[d]) > 0.95 else x  # as in _view
                     for d in devices],
                   *[usable[d] for d in devices], *[link[d] for d in devices],
                   *[f * share for f in free])
        # else a plan with a WiFi link that follows a trace or the generator: its rate is new
        # almost every interval (not one hit in 20,000 random SmartHome-v0 steps), so entries
        # would only cost their keys and keep the garbage collector busy
        if key is not None:
            hit = self._outcomes[j].get(key)
            if hit is not None:
                return hit
        view = self._view(j, state, shares, active, total, mine)
        # not memoised in the cost model too: this memo sits in front of it
        m = self.models[j].evaluate(plan, view, check=False, memo=False)
        slacks = self.job_slacks(j, m, down, qoe_scale)
        shortfall: float = 0  # sum(min(-s, 5.0) for missed targets), an int while none is
        for s in slacks:
            if s < 0:
                shortfall += 5.0 if -s > 5.0 else -s
        extra_w = None
        power = m["power_w"]
        if math.isfinite(power):  # the job's power counts unused devices idle or off
            base = sum([self.idle_list[d] for d in devices]) if self.power_off \
                else self.idle_total_w
            extra_w = power - base - self._waiting_w(m, view, state, devices)
        out = JobOutcome(
            latency_ms=(m["latency_s"] + stall_wait_s(down, self.interval_s)) * 1e3,
            shortfall=shortfall,
            violated=int(shortfall > 0 or not (m["memory_ok"] and m["usable_ok"])),
            slack=min(slacks) if slacks else 1.0, extra_w=extra_w, util=tuple(demand(m, view)))
        if key is not None:
            memo = self._outcomes[j]
            if len(memo) >= MEMO_ENTRIES:
                memo.clear()
            memo[key] = out
        return out

    def _waiting_w(self, m: dict[str, Any], view: State, state: State,
                   devices: tuple[int, ...]) -> float:
        """Busy power the cost model charged for time a job's kernels wait behind the other
        jobs on a shared device (the view adds their demand as load, which stretches busy
        time): that time is spent on the other jobs' kernels, already charged to them.
        ``devices`` are the plan's (sorted): the job is busy nowhere else."""
        interval = m["interval_s"]
        if not (math.isfinite(interval) and interval > 0):
            return 0.0
        out = 0.0
        busy_s, l_views, l_exts, extra_w = m["busy_s"], view.lists[0], state.lists[0], \
            self.busy_list
        for d in devices:
            busy, l_view, l_ext = busy_s[d], l_views[d], l_exts[d]
            if busy > 0 and l_view > l_ext:
                out += busy * (1.0 - (1.0 - l_view) / (1.0 - l_ext)) * extra_w[d]
        return out / interval

    def _obs(self) -> NDArray[np.float32]:
        return encode_observation(self.layout, self.history, self.world.state, self.capacity_list,
                                  self.world.job_active, self.world.qoe_scale, self.slack,
                                  self.choice, self.k, self.level, BANDWIDTH_LEVELS, self.since,
                                  self.episode_steps, links_scaled=True)
