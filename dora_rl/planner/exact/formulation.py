"""The partitioner's mixed-integer program, exact with respect to the cost model.

Variables: a binary ``x[c]`` per stage candidate (layer range x device group); per stage
boundary ``j`` the wall time ``X[j]`` of its flow per item; per WiFi medium ``w`` the number
``n[w]`` of the job's flows sharing it (binary-expanded, so that the equal-share transfer time
``airtime * n / free`` is linearised exactly); for training the bottleneck cycle, the
all-reduce times, the unhidden all-reduce tail and the iteration time. Constraints: the chosen
candidates form a chain covering every layer once, no device class is used more often than it
has devices, memory (including the 1F1B stash, which depends on how many stages follow), and
every QoE target of the job. Objective: energy per unit of work, or time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dora_rl.costmodel import CostModel, State
from dora_rl.planner.exact.candidates import Candidates
from dora_rl.planner.exact.milp_model import MilpBuilder
from dora_rl.planner.exact.space import SearchSpace

IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class Limits:
    """Extra bounds used to trace the plan set (None = unbounded)."""

    max_time_s: float | None = None
    max_energy_j: float | None = None
    ignore_qoe: bool = False
    """Drop every QoE row (used to diagnose which target makes a problem infeasible)."""


@dataclass
class Formulation:
    """The built program and where its variables sit."""

    builder: MilpBuilder
    x: IntArray


def _items(model: CostModel, m: int) -> float:
    t, job = model.tables, model.tables.job
    if job.inference is not None:
        return float(job.inference.batch * t.tokens_per_sample)
    if job.training is not None:
        return job.training.global_batch / m * t.tokens_per_sample
    return 1.0


def _index(values: IntArray, n: int) -> list[IntArray]:
    order = np.argsort(values, kind="stable")
    bounds = np.searchsorted(values[order], np.arange(n + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(n)]


class _Parts:
    """Shared bookkeeping for one formulation."""

    def __init__(self, model: CostModel, space: SearchSpace, c: Candidates, state: State,
                 m: int) -> None:
        self.model, self.space, self.c, self.state, self.m = model, space, c, state, m
        t = model.tables
        self.L = t.n_layers
        self.items = _items(model, m)
        self.starts = _index(c.first, self.L + 1)
        self.ends = _index(c.end, self.L + 1)
        self.free = (1.0 - state.cross_traffic) * state.medium_share
        self.b = MilpBuilder()
        self.x = self.b.var(len(c), hi=1.0, integer=True)
        self.X = self.b.var(self.L + 1)  # per-item boundary wall time at layer boundary j
        self.wifi = [w for w in range(len(self.free)) if t.wifi_domain[w]]
        self.n_flow_bits: dict[int, IntArray] = {}

    def chain(self) -> None:
        b, x, c = self.b, self.x, self.c
        b.row(x[self.starts[0]], 1.0, 1.0, 1.0)
        for j in range(1, self.L):
            cols = np.concatenate([x[self.ends[j]], x[self.starts[j]]])
            vals = np.concatenate([np.ones(len(self.ends[j])), -np.ones(len(self.starts[j]))])
            b.row(cols, vals, 0.0, 0.0)
        for ci, members in enumerate(self.space.classes):
            counts = np.array([dict(g.class_counts).get(ci, 0) for g in self.space.groups])
            use = counts[c.group]
            nz = np.flatnonzero(use)
            b.row(x[nz], use[nz].astype(np.float64), hi=float(len(members)))
        b.row(x, 1.0, hi=float(self.space.max_stages))
        tight = np.flatnonzero(c.max_stages_after < self.space.max_stages)
        big = float(self.space.max_stages)
        for cand in tight:
            later = np.flatnonzero(c.first >= c.first[cand])
            cols = np.concatenate([x[later], [x[cand]]])
            vals = np.concatenate([np.ones(len(later)), [big]])
            b.row(cols, vals, hi=float(c.max_stages_after[cand]) + big)

    def boundaries(self) -> None:
        """Wired, backbone and shared-airtime lower bounds on each boundary's wall time."""
        b, x, c, t = self.b, self.x, self.c, self.model.tables
        backbone = t.backbone_bytes_per_s
        n_dom = len(self.free)
        for j in range(1, self.L):
            e, s = self.ends[j], self.starts[j]
            b.row(np.concatenate([[self.X[j]], x[e]]),
                  np.concatenate([[1.0], -c.send_wired_s[e]]), lo=0.0)
            b.row(np.concatenate([[self.X[j]], x[s]]),
                  np.concatenate([[1.0], -c.recv_wired_s[s]]), lo=0.0)
            per_item = t.activation_bytes[j - 1] / backbone
            if n_dom > 1 and per_item > 0:
                for w in range(n_dom):
                    cols = np.concatenate([[self.X[j]], x[e], x[s]])
                    send_w = (c.domain[e] == w).astype(np.float64)
                    recv_other = (c.domain[s] != w).astype(np.float64)
                    vals = np.concatenate([[1.0], -per_item * send_w, -per_item * recv_other])
                    b.row(cols, vals, lo=-per_item)
        for w in self.wifi:
            self._shared_airtime(w)

    def _flow_count(self, w: int) -> IntArray:
        """Binary expansion of the number of the job's flows on medium ``w``."""
        if w in self.n_flow_bits:
            return self.n_flow_bits[w]
        b, x, c = self.b, self.x, self.c
        touch = b.var(self.L + 1, hi=1.0)
        for j in range(1, self.L):
            for side, air in ((self.ends[j], c.send_air_s), (self.starts[j], c.recv_air_s)):
                on = side[(c.domain[side] == w) & (air[side] > 0)]
                if len(on):
                    b.row(np.concatenate([[touch[j]], x[on]]),
                          np.concatenate([[1.0], -np.ones(len(on))]), lo=0.0)
        ar = np.flatnonzero((c.domain == w) & (c.allreduce_air_s > 0))
        n_max = self.space.max_stages - 1 + (self.space.max_stages if len(ar) else 0)
        bits = b.var(max(1, int(np.ceil(np.log2(n_max + 1)))), hi=1.0, integer=True)
        weights = 2.0 ** np.arange(len(bits))
        cols = np.concatenate([bits, touch[1:self.L], x[ar]])
        vals = np.concatenate([weights, -np.ones(self.L - 1), -np.ones(len(ar))])
        b.row(cols, vals, 0.0, 0.0)
        self.n_flow_bits[w] = bits
        return bits

    def shared_time(self, target: int, cols: IntArray, air: NDArray[np.float64], w: int,
                    big: float | None = None) -> None:
        """``target >= (sum air * x[cols]) * n[w] / free[w]``, linearised exactly.

        ``big`` bounds ``sum air * x[cols]``; by default the largest coefficient (at most one
        of ``cols`` chosen).
        """
        if not len(cols) or air.max(initial=0.0) <= 0:
            return
        b = self.b
        # a flow always counts itself, so n >= 1: a valid row that keeps the LP bound honest
        b.row(np.concatenate([[target], cols]), np.concatenate([[1.0], -air / self.free[w]]),
              lo=0.0)
        bits = self._flow_count(w)
        big = float(air.max()) if big is None else big
        z = b.var(len(bits))
        for i, bit in enumerate(bits):
            b.row(np.concatenate([[z[i]], cols, [bit]]),
                  np.concatenate([[1.0], -air, [-big]]), lo=-big)
        weights = 2.0 ** np.arange(len(bits)) / self.free[w]
        b.row(np.concatenate([[target], z]), np.concatenate([[1.0], -weights]), lo=0.0)

    def _shared_airtime(self, w: int) -> None:
        c, x = self.c, self.x
        for j in range(1, self.L):
            e = self.ends[j][c.domain[self.ends[j]] == w]
            s = self.starts[j][c.domain[self.starts[j]] == w]
            cols = np.concatenate([x[e], x[s]])
            air = np.concatenate([c.send_air_s[e], c.recv_air_s[s]])
            if len(cols) and air.max(initial=0.0) > 0:
                # at most one sender and one receiver: bound the sum by both maxima
                big = float(c.send_air_s[e].max(initial=0.0) + c.recv_air_s[s].max(initial=0.0))
                self.shared_time(int(self.X[j]), cols, air, w, big)

    def capacity(self, scale: float) -> list[tuple[IntArray, NDArray[np.float64]]]:
        """Per medium: columns and coefficients of the job's total airtime per unit."""
        out = []
        c = self.c
        for w in self.wifi:
            on = np.flatnonzero(c.domain == w)
            air = (c.send_air_s[on] + c.recv_air_s[on]) * scale / self.free[w]
            if air.max(initial=0.0) > 0:
                out.append((self.x[on], air))
        return out
