"""The run's timeline figure and TensorBoard scalars, from a result dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dora_rl.runtime.timeline import timeline_png, write_tensorboard


def _interval(index: int, latency: float | None, energy_j: float) -> dict[str, Any]:
    return {"index": index, "t_s": 0.2 * (index + 1), "duration_s": 0.2, "plan_id": 0,
            "in_flight": 1, "completed": 0 if latency is None else 2,
            "latency_ms_mean": latency, "latency_ms_p95": latency,
            "requests_missed": 0, "slack": None if latency is None else 0.5,
            "request_violation_rate": None if latency is None else 0.0, "calls": [0, 1, 2],
            "compute_ms": [None, 4.0, 8.0], "queue_depth": [0, 0, 1],
            "queue_depth_max": [0, 1, 2], "transfer_mb": 0.5, "transfer_ms": 3.0,
            "link_scale": [1.0, 0.5, 0.75], "measured_mbps": [None, 40.0, 60.0],
            "modes": [0, 0, 0], "energy_j": energy_j, "jobs_energy_j": energy_j / 2,
            "device_energy_j": [energy_j / 3] * 3}


def _result() -> dict[str, Any]:
    return {"scenario": "tiny", "job": "classify", "completed": 3, "sent": 3, "replans": 1,
            "slo_ms": 50.0, "latency_ms": {"p95": 30.0}, "qoe_attainment": 1.0,
            "request_violation_rate": 0.0, "qoe_violation_rate": 0.0, "energy_j": 12.5,
            "jobs_energy_j": 6.0,
            "migrated_mb": 1.0, "nominal_mbps": [100.0, 100.0, 100.0],
            "intervals": [_interval(0, 20.0, 4.0), _interval(1, None, 5.0)],
            "timeline": {"done_s": [0.1, 0.2, 0.3], "latency_ms": [10.0, 30.0, 12.0],
                         "plan_id": [0, 1, 1], "switch_s": [0.15], "fault_s": [0.14],
                         "link_s": [0.0, 0.2], "link_scale_mean": [0.75, 0.7],
                         "interval_s": [0.2, 0.4]}}


def test_timeline_png_is_written(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "t.png"
    timeline_png(_result(), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tensorboard_uses_the_dora_tags(tmp_path: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    write_tensorboard(_result(), tmp_path)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"dora/latency_ms_p95", "dora/energy_j", "dora/jobs_energy_j", "dora/replans",
            "dora/qoe_violation_rate", "dora/request_violation_rate", "dora/interval/energy_j",
            "dora/interval/jobs_energy_j",
            "dora/interval/classify/request_violation_rate",
            "dora/interval/bandwidth_scale", "dora/interval/classify/latency_ms",
            "dora/interval/queue_depth_max", "dora/interval/measured_mbps",
            "dora/request/classify/latency_ms"} <= tags
    assert [e.value for e in events.Scalars("dora/request/classify/latency_ms")] == [10, 30, 12]
    # per interval: step = interval index; an interval without completions has no latency
    assert [(e.step, e.value) for e in events.Scalars("dora/interval/energy_j")] == \
        [(0, 4.0), (1, 5.0)]
    assert [(e.step, e.value) for e in events.Scalars("dora/interval/classify/latency_ms")] == \
        [(0, 20.0)]
    assert [e.value for e in events.Scalars("dora/interval/queue_depth_max")] == [2, 2]
    assert [e.value for e in events.Scalars("dora/interval/measured_mbps")] == [50, 50]


def test_timeline_png_without_intervals_is_written(tmp_path: Path) -> None:
    result = _result()
    del result["intervals"]
    timeline_png(result, tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 1000
