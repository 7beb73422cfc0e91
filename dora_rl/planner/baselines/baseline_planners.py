"""The planners Dora is compared with: throughput-optimal, even, memory-proportional, single.

Each baseline is ``(model, state=None) -> Plan`` with one device per stage and only devices
that can run the job (``tables.can_run``) and are usable in the state (present, battery left).
Like the tools they stand for, they check memory against the layers' weights (``param_bytes``)
only; the cost model's full memory verdict (activations, KV cache, optimizer state) is left to
the evaluation of their plans. Each raises :class:`~dora_rl.errors.InfeasibleError`, in words,
when no plan of its kind fits.

The bottleneck formula shared by :func:`throughput` and :func:`plan_bottleneck_s` (nominal speed
and link rates; no load, airtime sharing, relay or DVFS):

* items per micro-batch: ``batch * tokens_per_sample`` (inference), ``batch * prompt_tokens``
  (LLM prefill), ``global_batch / micro_batches * tokens_per_sample`` (training);
* stage compute: ``items * per-item forward time`` of its layers on its device
  (``tables.fwd_prefix_s``), plus the backward time in training;
* transfer to the next stage: ``activation_bytes[last layer] * items / min(link rate of both
  devices)``; doubled in training, where each micro-batch's gradient returns over the same
  boundary (as the cost model's 1F1B bottleneck counts it);
* bottleneck: the largest stage compute or transfer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dora_rl.costmodel import CostModel, JobTables, Plan, State
from dora_rl.errors import InfeasibleError
from dora_rl.planner.baselines.bottleneck import BottleneckProblem, solve_bottleneck, stage_costs

Baseline = Callable[[CostModel, State | None], Plan]


@dataclass(frozen=True)
class DeviceProblem:
    """The bottleneck problem of a job, with identical devices grouped into types.

    Attributes:
        problem: The :class:`BottleneckProblem` (types in order of their first device).
        members: Device indices (card order) of each type; a type's k-th host is its k-th.
        type_of: Device index -> type index, for the devices considered.
    """

    problem: BottleneckProblem
    members: tuple[tuple[int, ...], ...]
    type_of: dict[int, int]


def usable_devices(model: CostModel, state: State | None = None) -> list[int]:
    """Devices (card order) that can run the job and are usable in ``state``."""
    usable = (state or model.nominal).usable
    return [d for d in range(model.tables.n_devices) if model.tables.can_run[d] and usable[d]]


def items_per_micro_batch(tables: JobTables) -> float:
    """Items (samples or tokens) one stage processes per micro-batch (see module doc)."""
    job = tables.job
    if job.training is not None:
        return job.training.global_batch / job.training.micro_batches * tables.tokens_per_sample
    if job.llm is not None:
        return float(job.llm.prompt_tokens * job.llm.batch)
    assert job.inference is not None
    return float(job.inference.batch * tables.tokens_per_sample)


def _plan(tables: JobTables, ends: list[int], devices: list[int]) -> Plan:
    training = tables.job.training
    return Plan(stage_end=tuple(ends), stage_devices=tuple((d,) for d in devices),
                micro_batches=training.micro_batches if training is not None else 1)


def device_problem(model: CostModel, state: State | None = None) -> DeviceProblem:
    """The bottleneck problem of the usable devices (see the module docstring).

    Raises:
        InfeasibleError: if no device can run the job.
    """
    t = model.tables
    devices = usable_devices(model, state)
    if not devices:
        raise InfeasibleError(f"no usable device can run job {t.job.name!r}")
    keys: dict[bytes, int] = {}
    members: list[list[int]] = []
    for d in devices:
        key = b"".join(np.asarray(v).tobytes() for v in (
            t.fwd_prefix_s[d], t.bwd_prefix_s[d], t.memory_bytes[d], t.link_bytes_per_s[d]))
        if key not in keys:
            keys[key] = len(members)
            members.append([])
        members[keys[key]].append(d)
    first = [m[0] for m in members]
    items = items_per_micro_batch(t)
    training = t.job.training is not None
    times = np.diff(t.fwd_prefix_s[first], axis=1)
    if training:
        times = times + np.diff(t.bwd_prefix_s[first], axis=1)
    link = t.link_bytes_per_s[first]
    rate = np.minimum(link[:, None], link[None, :])
    sent = t.activation_bytes * items * (2.0 if training else 1.0)
    with np.errstate(divide="ignore"):
        transfer = sent[:, None, None] / rate[None, :, :]
    names = [t.scenario.devices[d].name for d in devices]
    problem = BottleneckProblem(
        layer_time_s=times * items, counts=tuple(len(m) for m in members),
        memory_bytes=t.memory_bytes[first], layer_memory_bytes=np.diff(t.param_prefix_bytes),
        transfer_s=transfer,
        type_names=tuple("/".join(names[devices.index(d)] for d in m) for m in members),
        layer_names=tuple(layer.name for layer in t.model.layers))
    type_of = {d: k for k, m in enumerate(members) for d in m}
    return DeviceProblem(problem, tuple(tuple(m) for m in members), type_of)


def plan_bottleneck_s(model: CostModel, plan: Plan, state: State | None = None) -> float:
    """Bottleneck of a one-device-per-stage plan under the baselines' formula.

    Raises:
        ValueError: if a stage has more than one device or an unusable one.
    """
    dp = device_problem(model, state)
    spans = []
    for k, group in enumerate(plan.stage_devices):
        if len(group) != 1 or group[0] not in dp.type_of:
            raise ValueError(f"stage {k} must have one usable device, got {group}")
        spans.append((*plan.stage_layers(k), dp.type_of[group[0]]))
    compute, transfer = stage_costs(dp.problem, spans)
    return max(max(compute), max(transfer))


def throughput(model: CostModel, state: State | None = None) -> Plan:
    """Throughput-optimal plan (PipeEdge, Asteroid, Alpa-style): least bottleneck, exactly."""
    dp = device_problem(model, state)
    sol = solve_bottleneck(dp.problem)
    return _plan(model.tables, [s.end_layer for s in sol.stages],
                 [dp.members[s.device_type][s.host] for s in sol.stages])


def _check_weights(model: CostModel, plan: Plan, kind: str) -> Plan:
    t = model.tables
    for k, group in enumerate(plan.stage_devices):
        a, b = plan.stage_layers(k)
        need, d = t.param_prefix_bytes[b] - t.param_prefix_bytes[a], group[0]
        if need > t.memory_bytes[d]:
            layers = t.model.layers
            span = (f"layer {layers[a].name} needs" if b == a + 1
                    else f"layers {layers[a].name}-{layers[b - 1].name} need")
            raise InfeasibleError(
                f"{kind} split: {span} {need / 1e9:.4g} GB of weights; device "
                f"{t.scenario.devices[d].name!r} holds {t.memory_bytes[d] / 1e9:.4g} GB")
    return plan


def even(model: CostModel, state: State | None = None) -> Plan:
    """Equal layer counts over the usable devices in card order (one device per stage).

    ``K = min(#devices, L)`` stages on the first K devices; the first ``L mod K`` stages get
    one layer more.
    """
    devices = usable_devices(model, state)
    n_l = model.tables.n_layers
    if not devices:
        raise InfeasibleError(f"no usable device can run job {model.tables.job.name!r}")
    k = min(len(devices), n_l)
    sizes = [n_l // k + (1 if i < n_l % k else 0) for i in range(k)]
    return _check_weights(model, _plan(model.tables, np.cumsum(sizes).tolist(), devices[:k]),
                          "even")


def memory_counts(memory: list[float], n_layers: int) -> list[int]:
    """Layer counts proportional to ``memory`` (already in stage order), each >= 1.

    Largest-remainder rounding of ``n_layers * m / sum(m)``; a device left with none takes one
    layer from the device with the most (the later one on ties). Needs
    ``len(memory) <= n_layers``.

    Example:
        >>> memory_counts([4.0, 2.0, 1.0], 8)
        [5, 2, 1]
    """
    quota = [n_layers * m / sum(memory) for m in memory]
    counts = [int(np.floor(q)) for q in quota]
    order = sorted(range(len(memory)), key=lambda i: (-(quota[i] - counts[i]), i))
    for i in order[: n_layers - sum(counts)]:
        counts[i] += 1
    for i in range(len(counts)):
        if counts[i] == 0:
            donor = max(range(len(counts)), key=lambda j: (counts[j], j))
            counts[donor] -= 1
            counts[i] = 1
    return counts


def memory(model: CostModel, state: State | None = None) -> Plan:
    """Layers proportional to device memory, the way exo partitions a model.

    Follows exo's ``RingMemoryWeightedPartitioningStrategy``: devices sorted by memory,
    largest first (ties in card order here; exo breaks them by node id), each given a
    contiguous share of the layers proportional to its memory. exo rounds the cumulative
    fractions down (and can leave a device without layers); here the counts use
    largest-remainder rounding and every device gets at least one layer while layers remain
    (with more devices than layers, the L largest get one each).
    """
    t = model.tables
    devices = sorted(usable_devices(model, state), key=lambda d: (-t.memory_bytes[d], d))
    if not devices:
        raise InfeasibleError(f"no usable device can run job {t.job.name!r}")
    devices = devices[: t.n_layers]
    counts = memory_counts([float(t.memory_bytes[d]) for d in devices], t.n_layers)
    return _check_weights(model, _plan(t, np.cumsum(counts).tolist(), devices), "memory")


def single(model: CostModel, state: State | None = None) -> Plan:
    """The best single device.

    The least energy (cost model ``energy_j``) among single-device plans that the cost model
    finds feasible (QoE met, memory fits); else the least latency among those whose memory
    fits; else the least latency among those whose weights fit.
    """
    t = model.tables
    plans = [_plan(t, [t.n_layers], [d]) for d in usable_devices(model, state)]
    if not plans:
        raise InfeasibleError(f"no usable device can run job {t.job.name!r}")
    rows = [model.evaluate(p, state) for p in plans]
    tiers = ([(r["energy_j"], i) for i, r in enumerate(rows) if r["feasible"]],
             [(r["latency_s"], i) for i, r in enumerate(rows) if r["memory_ok"]],
             [(r["latency_s"], i) for i, (r, p) in enumerate(zip(rows, plans, strict=True))
              if t.param_prefix_bytes[-1] <= t.memory_bytes[p.stage_devices[0][0]]])
    for tier in tiers:
        if tier:
            return plans[min(tier)[1]]
    largest = max(t.memory_bytes[p.stage_devices[0][0]] for p in plans)
    raise InfeasibleError(f"single device: the weights of job {t.job.name!r} need "
                          f"{t.param_prefix_bytes[-1] / 1e9:.4g} GB; the largest usable device "
                          f"holds {largest / 1e9:.4g} GB")


BASELINES: dict[str, Baseline] = {"throughput": throughput, "even": even, "memory": memory,
                                  "single": single}
"""Name -> baseline planner."""
