"""Evaluate a batch of plans of one job in one state: time, throughput, energy, memory, QoE.

The workload decides what one *unit of work* is: a request (DNN inference), a request of
prompt + output tokens (LLM inference) or an iteration (training). Energy is reported per unit
of work over the interval the unit occupies: ``max(1 / request rate, pipeline period)`` for
request streams, the iteration time for training.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from dora_rl.costmodel.formulas import (
    MIN_ITEM_S,
    device_energy_j,
    effective_time_s,
    one_f_one_b_iteration_s,
    relative_slack,
    replica_s,
    stage_time_s,
)
from dora_rl.costmodel.metrics import Metrics
from dora_rl.costmodel.network import FlowCosts, flow_costs
from dora_rl.costmodel.plan_spec import PlanBatch
from dora_rl.costmodel.state import State
from dora_rl.costmodel.tables import JobTables

FloatArray = NDArray[np.float64]


class _Stages:
    """Per-stage and per-device quantities shared by every workload."""

    def __init__(self, t: JobTables, b: PlanBatch, state: State) -> None:
        n, n_dev = b.dev_stage.shape
        s_idx = np.arange(n_dev)
        self.used = b.dev_stage >= 0
        self.onehot = (b.dev_stage[:, :, None] == s_idx[None, None, :]).astype(np.float64)
        self.active = s_idx[None, :] < b.n_stages[:, None]  # [N, S]
        start = np.concatenate([np.zeros((n, 1), dtype=np.int64), b.stage_end[:, :-1]], axis=1)
        ds = np.maximum(b.dev_stage, 0)
        self.first = np.take_along_axis(start, ds, axis=1)  # [N, D]
        self.last = np.take_along_axis(b.stage_end, ds, axis=1)
        dev = s_idx[None, :]
        speed = t.dvfs_speed[dev, b.dvfs_levels]
        self.busy_w = t.dvfs_busy_w[dev, b.dvfs_levels]
        loaded: FloatArray = effective_time_s(1.0, 1.0, state.load[None, :])

        def span(prefix: FloatArray) -> FloatArray:
            return np.where(self.used, prefix[dev, self.last] - prefix[dev, self.first], 0.0)

        plan_f = np.maximum(span(t.fwd_prefix_s) / speed, MIN_ITEM_S)  # planned, no load
        self.tau_f = np.where(self.used, plan_f * loaded, np.inf)
        self.tau_b = np.where(self.used, np.maximum(span(t.bwd_prefix_s) / speed, MIN_ITEM_S)
                              * loaded, np.inf)
        self.wread = span(t.weight_read_prefix_s)
        self.kv_per_token = np.where(self.used, t.kv_prefix_bytes[self.last]
                                     - t.kv_prefix_bytes[self.first], 0.0)
        self.params = np.where(self.used, t.param_prefix_bytes[self.last]
                               - t.param_prefix_bytes[self.first], 0.0)
        rate = np.where(self.used, 1.0 / plan_f, 0.0)
        stage_rate = np.take_along_axis(np.einsum("nd,nds->ns", rate, self.onehot), ds, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.frac = np.where(self.used, rate / stage_rate, 0.0)  # share of the micro-batch
        self.ds = ds
        self.group_size = self.onehot.sum(axis=1)
        last_layer = np.clip(b.stage_end - 1, 0, t.n_layers - 1)
        self.boundary_active = self.active & (s_idx[None, :] < (b.n_stages - 1)[:, None])
        self.boundary_bytes = np.where(self.boundary_active, t.activation_bytes[last_layer], 0.0)

    def stage_times(self, items: FloatArray | float, backward: bool = False,
                    extra_read: FloatArray | None = None) -> tuple[FloatArray, FloatArray]:
        """Stage times [N, S] and per-device busy times [N, D] for ``items`` per micro-batch."""
        tau = self.tau_b if backward else self.tau_f
        read = self.wread * (2.0 if backward else 1.0)
        if extra_read is not None:
            read = read + extra_read
        oh = self.onehot > 0
        fastest = np.where(oh, tau[:, :, None], np.inf).min(axis=1)
        slowest_read = np.where(oh, read[:, :, None], 0.0).max(axis=1)
        items_arr = np.asarray(items, dtype=np.float64)
        if items_arr.ndim == 1:
            items_arr = items_arr[:, None]
        with np.errstate(invalid="ignore"):
            own_compute = np.where(self.used, replica_s(items_arr, self.frac, tau), 0.0)
        compute = np.where(oh, own_compute[:, :, None], 0.0).max(axis=1)
        t_stage = stage_time_s(compute, fastest, slowest_read)
        t_stage = np.where(self.active, t_stage, 0.0)
        t_dev = np.take_along_axis(t_stage, self.ds, axis=1)
        own = np.maximum(own_compute, read)
        busy = np.where(self.used, np.minimum(t_dev, own), 0.0)
        return t_stage, busy


def evaluate_batch(t: JobTables, b: PlanBatch, state: State) -> Metrics:
    """Evaluate every plan in ``b`` for the job of ``t`` in ``state``."""
    st = _Stages(t, b, state)
    job = t.job
    training = job.training
    if training is not None:
        items = float(training.global_batch) / b.micro_batches * t.tokens_per_sample
        sync = st.params if training.method == "full" else np.where(
            st.used, t.lora_prefix_bytes[st.last] - t.lora_prefix_bytes[st.first], 0.0)
        stage_sync = np.einsum("nd,nds->ns", sync, st.onehot) / np.maximum(st.group_size, 1)
        stage_sync = np.where(st.group_size > 1, stage_sync, 0.0)
    else:
        items = None
        stage_sync = np.zeros(st.onehot.shape[::2])
    net = flow_costs(t, st.onehot, st.frac, st.boundary_bytes, st.boundary_active, stage_sync,
                     st.group_size, b.boundary_shares, b.allreduce_shares, state.link_scale,
                     state.cross_traffic, state.medium_share)
    if training is not None:
        assert items is not None
        metrics = _training(t, b, st, net, items)
    elif job.llm is not None:
        metrics = _llm(t, b, st, net)
    else:
        metrics = _inference(t, b, st, net)
    return metrics.with_usable(state.usable)


def _energy(t: JobTables, st: _Stages, interval: FloatArray, busy: FloatArray, tx: FloatArray,
            rx: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per-device energy [N, D] (unused devices idle or off) and the total [N]."""
    e_used = device_energy_j(interval[:, None], busy, tx, rx, t.idle_w[None, :], st.busy_w,
                             t.tx_w[None, :], t.rx_w[None, :])
    standby = 0.0 if t.unused_power_off else t.idle_w[None, :] * interval[:, None]
    per_dev = np.where(st.used, e_used, standby)
    return per_dev, per_dev.sum(axis=1)


