"""Exact throughput-optimal pipeline partitioning (the PipeEdge objective) as a MILP.

Contiguous stages, one host each (no data parallelism); identical hosts form a *device type*, so
the program assigns stages to types and counts hosts per type (no symmetry between identical
hosts). Objective: the bottleneck ``B = max over stages of max(compute, transfer to the next)``.
With boundary ``p`` between layers ``p - 1`` and ``p``:

* binary ``x[a, b, t]``: stage ``[a, b)`` on type ``t`` (a column only if it fits the type's
  memory); the stages form a path from boundary 0 to L and use type ``t`` <= ``counts[t]`` times;
* ``B >= sum time[t, a, b] x[a, b, t]`` over the stages covering layer ``l``, for every ``l``
  (one stage covers it: its time at integer points, an average, not a fraction, in the LP);
* ``z[p, t, t2] >= 0`` with row sums = stages ending at ``p`` on ``t`` and column sums = stages
  starting at ``p`` on ``t2`` (their product at integer ``x``), and
  ``B >= sum transfer_s[p-1][t][t2] z[p, t, t2]``; dead links (infinite time) fix z at 0;
* cut: the stages on type ``t`` compute for at most ``counts[t] * B`` in total.

A local search over sequences of stage types gives an incumbent that warm-starts HiGHS; stages
and transfers slower than it are left out. Times are scaled so that a lower bound of the optimum
is 1000 (HiGHS' absolute gap of 1e-6 is then negligible); the result's bottleneck is exact.

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
from dora_rl.planner.exact.solver import solve_milp

log = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
Spans = list[tuple[int, int, int]]
"""Stages as (first layer, end layer exclusive, type) in pipeline order."""


def _range_sums(values: FloatArray) -> FloatArray:
    """[..., L] -> [..., L+1, L+1]: sums over ``[a, b)`` added from ``a`` up; inf if a >= b."""
    n_l = values.shape[-1]
    out = np.full((*values.shape[:-1], n_l + 1, n_l + 1), np.inf)
    for a in range(n_l):
        out[..., a, a + 1:] = np.cumsum(values[..., a:], axis=-1)
    return out


@dataclass(frozen=True, eq=False)
class BottleneckProblem:
    """A pipeline partitioning instance over device types (layers 0-based).

    Attributes:
        layer_time_s: [T, L] seconds of one micro-batch per layer and type (inf: cannot run).
        counts: Hosts of each type.
        memory_bytes: [T] memory of each type; layer_memory_bytes: [L] memory of each layer.
        transfer_s: [L, T, T] seconds to send layer l's output from type t to type t2 (inf: no
            link); row L-1 is unused (the last stage sends nothing).
        stage_buffer_bytes: [L+1, L+1] fixed memory of a stage ``[a, b)`` besides its layers
            (e.g. send and receive buffers); ``None`` for none.
        strict_memory: Fit only strictly below the capacity (PipeEdge's ``is_layers_fit``).
        type_names, layer_names: Names for messages (default: indices).
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
        want = {"counts": (n_t,), "memory_bytes": (n_t,), "layer_memory_bytes": (n_l,),
                "transfer_s": (n_l, n_t, n_t), "stage_buffer_bytes": (n_l + 1, n_l + 1)}
        for name in (n for n, shape in want.items() if getattr(self, n) is not None
                     and np.shape(getattr(self, n)) != shape):
            raise DoraError(f"BottleneckProblem.{name}: shape must be {want[name]}")
        if n_l == 0 or np.any(np.asarray(self.layer_time_s) < 0) or min(self.counts, default=0) < 0:
            raise DoraError("BottleneckProblem needs >= 1 layer, times >= 0 and counts >= 0")

    @property
    def n_types(self) -> int:
        """Number of device types T."""
        return len(self.counts)

    @property
    def n_layers(self) -> int:
        """Number of layers L."""
        return int(np.shape(self.layer_time_s)[1])

    @cached_property
    def stage_time_s(self) -> FloatArray:
        """[T, L+1, L+1] compute time of stage ``[a, b)``, summed from ``a`` up (inf: a >= b)."""
        return _range_sums(np.asarray(self.layer_time_s, dtype=np.float64))

    @cached_property
    def stage_memory_bytes(self) -> FloatArray:
        """[L+1, L+1] memory a stage ``[a, b)`` needs (inf if a >= b)."""
        out = _range_sums(np.asarray(self.layer_memory_bytes, dtype=np.float64))
        return out if self.stage_buffer_bytes is None else out + self.stage_buffer_bytes

    @cached_property
    def candidates(self) -> NDArray[np.bool_]:
        """[T, L+1, L+1] stage ``[a, b)`` may run on type ``t``: hosts, memory, finite time."""
        cap, need = np.asarray(self.memory_bytes)[:, None, None], self.stage_memory_bytes[None]
        fits = need < cap if self.strict_memory else need <= cap
        return fits & (np.asarray(self.counts) > 0)[:, None, None] & (self.stage_time_s < np.inf)


@dataclass(frozen=True)
class BottleneckStage:
    """Layers ``[first_layer, end_layer)`` on host ``host`` (index within its type)."""

    first_layer: int
    end_layer: int
    device_type: int
    host: int


@dataclass(frozen=True)
class BottleneckSolution:
    """Stages in pipeline order (hosts numbered per type in stage order, as PipeEdge does), the
    exact bottleneck, the status (``optimal``, ``time_limit``, ``enumerated``) and wall time."""

    stages: tuple[BottleneckStage, ...]
    bottleneck_s: float
    status: str
    solve_time_s: float


def stage_costs(problem: BottleneckProblem, spans: Spans) -> tuple[list[float], list[float]]:
    """Compute and outgoing transfer seconds of each stage (0 for the last)."""
    return ([float(problem.stage_time_s[t, a, b]) for a, b, t in spans],
            [float(problem.transfer_s[b - 1, t, u]) for (_, b, t), (_, _, u)
             in itertools.pairwise(spans)] + [0.0])


def _solution(spans: Spans, value: float, status: str, start: float) -> BottleneckSolution:
    stages = (BottleneckStage(a, b, t, [u for _, _, u in spans[:k]].count(t))
              for k, (a, b, t) in enumerate(spans))
    return BottleneckSolution(tuple(stages), value, status, time.perf_counter() - start)


def _lower_bound(problem: BottleneckProblem) -> float:
    """Every layer runs somewhere, on at most ``sum(counts)`` stages: a bound of the optimum."""
    times = np.asarray(problem.layer_time_s, dtype=np.float64)[np.asarray(problem.counts) > 0]
    best = times.min(axis=0) if times.size else np.zeros(1)
    bound = max(float(best.max()), float(best.sum()) / max(sum(problem.counts), 1))
    return bound * (1.0 - 1e-9) if np.isfinite(bound) else 0.0


def _split(problem: BottleneckProblem, seq: list[int]) -> tuple[float, Spans]:
    """Best split of the layers over stages of the type sequence ``seq`` (dynamic program)."""
    ok, times, n_l = problem.candidates, problem.stage_time_s, problem.n_layers
    f = np.where(ok[seq[0], 0], times[seq[0], 0], np.inf)
    back = []
    for prev, t in itertools.pairwise(seq):
        link = np.concatenate([[np.inf], problem.transfer_s[:, prev, t]])[:, None]
        g = np.maximum(np.maximum(f[:, None], link), np.where(ok[t], times[t], np.inf))
        back.append(g.argmin(axis=0))
        f = g[back[-1], np.arange(n_l + 1)]
    ends = [n_l]
    for arg in reversed(back):
        ends.insert(0, int(arg[ends[0]]))
    return float(f[n_l]), list(zip([0, *ends[:-1]], ends, seq, strict=True))


def _heuristic(problem: BottleneckProblem) -> tuple[float, Spans] | None:
    """First-improvement local search over the sequence of stage types (swap two stages,
    change, insert or drop one), each sequence split optimally by :func:`_split`, from the
    better of every host by memory (largest first) and the best single host."""
    order = sorted(range(problem.n_types), key=lambda t: (-problem.memory_bytes[t],
                                                          problem.layer_time_s[t].sum()))
    seeds = [[t] for t in order if problem.counts[t]]
    if not seeds:
        return None
    seeds.append([t for t in order for _ in range(problem.counts[t])][: problem.n_layers])
    (best, seq), budget = min(((_split(problem, q), q) for q in seeds), key=lambda v: v[0][0]), 3000
    while budget > 0:
        free = [t for t in range(problem.n_types) if seq.count(t) < problem.counts[t]]
        k = range(len(seq))
        moves = [[*seq[:i], seq[j], *seq[i + 1:j], seq[i], *seq[j + 1:]]
                 for i in k for j in k if i < j and seq[i] != seq[j]]
        moves += [[*seq[:i], t, *seq[i + 1:]] for i in k for t in free]
        moves += [[*seq[:i], t, *seq[i:]] for i in range(len(seq) + 1) for t in free
                  if len(seq) < problem.n_layers]
        moves += [seq[:i] + seq[i + 1:] for i in k if len(seq) > 1]
        for move in moves:
            budget -= 1
            value, spans = _split(problem, move)
            if value < best[0] * (1 - 1e-12):
                best, seq = (value, spans), move
                break
        else:
            break
    return best if np.isfinite(best[0]) else None


def solve_bottleneck(problem: BottleneckProblem, time_limit_s: float = 60.0) -> BottleneckSolution:
    """Minimise the pipeline bottleneck exactly with :func:`solve_milp`.

    Raises:
        InfeasibleError: naming the binding memory or host-count constraint.
        DoraError: if the time limit passes before any plan is found.
    """
    start, heur = time.perf_counter(), _heuristic(problem)
    bound = heur[0] * (1 + 1e-9) if heur else np.inf
    ok = problem.candidates & (problem.stage_time_s <= bound)
    if not ok[:, 0, :].any() or not ok[:, :, problem.n_layers].any():
        raise InfeasibleError(explain_infeasible(problem))
    milp = _Milp(problem, ok, bound)
    warm = None if heur is None else (np.arange(milp.cost.size), milp.encode(*heur))
    result = solve_milp(milp.cost, milp.matrix, milp.lower, milp.upper, milp.col_lower,
                        milp.col_upper, milp.integer, time_limit_s=time_limit_s, warm_start=warm)
    if result.x is None:
        raise (InfeasibleError(explain_infeasible(problem)) if result.status == "infeasible" else
               DoraError(f"bottleneck MILP found no plan ({result.status}) in {time_limit_s:g} s"))
    spans = milp.decode(result.x)
    log.debug("bottleneck MILP: %d stage columns, %s", milp.xa.size, result.status)
    return _solution(spans, max(map(max, stage_costs(problem, spans))), result.status, start)


class _Milp:
    """Arrays of the program of the module docstring (times divided by ``scale``)."""

    def __init__(self, problem: BottleneckProblem, ok: NDArray[np.bool_], bound: float) -> None:
        n_l, ones, types = problem.n_layers, np.ones, np.nonzero(np.asarray(problem.counts))[0]
        n_t, pos = len(types), np.cumsum(np.asarray(problem.counts) > 0) - 1
        self.n_l, self.scale = n_l, max(_lower_bound(problem), 1e-300) / 1000.0  # see module
        self.xt, self.xa, self.xb = (v.astype(np.int64) for v in np.nonzero(ok))
        xa, xb, n_x = self.xa, self.xb, self.xa.size
        x_time = problem.stage_time_s[self.xt, xa, xb] / self.scale
        self.zp, self.zt, self.zu = (g.ravel() for g in np.meshgrid(
            np.arange(1, n_l), types, types, indexing="ij"))
        zp, z_tr = self.zp, problem.transfer_s[self.zp - 1, self.zt, self.zu]
        z_ok = np.isfinite(z_tr) & (z_tr <= bound)
        z_col, b_col = n_x + np.arange(zp.size), n_x + zp.size
        xtp, ztp, zup = pos[self.xt], pos[self.zt], pos[self.zu]
        lengths = xb - xa  # (layer, column) of every layer each stage covers
        cov_c = np.repeat(np.arange(n_x), lengths)
        cov_l = np.repeat(xa, lengths) + np.arange(cov_c.size) - np.repeat(
            np.cumsum(lengths) - lengths, lengths)
        # Rows: flow (L+1), counts (n_t), cover (L), end links ((L-1) n_t), start links
        # ((L-1) n_t), transfer per boundary (L-1), per-type compute cut (n_t).
        r = np.cumsum([0, n_l + 1, n_t, n_l, (n_l - 1) * n_t, (n_l - 1) * n_t, n_l - 1, n_t])
        ib, ia, x_col = (xb > 0) & (xb < n_l), (xa > 0) & (xa < n_l), np.arange(n_x)
        b_rows = np.r_[r[2]:r[3], r[5]:r[7]]
        b_vals = np.r_[-ones(2 * n_l - 1), -np.asarray(problem.counts, float)[types]]
        parts = [
            (xa, x_col, ones(n_x)), (xb, x_col, -ones(n_x)), (r[1] + xtp, x_col, ones(n_x)),
            (r[2] + cov_l, cov_c, x_time[cov_c]),
            (r[3] + (zp - 1) * n_t + ztp, z_col, ones(zp.size)),
            (r[3] + (xb[ib] - 1) * n_t + xtp[ib], x_col[ib], -ones(int(ib.sum()))),
            (r[4] + (zp - 1) * n_t + zup, z_col, ones(zp.size)),
            (r[4] + (xa[ia] - 1) * n_t + xtp[ia], x_col[ia], -ones(int(ia.sum()))),
            (r[5] + zp - 1, z_col, np.where(z_ok, z_tr, 0.0) / self.scale),
            (r[6] + xtp, x_col, x_time), (b_rows, np.full(b_rows.size, b_col), b_vals)]
        rows, cols, vals = (np.concatenate([p[i] for p in parts]) for i in range(3))
        self.matrix = sparse.csc_array((vals, (rows, cols)), shape=(r[7], b_col + 1))
        self.lower = np.eye(1, r[7], 0)[0] - np.eye(1, r[7], n_l)[0]
        self.upper = self.lower.copy()
        self.lower[r[1]:r[3]] = self.lower[r[5]:] = -np.inf
        self.upper[r[1]:r[2]] = np.asarray(problem.counts)[types]
        self.cost, self.col_lower = np.eye(1, b_col + 1, b_col)[0], np.zeros(b_col + 1)
        self.col_lower[b_col] = _lower_bound(problem) / self.scale
        self.col_upper = np.concatenate([ones(n_x), z_ok.astype(np.float64), [np.inf]])
        self.integer = np.concatenate([ones(n_x, bool), np.zeros(zp.size + 1, bool)])

    def encode(self, value: float, spans: Spans) -> FloatArray:
        """Column values of the heuristic's plan of bottleneck ``value``."""
        x = np.zeros(self.cost.size)
        for a, b, t in spans:  # all are columns: they fit and are within the bound
            x[: self.xa.size][(self.xa == a) & (self.xb == b) & (self.xt == t)] = 1.0
        for (_, b, t), (_, _, u) in itertools.pairwise(spans):
            x[self.xa.size:-1][(self.zp == b) & (self.zt == t) & (self.zu == u)] = 1.0
        x[-1] = value / self.scale * (1.0 + 1e-12)
        return x

    def decode(self, x: FloatArray) -> Spans:
        """The stages of a solution, in pipeline order."""
        chosen = {int(self.xa[i]): (int(self.xb[i]), int(self.xt[i]))
                  for i in np.nonzero(x[: self.xa.size] > 0.5)[0]}
        spans = [(0, *chosen[0])]
        while spans[-1][1] < self.n_l:
            spans.append((spans[-1][1], *chosen[spans[-1][1]]))
        return spans


def brute_force_bottleneck(problem: BottleneckProblem) -> BottleneckSolution:
    """Enumerate every contiguous split and injective host assignment (tiny instances only);
    raise :class:`InfeasibleError` when none fits memory with finite transfers."""
    start, n_l, ok = time.perf_counter(), problem.n_layers, problem.candidates
    hosts = [t for t in range(problem.n_types) for _ in range(problem.counts[t])]
    best: tuple[float, Spans] = (np.inf, [])
    for k in range(1, min(len(hosts), n_l) + 1):
        for cuts in itertools.combinations(range(1, n_l), k - 1):
            for assign in itertools.permutations(hosts, k):
                spans = list(zip((0, *cuts), (*cuts, n_l), assign, strict=True))
                if all(ok[t, a, b] for a, b, t in spans):
                    value = max(map(max, stage_costs(problem, spans)))
                    best = min(best, (value, spans), key=lambda v: v[0])
    if not np.isfinite(best[0]):
        raise InfeasibleError(explain_infeasible(problem))
    return _solution(best[1], best[0], "enumerated", start)


def explain_infeasible(problem: BottleneckProblem) -> str:
    """Name the binding constraint in words when no partition fits."""
    n_l, hosts = problem.n_layers, sum(problem.counts)
    live = [t for t in range(problem.n_types) if problem.counts[t] > 0]
    name = problem.layer_names or tuple(str(i) for i in range(n_l))
    if not live:
        return "no device is available to run the model"
    any_ok: NDArray[np.bool_] = np.asarray(problem.candidates.any(axis=0))
    for layer in (i for i in range(n_l) if not any_ok[: i + 1, i + 1:].any()):
        if not np.isfinite(problem.stage_time_s[live][:, layer, layer + 1]).any():
            return f"layer {name[layer]} cannot run on any device"
        need = problem.stage_memory_bytes[: layer + 1, layer + 1:]  # stages holding the layer
        row, col = np.unravel_index(int(np.argmin(need)), need.shape)
        a, b = int(row), int(col) + layer + 1
        what = f"layer {name[a]} needs" if b == a + 1 else f"layers {name[a]}-{name[b - 1]} need"
        return (f"{what} {need.min() / 1e9:.4g} GB; the largest device holds "
                f"{max(problem.memory_bytes[t] for t in live) / 1e9:.4g} GB")
    fewest = [0.0] + [np.inf] * n_l  # stages needed to reach each boundary
    for end in range(1, n_l + 1):
        fewest[end] = min([fewest[s] + 1 for s in range(end) if any_ok[s, end]] + [np.inf])
    if fewest[n_l] > hosts:
        return (f"the model needs at least {int(fewest[n_l])} stages to fit memory but only "
                f"{hosts} devices are available")
    have = ", ".join(f"{problem.counts[t]} x {(problem.type_names or range(99))[t]} "
                     f"({problem.memory_bytes[t] / 1e9:.4g} GB)" for t in live)
    return (f"no split of the {n_l} layers fits the memory of the available devices ({have})"
            + (" with working links" if np.isinf(problem.transfer_s[:-1]).any() else ""))
