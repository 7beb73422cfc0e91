"""Lower bounds on a plan's objective from a shortest-path program over stage candidates.

A plan is a chain of stage candidates from layer 0 to layer L that uses no device class more
often than it has devices. Every figure the partitioner minimises is bounded from below by

    sum over the chain of ``weight[c]``  +  ``slope`` * max over the chain of ``floor[c]``
    + ``offset``

where ``weight`` holds what each stage adds on its own (its energy, its share of the pipeline
fill, its outgoing and incoming boundary), ``floor[c]`` is a value the steady-state cycle of a
1F1B pipeline cannot go below when ``c`` is in it (its own cycle, twice its boundary transfer)
and ``slope`` is what one second of cycle costs (``(m - 1)`` micro-batches, times the idle power
in energy mode; 0 for inference and LLM jobs). Transfers that share a medium, the all-reduce
tail beyond the first stage and the 1F1B in-flight limit only add, so leaving them out keeps
the bound valid.

:class:`PathBound` solves that relaxation exactly by dynamic programming over (layer, devices
used per class), once per band of the cycle floor, so device counts and the bottleneck both
count: on the edge_cluster fine-tuning job it is within 6 % of the optimum where the linear
relaxation of the mixed-integer program is 10 % below it. :mod:`dora_rl.planner.exact.search`
uses it to enumerate every plan that could beat an incumbent.

Example:
    >>> from dora_rl.scenarios import load
    >>> from dora_rl.costmodel import CostModel
    >>> from dora_rl.planner.exact.candidates import build_candidates
    >>> from dora_rl.planner.exact.space import SearchSpace
    >>> model = CostModel(load("tiny"))
    >>> space = SearchSpace.build(model)
    >>> cands = build_candidates(model, space, model.nominal, 1)
    >>> bound = PathBound.build(model, space, cands, model.nominal, 1, "energy")
    >>> bool(bound is not None and bound.global_bound() > 0)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dora_rl.costmodel import CostModel, State
from dora_rl.planner.exact.bounds import time_caps
from dora_rl.planner.exact.candidates import Candidates
from dora_rl.planner.exact.formulation import Limits
from dora_rl.planner.exact.path_kernel import to_end_bands
from dora_rl.planner.exact.space import SearchSpace

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
MAX_STATES = 4096
"""Most (devices used per class) states the program tracks; beyond, counts are dropped."""
MAX_CELLS = 4_000_000
"""Most candidate x state pairs of one layer, and most table cells over all bands (memory and
time of the programs)."""
N_BANDS = 48
"""Most bands of the cycle floor; more bands tighten the bound and cost one program each."""


@dataclass(frozen=True)
class Terms:
    """``sum weight[c] + slope * max floor[c] + offset`` over a chain bounds a figure."""

    weight: FloatArray
    floor: FloatArray
    slope: float
    offset: float


def _boundary_s(model: CostModel, c: Candidates, state: State) -> tuple[FloatArray, FloatArray]:
    """Per item: least time of a candidate's outgoing and incoming boundary (0 at the ends)."""
    n_layers = model.tables.n_layers
    free = (1.0 - state.cross_traffic) * state.medium_share
    with np.errstate(divide="ignore", invalid="ignore"):
        per_free = np.where(free[c.domain] > 0, 1.0 / free[c.domain], np.inf)
    send = c.send_wired_s + np.where(c.send_air_s > 0, c.send_air_s * per_free, 0.0)
    recv = c.recv_wired_s + np.where(c.recv_air_s > 0, c.recv_air_s * per_free, 0.0)
    return np.where(c.end < n_layers, send, 0.0), np.where(c.first > 0, recv, 0.0)


