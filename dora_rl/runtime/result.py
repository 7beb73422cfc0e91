"""A run's figures: latency percentiles, per-request QoE, energy, re-plans, recovery times.

Energy is the sum of the control intervals' (:mod:`dora_rl.runtime.telemetry`), each the
interval model's :func:`~dora_rl.world.devices.interval_energy` per device: ``energy_j`` all
the devices drew, ``jobs_energy_j`` the part the job caused. Each request is scored against
its own latency target (the card's, times the QoE scale of the emulated world when it was
sent): ``request_violation_rate`` is the share of requests sent that missed it or were lost,
``qoe_attainment`` the share of requests sent that completed within it (a lost request counts
as missed), ``qoe_violation_rate`` the share of control intervals with a missed request (the
benchmark's vocabulary, :mod:`dora_rl.env.summary`). A fault's ``recovery_s`` is the outage it
caused: from the last request completed before the fault (its injection, else its detection)
to the first completed after it on a plan in force after it.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from dora_rl.runtime.runner import Runtime


@dataclass(frozen=True)
class Record:
    """One completed micro-batch.

    Attributes:
        index: Request index; sent_t, done_t: monotonic wall times (s).
        plan_id: Plan it completed on; attempt: re-executions before it completed.
        latency_ms: Latency in the card's world (wall time / time scale).
        target_ms: Its latency target (the card's, scaled as the world was when it was sent).
        started_t: Monotonic wall time the attempt that completed started (``None``: when
            it was sent).
    """

    index: int
    sent_t: float
    done_t: float
    plan_id: int
    attempt: int
    latency_ms: float
    target_ms: float = math.inf
    started_t: float | None = None

    @property
    def missed(self) -> bool:
        """The request took longer than its target."""
        return self.latency_ms > self.target_ms


def request_qoe(records: list[Record], sent: int) -> dict[str, Any]:
    """Requests sent, those that missed their target (lost ones included) and their share.

    Example:
        >>> r = [Record(0, 0, 0, 0, 0, 40.0, 50.0), Record(1, 0, 0, 0, 0, 60.0, 50.0)]
        >>> request_qoe(r, 4)
        {'requests': 4, 'requests_missed': 3, 'request_violation_rate': 0.75}
    """
    missed = sum(1 for r in records if r.missed) + sent - len(records)
    return {"requests": sent, "requests_missed": missed,
            "request_violation_rate": missed / sent if sent else None}


def outage_s(records: list[Record], fault_t: float, start_t: float) -> float:
    """From the last completion before ``fault_t`` (else ``start_t``) to the first completion
    of an attempt started after it (requests already past the fault's device do not end
    the outage); NaN if none.

    Example:
        >>> r = [Record(0, 0.0, 1.0, 0, 0, 1.0), Record(1, 1.5, 6.2, 0, 0, 1.0),
        ...      Record(2, 2.0, 7.5, 0, 1, 1.0, started_t=6.5)]
        >>> outage_s(r, 6.0, 0.0)
        6.5
    """
    before = max((r.done_t for r in records if r.done_t <= fault_t), default=start_t)
    after = min((r.done_t for r in records
                 if (r.started_t if r.started_t is not None else r.sent_t) > fault_t),
                default=math.nan)
    return after - before


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
    faults = [{"device": f["device"], "kind": f.get("kind", "killed"),
               "detect_s": f.get("t_detect", math.nan) - f["t_kill"],
               "recovery_s": outage_s(records, f["t_kill"], rt.start_t)}
              for f in live.faults]
    span = (records[-1].done_t - records[0].sent_t) if len(records) > 1 else math.nan
    decisions = live.decisions_ms
    intervals = rt.telemetry.intervals
    energy = sum(t.energy_j for t in intervals)
    job = rt.cfg.scenario.jobs[rt.cfg.job].name
    qoe = request_qoe(records, rt.sent)
    health = rt.health
    now = time.monotonic()
    return {
        "scenario": rt.cfg.scenario.name, "job": job,
        "sent": rt.sent, "completed": len(records), "lost": rt.sent - len(records),
        "lost_reasons": health.reasons(),
        "interrupted": (signal.Signals(rt.stop.signum).name if rt.stop.signum is not None
                        else None),
        "re_executed": sum(1 for r in records if r.attempt > 0),
        "latency_ms": percentiles(latencies),
        "qoe_attainment": (sum(1 for r in records if not r.missed) / rt.sent
                           if rt.sent else None),
        **qoe, "jobs": {job: qoe},
        "no_plan_s": health.no_plan_s(now),
        "no_plan": [{"t_s": p["t"] - rt.start_t,
                     "end_s": None if p["t_end"] is None else p["t_end"] - rt.start_t,
                     "reason": p["reason"]} for p in health.periods],
        "control_errors": health.error_count,
        "control_error_log": [{"t_s": e["t"] - rt.start_t, "where": e["where"],
                               "error": e["error"]} for e in health.errors],
        "join_refused": list(rt.cluster.refused),
        "qoe_violation_rate": (sum(1 for t in intervals if t.requests_missed) / len(intervals)
                               if intervals else None),
        "energy_j": energy, "jobs_energy_j": sum(t.jobs_energy_j for t in intervals),
        "energy_j_per_request": energy / max(len(records), 1),
        "replans": len(live.plans) - 1,
        "invalid_choices": getattr(rt.decider, "invalid", 0),
        "refused_modes": rt.control.power.refused,
        "modes": list(rt.control.power.modes), "level": rt.control.level,
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
        "intervals": [tel.to_dict() for tel in intervals],
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
