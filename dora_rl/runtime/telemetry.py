"""What the live runtime measured in each control interval.

Every control step closes an interval: :class:`TelemetryLog` takes the difference of the
cumulative :class:`~dora_rl.runtime.usage.Usage` figures since the last step, the requests
completed meanwhile and the emulated links' state, and produces one :class:`IntervalTelemetry`
(the status file shows the latest, the result lists them all, TensorBoard plots them live).
Durations are in the card's world (wall time divided by the time scale), like the latencies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from dora_rl.costmodel.tables import JobTables
from dora_rl.runtime.report import Record, interval_energy_j
from dora_rl.runtime.usage import Usage


@dataclass(frozen=True)
class IntervalTelemetry:
    """One control interval of a live run (times in the card's world).

    Attributes:
        index: Interval number (0 = the first control step); t_s: its end, wall seconds
            from the start of the run; duration_s: its length in the card's world.
        plan_id: Plan in force at its end; in_flight: requests sent and not completed then.
        completed: Requests completed in it; latency_ms_mean, latency_ms_p95: theirs
            (``None`` if none); qoe_violation_rate: share of them over the SLO.
        calls: Stage calls completed per device; compute_ms: mean emulated compute time of
            those calls per device (``None`` without calls).
        queue_depth: Stage calls outstanding per device at the end; queue_depth_max: the most
            at any moment of the interval.
        transfer_mb, transfer_ms: Activation megabytes moved and their airtime in all.
        link_scale: Link-rate multiplier per device reported by the (emulated) link layer.
        measured_mbps: Goodput per device over the interval's transfers, medium waits
            included (``None`` for a device that moved nothing).
        energy_j: Energy of all devices over the interval from the power model (busy,
            transmit, receive and idle time).
    """

    index: int
    t_s: float
    duration_s: float
    plan_id: int
    in_flight: int
    completed: int
    latency_ms_mean: float | None
    latency_ms_p95: float | None
    qoe_violation_rate: float | None
    calls: list[int]
    compute_ms: list[float | None]
    queue_depth: list[int]
    queue_depth_max: list[int]
    transfer_mb: float
    transfer_ms: float
    link_scale: list[float]
    measured_mbps: list[float | None]
    energy_j: float

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return asdict(self)


class TelemetryLog:
    """Turns cumulative usage into per-interval telemetry.

    Args:
        tables: The job's cost tables (power model, nominal link rates).
        time_scale: Wall seconds per card second.
        slo_ms: The job's latency target (``None`` if it has none).
        start_t: Monotonic wall time the run started at.
    """

    def __init__(self, tables: JobTables, time_scale: float, slo_ms: float | None,
                 start_t: float) -> None:
        self.tables, self.time_scale, self.slo_ms = tables, time_scale, slo_ms
        self.start_t = start_t
        self.last_t = start_t
        self.last = Usage(len(tables.lists.link))
        self.records_seen = 0
        self.intervals: list[IntervalTelemetry] = []

    def close(self, now_t: float, usage: Usage, records: Sequence[Record], plan_id: int,
              sent: int, link_scale: Sequence[float]) -> IntervalTelemetry:
        """Close the interval ending at ``now_t`` (``usage``: a snapshot taken now;
        ``records``: every record so far, in completion order)."""
        scale, prev = self.time_scale, self.last
        span_s = max(now_t - self.last_t, 0.0) / scale
        fresh = [r.latency_ms for r in records[self.records_seen:]]
        n = len(usage.busy_s)
        busy = [(usage.busy_s[d] - prev.busy_s[d]) / scale for d in range(n)]
        tx = [(usage.tx_s[d] - prev.tx_s[d]) / scale for d in range(n)]
        rx = [(usage.rx_s[d] - prev.rx_s[d]) / scale for d in range(n)]
        calls = [usage.calls[d] - prev.calls[d] for d in range(n)]
        moved = [usage.link_bytes[d] - prev.link_bytes[d] for d in range(n)]
        wall = [(usage.link_wall_s[d] - prev.link_wall_s[d]) / scale for d in range(n)]
        tel = IntervalTelemetry(
            index=len(self.intervals), t_s=now_t - self.start_t, duration_s=span_s,
            plan_id=plan_id, in_flight=sent - len(records), completed=len(fresh),
            latency_ms_mean=float(np.mean(fresh)) if fresh else None,
            latency_ms_p95=float(np.percentile(fresh, 95)) if fresh else None,
            qoe_violation_rate=(sum(1 for v in fresh if v > self.slo_ms) / len(fresh)
                                if fresh and self.slo_ms else None),
            calls=calls,
            compute_ms=[b / c * 1e3 if c else None for b, c in zip(busy, calls, strict=True)],
            queue_depth=list(usage.queued), queue_depth_max=list(usage.queued_max),
            transfer_mb=(usage.bytes_moved - prev.bytes_moved) / 1e6,
            transfer_ms=(usage.transfer_s - prev.transfer_s) / scale * 1e3,
            link_scale=[float(v) for v in link_scale],
            measured_mbps=[b * 8 / w / 1e6 if b > 0 and w > 0 else None
                           for b, w in zip(moved, wall, strict=True)],
            energy_j=interval_energy_j(self.tables, busy, tx, rx, span_s))
        self.last, self.last_t, self.records_seen = usage, now_t, len(records)
        self.intervals.append(tel)
        return tel