def time_terms(model: CostModel, c: Candidates, state: State, m: int) -> Terms:
    """Lower-bound terms of the job's time figure (``latency_s``).

    Each boundary's wall time is at least the larger, hence the mean, of what its sender needs
    to send and its receiver to receive; a 1F1B iteration adds ``m - 1`` cycles, each at least
    every stage's own cycle and twice (forward and backward) its boundary transfers, and the
    first stage's all-reduce cannot hide behind earlier backward passes.
    """
    t, job = model.tables, model.tables.job
    send, recv = _boundary_s(model, c, state)
    zero = np.zeros(len(c))
    if job.inference is not None:
        items = float(job.inference.batch * t.tokens_per_sample)
        return Terms(c.time_s + 0.5 * items * (send + recv), zero, 0.0, 0.0)
    if job.llm is not None:
        w = job.llm
        steps = w.output_tokens - 1
        items = float(w.batch * w.prompt_tokens + steps * w.batch)
        return Terms(c.time_s + steps * c.decode_s + 0.5 * items * (send + recv), zero, 0.0, 0.0)
    tr = job.training
    assert tr is not None
    items = tr.global_batch / m * t.tokens_per_sample
    free = (1.0 - state.cross_traffic) * state.medium_share
    with np.errstate(divide="ignore", invalid="ignore"):
        air = np.where(c.allreduce_air_s > 0, c.allreduce_air_s / free[c.domain], 0.0)
    exposed = np.where(c.first == 0, c.allreduce_solo_s + air, 0.0)
    weight = c.time_s + items * (send + recv) + exposed
    floor = np.maximum(c.time_s, 2.0 * items * np.maximum(send, recv))
    return Terms(weight, floor, float(m - 1), 0.0)


def time_limits(model: CostModel, c: Candidates, state: State, m: int,
                limits: Limits) -> list[tuple[Terms, float]]:
    """Lower-bound terms of every time figure the program caps, with the cap: the job's time
    figure (``latency_s``) and, for an LLM job, its time to first token and time per token."""
    out = []
    cap = time_caps(model, m, limits)
    if np.isfinite(cap):
        out.append((time_terms(model, c, state, m), cap))
    job = model.tables.job
    if job.llm is not None and not limits.ignore_qoe:
        send, recv = _boundary_s(model, c, state)
        w, q, zero = job.llm, job.qoe, np.zeros(len(c))
        for target_ms, stage_s, items in ((q.ttft_ms, c.time_s, w.batch * w.prompt_tokens),
                                          (q.tpot_ms, c.decode_s, w.batch)):
            if target_ms is not None:
                out.append((Terms(stage_s + 0.5 * float(items) * (send + recv), zero, 0.0, 0.0),
                            target_ms / 1e3))
    return out


def objective_terms(model: CostModel, c: Candidates, state: State, m: int, mode: str) -> Terms:
    """Lower-bound terms of the objective ``mode`` minimises (energy per unit or time)."""
    tm = time_terms(model, c, state, m)
    if mode == "time":
        return tm
    t, job = model.tables, model.tables.job
    if job.training is not None:
        if t.unused_power_off:  # idle power of the chosen groups over the iteration
            per_stage = tm.weight + tm.slope * tm.floor
            return Terms(c.energy_j + c.idle_w * per_stage, np.zeros(len(c)), 0.0, 0.0)
        idle = float(t.idle_w.sum())
        return Terms(c.energy_j + idle * tm.weight, tm.floor, idle * tm.slope, 0.0)
    rate = (job.inference or job.llm).request_rate_per_s  # type: ignore[union-attr]
    zero = np.zeros(len(c))
    if t.unused_power_off:
        return Terms(c.energy_j + c.idle_w / rate, zero, 0.0, 0.0)
    return Terms(c.energy_j, zero, 0.0, float(t.idle_w.sum()) / rate)


