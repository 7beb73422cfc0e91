"""Exact throughput-optimal pipeline partitioning (the PipeEdge objective) as a MILP.

The model is cut into contiguous stages, each run by one host (no data parallelism); hosts of
one *device type* are identical, so the program chooses stage-to-type assignments and counts
hosts per type, which removes the symmetry between identical hosts. The objective is the
pipeline bottleneck ``B = max over stages of max(stage compute, transfer to the next stage)``.

Formulation (``x`` binary, ``z`` and ``B`` continuous; boundary ``p`` lies between layers
``p - 1`` and ``p``):

* ``x[a, b, t] = 1``: stage ``[a, b)`` runs on a host of type ``t``. Only stages that fit the
  type's memory are variables. The stages form a path from boundary 0 to boundary L (flow
  conservation) and type ``t`` is used at most ``counts[t]`` times.
* ``B >= sum_{b,t} time[t, a, b] * x[a, b, t]`` for every start ``a``: at most one stage starts
  at ``a``, so this is that stage's time at integer points (and tighter than one row per stage
  in the LP relaxation).
* ``z[p, t, t2]`` is the transfer across boundary ``p`` from type ``t`` to ``t2``: its row sums
  equal the stages ending at ``p`` on ``t`` and its column sums the stages starting at ``p`` on
  ``t2``, so at integer ``x`` it is their product (no integrality needed), and
  ``B >= sum_{t,t2} transfer_s[p-1][t][t2] * z[p, t, t2]``. Pairs with infinite transfer time
  have ``z`` fixed at 0.
* Valid cut: the compute of all stages on type ``t`` is at most ``counts[t] * B``.

Times are scaled so that a lower bound of the optimum is 1000 before the solve (HiGHS' absolute
gap of 1e-6 is then negligible), and the bottleneck of the chosen stages is recomputed exactly.

Example:
    >>> import numpy as np
    >>> p = BottleneckProblem(layer_time_s=np.ones((1, 4)), counts=(2,),
    ...                       memory_bytes=np.array([10.0]), layer_memory_bytes=np.ones(4),
    ...                       transfer_s=np.full((4, 1, 1), 0.5))
    >>> s = solve_bottleneck(p)
    >>> s.bottleneck_s, [(st.first_layer, st.end_layer) for st in s.stages]
    (2.0, [(0, 2), (2, 4)])
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from numpy.typing import NDArray
from scipy import sparse

from dora_rl.errors import DoraError, InfeasibleError
from dora_rl.planner.solver import solve_milp

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class BottleneckProblem:
    """A pipeline partitioning instance over device types (layers 0-based).

    Attributes:
        layer_time_s: [T, L] compute seconds of one micro-batch per layer on each type
            (``inf`` where the type cannot run the layer).
        counts: Hosts of each type.
        memory_bytes: [T] memory capacity of each type.
        layer_memory_bytes: [L] memory each layer needs wherever it runs.
        transfer_s: [L, T, T] seconds to send the output of layer ``l`` from a host of type
            ``t`` to one of type ``t2`` (``inf`` when they cannot talk). Row ``L - 1`` is unused:
            the last stage sends nothing.
        stage_buffer_bytes: [L+1, L+1] fixed memory of a stage ``[a, b)`` on top of its
            layers (e.g. send/receive buffers); ``None`` for none.
        strict_memory: A stage fits only if it needs strictly less than the capacity (as
            PipeEdge's ``is_layers_fit``); otherwise less or equal.
        type_names: Names of the types, for messages.
        layer_names: Names of the layers, for messages (default: 0-based indices).
    """

    layer_time_s: FloatArray
    counts: tuple[int, ...]
    memory_bytes: FloatArray
    layer_memory_bytes: FloatArray
    transfer_s: FloatArray
    stage_buffer_bytes: FloatArray | None = None
    strict_memory: bool = False
    type_names: tuple[str, ...] | None = None
    layer_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        n_t, n_l = np.shape(self.layer_time_s)
        shapes = {"counts": (np.shape(self.counts), (n_t,)),
                  "memory_bytes": (np.shape(self.memory_bytes), (n_t,)),
                  "layer_memory_bytes": (np.shape(self.layer_memory_bytes), (n_l,)),
                  "transfer_s": (np.shape(self.transfer_s), (n_l, n_t, n_t))}
        if self.stage_buffer_bytes is not None:
            shapes["stage_buffer_bytes"] = (np.shape(self.stage_buffer_bytes), (n_l + 1,) * 2)
        for name, (got, want) in shapes.items():
            if got != want:
                raise DoraError(f"BottleneckProblem.{name}: shape {got}, expected {want}")
        if n_l == 0 or np.any(np.asarray(self.layer_time_s) < 0) or min(self.counts) < 0:
            raise DoraError("BottleneckProblem needs >= 1 layer, times >= 0 and counts >= 0")

    @property
    def n_types(self) -> int:
        """Number of device types T."""
        return len(self.counts)

    @property
    def n_layers(self) -> int:
        """Number of layers L."""
        return int(np.shape(self.layer_time_s)[1])

    def type_name(self, t: int) -> str:
        """Name of type ``t`` for messages."""
        return self.type_names[t] if self.type_names else f"type {t}"

    def layer_range_name(self, a: int, b: int) -> str:
        """``'layer 3'`` or ``'layers 3-5'`` (inclusive) for the stage ``[a, b)``."""
        name = self.layer_names or tuple(str(i) for i in range(self.n_layers))
        return f"layer {name[a]}" if b == a + 1 else f"layers {name[a]}-{name[b - 1]}"

    @cached_property
    def stage_time_s(self) -> FloatArray:
        """[T, L+1, L+1] compute time of stage ``[a, b)`` (summed from ``a`` up; inf if a>=b)."""
        times = np.asarray(self.layer_time_s, dtype=np.float64)
        n_t, n_l = times.shape
        out = np.full((n_t, n_l + 1, n_l + 1), np.inf)
        for a in range(n_l):
            out[:, a, a + 1:] = np.cumsum(times[:, a:], axis=1)
        return out

    @cached_property
    def stage_memory_bytes(self) -> FloatArray:
        """[L+1, L+1] memory a stage ``[a, b)`` needs (inf if a >= b)."""
        mem = np.asarray(self.layer_memory_bytes, dtype=np.float64)
        n_l = mem.shape[0]
        out = np.full((n_l + 1, n_l + 1), np.inf)
        for a in range(n_l):
            out[a, a + 1:] = np.cumsum(mem[a:])
        if self.stage_buffer_bytes is not None:
            out = out + np.asarray(self.stage_buffer_bytes, dtype=np.float64)
        return out

    @cached_property
    def candidates(self) -> NDArray[np.bool_]:
        """[T, L+1, L+1] stage ``[a, b)`` may run on type ``t``: hosts, memory, finite time."""
        cap = np.asarray(self.memory_bytes, dtype=np.float64)[:, None, None]
        need = self.stage_memory_bytes[None, :, :]
        fits = need < cap if self.strict_memory else need <= cap
        has = (np.asarray(self.counts) > 0)[:, None, None]
        return fits & has & np.isfinite(self.stage_time_s)


@dataclass(frozen=True)
class BottleneckStage:
    """One stage: layers ``[first_layer, end_layer)`` on host ``host`` of type ``device_type``."""

    first_layer: int
    end_layer: int
    device_type: int
    host: int


@dataclass(frozen=True)
class BottleneckSolution:
    """Result of a solve.

    Attributes:
        stages: The stages in pipeline order; the host index counts within the type, in
            stage order (as PipeEdge assigns hosts).
        bottleneck_s: Exact bottleneck of the stages.
        status: ``"optimal"``, ``"time_limit"`` (best found) or ``"enumerated"``.
        solve_time_s: Wall time, building included.
    """

    stages: tuple[BottleneckStage, ...]
    bottleneck_s: float
    status: str
    solve_time_s: float


def stage_costs(problem: BottleneckProblem,
                spans: list[tuple[int, int, int]]) -> tuple[list[float], list[float]]:
    """Compute and outgoing transfer seconds of stages ``(a, b, type)`` in pipeline order."""
    compute = [float(problem.stage_time_s[t, a, b]) for a, b, t in spans]
    transfer = [float(problem.transfer_s[b - 1, t, spans[k + 1][2]])
                for k, (_, b, t) in enumerate(spans[:-1])]
    return compute, [*transfer, 0.0]


def _with_hosts(spans: list[tuple[int, int, int]]) -> tuple[BottleneckStage, ...]:
    used: dict[int, int] = {}
    out = []
    for a, b, t in spans:
        out.append(BottleneckStage(a, b, t, used.get(t, 0)))
        used[t] = used.get(t, 0) + 1
    return tuple(out)


def _lower_bound(problem: BottleneckProblem) -> float:
    """Every layer runs somewhere, on at most ``sum(counts)`` stages: a bound of the optimum."""
    times = np.asarray(problem.layer_time_s, dtype=np.float64)[np.asarray(problem.counts) > 0]
    best = times.min(axis=0) if times.size else np.zeros(1)
    bound = max(float(best.max()), float(best.sum()) / max(sum(problem.counts), 1))
    return bound * (1.0 - 1e-9) if np.isfinite(bound) else 0.0


def _greedy(problem: BottleneckProblem, bound: float) -> list[tuple[int, int, int]] | None:
    """Stages of bottleneck <= ``bound`` picked greedily (farthest reach first), or None."""
    n_l, ok, times, tr = problem.n_layers, problem.candidates, problem.stage_time_s, \
        problem.transfer_s
    left = list(problem.counts)
    limit = min(bound, np.finfo(np.float64).max)  # a dead link (inf) never qualifies
    spans: list[tuple[int, int, int]] = []
    a, prev = 0, -1
    while a < n_l:
        best: tuple[int, float, int] | None = None
        for t in range(problem.n_types):
            if left[t] == 0 or (prev >= 0 and not tr[a - 1, prev, t] <= limit):
                continue
            left[t] -= 1
            nxt = np.array([c > 0 for c in left])
            reach = ok[t, a, a + 1:] & (times[t, a, a + 1:] <= bound)
            reach[:-1] &= ((tr[a:n_l - 1, t, :] <= limit) & nxt[None, :]).any(axis=1)
            left[t] += 1
            ends = np.nonzero(reach)[0]
            if ends.size and (best is None or (ends[-1], times[t, a, a + 1 + ends[-1]])
                              > best[:2]):
                best = (int(ends[-1]), float(times[t, a, a + 1 + ends[-1]]), t)
        if best is None:
            return None
        spans.append((a, a + 1 + best[0], best[2]))
        a, prev = a + 1 + best[0], best[2]
        left[prev] -= 1
    return spans


def _heuristic(problem: BottleneckProblem) -> tuple[float, list[tuple[int, int, int]]] | None:
    """Bisection over the bound of :func:`_greedy`: a feasible plan and its bottleneck."""
    spans = _greedy(problem, np.inf)
    if spans is None:
        return None
    best = (max(max(c) for c in [*stage_costs(problem, spans)]), spans)
    low = _lower_bound(problem)
    for _ in range(40):
        if best[0] - low <= 1e-6 * best[0]:
            break
        mid = 0.5 * (low + best[0])
        found = _greedy(problem, mid)
        if found is None:
            low = mid
        else:
            best = (max(max(c) for c in [*stage_costs(problem, found)]), found)
    return best


def _cover(xa: NDArray[np.int64], xb: NDArray[np.int64]) -> tuple[NDArray[np.int64], ...]:
    """(layer, column) pairs of every layer each candidate stage covers."""
    lengths = xb - xa
    cols = np.repeat(np.arange(xa.size), lengths)
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return np.repeat(xa, lengths) + offsets, cols


def solve_bottleneck(problem: BottleneckProblem, time_limit_s: float = 60.0) -> BottleneckSolution:
    """Minimise the pipeline bottleneck exactly with :func:`solve_milp`.

    A greedy bisection gives an incumbent first; stages and transfers slower than it are left
    out of the program (they cannot be in an optimum) and it warm-starts HiGHS.

    Raises:
        InfeasibleError: naming the binding memory or host-count constraint.
        DoraError: if the time limit passes before any plan is found.
    """
    start = time.perf_counter()
    n_l = problem.n_layers
    heur = _heuristic(problem)
    bound = heur[0] * (1 + 1e-9) if heur else np.inf
    ok = problem.candidates & (problem.stage_time_s <= bound)
    if not ok[:, 0, :].any() or not ok[:, :, n_l].any():
        raise InfeasibleError(explain_infeasible(problem))
    milp = _Milp(problem, ok, bound)
    warm = milp.encode(heur[1], heur[0]) if heur else None
    result = solve_milp(milp.cost, milp.matrix, milp.lower, milp.upper, milp.col_lower,
                        milp.col_upper, milp.integer, time_limit_s=time_limit_s,
                        warm_start=None if warm is None else (np.arange(warm.size), warm))
    if result.x is None:
        if result.status == "infeasible":
            raise InfeasibleError(explain_infeasible(problem))
        raise DoraError(f"bottleneck MILP found no plan ({result.status}) within "
                        f"{time_limit_s:g} s")
    spans = milp.decode(result.x)
    compute, transfer = stage_costs(problem, spans)
    elapsed = time.perf_counter() - start
    log.debug("bottleneck MILP: %d stage columns, %s in %.3fs", milp.xa.size, result.status,
              elapsed)
    return BottleneckSolution(_with_hosts(spans), max(max(compute), max(transfer)),
                              "optimal" if result.optimal else result.status, elapsed)


class _Milp:
    """Arrays of the program (see the module docstring); times scaled by ``scale``."""

    def __init__(self, problem: BottleneckProblem, ok: NDArray[np.bool_], bound: float) -> None:
        n_l = problem.n_layers
        types = [t for t in range(problem.n_types) if problem.counts[t] > 0]
        n_t, pos = len(types), {t: i for i, t in enumerate(types)}
        self.n_l = n_l
        self.xt, self.xa, self.xb = (arr.astype(np.int64) for arr in np.nonzero(ok))
        scale = max(_lower_bound(problem), 1e-300) / 1000.0
        x_time = problem.stage_time_s[self.xt, self.xa, self.xb] / scale
        n_x = self.xt.size
        self.zp, zt, zu = (g.ravel() for g in np.meshgrid(np.arange(1, n_l), types, types,
                                                          indexing="ij"))
        z_tr = problem.transfer_s[self.zp - 1, zt, zu]
        z_ok = np.isfinite(z_tr) & (z_tr <= bound)
        z_tr = np.where(z_ok, z_tr / scale, 0.0)
        self.zt, self.zu = zt, zu
        z_col, b_col = n_x + np.arange(self.zp.size), n_x + self.zp.size
        xtp, ztp, zup = (np.array([pos[t] for t in v.tolist()], dtype=np.int64)
                         for v in (self.xt, zt, zu))
        x_col, cov_l, cov_c = np.arange(n_x), *_cover(self.xa, self.xb)
        zp, xa, xb = self.zp, self.xa, self.xb
        # Rows: flow (L+1), counts (n_t), cover (L), end links ((L-1) n_t), start links
        # ((L-1) n_t), transfer per boundary (L-1), per-type compute cut (n_t).
        r = np.cumsum([0, n_l + 1, n_t, n_l, (n_l - 1) * n_t, (n_l - 1) * n_t, n_l - 1, n_t])
        ib, ia = (xb > 0) & (xb < n_l), (xa > 0) & (xa < n_l)
        ones = np.ones
        parts = [
            (xa, x_col, ones(n_x)), (xb, x_col, -ones(n_x)), (r[1] + xtp, x_col, ones(n_x)),
            (r[2] + cov_l, cov_c, x_time[cov_c]),
            (r[3] + (zp - 1) * n_t + ztp, z_col, ones(zp.size)),
            (r[3] + (xb[ib] - 1) * n_t + xtp[ib], x_col[ib], -ones(int(ib.sum()))),
            (r[4] + (zp - 1) * n_t + zup, z_col, ones(zp.size)),
            (r[4] + (xa[ia] - 1) * n_t + xtp[ia], x_col[ia], -ones(int(ia.sum()))),
            (r[5] + zp - 1, z_col, z_tr), (r[6] + xtp, x_col, x_time),
            (np.r_[r[2]:r[3], r[5]:r[6]], np.full(2 * n_l - 1, b_col), -ones(2 * n_l - 1)),
            (np.arange(r[6], r[7]), np.full(n_t, b_col),
             -np.array([problem.counts[t] for t in types], dtype=np.float64)),
        ]
        rows, cols, vals = (np.concatenate([p[i] for p in parts]) for i in range(3))
        self.matrix = sparse.csc_array((vals, (rows, cols)), shape=(r[7], b_col + 1))
        self.lower = np.zeros(r[7])
        self.lower[0], self.lower[n_l] = 1.0, -1.0
        self.upper = self.lower.copy()
        self.lower[r[1]:r[3]] = self.lower[r[5]:] = -np.inf
        self.upper[r[1]:r[2]] = [problem.counts[t] for t in types]
        self.cost = np.zeros(b_col + 1)
        self.cost[b_col] = 1.0
        self.col_lower = np.zeros(b_col + 1)
        self.col_lower[b_col] = _lower_bound(problem) / scale
        self.col_upper = np.concatenate([ones(n_x), z_ok.astype(np.float64), [np.inf]])
        self.integer = np.concatenate([ones(n_x, bool), np.zeros(zp.size + 1, bool)])
        self.scale = scale

    def encode(self, spans: list[tuple[int, int, int]], value: float) -> FloatArray | None:
        """Column values of a plan of bottleneck ``value`` (None if a stage is no column)."""
        index = {(int(a), int(b), int(t)): i for i, (a, b, t) in
                 enumerate(zip(self.xa, self.xb, self.xt, strict=True))}
        x = np.zeros(self.cost.size)
        for a, b, t in spans:
            if (a, b, t) not in index:
                return None
            x[index[(a, b, t)]] = 1.0
        pairs = {(b, t, spans[k + 1][2]) for k, (_, b, t) in enumerate(spans[:-1])}
        z = [(int(p), int(t), int(u)) in pairs for p, t, u in zip(self.zp, self.zt, self.zu,
                                                                  strict=True)]
        x[self.xa.size: self.xa.size + len(z)] = z
        x[-1] = value / self.scale * (1.0 + 1e-12)
        return x

    def decode(self, x: FloatArray) -> list[tuple[int, int, int]]:
        """The stages of a solution, in pipeline order."""
        chosen = {int(self.xa[i]): (int(self.xb[i]), int(self.xt[i]))
                  for i in np.nonzero(x[: self.xa.size] > 0.5)[0]}
        spans, a = [], 0
        while a < self.n_l:
            b, t = chosen[a]
            spans.append((a, b, t))
            a = b
        return spans


def brute_force_bottleneck(problem: BottleneckProblem) -> BottleneckSolution:
    """Enumerate every contiguous split and injective host assignment (tiny instances only).

    Raises:
        InfeasibleError: when no split fits memory on the hosts.
    """
    start = time.perf_counter()
    n_l, ok = problem.n_layers, problem.candidates
    hosts = [t for t in range(problem.n_types) for _ in range(problem.counts[t])]
    best: tuple[float, list[tuple[int, int, int]]] | None = None
    for k in range(1, min(len(hosts), n_l) + 1):
        for cuts in itertools.combinations(range(1, n_l), k - 1):
            bounds = list(zip((0, *cuts), (*cuts, n_l), strict=True))
            for assign in itertools.permutations(range(len(hosts)), k):
                types = [hosts[h] for h in assign]
                if not all(ok[t, a, b] for (a, b), t in zip(bounds, types, strict=True)):
                    continue
                spans = [(a, b, t) for (a, b), t in zip(bounds, types, strict=True)]
                compute, transfer = stage_costs(problem, spans)
                value = max(max(compute), max(transfer))
                if best is None or value < best[0]:
                    best = (value, spans)
    if best is None:
        raise InfeasibleError(explain_infeasible(problem))
    return BottleneckSolution(_with_hosts(best[1]), best[0], "enumerated",
                              time.perf_counter() - start)


def _gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.4g} GB"


def explain_infeasible(problem: BottleneckProblem) -> str:
    """Name the binding constraint in words when no partition fits."""
    n_l, ok = problem.n_layers, problem.candidates
    hosts = sum(problem.counts)
    if hosts == 0:
        return "no device is available to run the model"
    live = [t for t in range(problem.n_types) if problem.counts[t] > 0]
    largest = max(float(problem.memory_bytes[t]) for t in live)
    any_ok: NDArray[np.bool_] = np.asarray(ok.any(axis=0))
    need = problem.stage_memory_bytes
    for layer in range(n_l):
        if any_ok[: layer + 1, layer + 1:].any():
            continue
        if not np.isfinite(problem.stage_time_s[live][:, layer, layer + 1]).any():
            return f"{problem.layer_range_name(layer, layer + 1)} cannot run on any device"
        sub = need[: layer + 1, layer + 1:]
        row, col = np.unravel_index(int(np.argmin(sub)), sub.shape)
        a, b = int(row), int(col) + layer + 1
        verb = "needs" if b == a + 1 else "need"
        return (f"{problem.layer_range_name(a, b)} {verb} {_gb(float(sub.min()))} "
                f"(the smallest stage holding {problem.layer_range_name(layer, layer + 1)}); "
                f"the largest device holds {_gb(largest)}")
    fewest = [0.0] + [np.inf] * n_l
    for end in range(1, n_l + 1):
        fewest[end] = min((fewest[s] + 1 for s in range(end) if any_ok[s, end]), default=np.inf)
    if fewest[n_l] > hosts:
        return (f"the model needs at least {int(fewest[n_l])} stages to fit memory but only "
                f"{hosts} devices are available")
    have = ", ".join(f"{problem.counts[t]} x {problem.type_name(t)} "
                     f"({_gb(float(problem.memory_bytes[t]))})" for t in live)
    return f"no split of the {n_l} layers fits the memory of the available devices ({have})"
