"""Per-interval telemetry of the live runtime, from cumulative usage and completed requests."""

from __future__ import annotations

import pytest

from dora_rl.runtime.power_modes import PowerInterval, device_energies
from dora_rl.runtime.result import Record, request_qoe
from dora_rl.runtime.telemetry import TelemetryLog
from dora_rl.runtime.usage import Usage
from dora_rl.scenarios import load
from dora_rl.world import device_facts


@pytest.fixture(scope="module")
def facts():  # type: ignore[no-untyped-def]
    return device_facts(load("tiny"))


NOMINAL = PowerInterval.nominal(3)


def _record(i: int, latency_ms: float, target_ms: float = 50.0) -> Record:
    return Record(i, 0.0, 0.0, 0, 0, latency_ms, target_ms)


def test_an_interval_holds_only_what_happened_since_the_last_one(facts) -> None:  # type: ignore[no-untyped-def]
    usage = Usage(3)
    log = TelemetryLog(facts, time_scale=2.0, target_ms=50.0, start_t=100.0)
    usage.add_busy(2, 0.2)
    usage.add_transfer(0, 2, 0.1, 1e6, wall_s=0.4)  # 0.1 s airtime, 0.4 s with medium waits
    records = [_record(0, 10.0), _record(1, 60.0)]
    first = log.close(101.0, usage.snapshot(), records, plan_id=0, sent=3,
                      link_scale=[1.0, 0.5, 1.0], power=NOMINAL)
    assert first.duration_s == pytest.approx(0.5)  # 1 s of wall time at time scale 2
    assert (first.completed, first.in_flight) == (2, 1)
    assert first.latency_ms_mean == pytest.approx(35.0)
    assert (first.requests_missed, first.request_violation_rate) == (1, 0.5)
    assert first.slack == pytest.approx(-0.2)  # 60 ms against the card's 50 ms
    assert first.calls == [0, 0, 1] and first.compute_ms[2] == pytest.approx(100.0)
    assert first.transfer_mb == pytest.approx(1.0) and first.transfer_ms == pytest.approx(50.0)
    # goodput over the wall time of the transfer (card's world: 0.2 s): 1 MB -> 40 Mbit/s
    assert first.measured_mbps[0] == pytest.approx(40.0) and first.measured_mbps[1] is None
    usage.add_busy(1, 0.1)
    records.append(_record(2, 20.0))
    second = log.close(102.0, usage.snapshot(), records, plan_id=1, sent=3,
                       link_scale=[1.0, 1.0, 1.0], power=NOMINAL)
    assert (second.index, second.completed, second.in_flight, second.plan_id) == (1, 1, 0, 1)
    assert second.calls == [0, 1, 0] and second.transfer_mb == 0.0
    assert second.measured_mbps == [None, None, None]
    assert second.latency_ms_mean == pytest.approx(20.0)
    expected = device_energies(facts, NOMINAL, 0.5, [0.0, 0.05, 0.0], [0.0] * 3, [0.0] * 3)
    assert second.energy_j == pytest.approx(sum(e.total_j for e in expected))
    assert second.device_energy_j == pytest.approx([e.total_j for e in expected])


def test_a_request_misses_against_its_own_scaled_target(facts) -> None:  # type: ignore[no-untyped-def]
    log = TelemetryLog(facts, time_scale=1.0, target_ms=50.0, start_t=0.0)
    # 45 ms meets the card's 50 ms but misses a target tightened to 0.8 x 50 = 40 ms
    records = [_record(0, 45.0, 40.0), _record(1, 45.0, 50.0), _record(2, 55.0, 62.5)]
    tel = log.close(1.0, Usage(3).snapshot(), records, plan_id=0, sent=4,
                    link_scale=[1.0] * 3, power=NOMINAL)
    assert tel.requests_missed == 1
    assert tel.request_violation_rate == pytest.approx(1 / 3)
    # one request never came back: it counts as missed in the run's figure
    assert request_qoe(records, 4) == {"requests": 4, "requests_missed": 2,
                                       "request_violation_rate": 0.5}


def test_an_interval_without_completions_has_no_latency(facts) -> None:  # type: ignore[no-untyped-def]
    log = TelemetryLog(facts, time_scale=1.0, target_ms=50.0, start_t=0.0)
    tel = log.close(0.5, Usage(3).snapshot(), [], plan_id=0, sent=4, link_scale=[1.0] * 3,
                    power=NOMINAL)
    assert tel.latency_ms_mean is None and tel.request_violation_rate is None
    assert tel.slack is None and tel.in_flight == 4
    # idle devices still draw their idle power; none of it is the job's (none is dedicated)
    assert tel.energy_j == pytest.approx(0.5 * sum(f.idle_w for f in facts))
    assert tel.jobs_energy_j == 0.0


def test_queue_depth_keeps_the_last_report_and_the_peak_per_window() -> None:
    usage = Usage(2)
    usage.note_queue(1, peak=3, now=1)
    usage.note_queue(1, peak=2, now=0)
    snap = usage.snapshot()
    assert snap.queued == [0, 0] and snap.queued_max == [0, 3]
    assert usage.snapshot().queued_max == [0, 0]  # a new window starts at the depth then
    usage.note_queue(0, peak=1, now=1)
    usage.forget(0)  # a lost device holds no calls
    assert usage.snapshot().queued == [0, 0]


def test_energy_counts_busy_radio_and_idle_time_in_the_devices_modes(facts) -> None:  # type: ignore[no-untyped-def]
    half = PowerInterval((0, 0, 1), (False,) * 3, (True,) * 3, (True,) * 3, (False,) * 3)
    energy = device_energies(facts, half, 2.0, [1.0, 0.0, 1.0], [0.0, 0.5, 0.0],
                             [0.0, 0.0, 0.25])
    slow, mid, fast = facts
    assert energy[0].total_j == pytest.approx(slow.busy_w[0] + slow.idle_w)
    assert energy[1].total_j == pytest.approx(0.5 * mid.tx_w + 1.5 * mid.idle_w)
    # fast at its "half" level: 8 W busy instead of 15 W
    assert energy[2].total_j == pytest.approx(8.0 + 0.25 * fast.rx_w + 0.75 * fast.idle_w)


def test_a_device_that_left_draws_nothing_and_a_sleeping_one_its_sleep_power() -> None:
    from dora_rl.world import SLEEP

    orin = device_facts(load("smart_home"))[0]
    assert orin.can_sleep and orin.dedicated
    asleep = PowerInterval((SLEEP,), (True,), (True,), (False,), (False,))
    gone = PowerInterval((0,), (False,), (False,), (False,), (False,))
    e_sleep = device_energies([orin], asleep, 1.0, [0.0], [0.0], [0.0])[0]
    assert e_sleep.total_j == pytest.approx(orin.sleep_w)
    assert e_sleep.jobs_j == pytest.approx(orin.sleep_w)  # dedicated: the job's cost
    assert device_energies([orin], gone, 1.0, [0.0], [0.0], [0.0])[0].total_j == 0.0