@dataclass(frozen=True)
class Usage:
    """Devices used per class, encoded as one mixed-radix integer per state."""

    caps: IntArray
    use: IntArray
    """[G, C] devices of each class a group takes."""
    radix: IntArray
    code: IntArray
    """[G] each group's usage as a code to add."""
    fits: NDArray[np.bool_]
    """[G, S] group ``g`` may be added in state ``s``."""

    @property
    def n_states(self) -> int:
        """Number of states S."""
        return int(self.fits.shape[1])

    @classmethod
    def build(cls, space: SearchSpace, tracked: Sequence[int] = ()) -> Usage:
        """Usage states counting the classes in ``tracked`` (the others are not counted)."""
        caps = np.array([len(m) for m in space.classes], dtype=np.int64)
        use = np.zeros((len(space.groups), len(caps)), dtype=np.int64)
        for gi, g in enumerate(space.groups):
            for ci, n in g.class_counts:
                use[gi, ci] = n
        on = np.zeros(len(caps), dtype=bool)
        on[list(tracked)] = True
        span = np.where(on, caps + 1, 1)
        place = np.cumprod(np.concatenate([[1], span[:-1]])).astype(np.int64)
        n_states = int(np.prod(span))
        digits = (np.arange(n_states)[:, None] // place[None, :]) % span[None, :]
        fits = np.all(digits[None, :, :] + use[:, None, :] * on <= caps[None, None, :], axis=2)
        radix = np.where(on, place, 0)
        return cls(caps, use, radix, use @ radix, fits)


@dataclass(frozen=True)
class PathBound:
    """Per band of the cycle floor, the least completion cost from every (layer, usage) state.

    Attributes:
        terms: The objective's lower-bound terms.
        usage: The usage states.
        band_lo: [K] lower edge of each band (the cycle is at least this much in band k).
        band_hi: [K] upper edge (candidates with a higher floor are left out of band k).
        to_end: [K, L+1, S] least ``sum weight`` from layer j in state s to the last layer.
    """

    terms: Terms
    usage: Usage
    first: IntArray
    end: IntArray
    group: IntArray
    band_lo: FloatArray
    band_hi: FloatArray
    to_end: FloatArray

    @classmethod
    def build(cls, model: CostModel, space: SearchSpace, c: Candidates, state: State, m: int,
              mode: str, terms: Terms | None = None,
              max_bands: int = N_BANDS) -> PathBound | None:
        """The bound of ``mode``'s objective over ``c`` (None when there are no candidates);
        ``max_bands`` trades its tightness on the cycle for the time to build it."""
        if not len(c):
            return None
        terms = terms or objective_terms(model, c, state, m, mode)
        if not np.isfinite(terms.weight).all() or not np.isfinite(terms.floor).all():
            return None
        n_layers = model.tables.n_layers
        # count every class when the states fit; otherwise only those the best chain over-uses
        everything = float(np.prod([len(k) + 1.0 for k in space.classes]))
        widest = int(np.bincount(c.first, minlength=n_layers).max())
        tracked = list(range(len(space.classes))) if _fits(everything, widest, n_layers) else []
        while True:
            usage = Usage.build(space, tracked)
            n_bands = max(1, min(max_bands, MAX_CELLS // ((n_layers + 1) * usage.n_states)))
            lo, hi = _bands(terms, n_bands)
            to_end = to_end_bands(c.first, c.end, c.group, terms.weight, terms.floor, hi,
                                  usage.fits, usage.code, n_layers)
            bound = cls(terms, usage, c.first, c.end, c.group, lo, hi, to_end)
            more = bound._overused(c)
            states = usage.n_states * float(np.prod(usage.caps[more] + 1))
            if not more or not _fits(states, widest, n_layers):
                return bound
            tracked += more

    def _overused(self, c: Candidates) -> list[int]:
        """Classes the chain attaining the global bound uses more often than they have devices
        (the next ones to count: decremental state-space relaxation)."""
        chain = self.best_chain(c)
        if not len(chain):
            return []
        used = self.usage.use[c.group[chain]].sum(axis=0)
        return [int(v) for v in np.flatnonzero(used > self.usage.caps)]

    def best_chain(self, c: Candidates) -> IntArray:
        """Candidates of a chain attaining :meth:`global_bound` (empty if there is none)."""
        rest = self.completion(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64),
                               np.zeros(1))[0]
        if not np.isfinite(rest):
            return np.zeros(0, dtype=np.int64)
        cycle = self.terms.slope * self.band_lo
        k = int(np.argmin(self.to_end[:, 0, 0] + cycle))
        active = self.terms.floor <= self.band_hi[k]
        layer, code, chain = 0, 0, []
        n_layers = self.to_end.shape[1] - 1
        while layer < n_layers:
            idx = np.flatnonzero(active & (c.first == layer))
            g = c.group[idx]
            idx, g = idx[self.usage.fits[g, code]], g[self.usage.fits[g, code]]
            nxt = code + self.usage.code[g]
            i = int(np.argmin(self.terms.weight[idx] + self.to_end[k, c.end[idx], nxt]))
            chain.append(int(idx[i]))
            layer, code = int(c.end[idx[i]]), int(nxt[i])
        return np.array(chain, dtype=np.int64)

    def through(self, c: Candidates) -> FloatArray:
        """Per candidate: a lower bound on the objective of every plan that uses it."""
        n_layers = self.to_end.shape[1] - 1
        states = np.arange(self.usage.n_states)[None, :]
        out = np.full(len(c), np.inf)
        layers = [np.flatnonzero(c.first == j) for j in range(n_layers)]
        for k, (lo, hi) in enumerate(zip(self.band_lo, self.band_hi, strict=True)):
            active = self.terms.floor <= hi
            start = _from_start(c, self.usage, self.terms.weight, active, n_layers)
            cycle = self.terms.slope * np.maximum(lo, self.terms.floor)
            for j, idx in enumerate(layers):  # a layer at a time: [n_j, S] arrays
                g = c.group[idx]
                fits = self.usage.fits[g]
                nxt = np.where(fits, states + self.usage.code[g][:, None], 0)
                via = (start[j][None, :] + self.terms.weight[idx][:, None]
                       + self.to_end[k][c.end[idx][:, None], nxt])
                best = np.where(fits & active[idx][:, None], via, np.inf).min(axis=1)
                out[idx] = np.minimum(out[idx], best + cycle[idx])
        return out + self.terms.offset

    def completion(self, layer: IntArray, code: IntArray, floor: FloatArray) -> FloatArray:
        """Least ``sum weight`` after ``layer`` plus the cycle term, for chains whose floor so
        far is ``floor`` (arrays of equal shape)."""
        if len(self.band_lo) == 1:  # one band, open above
            return self.to_end[0, layer, code] + self.terms.slope * np.maximum(
                self.band_lo[0], floor)
        ok = self.band_hi[None, :] >= floor[:, None]  # [n, K]
        rest = self.to_end[:, layer, code].T  # [n, K]
        cycle = self.terms.slope * np.maximum(self.band_lo[None, :], floor[:, None])
        return np.where(ok, rest + cycle, np.inf).min(axis=1)

    def global_bound(self) -> float:
        """A lower bound on the objective of every plan."""
        return float(self.completion(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64),
                                     np.zeros(1))[0] + self.terms.offset)


def _fits(n_states: float, widest: int, n_layers: int) -> bool:
    """Whether the program over ``n_states`` usage states stays within the limits, with at
    most ``widest`` candidates starting at one layer."""
    return (n_states <= MAX_STATES and widest * n_states <= MAX_CELLS
            and (n_layers + 1) * n_states <= MAX_CELLS)


def _bands(terms: Terms, n_bands: int) -> tuple[FloatArray, FloatArray]:
    """Band edges of the cycle floor: one band when the cycle costs nothing."""
    if terms.slope <= 0 or n_bands <= 1:
        return np.zeros(1), np.full(1, np.inf)
    values = np.unique(terms.floor)
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, n_bands + 1)))
    hi = np.concatenate([edges[:-1], [np.inf]]) if len(edges) > 1 else np.full(1, np.inf)
    lo = np.concatenate([[0.0], hi[:-1]])
    return lo, hi


