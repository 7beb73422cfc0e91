"""Stage candidates: every (layer range, device group) with its exact cost-model figures.

A plan is a chain of candidates. Everything the cost model charges a plan is a sum over its
stages and stage boundaries of numbers that depend only on one candidate (stage time, busy
energy, memory, radio time) or on the two candidates meeting at a boundary (transfer time),
so the partitioner can be a mixed-integer program over candidates. This module computes those
numbers with the cost model's own formulas, vectorised over all layer ranges of a group.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dora_rl.costmodel import CostModel, State
from dora_rl.costmodel.formulas import (
    MIN_ITEM_S,
    replica_s,
    ring_allreduce_bytes_per_device,
    stage_time_s,
)
from dora_rl.errors import DoraError
from dora_rl.planner.exact.space import Group, SearchSpace

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
MAX_FIGURE = 1e9
"""Largest per-unit time (s) or energy (J) a stage candidate may have. Beyond it (about 32 years
per request) a figure only says the card holds an extreme value (a link of 1e-300 Mbps, an
activation of 1e308 bytes); such candidates are dropped, so the solver never sees coefficients
outside its numeric range and the plan avoids them or the diagnosis names them."""
MAX_STAGE_CANDIDATES = 2_000_000
"""Most (layer range, device group) pairs the planner builds figures for: about a gigabyte of
arrays, six times the 96-layer x 16-device benchmark instance (335,232). A model of L layers
has L (L + 1) / 2 ranges, so a card with thousands of layers would need tens of gigabytes."""


class PlanSpaceError(DoraError):
    """The plan space is too large to build (too many layers for the device groups)."""


@dataclass(frozen=True)
class Candidates:
    """Flat arrays over candidates (one entry per (range, group) that fits memory).

    Times are per unit of the workload: ``time_s`` is the stage time for one request
    (inference), the prefill (LLM) or forward + backward of one micro-batch (training);
    ``decode_s`` the per-token stage time (LLM). Radio figures are per item crossing a boundary.
    """

    first: IntArray
    end: IntArray
    group: IntArray
    time_s: FloatArray
    decode_s: FloatArray
    backward_s: FloatArray
    energy_j: FloatArray
    """Energy the stage adds per unit of work beyond idle power over the interval."""
    idle_w: FloatArray
    """Idle power of the group's devices (charged over the interval when unused devices are off)."""
    max_stages_after: IntArray
    """Most stages (this one included) that may follow in a plan before memory runs out."""
    send_air_s: FloatArray
    recv_air_s: FloatArray
    send_wired_s: FloatArray
    recv_wired_s: FloatArray
    out_bytes: FloatArray
    in_bytes: FloatArray
    allreduce_air_s: FloatArray
    allreduce_solo_s: FloatArray
    domain: IntArray
    wifi: NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.first.shape[0])

    def subset(self, mask: NDArray[np.bool_]) -> Candidates:
        """The candidates where ``mask`` is true."""
        return Candidates(**{k: getattr(self, k)[mask] for k in self.__dataclass_fields__})


def _ranges(n_layers: int) -> tuple[IntArray, IntArray]:
    a, b = np.triu_indices(n_layers + 1, k=1)
    return a.astype(np.int64), b.astype(np.int64)


@dataclass(frozen=True)
class _GroupFigures:
    frac: FloatArray  # [M, R]
    tau_f: FloatArray
    tau_b: FloatArray
    reads: FloatArray


def _figures(model: CostModel, state: State, members: tuple[int, ...], a: IntArray,
             b: IntArray) -> _GroupFigures:
    t = model.tables
    idx = np.array(members)
    loaded = 1.0 / (1.0 - state.load[idx])[:, None]
    planned = np.maximum(t.fwd_prefix_s[idx][:, b] - t.fwd_prefix_s[idx][:, a], MIN_ITEM_S)
    tau_b = np.maximum(t.bwd_prefix_s[idx][:, b] - t.bwd_prefix_s[idx][:, a], MIN_ITEM_S) * loaded
    reads = t.weight_read_prefix_s[idx][:, b] - t.weight_read_prefix_s[idx][:, a]
    rate = (1.0 / planned).sum(axis=0)
    return _GroupFigures(frac=(1.0 / planned) / rate, tau_f=planned * loaded, tau_b=tau_b,
                         reads=reads)


