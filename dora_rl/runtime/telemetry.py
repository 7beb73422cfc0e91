"""What the live runtime measured in each control interval.

Every control step closes an interval: :class:`TelemetryLog` takes the difference of the
cumulative :class:`~dora_rl.runtime.usage.Usage` figures since the last step, the requests
completed meanwhile, the emulated links' state and the devices' power state, and produces one
:class:`IntervalTelemetry` (the status file shows the latest, the result lists them all,
TensorBoard plots them live). Durations are in the card's world (wall time divided by the time
scale), like the latencies. Energy is the interval model's
(:func:`~dora_rl.runtime.power_modes.device_energies`): the devices' total and the part the jobs
caused. Each request is scored against its own target (the card's, scaled by the QoE scale of
the interval it was sent in).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from dora_rl.runtime.power_modes import PowerInterval, device_energies
from dora_rl.runtime.result import Record
from dora_rl.runtime.usage import Usage
from dora_rl.world import DeviceEnergy, DeviceFacts


@dataclass(frozen=True)
class IntervalTelemetry:
    """One control interval of a live run (times in the card's world).

    Attributes:
        index: Interval number (0 = the first control step); t_s: its end, wall seconds
            from the start of the run; duration_s: its length in the card's world.
        plan_id: Plan in force at its end; in_flight: requests sent and not completed then.
        completed: Requests completed in it; latency_ms_mean, latency_ms_p95: theirs
            (``None`` if none); requests_missed: those over their target;
            request_violation_rate: their share (``None`` without completions); slack: the
            smallest relative slack of their latencies against the card's target (``None``
            without completions).
        calls: Stage calls completed per device; compute_ms: mean emulated compute time of
            those calls per device (``None`` without calls).
        queue_depth: Stage calls outstanding per device at the end; queue_depth_max: the most
            at any moment of the interval.
        transfer_mb, transfer_ms: Activation megabytes moved and their airtime in all.
        link_scale: Link-rate multiplier per device reported by the (emulated) link layer.
        measured_mbps: Goodput per device over the interval's transfers, medium waits
            included (``None`` for a device that moved nothing).
        modes: Power mode of each device in the interval (-1 asleep).
        energy_j: Energy of all devices over the interval (busy, radio, idle, sleep, wakes);
            jobs_energy_j: the part the job caused (work, radio, wakes, and idle or sleep power
            of dedicated devices); device_energy_j: each device's total.
    """

    index: int
    t_s: float
    duration_s: float
    plan_id: int
    in_flight: int
    completed: int
    latency_ms_mean: float | None
    latency_ms_p95: float | None
    requests_missed: int
    request_violation_rate: float | None
    slack: float | None
    calls: list[int]
    compute_ms: list[float | None]
    queue_depth: list[int]
    queue_depth_max: list[int]
    transfer_mb: float
    transfer_ms: float
    link_scale: list[float]
    measured_mbps: list[float | None]
    modes: list[int]
    energy_j: float
    jobs_energy_j: float
    device_energy_j: list[float]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return asdict(self)


class TelemetryLog:
    """Turns cumulative usage into per-interval telemetry.

    Args:
        facts: The devices' facts (:attr:`dora_rl.world.IntervalModel.devices`).
        time_scale: Wall seconds per card second.
        target_ms: The job's latency target in the card (its slack is measured against it).
        start_t: Monotonic wall time the run started at.
        power_off_unused: The card's ``unused_devices: off``.
    """

    def __init__(self, facts: Sequence[DeviceFacts], time_scale: float, target_ms: float,
                 start_t: float, power_off_unused: bool = False) -> None:
        self.facts, self.time_scale, self.target_ms = tuple(facts), time_scale, target_ms
        self.power_off_unused = power_off_unused
        self.start_t = start_t
        self.last_t = start_t
        self.last = Usage(len(self.facts))
        self.records_seen = 0
        self.intervals: list[IntervalTelemetry] = []
        self.energies: tuple[DeviceEnergy, ...] = ()
        """Each device's energy by cause in the interval last closed."""

    def close(self, now_t: float, usage: Usage, records: Sequence[Record], plan_id: int,
              sent: int, link_scale: Sequence[float], power: PowerInterval) -> IntervalTelemetry:
        """Close the interval ending at ``now_t`` (``usage``: a snapshot taken now;
        ``records``: every record so far, in completion order; ``power``: the devices' power
        state during the interval)."""
        scale, prev = self.time_scale, self.last
        span_s = max(now_t - self.last_t, 0.0) / scale
        new = records[self.records_seen:]
        fresh = [r.latency_ms for r in new]
        missed = sum(1 for r in new if r.missed)
        n = len(usage.busy_s)
        busy = [(usage.busy_s[d] - prev.busy_s[d]) / scale for d in range(n)]
        tx = [(usage.tx_s[d] - prev.tx_s[d]) / scale for d in range(n)]
        rx = [(usage.rx_s[d] - prev.rx_s[d]) / scale for d in range(n)]
        calls = [usage.calls[d] - prev.calls[d] for d in range(n)]
        moved = [usage.link_bytes[d] - prev.link_bytes[d] for d in range(n)]
        wall = [(usage.link_wall_s[d] - prev.link_wall_s[d]) / scale for d in range(n)]
        energy = device_energies(self.facts, power, span_s, busy, tx, rx, self.power_off_unused)
        tel = IntervalTelemetry(
            index=len(self.intervals), t_s=now_t - self.start_t, duration_s=span_s,
            plan_id=plan_id, in_flight=sent - len(records), completed=len(fresh),
            latency_ms_mean=float(np.mean(fresh)) if fresh else None,
            latency_ms_p95=float(np.percentile(fresh, 95)) if fresh else None,
            requests_missed=missed,
            request_violation_rate=missed / len(fresh) if fresh else None,
            slack=min((self.target_ms - v) / self.target_ms for v in fresh) if fresh else None,
            calls=calls,
            compute_ms=[b / c * 1e3 if c else None for b, c in zip(busy, calls, strict=True)],
            queue_depth=list(usage.queued), queue_depth_max=list(usage.queued_max),
            transfer_mb=(usage.bytes_moved - prev.bytes_moved) / 1e6,
            transfer_ms=(usage.transfer_s - prev.transfer_s) / scale * 1e3,
            link_scale=[float(v) for v in link_scale],
            measured_mbps=[b * 8 / w / 1e6 if b > 0 and w > 0 else None
                           for b, w in zip(moved, wall, strict=True)],
            modes=list(power.modes), energy_j=sum(e.total_j for e in energy),
            jobs_energy_j=sum(e.jobs_j for e in energy),
            device_energy_j=[e.total_j for e in energy])
        self.last, self.last_t, self.records_seen = usage, now_t, len(records)
        self.energies = energy
        self.intervals.append(tel)
        return tel