def _memory(t: JobTables, st: _Stages, act_items: FloatArray | float,
            extra: FloatArray | None = None) -> FloatArray:
    act_max = t.activation_range_max[st.first, st.last]
    with np.errstate(over="ignore"):  # an extreme card overflows to inf: memory not ok
        mem = st.params + 2.0 * np.asarray(act_items) * st.frac * act_max
    if extra is not None:
        mem = mem + extra
    return np.where(st.used, mem, 0.0)


def _inference(t: JobTables, b: PlanBatch, st: _Stages, net: FlowCosts) -> Metrics:
    assert t.job.inference is not None
    work = t.job.inference
    items = float(work.batch * t.tokens_per_sample)
    t_stage, busy = st.stage_times(items)
    x_s = net.boundary_s_per_item * items
    latency = t_stage.sum(axis=1) + x_s.sum(axis=1)
    period = np.maximum(np.maximum(t_stage.max(axis=1), x_s.max(axis=1)),
                        net.capacity_s_per_item * items)
    interval = np.maximum(1.0 / work.request_rate_per_s, period)
    tx, rx = net.tx_s_per_item * items, net.rx_s_per_item * items
    per_dev, energy = _energy(t, st, interval, busy, tx, rx)
    slack = {"throughput": relative_slack(1.0 / work.request_rate_per_s, period)}
    if t.job.qoe.latency_ms is not None:
        slack["latency_ms"] = relative_slack(t.job.qoe.latency_ms, latency * 1e3)
    return Metrics.build(t, st.used, latency_s=latency, period_s=period, interval_s=interval,
                         throughput_per_s=1.0 / period, stage_s=t_stage, transfer_s=x_s,
                         allreduce_s=net.allreduce_s, busy_s=busy, tx_s=tx, rx_s=rx,
                         energy_per_device_j=per_dev, energy_j=energy,
                         memory_bytes=_memory(t, st, items), slack=slack)


