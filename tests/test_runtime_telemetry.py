"""Per-interval telemetry of the live runtime, from cumulative usage and completed requests."""

from __future__ import annotations

import pytest

from dora_rl.costmodel import CostModel
from dora_rl.runtime.report import Record, interval_energy_j
from dora_rl.runtime.telemetry import TelemetryLog
from dora_rl.runtime.usage import Usage
from dora_rl.scenarios import load


@pytest.fixture(scope="module")
def tables():  # type: ignore[no-untyped-def]
    return CostModel(load("tiny"), 0).tables


def _record(i: int, latency_ms: float) -> Record:
    return Record(i, 0.0, 0.0, 0, 0, latency_ms)


def test_an_interval_holds_only_what_happened_since_the_last_one(tables) -> None:  # type: ignore[no-untyped-def]
    usage = Usage(3)
    log = TelemetryLog(tables, time_scale=2.0, slo_ms=50.0, start_t=100.0)
    usage.add_busy(2, 0.2)
    usage.add_transfer(0, 2, 0.1, 1e6, wall_s=0.4)  # 0.1 s airtime, 0.4 s with medium waits
    records = [_record(0, 10.0), _record(1, 60.0)]
    first = log.close(101.0, usage.snapshot(), records, plan_id=0, sent=3,
                      link_scale=[1.0, 0.5, 1.0])
    assert first.duration_s == pytest.approx(0.5)  # 1 s of wall time at time scale 2
    assert (first.completed, first.in_flight) == (2, 1)
    assert first.latency_ms_mean == pytest.approx(35.0)
    assert first.qoe_violation_rate == pytest.approx(0.5)
    assert first.calls == [0, 0, 1] and first.compute_ms[2] == pytest.approx(100.0)
    assert first.transfer_mb == pytest.approx(1.0) and first.transfer_ms == pytest.approx(50.0)
    # goodput over the wall time of the transfer (card's world: 0.2 s): 1 MB -> 40 Mbit/s
    assert first.measured_mbps[0] == pytest.approx(40.0) and first.measured_mbps[1] is None
    usage.add_busy(1, 0.1)
    records.append(_record(2, 20.0))
    second = log.close(102.0, usage.snapshot(), records, plan_id=1, sent=3,
                       link_scale=[1.0, 1.0, 1.0])
    assert (second.index, second.completed, second.in_flight, second.plan_id) == (1, 1, 0, 1)
    assert second.calls == [0, 1, 0] and second.transfer_mb == 0.0
    assert second.measured_mbps == [None, None, None]
    assert second.latency_ms_mean == pytest.approx(20.0)
    expected = interval_energy_j(tables, [0.0, 0.05, 0.0], [0.0] * 3, [0.0] * 3, 0.5)
    assert second.energy_j == pytest.approx(expected)


def test_an_interval_without_completions_has_no_latency(tables) -> None:  # type: ignore[no-untyped-def]
    log = TelemetryLog(tables, time_scale=1.0, slo_ms=50.0, start_t=0.0)
    tel = log.close(0.5, Usage(3).snapshot(), [], plan_id=0, sent=4, link_scale=[1.0] * 3)
    assert tel.latency_ms_mean is None and tel.qoe_violation_rate is None
    assert tel.in_flight == 4
    # idle devices still draw their idle power
    assert tel.energy_j == pytest.approx(0.5 * sum(tables.lists.idle_w))


def test_queue_depth_keeps_the_last_report_and_the_peak_per_window() -> None:
    usage = Usage(2)
    usage.note_queue(1, peak=3, now=1)
    usage.note_queue(1, peak=2, now=0)
    snap = usage.snapshot()
    assert snap.queued == [0, 0] and snap.queued_max == [0, 3]
    assert usage.snapshot().queued_max == [0, 0]  # a new window starts at the depth then
    usage.note_queue(0, peak=1, now=1)
    usage.forget(0)  # a lost device holds nothing
    assert usage.snapshot().queued == [0, 0]


def test_energy_counts_busy_radio_and_idle_time(tables) -> None:  # type: ignore[no-untyped-def]
    lists = tables.lists
    energy = interval_energy_j(tables, [1.0, 0.0, 0.0], [0.0, 0.5, 0.0], [0.0, 0.0, 0.25], 2.0)
    expected = (lists.busy_w[0][0] + lists.idle_w[0]
                + 0.5 * lists.tx_w[1] + 1.5 * lists.idle_w[1]
                + 0.25 * lists.rx_w[2] + 1.75 * lists.idle_w[2])
    assert energy == pytest.approx(expected)
