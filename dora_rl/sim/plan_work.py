"""Compile a plan into the simulator's units of work, from the cost model's tables.

For every stage: the devices of its data-parallel group, each device's share of a micro-batch
(in proportion to its planned speed, as the cost model splits it), seconds per item forward and
backward at the plan's DVFS level, seconds to stream the stage's weights, and KV-cache bytes per
token. For every stage boundary (and every data-parallel group's gradient all-reduce): the bytes
each device puts on each medium per item, so the network can price them at the current link
rates. Nothing here depends on the run-time state; the simulator applies load and link rates
as they change.

Example:
    >>> from dora_rl.costmodel import CostModel, Plan
    >>> from dora_rl.scenarios import load
    >>> model = CostModel(load("tiny"))
    >>> work = compile_plan(model.tables, Plan(stage_end=(4, 8), stage_devices=((1,), (2,))))
    >>> [s.devices for s in work.stages], round(work.stages[0].item_s[0] * 1e3, 3)
    ([(1,), (2,)], 10.4)
    >>> work.boundaries[0].wifi   # pool's 1e5 bytes up from device 1, down to device 2
    ((0, ((1, 100000.0), (2, 100000.0))),)
"""

from __future__ import annotations

from dataclasses import dataclass

from dora_rl.costmodel import JobTables, Plan
from dora_rl.costmodel.formulas import MIN_ITEM_S, ring_allreduce_bytes_per_device

TX, RX = 0, 1
"""Directions of a wired device's full-duplex link."""


@dataclass(frozen=True)
class StageWork:
    """One stage of a compiled plan (tuples follow ``devices``).

    Attributes:
        devices: The data-parallel group.
        frac: Share of each micro-batch each device processes.
        item_s: Forward seconds per item at the plan's DVFS speed, no background load.
        item_b_s: Backward seconds per item (training).
        weight_read_s: Seconds to stream the stage's weights from memory once.
        kv_bytes_per_token: KV-cache bytes per token of context held for the stage's layers.
        memory_bw: Memory bandwidth in bytes/s (inf where unknown).
        extra_w: Busy power above idle at the plan's DVFS level.
        sync_bytes: Bytes of gradients (full) or adapters (LoRA) the stage all-reduces.
        own_s: Forward seconds per item of the micro-batch on each device (its share).
        own_b_s: Backward seconds per item of the micro-batch on each device.
        kv_s: Seconds per item and context token to read the KV cache on each device.
    """

    devices: tuple[int, ...]
    frac: tuple[float, ...]
    item_s: tuple[float, ...]
    item_b_s: tuple[float, ...]
    weight_read_s: tuple[float, ...]
    kv_bytes_per_token: tuple[float, ...]
    memory_bw: tuple[float, ...]
    extra_w: tuple[float, ...]
    sync_bytes: float

    own_s: tuple[float, ...]
    own_b_s: tuple[float, ...]
    kv_s: tuple[float, ...]


@dataclass(frozen=True)
class FlowWork:
    """Bytes one flow puts on the network per item (boundaries) or per iteration (all-reduce).

    Attributes:
        wifi: ``(domain, ((device, bytes), ...))``: airtime on the domain is
            ``sum(bytes / rate(device))`` (senders' and receivers' bytes alike).
        pipes: ``(device, direction, bytes)`` on a wired device's link (TX or RX).
        backbone_bytes: Bytes crossing the link between domains.
        share: The plan's airtime share for this flow, or None for equal sharing.
        radio: ``(device, tx_bytes, rx_bytes)`` for the radio-time accounts.
    """

    wifi: tuple[tuple[int, tuple[tuple[int, float], ...]], ...]
    pipes: tuple[tuple[int, int, float], ...]
    backbone_bytes: float
    share: float | None
    radio: tuple[tuple[int, float, float], ...]

    @property
    def empty(self) -> bool:
        """Whether nothing crosses the network."""
        return not self.wifi and not self.pipes and self.backbone_bytes <= 0.0


@dataclass(frozen=True)
class CompiledPlan:
    """A plan as the simulator runs it.

    Attributes:
        plan: The plan.
        stages: One entry per stage.
        boundaries: Flow from stage k to k + 1, per item crossing it.
        allreduce: Each stage's gradient all-reduce per iteration (None for a single device).
        equal_share: Share of a flow without a planned share: 1 / the job's flows on a medium.
    """

    plan: Plan
    stages: tuple[StageWork, ...]
    boundaries: tuple[FlowWork, ...]
    allreduce: tuple[FlowWork | None, ...]
    equal_share: float


