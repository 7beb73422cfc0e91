"""Workload formulas of the single-plan fast path; same figures as ``Metrics.row``."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, NamedTuple

from dora_rl.costmodel.formulas import (
    one_f_one_b_iteration_s,
    relative_slack,
    round_trip_period_s,
)
from dora_rl.costmodel.plan_spec import Plan
from dora_rl.costmodel.single import _Eval
from dora_rl.costmodel.state import State
from dora_rl.costmodel.tables import JobTables

NAN = math.nan


MEMO_ENTRIES = 4096  # per job and kind; a full memo is emptied, not grown


def evaluate_one(t: JobTables, plan: Plan, state: State, memo: bool = True) -> dict[str, Any]:
    """Evaluate one (already checked) plan; the result has the keys of ``Metrics.row``.

    A plan's figures depend only on the state of the devices it uses (their load, usability
    and, when anything crosses the network, link rate) and on the media's free airtime. Results
    are memoised on exactly those inputs, and the compute side (stage and busy times) on the
    load alone, so an environment whose links fade every interval while loads hold still
    re-derives only the network side. Memoised results are shared: callers must not mutate
    them. ``memo=False`` neither looks up nor stores the result (for callers with a memo of
    their own, whose misses would only fill this one); the compute side is still memoised.

    Example:
        >>> from dora_rl.scenarios import load
        >>> from dora_rl.costmodel import CostModel
        >>> model = CostModel(load("tiny"))
        >>> plan = Plan.single(0, model.tables.n_layers)
        >>> busy = model.nominal.replace(link_scale=model.nominal.link_scale * 0.5)
        >>> model.evaluate(plan) is model.evaluate(plan, busy)  # one device: links irrelevant
        True
    """
    if plan.dvfs_levels is not None:
        plan = _own_levels(plan)
    load, usable, scale, free = state.lists
    at = plan.at_devices
    loads = at(load)
    results, evals = t.memo
    if memo:
        key = (plan, loads, at(usable), at(scale), tuple(free)) if len(plan.devices) > 1 else \
            (plan, loads, at(usable))  # one device: nothing crosses the network
        hit = results.get(key)
        if hit is not None:
            return hit
    ev = evals.get((plan, loads))
    if ev is None:
        if len(evals) >= MEMO_ENTRIES:
            evals.clear()
        ev = evals[(plan, loads)] = _Eval(t, plan, load)
    out = _figures(ev.bind(state))
    if memo:
        if len(results) >= MEMO_ENTRIES:
            results.clear()
        results[key] = out
    return out


def _figures(ev: _Eval) -> dict[str, Any]:
    """The figures of the plan ``ev`` was built for, in the state it is bound to."""
    job = ev.t.job
    if job.training is not None:
        return _training(ev)
    if job.llm is not None:
        return _llm(ev)
    return _inference(ev)


_OWN_LEVELS: dict[Plan, Plan] = {}


def _own_levels(plan: Plan) -> Plan:
    """``plan`` with the power levels of the devices it does not use set to nominal (no
    levels at all when its own are nominal): the plan evaluates to the same figures, and the
    memos then share one entry among the plans that differ only in other devices' levels (a
    controller sets every device's mode; each plan reads its own devices')."""
    hit = _OWN_LEVELS.get(plan)
    if hit is None:
        levels = plan.dvfs_levels
        assert levels is not None
        devices = plan.devices
        own = tuple(lv if d in devices else 0 for d, lv in enumerate(levels))
        hit = replace(plan, dvfs_levels=own if any(own) else None) if own != levels else plan
        if len(_OWN_LEVELS) >= MEMO_ENTRIES:
            _OWN_LEVELS.clear()
        _OWN_LEVELS[plan] = hit
    return hit


def _pad(values: list[float], n: int) -> list[float]:
    return values + [0.0] * (n - len(values))


def _pad_stages(ev: _Eval, stage: list[float]) -> list[float]:
    return _pad(stage[: ev.k], ev.n_dev)


def _finish(
    ev: _Eval,
    *,
    latency: float,
    period: float,
    interval: float,
    throughput: float,
    stage: list[float],
    transfer: list[float],
    allreduce: list[float],
    busy: list[float],
    tx: list[float],
    rx: list[float],
    per_dev: list[float],
    memory: list[float],
    slack: dict[str, float],
    ttft: float = NAN,
    tpot: float = NAN,
    iteration: float = NAN,
) -> dict[str, Any]:
    """The figures every workload reports, as ``Metrics.row``. ``stage`` depends on the load
    only (as ``busy`` and ``memory``), so it is padded once per _Eval."""
    n = ev.n_dev
    energy = sum(per_dev)
    qoe_met, usable_ok = _verdicts(ev, slack, energy)
    used = ev.used
    memory_ok = ev.once("memory_ok", _memory_ok, ev, memory)
    devices = ev.plan.devices
    finite = math.isfinite(interval)
    idle = [interval] * n  # unused devices idle all along
    if finite:
        for d in devices:
            idle[d] = interval - busy[d] - tx[d] - rx[d]
    return {
        "latency_s": latency,
        "period_s": period,
        "interval_s": interval,
        "throughput_per_s": throughput,
        "ttft_s": ttft,
        "tpot_s": tpot,
        "iteration_s": iteration,
        "stage_s": ev.once("stage_s", _pad_stages, ev, stage),
        "transfer_s": _pad(transfer, n),
        "allreduce_s": _pad(allreduce, n),
        "busy_s": busy,
        "tx_s": tx,
        "rx_s": rx,
        "idle_s": idle,
        "energy_per_device_j": per_dev,
        "energy_j": energy,
        "power_w": energy / interval if finite else math.inf,
        "memory_bytes": memory,
        "memory_ok": memory_ok,
        "usable_ok": usable_ok,
        "qoe_slack": slack,
        "qoe_met": qoe_met,
        "feasible": qoe_met and memory_ok and usable_ok,
        "used": used,
    }


def _verdicts(ev: _Eval, slack: dict[str, float], energy: float) -> tuple[bool, bool]:
    """Whether every QoE target holds (the energy target added to ``slack`` first) and
    whether every device of the plan is usable."""
    if ev.t.job.qoe.energy_j is not None:
        slack["energy_j"] = relative_slack(ev.t.job.qoe.energy_j, energy)
    qoe_met = True
    for s in slack.values():
        if not s >= 0:  # missed, or NaN
            qoe_met = False
            break
    usable = ev.usable
    usable_ok = True
    for d in ev.plan.devices:
        if not usable[d]:
            usable_ok = False
            break
    return qoe_met, usable_ok


class _Fixed(NamedTuple):
    """The figures of an inference or LLM plan that depend on the load alone (kept per
    _Eval, shared by every result under that load: read only)."""

    stage_s: list[float]
    """Stage times (the prefill's for an LLM), padded to every device."""
    busy: list[float]
    memory: list[float]
    memory_ok: bool
    power: tuple[tuple[int, float, float, float, float], ...]
    """(device, idle, busy, transmit, receive watts) of each device the plan uses."""


def _fixed(ev: _Eval, stage: list[float], busy: list[float], memory: list[float]) -> _Fixed:
    lt = ev.L
    return _Fixed(_pad_stages(ev, stage), busy, memory, _memory_ok(ev, memory),
                  tuple((d, lt.idle_w[d], ev.pw[d], lt.tx_w[d], lt.rx_w[d])
                        for d in ev.plan.devices))


def _plain_row(ev: _Eval, fx: _Fixed, latency: float, period: float, interval: float,
               throughput: float, ttft: float, tpot: float, transfer: list[float],
               tx: list[float], rx: list[float], slack: dict[str, float]) -> dict[str, Any]:
    """:func:`_finish` of an inference or LLM plan (nothing all-reduces): the same figures
    from the load-only ones kept in ``fx``, device energy (:meth:`_Eval.energy`) inline."""
    t, n = ev.t, ev.n_dev
    busy = fx.busy
    per_dev = [0.0] * n if t.unused_power_off else [w * interval for w in ev.L.idle_w]
    finite = math.isfinite(interval)
    idle = [interval] * n  # unused devices idle all along
    if interval == math.inf:  # device_energy_j: a plan that never completes costs inf
        for p in fx.power:
            per_dev[p[0]] = math.inf
    else:
        for d, idle_w, busy_w, tx_w, rx_w in fx.power:
            b, x, r = busy[d], tx[d], rx[d]
            rest = interval - b - x - r
            per_dev[d] = busy_w * b + tx_w * x + rx_w * r + idle_w * rest
            if finite:
                idle[d] = rest
    energy = sum(per_dev)
    qoe_met, usable_ok = _verdicts(ev, slack, energy)
    memory_ok = fx.memory_ok
    return {
        "latency_s": latency,
        "period_s": period,
        "interval_s": interval,
        "throughput_per_s": throughput,
        "ttft_s": ttft,
        "tpot_s": tpot,
        "iteration_s": NAN,
        "stage_s": fx.stage_s,
        "transfer_s": transfer + [0.0] * (n - len(transfer)),
        "allreduce_s": [0.0] * n,
        "busy_s": busy,
        "tx_s": tx,
        "rx_s": rx,
        "idle_s": idle,
        "energy_per_device_j": per_dev,
        "energy_j": energy,
        "power_w": energy / interval if finite else math.inf,
        "memory_bytes": fx.memory,
        "memory_ok": memory_ok,
        "usable_ok": usable_ok,
        "qoe_slack": slack,
        "qoe_met": qoe_met,
        "feasible": qoe_met and memory_ok and usable_ok,
        "used": ev.used,
    }


def _inference(ev: _Eval) -> dict[str, Any]:
    t = ev.t
    work = t.job.inference
    assert work is not None
    items, fx, compute_s, slowest = ev.once("inference", _inference_compute, ev)
    bnd, cap, tx_i, rx_i = ev.network_plain()
    x_s = [x * items for x in bnd]
    latency = compute_s + sum(x_s)
    period = max(slowest, max(x_s, default=0.0), cap * items)
    interval = max(1.0 / work.request_rate_per_s, period)
    tx = [x * items for x in tx_i]
    rx = [x * items for x in rx_i]
    slack = {"throughput": relative_slack(1.0 / work.request_rate_per_s, period)}
    if t.job.qoe.latency_ms is not None:
        slack["latency_ms"] = relative_slack(t.job.qoe.latency_ms, latency * 1e3)
    return _plain_row(ev, fx, latency, period, interval, 1.0 / period, NAN, NAN, x_s, tx, rx,
                      slack)


def _inference_compute(ev: _Eval) -> tuple[float, _Fixed, float, float]:
    """The load-dependent part of :func:`_inference` (memoised on the _Eval): items per
    request, the fixed figures, the stages' summed and slowest time."""
    work = ev.t.job.inference
    assert work is not None
    items = float(work.batch * ev.t.tokens_per_sample)
    stage, busy = ev.stage_times(items)
    fx = _fixed(ev, stage, busy, ev.memory(items))
    return items, fx, sum(stage[: ev.k]), max(stage[: ev.k])


def _llm(ev: _Eval) -> dict[str, Any]:
    t = ev.t
    work = t.job.llm
    assert work is not None
    prefill = float(work.batch * work.prompt_tokens)
    steps = work.output_tokens - 1
    pre_s, dec_s, tokens, fx = ev.once("llm", _llm_compute, ev)
    bnd, _, tx_i, rx_i = ev.network_plain()
    per_item = sum(bnd)
    ttft = pre_s + prefill * per_item
    tpot = dec_s + work.batch * per_item
    service = ttft + steps * tpot
    interval = max(1.0 / work.request_rate_per_s, service)
    tx = [x * tokens for x in tx_i]
    rx = [x * tokens for x in rx_i]
    slack = {"throughput": relative_slack(1.0 / work.request_rate_per_s, service)}
    if t.job.qoe.ttft_ms is not None:
        slack["ttft_ms"] = relative_slack(t.job.qoe.ttft_ms, ttft * 1e3)
    if t.job.qoe.tpot_ms is not None:
        slack["tpot_ms"] = relative_slack(t.job.qoe.tpot_ms, tpot * 1e3)
    return _plain_row(ev, fx, service, service, interval, work.batch / service, ttft, tpot,
                      [x * prefill for x in bnd], tx, rx, slack)


def _llm_compute(ev: _Eval) -> tuple[float, float, float, _Fixed]:
    """The load-dependent part of :func:`_llm` (memoised on the _Eval): prefill and per-token
    decode seconds, tokens per request and the fixed figures (prefill stage times, busy
    seconds and memory per device)."""
    work, lt = ev.t.job.llm, ev.L
    assert work is not None
    prefill = float(work.batch * work.prompt_tokens)
    context = work.prompt_tokens + 0.5 * work.output_tokens
    steps = work.output_tokens - 1
    kv_read = [
        ev.span(lt.kv, d) * context * work.batch * ev.frac[d] / lt.mem_bw[d]
        for d in range(ev.n_dev)
    ]
    t_pre, busy_pre = ev.stage_times(prefill)
    t_dec, busy_dec = ev.stage_times(float(work.batch), extra=kv_read)
    busy = [p + steps * q for p, q in zip(busy_pre, busy_dec, strict=True)]
    kv = [
        ev.span(lt.kv, d) * (work.prompt_tokens + work.output_tokens) * work.batch
        * ev.frac[d] for d in range(ev.n_dev)
    ]
    fx = _fixed(ev, t_pre, busy, ev.memory(prefill, kv))
    return sum(t_pre[: ev.k]), sum(t_dec[: ev.k]), prefill + steps * work.batch, fx


def _memory_ok(ev: _Eval, memory: list[float]) -> bool:
    """Every device the plan uses has room for its part."""
    used, mem = ev.used, ev.L.mem
    return all(not used[d] or memory[d] <= mem[d] for d in range(ev.n_dev))


def _training(ev: _Eval) -> dict[str, Any]:
    work, lt, plan = ev.t.job.training, ev.L, ev.plan
    assert work is not None
    m = float(plan.micro_batches)
    items = work.global_batch / m * ev.t.tokens_per_sample
    full = work.method == "full"
    sync = [ev.span(lt.params if full else lt.lora, g[0]) for g in plan.stage_devices]
    f_stage, f_busy = ev.stage_times(items)
    b_stage, b_busy = ev.stage_times(items, backward=True)
    net = ev.network(sync)
    x_one = [x * items for x in net["boundary"]] + [0.0]
    cyc = [f_stage[k] + b_stage[k] for k in range(ev.k)]
    bottleneck = max(max(cyc), 2.0 * max(x_one), 2.0 * net["cap"] * items,
                     round_trip_period_s(cyc, x_one))
    fill = sum(cyc) + 2.0 * sum(x_one)
    tail, head = 0.0, 0.0
    for k in range(ev.k):
        if math.isfinite(head):
            tail = max(tail, net["allreduce"][k] - head)
        head += b_stage[k] + x_one[k]
    iteration = one_f_one_b_iteration_s(fill, bottleneck, m, tail)
    busy = [m * (f + b) for f, b in zip(f_busy, b_busy, strict=True)]
    tx = [2.0 * m * x * items + a for x, a in zip(net["tx"], net["ar_tx"], strict=True)]
    rx = [2.0 * m * x * items + a for x, a in zip(net["rx"], net["ar_tx"], strict=True)]
    slack: dict[str, float] = {}
    if ev.t.job.qoe.iteration_ms is not None:
        slack["iteration_ms"] = relative_slack(ev.t.job.qoe.iteration_ms, iteration * 1e3)
    if ev.t.job.qoe.deadline_s is not None and work.iterations is not None:
        slack["deadline_s"] = relative_slack(ev.t.job.qoe.deadline_s, iteration * work.iterations)
    return _finish(
        ev,
        latency=iteration,
        period=bottleneck,
        interval=iteration,
        throughput=work.global_batch / iteration,
        stage=cyc,
        transfer=[2.0 * x for x in x_one[:-1]],
        allreduce=net["allreduce"],
        busy=busy,
        tx=tx,
        rx=rx,
        per_dev=ev.energy(iteration, busy, tx, rx),
        memory=ev.once("memory", _training_memory, ev, items, full),
        slack=slack,
        iteration=iteration,
    )


def _training_memory(ev: _Eval, items: float, full: bool) -> list[float]:
    """Per-device memory of a training plan: weights, optimiser or adapter state, and the
    activations 1F1B keeps in flight."""
    lt, plan = ev.L, ev.plan
    params, opt, lora, saved = lt.params, lt.opt, lt.lora, lt.saved
    m, n_stages, frac = float(plan.micro_batches), plan.n_stages, ev.frac
    extra = [0.0] * ev.n_dev
    for k, group in enumerate(plan.stage_devices):
        a, b = plan.stage_layers(k)
        state_b = params[b] - params[a] + opt[b] - opt[a] if full else 4.0 * (lora[b] - lora[a])
        stash = min(m, float(n_stages - k)) * items * (saved[b] - saved[a])
        for d in group:
            extra[d] = state_b + stash * frac[d]
    return ev.memory(items, extra)
