"""The run's timeline figure and TensorBoard scalars, from a result dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dora_rl.runtime.figures import timeline_png, write_tensorboard


def _result() -> dict[str, Any]:
    return {"scenario": "tiny", "job": "classify", "completed": 3, "sent": 3, "replans": 1,
            "slo_ms": 50.0, "latency_ms": {"p95": 30.0}, "qoe_attainment": 1.0,
            "energy_j": 12.5, "migrated_mb": 1.0,
            "timeline": {"done_s": [0.1, 0.2, 0.3], "latency_ms": [10.0, 30.0, 12.0],
                         "plan_id": [0, 1, 1], "switch_s": [0.15], "fault_s": [0.14]}}


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
    assert {"dora/latency_ms_p95", "dora/energy_j", "dora/replans",
            "dora/interval/classify/latency_ms"} <= tags
    assert [e.value for e in events.Scalars("dora/interval/classify/latency_ms")] == [10, 30, 12]
