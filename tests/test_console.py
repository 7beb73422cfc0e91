"""The console's progress of a running service: what it reads of the runtime and shows."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from rich.console import Console

from dora_rl.runtime import console
from dora_rl.runtime.control import make_decider
from dora_rl.runtime.llm_metrics import LlmMetrics
from dora_rl.runtime.result import Record
from dora_rl.runtime.runner import Runtime, ServeConfig
from dora_rl.runtime.settings import LiveState
from dora_rl.scenarios import load


@pytest.fixture()
def runtime() -> Iterator[Runtime]:
    """A runtime that has served 20 requests (5 ms to 100 ms; the last two missed) on the
    card's first plan, with no workers started."""
    card = load("tiny")
    decider = make_decider("static", card, 0)
    rt = Runtime(ServeConfig(card), decider)
    try:
        rt.live = LiveState(plan=decider.initial((True, True, True)))
        rt.start_t = time.monotonic() - 12.0
        rt.sent = 21
        for i in range(20):
            latency = 5.0 * (i + 1)
            rt.records.append(Record(i, 0.0, 0.0, 0, 0, latency, target_ms=90.0))
        yield rt
    finally:
        rt.cluster.close()


def test_snapshot_counts_requests_and_takes_latency_percentiles(runtime: Runtime) -> None:
    snap = console.snapshot(runtime)
    assert (snap.sent, snap.completed, snap.in_flight, snap.not_completed) == (21, 20, 1, 0)
    assert snap.latency_ms == (50.0, 95.0)
    assert snap.attainment == pytest.approx(18 / 20)
    assert snap.plan.startswith(str(runtime.live.plan.stage_end))
    assert snap.modes == "slow:0 mid:0 fast:0"
    assert 11.0 < snap.elapsed_s < 60.0


def test_an_llm_service_shows_ttft_and_tpot_instead_of_latency(runtime: Runtime) -> None:
    metrics = LlmMetrics([runtime.job.name])
    for i in range(10):
        metrics.completed(runtime.job.name, latency_s=1.0, ttft_s=0.01 * (i + 1),
                          tpot_s=0.002, tokens=8, met=i < 9)
    runtime.metrics = metrics  # type: ignore[attr-defined]
    snap = console.snapshot(runtime)
    assert snap.ttft_ms == (50.0, 100.0)
    assert snap.tpot_ms == (2.0, 2.0)
    assert snap.latency_ms == (None, None)
    assert snap.attainment == pytest.approx(0.9)
    text = console.line(snap)
    assert "TTFT p50/p95 50.0/100.0 ms" in text and "latency" not in text


def test_the_table_fits_80_columns_and_names_every_figure(runtime: Runtime) -> None:
    out = Console(record=True, width=80)
    out.print(console.table(console.snapshot(runtime)))
    text = out.export_text()
    for label in ("requests", "latency", "QoE met", "plan", "power modes", "energy"):
        assert label in text
    assert "20 done of 21 sent" in text and "p50 50.0 ms, p95 95.0 ms" in text
    assert max(len(row) for row in text.splitlines()) <= 80


def test_plain_lines_come_every_period_on_stderr_until_stopped(
        runtime: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    monitor = console.Monitor(runtime, "lines", line_every_s=0.05)
    monitor.start()
    time.sleep(0.4)
    monitor.stop()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 3
    assert all(line.startswith("serve ") and "20/21 done" in line for line in lines)
    time.sleep(0.2)
    assert capsys.readouterr().err == ""  # stopped: nothing more


def test_off_shows_nothing_and_starts_no_thread(
        runtime: Runtime, capsys: pytest.CaptureFixture[str]) -> None:
    monitor = console.Monitor(runtime, "off", line_every_s=0.01)
    monitor.start()
    time.sleep(0.1)
    monitor.stop()
    assert monitor.thread is None and capsys.readouterr().err == ""