def _stage(t: JobTables, plan: Plan, k: int, sync_full: bool) -> StageWork:
    lt = t.lists
    a, b = plan.stage_layers(k)
    levels = plan.dvfs_levels or (0,) * t.n_devices
    group = plan.stage_devices[k]
    speed = [lt.speed[d][levels[d]] for d in group]
    item = [max((lt.fwd[d][b] - lt.fwd[d][a]) / s, MIN_ITEM_S) for d, s in zip(group, speed,
                                                                               strict=True)]
    rate = sum(1.0 / x for x in item)
    frac = [(1.0 / x) / rate for x in item]
    item_b = [max((lt.bwd[d][b] - lt.bwd[d][a]) / s, MIN_ITEM_S)
              for d, s in zip(group, speed, strict=True)]
    kv = [lt.kv[b] - lt.kv[a] for _ in group]
    sync = (lt.params[b] - lt.params[a]) if sync_full else (lt.lora[b] - lt.lora[a])
    return StageWork(
        devices=tuple(group),
        frac=tuple(frac),
        item_s=tuple(item),
        item_b_s=tuple(item_b),
        weight_read_s=tuple(lt.wread[d][b] - lt.wread[d][a] for d in group),
        kv_bytes_per_token=tuple(kv),
        memory_bw=tuple(lt.mem_bw[d] for d in group),
        extra_w=tuple(lt.busy_w[d][levels[d]] - lt.idle_w[d] for d in group),
        sync_bytes=sync,
        own_s=tuple(f * x for f, x in zip(frac, item, strict=True)),
        own_b_s=tuple(f * x for f, x in zip(frac, item_b, strict=True)),
        kv_s=tuple(k * f / lt.mem_bw[d] for k, f, d in zip(kv, frac, group, strict=True)),
    )


def _boundary(t: JobTables, plan: Plan, stages: tuple[StageWork, ...], k: int) -> FlowWork:
    lt = t.lists
    nbytes = lt.act[plan.stage_end[k] - 1]
    wifi: dict[int, list[tuple[int, float]]] = {}
    pipes: list[tuple[int, int, float]] = []
    radio: dict[int, list[float]] = {}
    dom_send = [0.0] * len(lt.wifi)
    dom_recv = [0.0] * len(lt.wifi)
    for side, direction, dom_frac in ((stages[k], TX, dom_send), (stages[k + 1], RX, dom_recv)):
        for d, frac in zip(side.devices, side.frac, strict=True):
            share_bytes = frac * nbytes
            w = lt.domain[d]
            dom_frac[w] += frac
            radio.setdefault(d, [0.0, 0.0])[direction] += share_bytes
            if lt.wifi[w]:
                wifi.setdefault(w, []).append((d, share_bytes))
            else:
                pipes.append((d, direction, share_bytes))
    crossing = min(max(1.0 - sum(f * g for f, g in zip(dom_send, dom_recv, strict=True)),
                       0.0), 1.0)
    share = plan.boundary_shares[k] if plan.boundary_shares else None
    return FlowWork(wifi=tuple((w, tuple(v)) for w, v in sorted(wifi.items())),
                    pipes=tuple(pipes), backbone_bytes=crossing * nbytes, share=share,
                    radio=tuple((d, tx, rx) for d, (tx, rx) in sorted(radio.items())))


def _allreduce(t: JobTables, plan: Plan, stage: StageWork, k: int) -> FlowWork | None:
    n = len(stage.devices)
    per_dev = ring_allreduce_bytes_per_device(float(n), stage.sync_bytes)
    if n < 2 or per_dev <= 0.0:
        return None
    lt = t.lists
    wifi: dict[int, list[tuple[int, float]]] = {}
    pipes: list[tuple[int, int, float]] = []
    for d in stage.devices:
        w = lt.domain[d]
        if lt.wifi[w]:  # every byte sent and every byte received crosses the medium
            wifi.setdefault(w, []).append((d, 2.0 * per_dev))
        else:
            pipes += [(d, TX, per_dev), (d, RX, per_dev)]
    n_domains = len({lt.domain[d] for d in stage.devices})
    share = plan.allreduce_shares[k] if plan.allreduce_shares else None
    return FlowWork(wifi=tuple((w, tuple(v)) for w, v in sorted(wifi.items())),
                    pipes=tuple(pipes),
                    backbone_bytes=n_domains * per_dev if n_domains > 1 else 0.0, share=share,
                    radio=tuple((d, per_dev, per_dev) for d in stage.devices))


def compile_plan(t: JobTables, plan: Plan) -> CompiledPlan:
    """The simulator's view of ``plan`` (checked beforehand) for the job of ``t``."""
    full = t.job.training is None or t.job.training.method == "full"
    stages = tuple(_stage(t, plan, k, full) for k in range(plan.n_stages))
    boundaries = tuple(_boundary(t, plan, stages, k) for k in range(plan.n_stages - 1))
    training = t.job.training is not None
    allreduce = tuple(_allreduce(t, plan, s, k) if training else None
                      for k, s in enumerate(stages))
    n_flows = [0] * len(t.lists.wifi)
    for flow in (*boundaries, *(a for a in allreduce if a is not None)):
        for w, _ in flow.wifi:
            n_flows[w] += 1
    return CompiledPlan(plan=plan, stages=stages, boundaries=boundaries, allreduce=allreduce,
                        equal_share=1.0 / max(max(n_flows, default=1), 1))