def _to_end(c: Candidates, usage: Usage, weight: FloatArray, active: NDArray[np.bool_],
            n_layers: int) -> FloatArray:
    """[L+1, S] least total weight of a chain of active candidates from (j, s) to the end."""
    n_states = usage.n_states
    out = np.full((n_layers + 1, n_states), np.inf)
    out[n_layers, :] = 0.0
    states = np.arange(n_states)[None, :]
    for j in range(n_layers - 1, -1, -1):
        idx = np.flatnonzero(active & (c.first == j))
        if not len(idx):
            continue
        g = c.group[idx]
        fits = usage.fits[g]
        nxt = np.where(fits, states + usage.code[g][:, None], 0)
        val = np.where(fits, weight[idx][:, None] + out[c.end[idx][:, None], nxt], np.inf)
        out[j] = val.min(axis=0)
    return out


def _from_start(c: Candidates, usage: Usage, weight: FloatArray, active: NDArray[np.bool_],
                n_layers: int) -> FloatArray:
    """[L+1, S] least total weight of a chain of active candidates from (0, 0) to (j, s)."""
    n_states = usage.n_states
    out = np.full((n_layers + 1, n_states), np.inf)
    out[0, 0] = 0.0
    states = np.arange(n_states)[None, :]
    flat = out.reshape(-1)
    for j in range(n_layers):
        idx = np.flatnonzero(active & (c.first == j))
        if not len(idx) or not np.isfinite(out[j]).any():
            continue
        g = c.group[idx]
        fits = usage.fits[g]
        nxt = np.where(fits, states + usage.code[g][:, None], 0)
        val = np.where(fits, out[j][None, :] + weight[idx][:, None], np.inf)
        np.minimum.at(flat, (c.end[idx][:, None] * n_states + nxt).reshape(-1), val.reshape(-1))
    return out
