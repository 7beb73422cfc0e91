"""Turn a scenario and one of its jobs into NumPy cost tables, computed once.

Everything the evaluator needs per (device, layer) is a prefix sum over layers, so the cost of a
contiguous stage on a device is one subtraction, whatever the stage length.

Weight formats (:mod:`dora_rl.config.formats`): a layer's weight bytes are its weight count times
the bytes per weight of the model's ``weight_format``; they size memory, the weights a plan
switch moves and the per-item weight reads from DRAM. Compute times are divided by the device's
``format_speed`` factor of that format (measured times by the ratio to the measured format's
factor). Activations, saved activations, LoRA adapters and the KV cache stay at the model's
``dtype_bytes``. Full training in fp16/bf16 is mixed precision: the optimizer also holds an FP32
master copy of the weights (4 bytes per weight) beside its moments.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dora_rl.config import Job, Model, Scenario, layer_defaults
from dora_rl.config.formats import compute_factor, measured_time_factor, weight_bytes
from dora_rl.costmodel.formulas import MBPS_TO_BYTES_PER_S

MIXED_PRECISION_FORMATS = frozenset({"fp16", "bf16"})
"""Formats whose full training keeps an FP32 master copy of the weights in the optimizer."""
MASTER_BYTES_PER_WEIGHT = 4.0

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class TableLists:
    """The tables of one job as nested Python lists (fast scalar indexing)."""

    fwd: list[list[float]]
    bwd: list[list[float]]
    wread: list[list[float]]
    params: list[float]
    saved: list[float]
    opt: list[float]
    lora: list[float]
    kv: list[float]
    act: list[float]
    act_max: list[list[float]]
    speed: list[list[float]]
    busy_w: list[list[float]]
    idle_w: list[float]
    tx_w: list[float]
    rx_w: list[float]
    mem: list[float]
    mem_bw: list[float]
    link: list[float]
    domain: list[int]
    wifi: list[bool]


@dataclass(frozen=True, eq=False)
class JobTables:
    """Cost tables of one job in one scenario (device order = card order).

    Attributes:
        fwd_prefix_s: [D, L+1] cumulative forward seconds per item at nominal speed, in the
            model's weight format.
        bwd_prefix_s: [D, L+1] the same for the backward pass.
        weight_read_prefix_s: [D, L+1] cumulative seconds to stream the layers' weights (in
            their format) from DRAM once (0 where the device has no memory bandwidth figure).
        param_prefix_bytes: [L+1] cumulative weight bytes in the model's weight format.
        saved_prefix_bytes, optimizer_prefix_bytes, lora_prefix_bytes,
        kv_prefix_bytes: [L+1] cumulative per-layer sizes (saved activations and KV per item).
        activation_bytes: [L] output activation bytes per item of each layer.
        activation_range_max: [L+1, L+1] largest activation (per item) of layers [i, j).
        can_run: [D] the device has a speed figure for this model and the job may use it.
        memory_bw_bytes_per_s: [D] DRAM bandwidth (inf where unknown, so reads cost nothing).
        dvfs_speed, dvfs_busy_w: [D, V] speed factor and busy power per DVFS level (level 0 is
            nominal; missing levels are NaN).
        idle_w, tx_w, rx_w, memory_bytes, link_bytes_per_s: [D] per-device figures.
        domain_of: [D] domain index of each device; wifi_domain: [W] is a WiFi medium.
        backbone_bytes_per_s: Rate of the link joining domains.
    """

    scenario: Scenario
    job_index: int
    job: Job
    model: Model
    fwd_prefix_s: FloatArray
    bwd_prefix_s: FloatArray
    weight_read_prefix_s: FloatArray
    param_prefix_bytes: FloatArray
    saved_prefix_bytes: FloatArray
    optimizer_prefix_bytes: FloatArray
    lora_prefix_bytes: FloatArray
    kv_prefix_bytes: FloatArray
    activation_bytes: FloatArray
    activation_range_max: FloatArray
    can_run: NDArray[np.bool_]
    memory_bw_bytes_per_s: FloatArray
    dvfs_speed: FloatArray
    dvfs_busy_w: FloatArray
    idle_w: FloatArray
    tx_w: FloatArray
    rx_w: FloatArray
    memory_bytes: FloatArray
    link_bytes_per_s: FloatArray
    domain_of: NDArray[np.int64]
    wifi_domain: NDArray[np.bool_]
    wifi_member: FloatArray
    wired_member: FloatArray
    domain_member: FloatArray
    backbone_bytes_per_s: float
    unused_power_off: bool

    @cached_property
    def memo(self) -> tuple[dict[Any, Any], dict[Any, Any]]:
        """Memo of the single-plan evaluator: results, and per-load compute state."""
        return {}, {}

    @cached_property
    def lists(self) -> TableLists:
        """The tables as nested Python lists, for the single-plan fast path."""
        return TableLists(
            fwd=self.fwd_prefix_s.tolist(),
            bwd=self.bwd_prefix_s.tolist(),
            wread=self.weight_read_prefix_s.tolist(),
            params=self.param_prefix_bytes.tolist(),
            saved=self.saved_prefix_bytes.tolist(),
            opt=self.optimizer_prefix_bytes.tolist(),
            lora=self.lora_prefix_bytes.tolist(),
            kv=self.kv_prefix_bytes.tolist(),
            act=self.activation_bytes.tolist(),
            act_max=self.activation_range_max.tolist(),
            speed=self.dvfs_speed.tolist(),
            busy_w=self.dvfs_busy_w.tolist(),
            idle_w=self.idle_w.tolist(),
            tx_w=self.tx_w.tolist(),
            rx_w=self.rx_w.tolist(),
            mem=self.memory_bytes.tolist(),
            mem_bw=self.memory_bw_bytes_per_s.tolist(),
            link=self.link_bytes_per_s.tolist(),
            domain=self.domain_of.tolist(),
            wifi=self.wifi_domain.tolist(),
        )

    @property
    def n_layers(self) -> int:
        """Number of layers L."""
        return int(self.activation_bytes.shape[0])

    @property
    def n_devices(self) -> int:
        """Number of devices D (all devices of the scenario)."""
        return int(self.idle_w.shape[0])

    @property
    def tokens_per_sample(self) -> int:
        """Items per sample: the sequence length for token models, else 1."""
        if self.model.unit == "token":
            return int(self.model.seq_len or 1)
        return 1


def _prefix(values: list[float]) -> FloatArray:
    out = np.zeros(len(values) + 1)
    np.cumsum(values, out=out[1:])
    return out


def _layer_weight_bytes(model: Model) -> list[float]:
    return [weight_bytes(layer.param_bytes, model.dtype_bytes, model.weight_format)
            for layer in model.layers]


def _optimizer_bytes(model: Model, defaults: list[tuple[float, float, float]]) -> list[float]:
    if model.weight_format not in MIXED_PRECISION_FORMATS:
        return [o for _, _, o in defaults]
    return [o + layer.param_bytes / model.dtype_bytes * MASTER_BYTES_PER_WEIGHT
            for (_, _, o), layer in zip(defaults, model.layers, strict=True)]


def _device_times(scenario: Scenario, model: Model) -> tuple[FloatArray, FloatArray, FloatArray]:
    n_dev, n_layers = len(scenario.devices), len(model.layers)
    fwd = np.full((n_dev, n_layers), np.inf)
    bwd = np.full((n_dev, n_layers), np.inf)
    wread = np.zeros((n_dev, n_layers))
    fmt = model.weight_format
    wbytes = _layer_weight_bytes(model)
    for d, dev in enumerate(scenario.devices):
        comp = dev.compute
        measured = scenario.measured.get((dev.name, model.name))
        if measured is not None:
            scale = measured_time_factor(comp.format_speed,
                                         scenario.measured_format.get((dev.name, model.name)), fmt)
        else:
            factor = compute_factor(comp.format_speed, fmt)
        for li, layer in enumerate(model.layers):
            bwd_flops = layer_defaults(layer)[0]
            if measured is not None:
                fwd[d, li] = measured[li] * scale
                ratio = bwd_flops / layer.forward_flops if layer.forward_flops > 0 else 2.0
                bwd[d, li] = fwd[d, li] * ratio
            elif comp.peak_flops is not None:
                eff = comp.efficiency.get(layer.kind, comp.default_efficiency)
                fwd[d, li] = layer.forward_flops / (comp.peak_flops * eff * factor)
                bwd[d, li] = bwd_flops / (comp.peak_flops * eff * factor)
            if comp.memory_bandwidth_gbps is not None and measured is None:
                wread[d, li] = wbytes[li] / (comp.memory_bandwidth_gbps * 1e9)
    return fwd, bwd, wread


def _range_max(values: FloatArray) -> FloatArray:
    n = values.shape[0]
    out = np.zeros((n + 1, n + 1))
    for i in range(n):
        out[i, i + 1 :] = np.maximum.accumulate(values[i:])
    return out


def build_tables(scenario: Scenario, job_index: int = 0) -> JobTables:
    """Build the cost tables of job ``job_index`` (card order) of ``scenario``.

    Example:
        >>> from dora_rl.scenarios import load
        >>> t = build_tables(load("tiny"))
        >>> t.n_layers, t.n_devices
        (8, 3)
    """
    job = scenario.jobs[job_index]
    model = scenario.models[job.model]
    fwd, bwd, wread = _device_times(scenario, model)
    defaults = [layer_defaults(layer) for layer in model.layers]
    devices = scenario.devices
    allowed = set(job.devices) if job.devices is not None else {d.name for d in devices}
    can_run = np.array([d.name in allowed for d in devices]) & np.isfinite(fwd).all(axis=1)

    n_levels = 1 + max(len(d.dvfs) for d in devices)
    speed = np.full((len(devices), n_levels), np.nan)
    busy = np.full((len(devices), n_levels), np.nan)
    for d, dev in enumerate(devices):
        speed[d, 0], busy[d, 0] = 1.0, dev.power.busy_w
        for v, level in enumerate(dev.dvfs, start=1):
            speed[d, v], busy[d, v] = level.speed, level.busy_w

    domains = [dom.name for dom in scenario.network.domains]
    domain_of = np.array([domains.index(d.network.domain) for d in devices], dtype=np.int64)
    wifi = np.array([dom.kind == "wifi" for dom in scenario.network.domains])
    member = np.zeros((len(devices), len(domains)))
    member[np.arange(len(devices)), domain_of] = 1.0
    mem_bw = np.array(
        [
            d.compute.memory_bandwidth_gbps * 1e9 if d.compute.memory_bandwidth_gbps else np.inf
            for d in devices
        ]
    )
    act = np.array([layer.activation_bytes for layer in model.layers], dtype=np.float64)
    return JobTables(
        scenario=scenario,
        job_index=job_index,
        job=job,
        model=model,
        fwd_prefix_s=np.concatenate([np.zeros((len(devices), 1)), np.cumsum(fwd, axis=1)], 1),
        bwd_prefix_s=np.concatenate([np.zeros((len(devices), 1)), np.cumsum(bwd, axis=1)], 1),
        weight_read_prefix_s=np.concatenate(
            [np.zeros((len(devices), 1)), np.cumsum(wread, axis=1)], 1
        ),
        param_prefix_bytes=_prefix(_layer_weight_bytes(model)),
        saved_prefix_bytes=_prefix([s for _, s, _ in defaults]),
        optimizer_prefix_bytes=_prefix(_optimizer_bytes(model, defaults)),
        lora_prefix_bytes=_prefix([layer.lora_param_bytes for layer in model.layers]),
        kv_prefix_bytes=_prefix([layer.kv_bytes_per_token for layer in model.layers]),
        activation_bytes=act,
        activation_range_max=_range_max(act),
        can_run=can_run,
        memory_bw_bytes_per_s=mem_bw,
        dvfs_speed=speed,
        dvfs_busy_w=busy,
        idle_w=np.array([d.power.idle_w for d in devices]),
        tx_w=np.array([d.power.tx_w for d in devices]),
        rx_w=np.array([d.power.rx_w for d in devices]),
        memory_bytes=np.array([float(d.memory_bytes) for d in devices]),
        link_bytes_per_s=np.array([d.network.link_mbps * MBPS_TO_BYTES_PER_S for d in devices]),
        domain_of=domain_of,
        wifi_domain=wifi,
        wifi_member=member * wifi[None, :],
        wired_member=(member * ~wifi[None, :]).sum(axis=1),
        domain_member=member,
        backbone_bytes_per_s=scenario.network.backbone_mbps * MBPS_TO_BYTES_PER_S,
        unused_power_off=scenario.objective.unused_devices == "off",
    )
