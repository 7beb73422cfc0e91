"""A run's figures: latency percentiles, QoE attainment, energy, re-plans, recovery times."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dora_rl.costmodel.formulas import device_energy_j
from dora_rl.costmodel.tables import JobTables

if TYPE_CHECKING:
    from dora_rl.runtime.runner import Runtime


@dataclass(frozen=True)
class Record:
    """One completed micro-batch.

    Attributes:
        index: Request index; sent_t, done_t: monotonic wall times (s).
        plan_id: Plan it completed on; attempt: re-executions before it completed.
        latency_ms: Latency in the card's world (wall time / time scale).
    """

    index: int
    sent_t: float
    done_t: float
    plan_id: int
    attempt: int
    latency_ms: float


def percentiles(values: list[float]) -> dict[str, float | None]:
    """``mean``, ``p50``, ``p95``, ``p99`` (``None`` when empty).

    Example:
        >>> percentiles([1.0, 3.0])["mean"]
        2.0
    """
    if not values:
        return {"mean": None, "p50": None, "p95": None, "p99": None}
    arr = np.asarray(values)
    return {"mean": float(arr.mean()), "p50": float(np.percentile(arr, 50)),
            "p95": float(np.percentile(arr, 95)), "p99": float(np.percentile(arr, 99))}


def interval_energy_j(tables: JobTables, busy_s: Sequence[float], tx_s: Sequence[float],
                      rx_s: Sequence[float], span_s: float) -> float:
    """Energy of every device over ``span_s`` seconds with the given busy, transmit and
    receive seconds each (the rest idle), by the cost model's
    :func:`~dora_rl.costmodel.formulas.device_energy_j`. As there, a device that computes
    while its radio sends draws both powers above idle: the idle time may come out negative,
    which keeps the energy of consecutive intervals adding up to the whole run's.

    Example:
        >>> from dora_rl.costmodel import CostModel
        >>> from dora_rl.scenarios import load
        >>> t = CostModel(load("tiny"), 0).tables
        >>> idle = interval_energy_j(t, [0, 0, 0], [0, 0, 0], [0, 0, 0], 1.0)
        >>> round(idle, 6) == round(sum(t.lists.idle_w), 6)
        True
    """
    lists = tables.lists
    return sum(device_energy_j(span_s, busy, tx, rx, lists.idle_w[d], lists.busy_w[d][0],
                               lists.tx_w[d], lists.rx_w[d])
               for d, (busy, tx, rx) in enumerate(zip(busy_s, tx_s, rx_s, strict=True)))


def energy_j(rt: Runtime, wall_s: float) -> float:
    """Energy in the card's world from the power model over measured busy, transmit, receive
    and idle time of every device (a lost device counts until the end of the run)."""
    u, scale = rt.usage, rt.time_scale
    return interval_energy_j(rt.model.tables, [b / scale for b in u.busy_s],
                             [t / scale for t in u.tx_s], [r / scale for r in u.rx_s],
                             wall_s / scale)


def summarise(rt: Runtime, wall_s: float) -> dict[str, Any]:
    """The result of a run (see ``python -m dora_rl.serve``)."""
    records = sorted(rt.records, key=lambda r: r.index)
    latencies = [r.latency_ms for r in records]
    slo = rt.slo_ms
    live = rt.live
    predicted, measured = [], []
    for pid, plan in enumerate(live.plans):
        mine = [r.latency_ms for r in records if r.plan_id == pid and r.attempt == 0]
        predicted.append(rt.model.evaluate(plan, check=False)["latency_s"] * 1e3)
        measured.append(float(np.median(mine)) if mine else None)
    faults = []
    for f in live.faults:
        after = f.get("plan_after")
        first = min((r.done_t for r in records
                     if after is not None and r.plan_id >= after and r.done_t > f["t_kill"]),
                    default=math.nan)
        faults.append({"device": f["device"], "kind": f.get("kind", "killed"),
                       "detect_s": f.get("t_detect", math.nan) - f["t_kill"],
                       "recovery_s": first - f["t_kill"]})
    span = (records[-1].done_t - records[0].sent_t) if len(records) > 1 else math.nan
    decisions = live.decisions_ms
    energy = energy_j(rt, wall_s)
    return {
        "scenario": rt.cfg.scenario.name, "job": rt.cfg.scenario.jobs[rt.cfg.job].name,
        "sent": rt.sent, "completed": len(records), "lost": rt.sent - len(records),
        "re_executed": sum(1 for r in records if r.attempt > 0),
        "latency_ms": percentiles(latencies),
        "qoe_attainment": (sum(1 for v in latencies if v <= slo) / len(latencies)
                           if slo and latencies else None),
        "energy_j": energy,
        "energy_j_per_request": energy / max(len(records), 1),
        "replans": len(live.plans) - 1,
        "decision_ms_p50": float(np.median(decisions)) if decisions else None,
        "plans": [{"stage_end": list(p.stage_end),
                   "stage_devices": [[rt.names[d] for d in g] for g in p.stage_devices]}
                  for p in live.plans],
        "predicted_latency_ms": predicted, "measured_latency_ms": measured,
        "faults": faults, "recovery_s": [f["recovery_s"] for f in faults],
        "presence": [{"device": e["device"], "event": e["event"],
                      "t_s": e["t"] - rt.start_t} for e in rt.presence],
        "throughput_per_s": (len(records) - 1) / span * rt.time_scale
        if span == span and span > 0 else None,
        "transfer_mb": rt.usage.bytes_moved / 1e6, "migrated_mb": live.migrated_bytes / 1e6,
        "migrated_peer_mb": live.migrated_peer_bytes / 1e6,
        "time_scale": rt.time_scale, "wall_s": wall_s,
        "slo_ms": slo,
        "nominal_mbps": [rate * 8 / 1e6 for rate in rt.model.tables.lists.link],
        "intervals": [tel.to_dict() for tel in rt.telemetry.intervals],
        "timeline": timeline(rt, records),
    }


def timeline(rt: Runtime, records: list[Record]) -> dict[str, Any]:
    """Wall-clock events relative to the first request: completions, switches, faults."""
    t0 = records[0].sent_t if records else 0.0
    return {"done_s": [r.done_t - t0 for r in records],
            "latency_ms": [r.latency_ms for r in records],
            "plan_id": [r.plan_id for r in records],
            "switch_s": [t - t0 for t, _ in rt.live.switches[1:]],
            "fault_s": [f["t_kill"] - t0 for f in rt.live.faults if f.get("kind") != "left"],
            "presence_s": [e["t"] - t0 for e in rt.presence],
            "presence_event": [f"{e['device']} {e['event']}" for e in rt.presence],
            "link_s": [t - t0 for t, _ in rt.link_log],
            "interval_s": [rt.start_t + tel.t_s - t0 for tel in rt.telemetry.intervals],
            "link_scale_mean": [v for _, v in rt.link_log]}
