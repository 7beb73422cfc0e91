"""Evaluate one plan in plain Python: the fast path for the env and the planner's inner loop.

NumPy's per-call overhead dominates when only one plan is scored (hundreds of tiny array
operations), so this module walks the plan's stages with Python floats over list copies of the
cost tables. It applies the same formulas (:mod:`dora_rl.costmodel.formulas`) as the vectorised
evaluator and returns the same figures as :meth:`Metrics.row`; the test suite checks the two
agree on thousands of random plans, scenarios and states.
"""

from __future__ import annotations

import math
from typing import Any

from dora_rl.costmodel.formulas import (
    MIN_ITEM_S,
    device_energy_j,
    ring_allreduce_bytes_per_device,
)
from dora_rl.costmodel.plan import Plan
from dora_rl.costmodel.state import State
from dora_rl.costmodel.tables import JobTables

INF = math.inf


class _Eval:
    """Per-plan working state; methods mirror the vectorised evaluator step by step."""

    def __init__(self, t: JobTables, plan: Plan, state: State) -> None:
        self.t, self.L, self.plan = t, t.lists, plan
        lt = self.L
        n_dev = t.n_devices
        self.n_dev, self.k = n_dev, plan.n_stages
        load, self.usable, scale, self.free = state.lists
        self.inv = [1.0 / (lt.link[d] * scale[d]) if scale[d] > 0 else INF for d in range(n_dev)]
        levels = plan.dvfs_levels or (0,) * n_dev
        self.stage_of = [-1] * n_dev
        self.first = [0] * n_dev
        self.end = [0] * n_dev
        self.tau_f, self.tau_b, self.wr = [INF] * n_dev, [INF] * n_dev, [0.0] * n_dev
        self.pw = [0.0] * n_dev
        planned = [0.0] * n_dev  # speed the split is planned for: DVFS, not background load
        rate = [0.0] * self.k
        for k, group in enumerate(plan.stage_devices):
            a, b = plan.stage_layers(k)
            for d in group:
                speed = lt.speed[d][levels[d]]
                loaded = 1.0 / (1.0 - load[d])
                self.stage_of[d], self.first[d], self.end[d] = k, a, b
                planned[d] = max((lt.fwd[d][b] - lt.fwd[d][a]) / speed, MIN_ITEM_S)
                self.tau_f[d] = planned[d] * loaded
                self.tau_b[d] = max((lt.bwd[d][b] - lt.bwd[d][a]) / speed, MIN_ITEM_S) * loaded
                self.wr[d] = lt.wread[d][b] - lt.wread[d][a]
                self.pw[d] = lt.busy_w[d][levels[d]]
                rate[k] += 1.0 / planned[d]
        self.frac = [0.0] * n_dev
        for d in range(n_dev):
            k = self.stage_of[d]
            if k >= 0:
                self.frac[d] = (1.0 / planned[d]) / rate[k]

    def stage_times(self, items: float, backward: bool = False,
                    extra: list[float] | None = None) -> tuple[list[float], list[float]]:
        """Stage times and per-device busy times for ``items`` per micro-batch."""
        tau = self.tau_b if backward else self.tau_f
        mult = 2.0 if backward else 1.0
        stage = [0.0] * self.n_dev
        busy = [0.0] * self.n_dev
        reads = [w * mult for w in self.wr]
        if extra is not None:
            reads = [r + e for r, e in zip(reads, extra, strict=True)]
        frac = self.frac
        for k, group in enumerate(self.plan.stage_devices):
            t_k = 0.0
            for d in group:
                t_k = max(t_k, items * frac[d] * tau[d], reads[d])
            if len(group) > 1:
                t_k = max(t_k, min([tau[d] for d in group]))
            stage[k] = t_k
            for d in group:
                own = items * frac[d] * tau[d]
                busy[d] = min(t_k, own if own > reads[d] else reads[d])
        return stage, busy

    def _boundary(self, k: int) -> tuple[list[float], float, float]:
        """Airtime per domain, wired time and backbone time of flow k -> k+1 per item."""
        lt, groups = self.L, self.plan.stage_devices
        nbytes = lt.act[self.plan.stage_end[k] - 1]
        n_dom = len(self.free)
        air, wired, f_dom, g_dom = [0.0] * n_dom, 0.0, [0.0] * n_dom, [0.0] * n_dom
        for side, dom_frac in ((groups[k], f_dom), (groups[k + 1], g_dom)):
            for d in side:
                per = self.frac[d] * self.inv[d] * nbytes if self.frac[d] > 0 else 0.0
                w = lt.domain[d]
                dom_frac[w] += self.frac[d]
                if lt.wifi[w]:
                    air[w] += per
                else:
                    wired = max(wired, per)
        cross = min(max(1.0 - sum(f * g for f, g in zip(f_dom, g_dom, strict=True)), 0.0), 1.0)
        return air, wired, cross * nbytes / self.t.backbone_bytes_per_s

    def _allreduce(self, k: int, per_dev: float) -> tuple[list[float], float]:
        """Airtime per domain and the wired/backbone time of stage k's ring all-reduce."""
        lt, group = self.L, self.plan.stage_devices[k]
        air, wired = [0.0] * len(self.free), 0.0
        if per_dev <= 0:
            return air, 0.0
        for d in group:
            w = lt.domain[d]
            if lt.wifi[w]:
                air[w] += 2.0 * self.inv[d] * per_dev
            else:
                wired = max(wired, self.inv[d] * per_dev)
        n_doms = len({lt.domain[d] for d in group})
        backbone = n_doms * per_dev / self.t.backbone_bytes_per_s if n_doms > 1 else 0.0
        return air, max(wired, backbone)

    def _wall(self, air: list[float], share: float | None, base: float,
              n_flows: list[int]) -> float:
        out = base
        for w, a in enumerate(air):
            if a > 0:
                s = share if share is not None else 1.0 / n_flows[w]
                out = max(out, a / (s * self.free[w]))
        return out

    def network(self, sync_bytes: list[float]) -> dict[str, Any]:
        """Per-item boundary times, capacity, radio times and all-reduce times."""
        lt, groups, n_dom = self.L, self.plan.stage_devices, len(self.free)
        if self.k == 1 and len(groups[0]) == 1:  # one device: nothing crosses the network
            zeros = [0.0] * self.n_dev
            return {"boundary": [], "cap": 0.0, "tx": zeros, "rx": list(zeros),
                    "allreduce": [0.0], "ar_tx": list(zeros)}
        bnd = [self._boundary(k) for k in range(self.k - 1)]
        per_dev = [ring_allreduce_bytes_per_device(float(len(g)), sync_bytes[k])
                   if len(g) > 1 else 0.0 for k, g in enumerate(groups)]
        ars = [self._allreduce(k, per_dev[k]) for k in range(self.k)]
        n_flows = [sum(1 for b in bnd if b[0][w] > 0) + sum(1 for a in ars if a[0][w] > 0)
                   for w in range(n_dom)]
        bsh, ash = self.plan.boundary_shares, self.plan.allreduce_shares
        boundary = [self._wall(air, bsh[k] if bsh else None, max(wired, bb), n_flows)
                    for k, (air, wired, bb) in enumerate(bnd)]
        allreduce = [self._wall(air, ash[k] if ash else None, solo, n_flows)
                     if per_dev[k] > 0 else 0.0 for k, (air, solo) in enumerate(ars)]
        totals = [sum(b[0][w] for b in bnd) for w in range(n_dom)]
        cap = max([tot / self.free[w] for w, tot in enumerate(totals) if tot > 0], default=0.0)
        tx, rx, ar_tx = [0.0] * self.n_dev, [0.0] * self.n_dev, [0.0] * self.n_dev
        for k in range(self.k):
            nbytes = lt.act[self.plan.stage_end[k] - 1]
            for d in groups[k]:
                radio = self.frac[d] * self.inv[d] * nbytes if self.frac[d] > 0 else 0.0
                if k < self.k - 1:
                    tx[d] += radio
                if k > 0:
                    prev = lt.act[self.plan.stage_end[k - 1] - 1]
                    rx[d] += self.frac[d] * self.inv[d] * prev if self.frac[d] > 0 else 0.0
                ar_tx[d] = self.inv[d] * per_dev[k] if per_dev[k] > 0 else 0.0
        return {"boundary": boundary, "cap": cap, "tx": tx, "rx": rx, "allreduce": allreduce,
                "ar_tx": ar_tx}

    def energy(self, interval: float, busy: list[float], tx: list[float],
               rx: list[float]) -> list[float]:
        """Per-device energy over the interval."""
        lt, off = self.L, self.t.unused_power_off
        return [device_energy_j(interval, busy[d], tx[d], rx[d], lt.idle_w[d], self.pw[d],
                                lt.tx_w[d], lt.rx_w[d]) if self.stage_of[d] >= 0
                else (0.0 if off else lt.idle_w[d] * interval) for d in range(self.n_dev)]

    def memory(self, act_items: float, extra: list[float] | None = None) -> list[float]:
        """Per-device memory need."""
        lt = self.L
        return [lt.params[self.end[d]] - lt.params[self.first[d]]
                + 2.0 * act_items * self.frac[d] * lt.act_max[self.first[d]][self.end[d]]
                + (extra[d] if extra else 0.0) if self.stage_of[d] >= 0 else 0.0
                for d in range(self.n_dev)]

    def span(self, prefix: list[float], d: int) -> float:
        """Sum of a per-layer quantity over device ``d``'s stage."""
        return prefix[self.end[d]] - prefix[self.first[d]] if self.stage_of[d] >= 0 else 0.0