def _llm(t: JobTables, b: PlanBatch, st: _Stages, net: FlowCosts) -> Metrics:
    assert t.job.llm is not None
    work = t.job.llm
    prefill = float(work.batch * work.prompt_tokens)
    context = work.prompt_tokens + 0.5 * work.output_tokens  # mean context while decoding
    kv_read = st.kv_per_token * context * work.batch * st.frac / t.memory_bw_bytes_per_s[None, :]
    t_pre, busy_pre = st.stage_times(prefill)
    t_dec, busy_dec = st.stage_times(float(work.batch), extra_read=kv_read)
    ttft = t_pre.sum(axis=1) + prefill * net.boundary_s_per_item.sum(axis=1)
    tpot = t_dec.sum(axis=1) + work.batch * net.boundary_s_per_item.sum(axis=1)
    steps = work.output_tokens - 1
    service = ttft + steps * tpot
    interval = np.maximum(1.0 / work.request_rate_per_s, service)
    busy = busy_pre + steps * busy_dec
    tokens = prefill + steps * work.batch
    tx, rx = net.tx_s_per_item * tokens, net.rx_s_per_item * tokens
    per_dev, energy = _energy(t, st, interval, busy, tx, rx)
    slack = {"throughput": relative_slack(1.0 / work.request_rate_per_s, service)}
    if t.job.qoe.ttft_ms is not None:
        slack["ttft_ms"] = relative_slack(t.job.qoe.ttft_ms, ttft * 1e3)
    if t.job.qoe.tpot_ms is not None:
        slack["tpot_ms"] = relative_slack(t.job.qoe.tpot_ms, tpot * 1e3)
    kv = st.kv_per_token * (work.prompt_tokens + work.output_tokens) * work.batch * st.frac
    return Metrics.build(t, st.used, latency_s=service, period_s=service, interval_s=interval,
                         throughput_per_s=work.batch / service, stage_s=t_pre,
                         transfer_s=net.boundary_s_per_item * prefill,
                         allreduce_s=net.allreduce_s, busy_s=busy, tx_s=tx, rx_s=rx,
                         energy_per_device_j=per_dev, energy_j=energy,
                         memory_bytes=_memory(t, st, prefill, kv), slack=slack,
                         ttft_s=ttft, tpot_s=tpot)


def _training(
    t: JobTables, b: PlanBatch, st: _Stages, net: FlowCosts, items: FloatArray
) -> Metrics:
    assert t.job.training is not None
    work = t.job.training
    m = b.micro_batches
    f_stage, f_busy = st.stage_times(items)
    b_stage, b_busy = st.stage_times(items, backward=True)
    x_one = net.boundary_s_per_item * items[:, None]  # one direction, one micro-batch
    cycle = (f_stage + b_stage).max(axis=1)
    bottleneck = np.maximum(np.maximum(cycle, 2.0 * x_one.max(axis=1)),
                            2.0 * net.capacity_s_per_item * items)
    # 1F1B's in-flight limit: stage k's K - k slots carry one round trip through the stages
    # after it (formulas.round_trip_period_s)
    trip = np.where(st.active, f_stage + b_stage + 2.0 * x_one, 0.0)[:, ::-1].cumsum(axis=1)
    slots = st.active[:, ::-1].cumsum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_slot = np.where(st.active[:, ::-1], trip / np.maximum(slots, 1), 0.0)
    bottleneck = np.maximum(bottleneck, per_slot.max(axis=1))
    fill = (f_stage + b_stage).sum(axis=1) + 2.0 * x_one.sum(axis=1)
    # Stage k finishes its last backward earlier than stage 0 by the backward work below it.
    head_start = np.zeros_like(b_stage)
    head_start[:, 1:] = np.cumsum(b_stage + x_one, axis=1)[:, :-1]
    with np.errstate(invalid="ignore"):
        tail = np.where(st.active, np.fmax(net.allreduce_s - head_start, 0.0), 0.0).max(axis=1)
    iteration = one_f_one_b_iteration_s(fill, bottleneck, m, tail)
    busy = m[:, None] * (f_busy + b_busy)
    tx = 2.0 * m[:, None] * net.tx_s_per_item * items[:, None] + net.allreduce_tx_s
    rx = 2.0 * m[:, None] * net.rx_s_per_item * items[:, None] + net.allreduce_tx_s
    per_dev, energy = _energy(t, st, iteration, busy, tx, rx)
    slack: dict[str, FloatArray] = {}
    if t.job.qoe.iteration_ms is not None:
        slack["iteration_ms"] = relative_slack(t.job.qoe.iteration_ms, iteration * 1e3)
    if t.job.qoe.deadline_s is not None and work.iterations is not None:
        slack["deadline_s"] = relative_slack(t.job.qoe.deadline_s, iteration * work.iterations)
    if work.method == "full":
        state_bytes = st.params + np.where(st.used, t.optimizer_prefix_bytes[st.last]
                                           - t.optimizer_prefix_bytes[st.first], 0.0)
    else:
        state_bytes = 4.0 * np.where(st.used, t.lora_prefix_bytes[st.last]
                                     - t.lora_prefix_bytes[st.first], 0.0)
    in_flight = np.minimum(m[:, None], (b.n_stages[:, None] - st.ds).astype(np.float64))
    saved = np.where(st.used, t.saved_prefix_bytes[st.last] - t.saved_prefix_bytes[st.first], 0.0)
    stash = in_flight * items[:, None] * st.frac * saved
    return Metrics.build(t, st.used, latency_s=iteration, period_s=bottleneck,
                         interval_s=iteration,
                         throughput_per_s=work.global_batch / iteration, stage_s=f_stage + b_stage,
                         transfer_s=2.0 * x_one, allreduce_s=net.allreduce_s, busy_s=busy, tx_s=tx,
                         rx_s=rx, energy_per_device_j=per_dev, energy_j=energy,
                         memory_bytes=_memory(t, st, items[:, None], state_bytes + stash),
                         slack=slack, iteration_s=iteration)