def _stage(fig: _GroupFigures, items: float, backward: bool = False,
           extra: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
    """Stage time [R] and busy time per member [M, R], as the cost model computes them."""
    tau = fig.tau_b if backward else fig.tau_f
    reads = fig.reads * (2.0 if backward else 1.0)
    if extra is not None:
        reads = reads + extra
    own = replica_s(items, fig.frac, tau)
    t_stage = stage_time_s(own.max(axis=0), tau.min(axis=0), reads.max(axis=0))
    busy = np.minimum(t_stage[None, :], np.maximum(own, reads))
    return t_stage, busy


def _in_range(*figures: FloatArray) -> NDArray[np.bool_]:
    """[R] true where every figure (per range, or [M, R] per member) is finite and at most
    :data:`MAX_FIGURE`."""
    ok = np.ones(figures[0].shape[-1], dtype=bool)
    for f in figures:
        good = np.isfinite(f) & (np.abs(f) <= MAX_FIGURE)
        ok &= good.all(axis=0) if good.ndim > 1 else good
    return ok


def build_candidates(model: CostModel, space: SearchSpace, state: State | None = None,
                     micro_batches: int = 1) -> Candidates:
    """All memory-feasible stage candidates of ``space`` for ``model``'s job in ``state``."""
    state = state or model.nominal
    t = model.tables
    n_ranges = t.n_layers * (t.n_layers + 1) // 2
    if n_ranges * len(space.groups) > MAX_STAGE_CANDIDATES:
        raise PlanSpaceError(
            f"{model.scenario.source}: job {t.job.name!r}: the plan space has "
            f"{n_ranges * len(space.groups):,} stage candidates ({t.n_layers:,} layers give "
            f"{n_ranges:,} layer ranges, x {len(space.groups)} device groups), more than the "
            f"{MAX_STAGE_CANDIDATES:,} the planner builds; describe the model in fewer, larger "
            "layers (blocks)")
    a_all, b_all = _ranges(t.n_layers)
    with np.errstate(over="ignore"):  # extreme cards overflow to inf: dropped by _in_range
        parts = [_group_candidates(model, state, group, a_all, b_all, micro_batches)
                 for group in space.groups]
    if not parts:
        empty = {k: np.zeros(0) for k in Candidates.__dataclass_fields__}
        return Candidates(**empty)  # type: ignore[arg-type]
    keep = np.stack([p.pop("fits") for p in parts])  # [G, R]
    keep &= ~_dominated(space, parts, keep)
    data: dict[str, np.ndarray] = {}
    for k in parts[0]:
        data[k] = np.concatenate([p[k][keep[g]] for g, p in enumerate(parts)])
    data["group"] = np.concatenate([np.full(int(keep[g].sum()), g, dtype=np.int64)
                                    for g in range(len(parts))])
    wifi = t.wifi_domain[data["domain"]]
    return Candidates(wifi=wifi, **data)


# Figures where smaller is better; a candidate no better in all of them than a candidate on the
# same range using a subset of its devices can never be part of a unique optimum.
_DOMINANCE = ("time_s", "decode_s", "backward_s", "energy_j", "idle_w", "send_air_s",
              "recv_air_s", "send_wired_s", "recv_wired_s", "allreduce_air_s",
              "allreduce_solo_s")


def _dominated(space: SearchSpace, parts: list[dict[str, np.ndarray]],
               keep: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """[G, R] candidates dominated by a feasible candidate of a sub-group on the same range."""
    out = np.zeros_like(keep)
    counts = [dict(g.class_counts) for g in space.groups]
    for g, big in enumerate(space.groups):
        for h, small in enumerate(space.groups):
            if h == g or small.domain != big.domain or small.size >= big.size:
                continue
            if any(n > counts[g].get(c, 0) for c, n in counts[h].items()):
                continue
            worse = keep[h].copy()
            for field in _DOMINANCE:
                worse &= parts[h][field] <= parts[g][field]
            worse &= parts[h]["max_stages_after"] >= parts[g]["max_stages_after"]
            out[g] |= worse
    return out


def _group_candidates(model: CostModel, state: State, group: Group, a: IntArray, b: IntArray,
                      micro_batches: int) -> dict[str, np.ndarray]:
    t, job = model.tables, model.tables.job
    idx = np.array(group.members)
    fig = _figures(model, state, group.members, a, b)
    params = t.param_prefix_bytes[b] - t.param_prefix_bytes[a]
    act_max = t.activation_range_max[a, b]
    busy_w, idle_w = t.dvfs_busy_w[idx, 0][:, None], t.idle_w[idx][:, None]
    tx_w, rx_w = t.tx_w[idx][:, None], t.rx_w[idx][:, None]
    with np.errstate(divide="ignore"):
        inv = 1.0 / (t.link_bytes_per_s[idx] * state.link_scale[idx])
    out_bytes = np.where(b < t.n_layers, t.activation_bytes[np.minimum(b, t.n_layers) - 1], 0.0)
    in_bytes = np.where(a > 0, t.activation_bytes[np.maximum(a - 1, 0)], 0.0)
    with np.errstate(invalid="ignore"):
        send_dev = np.where(out_bytes > 0, fig.frac * inv[:, None] * out_bytes, 0.0)  # [M, R]
        recv_dev = np.where(in_bytes > 0, fig.frac * inv[:, None] * in_bytes, 0.0)
    stages_after = np.full(a.shape, 10**6, dtype=np.int64)
    decode = np.zeros(a.shape)
    backward = np.zeros(a.shape)
    ar_air, ar_solo = np.zeros(a.shape), np.zeros(a.shape)
    ar_dev = np.zeros_like(send_dev)
    if job.inference is not None:
        items = float(job.inference.batch * t.tokens_per_sample)
        time_s, busy = _stage(fig, items)
        memory = params + 2.0 * items * fig.frac * act_max
        tx, rx = items * send_dev, items * recv_dev
    elif job.llm is not None:
        w = job.llm
        prefill, steps = float(w.batch * w.prompt_tokens), w.output_tokens - 1
        kv = t.kv_prefix_bytes[b] - t.kv_prefix_bytes[a]
        context = w.prompt_tokens + 0.5 * w.output_tokens
        kv_read = kv * context * w.batch * fig.frac / t.memory_bw_bytes_per_s[idx][:, None]
        time_s, busy_pre = _stage(fig, prefill)
        decode, busy_dec = _stage(fig, float(w.batch), extra=kv_read)
        busy = busy_pre + steps * busy_dec
        tokens = prefill + steps * w.batch
        memory = (params + 2.0 * prefill * fig.frac * act_max
                  + kv * (w.prompt_tokens + w.output_tokens) * w.batch * fig.frac)
        tx, rx = tokens * send_dev, tokens * recv_dev
    else:
        tr = job.training
        assert tr is not None
        m = float(micro_batches)
        items = tr.global_batch / m * t.tokens_per_sample
        f_t, f_busy = _stage(fig, items)
        b_t, b_busy = _stage(fig, items, backward=True)
        time_s, busy, backward = f_t + b_t, m * (f_busy + b_busy), b_t
        full = tr.method == "full"
        sync = params if full else t.lora_prefix_bytes[b] - t.lora_prefix_bytes[a]
        if group.size > 1:
            per_dev = ring_allreduce_bytes_per_device(float(group.size), sync)
            ar_dev = np.where(per_dev > 0, inv[:, None] * per_dev, 0.0)
            wifi_member = t.wifi_domain[group.domain]
            ar_air = 2.0 * ar_dev.sum(axis=0) if wifi_member else np.zeros(a.shape)
            ar_solo = np.zeros(a.shape) if wifi_member else ar_dev.max(axis=0)
        state_b = (params + t.optimizer_prefix_bytes[b] - t.optimizer_prefix_bytes[a] if full
                   else 4.0 * (t.lora_prefix_bytes[b] - t.lora_prefix_bytes[a]))
        fixed = params + state_b + 2.0 * items * fig.frac * act_max
        stash = items * fig.frac * (t.saved_prefix_bytes[b] - t.saved_prefix_bytes[a])
        memory = fixed
        room = t.memory_bytes[idx][:, None] - fixed
        with np.errstate(divide="ignore", invalid="ignore"):
            allowed = np.where(stash > 0, np.floor(room / stash), 10**6)
        stages_after = np.where(allowed >= m, 10**6, allowed).min(axis=0).astype(np.int64)
        tx, rx = 2.0 * m * items * send_dev + ar_dev, 2.0 * m * items * recv_dev + ar_dev
    energy = ((busy_w - idle_w) * busy + (tx_w - idle_w) * tx + (rx_w - idle_w) * rx).sum(axis=0)
    fits = (memory <= t.memory_bytes[idx][:, None]).all(axis=0) & (stages_after >= 1)
    fits &= np.isfinite(memory).all(axis=0)
    fits &= _in_range(energy, time_s, decode, backward, send_dev, recv_dev, ar_dev)
    wifi = bool(t.wifi_domain[group.domain])
    send_air = send_dev.sum(axis=0) if wifi else np.zeros(a.shape)
    recv_air = recv_dev.sum(axis=0) if wifi else np.zeros(a.shape)
    out = {
        "first": a, "end": b, "time_s": time_s, "decode_s": decode, "backward_s": backward,
        "energy_j": energy,
        "idle_w": np.full(a.shape, float(idle_w.sum())), "max_stages_after": stages_after,
        "send_air_s": send_air, "recv_air_s": recv_air,
        "send_wired_s": np.zeros(a.shape) if wifi else send_dev.max(axis=0),
        "recv_wired_s": np.zeros(a.shape) if wifi else recv_dev.max(axis=0),
        "out_bytes": out_bytes, "in_bytes": in_bytes,
        "allreduce_air_s": ar_air, "allreduce_solo_s": ar_solo,
        "domain": np.full(a.shape, group.domain, dtype=np.int64),
        "fits": fits,
    }
    return {k: np.asarray(v) for k, v in out.items()}
