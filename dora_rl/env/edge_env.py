"""The Gymnasium environment: re-plan and share bandwidth under real runtime dynamics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from dora_rl.config import Scenario
from dora_rl.costmodel import CostModel, Plan, State
from dora_rl.dynamics import RuntimeDynamics, WorldState
from dora_rl.env.candidates import JobCandidates, shared_cache
from dora_rl.env.observation import ObservationLayout, encode_observation
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
    values = [int(a) for a in np.asarray(action).ravel().tolist()]
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
        self.history = np.tile(self.world.state.link_scale, (self.layout.history, 1))
        cands = self._candidates()
        self.choice = np.array([1 if c.plans else 0 for c in cands], dtype=np.int64)
        self.plans: list[Plan | None] = [c.plans[0] if c.plans else None for c in cands]
        if self.initial_plans is not None:  # a fixed-plan controller starts from its own plans
            self.plans = list(self.initial_plans)
            self.choice[:] = 0
        self.level = np.full(self.n_jobs, BANDWIDTH_LEVELS // 2, dtype=np.int64)
        self.since = np.zeros(self.n_jobs, dtype=np.int64)
        self.slack = np.zeros(self.n_jobs)
        self.pending: list[dict[int, float]] = [{} for _ in range(self.n_jobs)]
        """Per job, weight bytes each device still has to receive after a switch."""
        self.down_s = [0.0] * self.n_jobs
        self.utilisation = [[0.0] * self.n_devices for _ in range(self.n_jobs)]
        return self._obs(), {"plan_ids": self.choice.tolist()}

    def step(self, action: NDArray[np.int64]) -> tuple[NDArray[np.float32], float, bool, bool,
                                                       dict[str, Any]]:
        picks, levels = decode_action(action)
        self.world = self.next_world
        self.history[:-1] = self.history[1:]
        self.history[-1] = self.world.state.link_scale
        cands = self._candidates()
        invalid, replans, moved_bytes, stall_s = 0, 0, 0.0, 0.0
        for j in range(self.n_jobs):
            plan, bad = self._apply_choice(j, picks[j], cands[j])
            invalid += bad
            if plan != self.plans[j]:
                # the new plan waits for its weights (the reward's stall term charges the
                # whole transfer at today's links; the QoE charge follows them as they arrive)
                pending = weight_bytes(self.models[j].tables, self.plans[j], plan) \
                    if plan is not None else {}
                moved_bytes += sum(pending.values())
                stall_s += receive(pending, self.models[j], self.world.state, MAX_STALL_S)[0]
                self.pending[j] = pending
                replans += 1
                self.since[j] = 0
            else:
                self.since[j] += 1
            self.plans[j] = plan
        self.level = np.array([min(max(lv, 0), BANDWIDTH_LEVELS - 1) for lv in levels])
        # weights arrive at each interval's link rates; a long transfer stalls later ones too
        for j, pending in enumerate(self.pending):
            self.down_s[j], self.pending[j] = receive(pending, self.models[j], self.world.state,
                                                      self.interval_s)
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
                        qoe_violation_any=int(any(flags)), qoe_slack=tuple(self.slack.tolist()),
                        replans=replans, migration_bytes=moved_bytes, invalid_choices=invalid,
                        plan_ids=tuple(self.choice.tolist()),
                        available=tuple(self.world.state.available.tolist()),
                        job_active=tuple(self.world.job_active.tolist()))
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

    def _shares(self, active: NDArray[np.bool_]) -> list[float]:
        """Each job's fraction of every medium from its bandwidth level (0 when inactive)."""
        share = [(lv + 1.0) / BANDWIDTH_LEVELS if on else 0.0
                 for lv, on in zip(self.level.tolist(), active.tolist(), strict=True)]
        scale = 1.0 / max(1.0, sum(share))
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
        view = State.unchecked(link_scale=state.link_scale, available=state.available,
                               load=state.load, battery_wh=state.battery_wh,
                               cross_traffic=state.cross_traffic,
                               medium_share=state.medium_share)
        view.__dict__["lists"] = (
            [min(ld + tot - me, 0.95) for ld, tot, me in zip(load, total, mine, strict=True)],
            usable, link, [f * max(share, 1e-3) for f in free])
        return view

    def _evaluate(self, stall_s: float) -> tuple[float, list[float], list[int], list[float]]:
        """Energy of the interval, per-job latency, violation flags and shortfalls.

        Energy: every device that is on draws its idle power (with ``unused_devices: off``
        only the devices some active job uses are on), plus each job's power above the idle
        power of the devices it counts; migration stalls keep the devices on for longer.
        (Plain Python over a handful of devices and jobs: NumPy's per-call cost would dominate.)
        """
        state = self.world.state
        active = self.world.job_active.tolist()
        n_dev, n_jobs = self.n_devices, self.n_jobs
        latency = [0.0] * n_jobs
        viol = [0] * n_jobs
        short = [0.0] * n_jobs
        slack = self.slack
        active_w = 0.0
        # every job sees the others' current plans' demand (symmetric, no lag); ``util``
        # collects the demand actually served, for the devices' energy and battery
        planned = self.demands(self.plans, self.world.job_active)
        total = [sum(col) for col in zip(*planned, strict=True)]
        shares = self._shares(self.world.job_active)
        zero = [0.0] * n_dev
        util = [zero] * n_jobs
        used = [False] * n_dev
        idle_list = self.idle_list
        scales = self.world.qoe_scale.tolist()
        for j, model in enumerate(self.models):
            if not active[j]:
                continue
            plan = self.plans[j]
            if plan is None:
                viol[j], short[j], slack[j] = 1, 5.0, -1.0
                latency[j] = math.inf
                continue
            view = self._view(j, state, shares, active, total, planned[j])
            m = model.evaluate(plan, view, check=False)
            down = self.down_s[j]  # stalled waiting for moved weights: counts in its QoE
            slacks = self.job_slacks(j, m, down, scales[j])
            latency[j] = (m["latency_s"] + stall_wait_s(down, self.interval_s)) * 1e3
            short[j] = sum([min(-s, 5.0) for s in slacks if s < 0])
            viol[j] = int(short[j] > 0 or not (m["memory_ok"] and m["usable_ok"]))
            slack[j] = min(slacks) if slacks else 1.0
            power = m["power_w"]
            devices = plan.devices
            for d in devices:
                used[d] = True
            if math.isfinite(power):  # the job's power counts unused devices idle or off
                base = sum([idle_list[d] for d in devices]) if self.power_off \
                    else self.idle_total_w
                active_w += power - base - self._waiting_w(m, view, state)
            util[j] = demand(m, view)
        self.utilisation = util
        available = state.available.tolist()
        on = [a and u for a, u in zip(available, used, strict=True)] if self.power_off \
            else available
        idle_w = [w if o else 0.0 for w, o in zip(idle_list, on, strict=True)]
        idle_sum = sum(idle_w)
        energy = (idle_sum + max(active_w, 0.0)) * self.interval_s + stall_s * idle_sum
        busy = [sum(col) for col in zip(*util, strict=True)]
        self.energy_dev = [(w + b * x) * self.interval_s
                           for w, b, x in zip(idle_w, busy, self.busy_list, strict=True)]
        return energy, latency, viol, short

    def _waiting_w(self, m: dict[str, Any], view: State, state: State) -> float:
        """Busy power the cost model charged for time a job's kernels wait behind the other
        jobs on a shared device (the view adds their demand as load, which stretches busy
        time): that time is spent on the other jobs' kernels, already charged to them."""
        interval = m["interval_s"]
        if not (math.isfinite(interval) and interval > 0):
            return 0.0
        out = 0.0
        for busy, l_view, l_ext, extra in zip(m["busy_s"], view.lists[0], state.lists[0],
                                              self.busy_list, strict=True):
            if busy > 0 and l_view > l_ext:
                out += busy * (1.0 - (1.0 - l_view) / (1.0 - l_ext)) * extra
        return out / interval

    def _obs(self) -> NDArray[np.float32]:
        return encode_observation(self.layout, self.history, self.world.state, self.capacity_wh,
                                  self.world.job_active, self.world.qoe_scale, self.slack,
                                  self.choice, self.k, self.level, BANDWIDTH_LEVELS, self.since,
                                  self.episode_steps)
