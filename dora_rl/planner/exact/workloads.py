"""QoE constraints and objectives of the partitioner's program, one function per workload.

Each function adds the rows that bound the job's time figures by its QoE targets (and the
plan-set limits), and returns the :class:`Formulation` with the energy and time expressions so
the caller can minimise either. The expressions mirror :mod:`dora_rl.costmodel.evaluate`:
inference latency is stage times plus boundary times per request; an LLM request is TTFT plus
the remaining tokens at TPOT; training is the 1F1B iteration time.
"""

from __future__ import annotations

import numpy as np

from dora_rl.planner.exact.formulation import Formulation, Limits, _Parts


def _linear(parts: _Parts, x_coef: np.ndarray, x_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Columns and coefficients of ``sum x * x_coef + x_scale * sum_j X[j]``."""
    cols = np.concatenate([parts.x, parts.X[1:parts.L]])
    vals = np.concatenate([x_coef, np.full(parts.L - 1, x_scale)])
    return cols, vals


def _finish(parts: _Parts, mode: str, limits: Limits, time_cols: np.ndarray,
            time_vals: np.ndarray, energy_cols: np.ndarray, energy_vals: np.ndarray,
            energy_offset: float) -> Formulation:
    b = parts.b
    qoe = parts.model.tables.job.qoe
    budget = parts.model.scenario.objective.energy_budget_j
    caps = [v for v in (None if limits.ignore_qoe else qoe.energy_j, limits.max_energy_j,
                        budget if mode == "time" and not limits.ignore_qoe else None)
            if v is not None]
    if caps:
        b.row(energy_cols, energy_vals, hi=min(caps) - energy_offset)
    if limits.max_time_s is not None:
        b.row(time_cols, time_vals, hi=limits.max_time_s)
    cost = np.zeros(b.n_cols)
    if mode == "energy":
        np.add.at(cost, energy_cols, energy_vals)
        b.offset = energy_offset
    else:
        np.add.at(cost, time_cols, time_vals)
    b.cost = cost.tolist()
    return Formulation(builder=b, x=parts.x)


def _request_energy(parts: _Parts, rate_per_s: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Energy per request: idle power over 1/rate plus what each stage adds."""
    t, c = parts.model.tables, parts.c
    off = t.unused_power_off
    vals = c.energy_j + (c.idle_w / rate_per_s if off else 0.0)
    offset = 0.0 if off else float(t.idle_w.sum()) / rate_per_s
    return parts.x, vals, offset


def add_workload(parts: _Parts, mode: str, limits: Limits) -> Formulation:
    """Add the job's QoE rows and objective; dispatch on the workload."""
    job = parts.model.tables.job
    if job.inference is not None:
        return _inference(parts, mode, limits)
    if job.llm is not None:
        return _llm(parts, mode, limits)
    return _training(parts, mode, limits)


def _inference(parts: _Parts, mode: str, limits: Limits) -> Formulation:
    job, b, c = parts.model.tables.job, parts.b, parts.c
    work = job.inference
    assert work is not None
    items, period = parts.items, 1.0 / work.request_rate_per_s
    t_cols, t_vals = _linear(parts, c.time_s, items)
    e_cols, e_vals, offset = _request_energy(parts, work.request_rate_per_s)
    if limits.ignore_qoe:
        return _finish(parts, mode, limits, t_cols, t_vals, e_cols, e_vals, offset)
    _forbid(parts, c.time_s > period * (1 + 1e-12))
    for j in range(1, parts.L):
        b.hi[int(parts.X[j])] = period / items
    for cols, air in parts.capacity(items):
        b.row(cols, air, hi=period)
    if job.qoe.latency_ms is not None:
        b.row(t_cols, t_vals, hi=job.qoe.latency_ms / 1e3)
    return _finish(parts, mode, limits, t_cols, t_vals, e_cols, e_vals, offset)


def _llm(parts: _Parts, mode: str, limits: Limits) -> Formulation:
    job, b, c = parts.model.tables.job, parts.b, parts.c
    work = job.llm
    assert work is not None
    prefill, steps = float(work.batch * work.prompt_tokens), work.output_tokens - 1
    s_cols, s_vals = _linear(parts, c.time_s + steps * c.decode_s,
                             prefill + steps * work.batch)
    e_cols, e_vals, offset = _request_energy(parts, work.request_rate_per_s)
    if not limits.ignore_qoe:
        ttft_cols, ttft_vals = _linear(parts, c.time_s, prefill)
        tpot_cols, tpot_vals = _linear(parts, c.decode_s, float(work.batch))
        if job.qoe.ttft_ms is not None:
            b.row(ttft_cols, ttft_vals, hi=job.qoe.ttft_ms / 1e3)
        if job.qoe.tpot_ms is not None:
            b.row(tpot_cols, tpot_vals, hi=job.qoe.tpot_ms / 1e3)
        b.row(s_cols, s_vals, hi=1.0 / work.request_rate_per_s)
    return _finish(parts, mode, limits, s_cols, s_vals, e_cols, e_vals, offset)


def _training(parts: _Parts, mode: str, limits: Limits) -> Formulation:
    t, job, b, c, x = parts.model.tables, parts.model.tables.job, parts.b, parts.c, parts.x
    work = job.training
    assert work is not None
    items, m, L = parts.items, float(parts.m), parts.L
    bottleneck, tail, iteration = b.var(1)[0], b.var(1)[0], b.var(1)[0]
    allreduce = b.var(L)
    for layer in range(L):
        # exactly one chosen stage covers each layer: a strong form of B >= every stage cycle
        cover = np.flatnonzero((c.first <= layer) & (c.end > layer))
        b.row(np.concatenate([[bottleneck], x[cover]]), np.concatenate([[1.0], -c.time_s[cover]]),
              lo=0)
    for a in range(L):
        s = parts.starts[a]
        b.row(np.concatenate([[allreduce[a]], x[s]]),
              np.concatenate([[1.0], -c.allreduce_solo_s[s]]), lo=0)
        for w in parts.wifi:
            on = s[c.domain[s] == w]
            parts.shared_time(int(allreduce[a]), x[on], c.allreduce_air_s[on], w)
        # tail >= AR[a] - (backward of earlier stages + their outgoing transfers)
        before = np.flatnonzero(c.end <= a)
        cols = np.concatenate([[tail, allreduce[a]], x[before], parts.X[1:a + 1]])
        vals = np.concatenate([[1.0, -1.0], c.backward_s[before], np.full(a, items)])
        b.row(cols, vals, lo=0.0)
    for j in range(1, L):
        b.row([bottleneck, parts.X[j]], [1.0, -2.0 * items], lo=0.0)
    for cols, air in parts.capacity(2.0 * items):
        b.row(np.concatenate([[bottleneck], cols]), np.concatenate([[1.0], -air]), lo=0.0)
    fill_cols, fill_vals = _linear(parts, c.time_s, 2.0 * items)
    b.row(np.concatenate([[iteration, bottleneck, tail], fill_cols]),
          np.concatenate([[1.0, -(m - 1.0), -1.0], -fill_vals]), 0.0, 0.0)
    targets = [job.qoe.iteration_ms / 1e3 if job.qoe.iteration_ms else None,
               job.qoe.deadline_s / work.iterations if job.qoe.deadline_s and work.iterations
               else None]
    limit = min([v for v in targets if v is not None] or [np.inf])
    if m > 1.0:  # with one micro-batch there is no steady state for the bound to limit
        cap = min(limit if not limits.ignore_qoe else np.inf, limits.max_time_s or np.inf)
        _round_trip(parts, int(bottleneck), items, m, cap)
    if not limits.ignore_qoe:
        b.hi[int(iteration)] = limit
    idle = t.idle_w
    if t.unused_power_off:
        t_max = limit if np.isfinite(limit) and not limits.ignore_qoe else 1e9
        u = b.var(len(c))  # u[c] = x[c] * iteration, linearised
        cols = np.stack([u, np.full(len(c), iteration), x], axis=1)
        b.rows(cols, np.tile([1.0, -1.0, -t_max], (len(c), 1)), lo=-t_max, hi=np.inf)
        e_cols = np.concatenate([x, u])
        e_vals = np.concatenate([c.energy_j, c.idle_w])
    else:
        e_cols = np.concatenate([x, [iteration]])
        e_vals = np.concatenate([c.energy_j, [float(idle.sum())]])
    return _finish(parts, mode, limits, np.array([iteration]), np.array([1.0]), e_cols, e_vals,
                   0.0)


def _time_ceiling(parts: _Parts, items: float) -> tuple[float, float]:
    """An upper bound on any 1F1B fill and bottleneck the program's optimum can have: every
    stage at the slowest candidate's cycle, every boundary at the largest wall time any of
    its lower-bound rows can force, the busiest medium carrying every flow. Returns it and
    that largest boundary wall time per item."""
    c, t, space = parts.c, parts.model.tables, parts.space
    n_max = 2 * space.max_stages - 1
    air = float(c.send_air_s.max(initial=0.0) + c.recv_air_s.max(initial=0.0))
    free = float(parts.free.min()) if len(parts.free) else 1.0
    x_max = max(float(c.send_wired_s.max(initial=0.0)), float(c.recv_wired_s.max(initial=0.0)),
                float(t.activation_bytes.max(initial=0.0)) / t.backbone_bytes_per_s,
                air * n_max / free)
    return (space.max_stages * float(c.time_s.max(initial=0.0))
            + 2.0 * items * (parts.L * x_max + space.max_stages * air / free)), x_max


def _round_trip(parts: _Parts, bottleneck: int, items: float, m: float,
                iteration_cap: float) -> None:
    """1F1B's in-flight limit (``formulas.round_trip_period_s``): for every stage k,
    ``sum over stages i >= k of (cycle_i + 2 x_i - B) <= 0``.

    ``T[l]``, the same sum over everything from layer ``l`` on, follows the layers back from
    ``T[L] = 0``: each layer adds the cycle of a stage starting there, minus ``B`` if one does
    (``w[l] = B * starts[l]``, bounded from above, which is all the ``<=`` rows need), plus both
    directions of the boundary after it. ``T[l] <= 0`` is required where a stage starts;
    elsewhere ``T[l]`` exceeds the next stage's (non-positive) sum by one boundary at most,
    which bounds the big-M.

    Args:
        iteration_cap: The iteration time the program already enforces (inf if none).
    """
    b, c, x, L = parts.b, parts.c, parts.x, parts.L
    ceiling, x_max = _time_ceiling(parts, items)
    if not np.isfinite(ceiling) or ceiling <= 0 or not len(c):
        return
    big_b = min(ceiling, iteration_cap / (m - 1.0))  # (m - 1) B <= iteration
    big_t = 2.0 * items * x_max
    suffix = b.var(L + 1, lo=-np.inf)
    b.lo[int(suffix[L])] = b.hi[int(suffix[L])] = 0.0
    w = b.var(L)
    for layer in range(L):
        starts = parts.starts[layer]
        b.row([w[layer], bottleneck], [1.0, -1.0], hi=0.0)
        b.row(np.concatenate([[w[layer]], x[starts]]),
              np.concatenate([[1.0], np.full(len(starts), -big_b)]), hi=0.0)
        after = [parts.X[layer + 1]] if layer + 1 < L else []
        b.row(np.concatenate([[suffix[layer], suffix[layer + 1], w[layer]], x[starts], after]),
              np.concatenate([[1.0, -1.0, 1.0], -c.time_s[starts],
                              np.full(len(after), -2.0 * items)]), 0.0, 0.0)
        b.row(np.concatenate([[suffix[layer]], x[starts]]),
              np.concatenate([[1.0], np.full(len(starts), big_t)]), hi=big_t)


def _forbid(parts: _Parts, mask: np.ndarray) -> None:
    """Fix the candidates in ``mask`` to zero."""
    for col in parts.x[np.flatnonzero(mask)]:
        parts.b.hi[int(col)] = 0.0
