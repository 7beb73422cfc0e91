"""Evaluate one plan in plain Python: the fast path for the env and the planner's inner loop.

NumPy's per-call overhead dominates when only one plan is scored (hundreds of tiny array
operations), so this module walks the plan's stages with Python floats over list copies of the
cost tables. It applies the same formulas (:mod:`dora_rl.costmodel.formulas`) as the vectorised
evaluator and returns the same figures as :meth:`Metrics.row`; the test suite checks the two
agree on thousands of random plans, scenarios and states.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar

from dora_rl.costmodel.formulas import (
    MIN_ITEM_S,
    device_energy_j,
    ring_allreduce_bytes_per_device,
)
from dora_rl.costmodel.plan_spec import Plan
from dora_rl.costmodel.state import State
from dora_rl.costmodel.tables import JobTables

INF = math.inf
T = TypeVar("T")


class _Flows(NamedTuple):
    """A plan's network flows: per boundary (bytes per item, (device, WiFi domain or -1,
    fraction) terms of the devices that send, backbone seconds per item), per stage
    all-reduce (bytes per device, (device, WiFi domain or -1) terms, backbone seconds), and
    the radio terms: (device, fraction, bytes per item) of boundary senders and receivers,
    (device, bytes) of all-reduce senders. A device with no share of its stage's items sends
    nothing (its terms would add exact zeros, so they are left out)."""

    boundaries: list[tuple[float, tuple[tuple[int, int, float], ...], float]]
    allreduces: list[tuple[float, tuple[tuple[int, int], ...], float]]
    tx_terms: tuple[tuple[int, float, float], ...]
    rx_terms: tuple[tuple[int, float, float], ...]
    ar_terms: tuple[tuple[int, float], ...]
    n_domains: int
    synced: bool
    """Some stage all-reduces (bytes > 0); else every all-reduce figure is 0."""


class _Eval:
    """Per-plan working state; methods mirror the vectorised evaluator step by step."""

    def __init__(self, t: JobTables, plan: Plan, load: list[float]) -> None:
        self.t, self.L, self.plan = t, t.lists, plan
        lt = self.L
        n_dev = t.n_devices
        self.n_dev, self.k = n_dev, plan.n_stages
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
        self.used = [k >= 0 for k in self.stage_of]
        self._once: dict[Any, Any] = {}
        self.usable: list[bool] = []
        self.free: list[float] = []
        self.inv: list[float] = []
        self._plain_flows: _Flows | None = None

    def once(self, name: Any, compute: Callable[..., T], *args: Any) -> T:
        """``compute(*args)``, memoised under ``name`` for this plan and load (callers pass
        only load-dependent computations and must not mutate the result). Arguments rather
        than a closure: creating a function object per call is measurable in hot loops."""
        done: dict[Any, T] = self._once  # (typed so, not cast: typing.cast is a call)
        if name not in done:
            done[name] = compute(*args)
        return done[name]

    def bind(self, state: State) -> _Eval:
        """Set the network side of ``state`` (usability, link rates, free airtime); the
        compute side (load) was fixed at construction. Returns ``self``."""
        _, self.usable, scale, self.free = state.lists
        link = self.L.link
        inv = [INF] * self.n_dev  # only the plan's devices are ever read
        for d in self.plan.devices:
            s = scale[d]
            inv[d] = 1.0 / (link[d] * s) if s > 0 else INF
        self.inv = inv
        return self

    def stage_times(self, items: float, backward: bool = False,
                    extra: list[float] | None = None) -> tuple[list[float], list[float]]:
        """Stage times and per-device busy times for ``items`` per micro-batch (memoised: they
        depend on the load only, which this object was built for). Callers must not mutate
        the returned lists."""
        key = ("stage", items, backward, None if extra is None else tuple(extra))
        return self.once(key, self._stage_times, items, backward, extra)

    def _stage_times(self, items: float, backward: bool,
                     extra: list[float] | None) -> tuple[list[float], list[float]]:
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

    def _flows(self, sync_bytes: tuple[float, ...]) -> _Flows:
        """The plan's flows, with every figure that does not depend on the links."""
        lt, groups, plan = self.L, self.plan.stage_devices, self.plan
        n_dom = len(lt.wifi)
        frac, domain, wifi = self.frac, lt.domain, lt.wifi
        acts = [lt.act[plan.stage_end[k] - 1] for k in range(self.k)]
        boundaries = []
        for k in range(self.k - 1):
            f_dom, g_dom = [0.0] * n_dom, [0.0] * n_dom
            terms = []
            for side, dom_frac in ((groups[k], f_dom), (groups[k + 1], g_dom)):
                for d in side:
                    dom_frac[domain[d]] += frac[d]
                    if frac[d] > 0:
                        terms.append((d, domain[d] if wifi[domain[d]] else -1, frac[d]))
            cross = min(max(1.0 - sum(f * g for f, g in zip(f_dom, g_dom, strict=True)), 0.0),
                        1.0)
            backbone_s = cross * acts[k] / self.t.backbone_bytes_per_s
            boundaries.append((acts[k], tuple(terms), backbone_s))
        per_dev = [ring_allreduce_bytes_per_device(float(len(g)), sync_bytes[k])
                   if len(g) > 1 else 0.0 for k, g in enumerate(groups)]
        allreduces = []
        for k, group in enumerate(groups):
            n_doms = len({domain[d] for d in group})
            backbone = n_doms * per_dev[k] / self.t.backbone_bytes_per_s if n_doms > 1 else 0.0
            allreduces.append((per_dev[k], tuple((d, domain[d] if wifi[domain[d]] else -1)
                                                 for d in group), backbone))
        senders = [(d, k) for k in range(self.k) for d in groups[k] if frac[d] > 0]
        return _Flows(boundaries, allreduces,
                      tx_terms=tuple((d, frac[d], acts[k]) for d, k in senders if k < self.k - 1),
                      rx_terms=tuple((d, frac[d], acts[k - 1]) for d, k in senders if k > 0),
                      ar_terms=tuple((d, per_dev[k]) for k in range(self.k) for d in groups[k]
                                     if per_dev[k] > 0),
                      n_domains=n_dom, synced=any(p > 0 for p in per_dev))

    def _wall(self, air: list[float], share: float | None, base: float,
              n_flows: list[int]) -> float:
        out = base
        for w, a in enumerate(air):
            if a > 0:
                s = share if share is not None else 1.0 / n_flows[w]
                out = max(out, a / (s * self.free[w]))
        return out

    def _allreduce(self, per_dev: float, terms: tuple[tuple[int, int], ...], backbone: float,
                   n_dom: int) -> tuple[list[float], float]:
        """Airtime per domain and the wired/backbone time of one stage's ring all-reduce."""
        air, wired, inv = [0.0] * n_dom, 0.0, self.inv
        if per_dev > 0:
            for d, w in terms:
                if w >= 0:
                    air[w] += 2.0 * inv[d] * per_dev
                else:
                    wired = max(wired, inv[d] * per_dev)
            wired = max(wired, backbone)
        return air, wired

    def network(self, sync_bytes: list[float]) -> dict[str, Any]:
        """Per-item boundary times, capacity, radio times and all-reduce times."""
        if self.k == 1 and len(self.plan.stage_devices[0]) == 1:  # nothing crosses the network
            zeros = [0.0] * self.n_dev
            return {"boundary": [], "cap": 0.0, "tx": zeros, "rx": list(zeros),
                    "allreduce": [0.0], "ar_tx": list(zeros)}
        key = ("flows", *sync_bytes)
        flows = self.once(key, self._flows, key[1:])
        n_dom = flows.n_domains
        bnd = self._boundary_air(flows)
        if flows.synced:
            ars = [self._allreduce(per_dev, terms, backbone, n_dom)
                   for per_dev, terms, backbone in flows.allreduces]
            n_flows = [sum(1 for b in bnd if b[0][w] > 0) + sum(1 for a in ars if a[0][w] > 0)
                       for w in range(n_dom)]
            ash = self.plan.allreduce_shares
            allreduce = [self._wall(air, ash[k] if ash else None, solo, n_flows)
                         if flows.allreduces[k][0] > 0 else 0.0
                         for k, (air, solo) in enumerate(ars)]
        else:  # no all-reduce takes airtime: only the boundaries' flows count
            n_flows = [0] * n_dom
            for air, _, _ in bnd:
                for w in range(n_dom):
                    if air[w] > 0:
                        n_flows[w] += 1
            allreduce = [0.0] * len(flows.allreduces)
        cap = self._capacity(bnd, n_dom)
        tx, rx, ar_tx = self._radio_times(flows)
        return {"boundary": self._boundary_walls(bnd, n_flows), "cap": cap, "tx": tx, "rx": rx,
                "allreduce": allreduce, "ar_tx": ar_tx}

    def network_plain(self) -> tuple[list[float], float, list[float], list[float]]:
        """:meth:`network` of a plan none of whose stages all-reduce (every inference and LLM
        plan): per-item boundary seconds, the capacity figure, and per device transmit and
        receive seconds per item; its all-reduce figures are all 0. The same arithmetic as
        :meth:`network`, in one pass (this runs on every link change)."""
        n = self.n_dev
        if self.k == 1 and len(self.plan.stage_devices[0]) == 1:  # nothing crosses the network
            return [], 0.0, [0.0] * n, [0.0] * n
        flows = self._plain_flows
        if flows is None:
            flows = self._plain_flows = self._flows((0.0,) * self.k)
        inv, n_dom = self.inv, flows.n_domains
        bnd = self._boundary_air(flows)
        n_flows = [0] * n_dom
        for air, _, _ in bnd:
            for w in range(n_dom):
                if air[w] > 0:
                    n_flows[w] += 1
        cap = self._capacity(bnd, n_dom)
        tx, rx = [0.0] * n, [0.0] * n  # as _radio_times
        for d, f, nbytes in flows.tx_terms:
            tx[d] += f * inv[d] * nbytes
        for d, f, nbytes in flows.rx_terms:
            rx[d] += f * inv[d] * nbytes
        return self._boundary_walls(bnd, n_flows), cap, tx, rx

    def _capacity(self, bnd: list[tuple[list[float], float, float]], n_dom: int) -> float:
        """The busiest medium's seconds per item of the boundaries' airtime, as
        ``max(..., default=0.0)``."""
        free = self.free
        cap = 0.0
        first = True
        for w in range(n_dom):
            tot = sum([b[0][w] for b in bnd])
            if tot > 0:
                x = tot / free[w]
                if first or x > cap:
                    cap, first = x, False
        return cap

    # hot when links change every interval: loops instead of helper calls, and
    # ``x if x > y else y`` for max(y, x) (builtin calls cost ~0.3 us on Python 3.11)
    def _boundary_air(self, flows: _Flows) -> list[tuple[list[float], float, float]]:
        """Per boundary: airtime per item on each domain, wired and backbone seconds."""
        inv, n_dom = self.inv, flows.n_domains
        bnd = []
        for nbytes, terms, bb in flows.boundaries:
            air, wired = [0.0] * n_dom, 0.0
            for d, w, f in terms:
                per = f * inv[d] * nbytes
                if w >= 0:
                    air[w] += per
                elif per > wired:
                    wired = per
            bnd.append((air, wired, bb))
        return bnd

    def _boundary_walls(self, bnd: list[tuple[list[float], float, float]],
                        n_flows: list[int]) -> list[float]:
        """Seconds per item of each boundary (:meth:`_wall` of its flows)."""
        bsh, free = self.plan.boundary_shares, self.free
        out = []
        for k, (air, wired, bb) in enumerate(bnd):
            wall = bb if bb > wired else wired
            for w, a in enumerate(air):
                if a > 0:
                    s = bsh[k] if bsh else 1.0 / n_flows[w]
                    x = a / (s * free[w])
                    wall = x if x > wall else wall
            out.append(wall)
        return out

    def _radio_times(self, flows: _Flows) -> tuple[list[float], list[float], list[float]]:
        """Per device transmit and receive seconds per item, and all-reduce transmit seconds."""
        inv, n = self.inv, self.n_dev
        tx, rx, ar_tx = [0.0] * n, [0.0] * n, [0.0] * n
        for d, f, nbytes in flows.tx_terms:
            tx[d] += f * inv[d] * nbytes
        for d, f, nbytes in flows.rx_terms:
            rx[d] += f * inv[d] * nbytes
        for d, per_dev in flows.ar_terms:  # each device is in one stage: set once
            ar_tx[d] = inv[d] * per_dev
        return tx, rx, ar_tx

    def energy(self, interval: float, busy: list[float], tx: list[float],
               rx: list[float]) -> list[float]:
        """Per-device energy over the interval."""
        lt = self.L
        idle_w = lt.idle_w
        out = [0.0] * self.n_dev if self.t.unused_power_off else \
            [w * interval for w in idle_w]  # unused devices idle (or off)
        for d in self.plan.devices:  # the devices the plan uses
            out[d] = device_energy_j(interval, busy[d], tx[d], rx[d], idle_w[d], self.pw[d],
                                     lt.tx_w[d], lt.rx_w[d])
        return out

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
