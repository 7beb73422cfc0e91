"""Integration: tiny on 3 worker processes over loopback RPC, one plan switch, one kill -9.

The run happens in a child process (its own session), so a hang cannot outlive the timeout:
the whole process group, workers included, is killed in ``finally``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

RUN = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from dora_rl.costmodel import Plan
    from dora_rl.runtime.control import make_decider
    from dora_rl.runtime.layers import build_layers, layer_specs, run_layers, sample_input
    from dora_rl.runtime.runner import ServeConfig, serve
    from dora_rl.scenarios import load
    from dora_rl.world import Decision

    scenario = load("tiny")
    base = make_decider("static", scenario, 0)
    SPLIT = Plan(stage_end=(4, 8), stage_devices=((0, 1), (2,)))  # slow+mid data parallel

    class Scripted:
        # static, except one switch to a two-stage plan at the first control step
        def __init__(self):
            self.steps = 0
        def initial(self, usable):
            return base.initial(usable)
        def candidates(self, usable):
            return base.candidates(usable)
        def decide(self, measurement):
            self.steps += 1
            return Decision(plans=(SPLIT,)) if self.steps == 1 else None

    out, status = sys.argv[1], sys.argv[2]
    # the switch moves ~10 MB of weights to two devices over the emulated WiFi (~2.4 s):
    # mid is killed once the split plan serves
    cfg = ServeConfig(scenario, requests=180, rate_per_s=40.0, batch=2, control_interval_s=0.3,
                      kills=(("mid", 150),), keep_outputs=True, status=Path(status))
    result, outputs = serve(cfg, Scripted())
    whole = build_layers(layer_specs(scenario, 0), cfg.seed)
    diffs = []
    for i in sorted(outputs):
        x = sample_input(scenario, 0, 2, cfg.seed + 1 + i)
        diffs.append(float((outputs[i] - run_layers(whole, 0, 8, x)).abs().max()))
    result["outputs"] = len(outputs)
    result["max_abs_diff"] = max(diffs) if diffs else None
    json.dump(result, open(out, "w"))
""")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    tmp = tmp_path_factory.mktemp("runtime")
    out, status = tmp / "result.json", tmp / "status.json"
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(out), str(status)],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=Path(__file__).parent.parent)
    try:
        _, err = proc.communicate(timeout=55)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    return json.loads(out.read_text()), json.loads(status.read_text())


def test_every_request_completes_despite_a_killed_worker(run: tuple[dict, dict]) -> None:
    result, _ = run
    assert result["sent"] == 180
    assert result["completed"] == result["sent"]
    assert result["lost"] == 0
    assert result["outputs"] == 180


def test_partitioned_outputs_equal_the_whole_model(run: tuple[dict, dict]) -> None:
    result, _ = run
    assert result["max_abs_diff"] is not None
    assert result["max_abs_diff"] <= 1e-5


def test_plan_switch_and_replan_after_the_fault(run: tuple[dict, dict]) -> None:
    result, _ = run
    assert result["replans"] >= 2  # the scripted switch, then the re-plan without "mid"
    assert result["plans"][1]["stage_devices"] == [["slow", "mid"], ["fast"]]
    assert all("mid" not in group for group in result["plans"][-1]["stage_devices"])
    assert [f["device"] for f in result["faults"]] == ["mid"]
    # the switch's new owners got their layers from the device holding them, not the server
    assert result["migrated_peer_mb"] > 0
    assert 0 <= result["recovery_s"][0] <= 3.0


def test_each_request_is_scored_against_its_target(run: tuple[dict, dict]) -> None:
    result, _ = run
    assert result["requests"] == result["sent"] == 180
    assert result["jobs"]["classify"]["requests_missed"] == result["requests_missed"]
    assert result["request_violation_rate"] == pytest.approx(result["requests_missed"] / 180)
    assert result["modes"] == [0, 0, 0] and result["refused_modes"] == 0


def test_status_file_marks_the_killed_worker_dead(run: tuple[dict, dict]) -> None:
    _, status = run
    alive = {w["device"]: w["alive"] for w in status["workers"]}
    assert alive == {"slow": True, "mid": False, "fast": True}
    assert all(isinstance(w["pid"], int) for w in status["workers"])


def test_each_control_interval_reports_what_was_measured(run: tuple[dict, dict]) -> None:
    result, status = run
    intervals = result["intervals"]
    assert len(intervals) >= 3
    assert [t["index"] for t in intervals] == list(range(len(intervals)))
    # every completion and every joule falls in exactly one interval
    assert sum(t["completed"] for t in intervals) == result["completed"]
    assert sum(t["energy_j"] for t in intervals) == pytest.approx(result["energy_j"])
    assert sum(t["jobs_energy_j"] for t in intervals) == pytest.approx(result["jobs_energy_j"])
    assert 0 < result["jobs_energy_j"] < result["energy_j"]  # no device of tiny is dedicated
    assert sum(t["requests_missed"] for t in intervals) <= result["requests_missed"]
    assert all(min(t["queue_depth"]) >= 0 for t in intervals)
    assert intervals[-1]["queue_depth"] == [0, 0, 0] and intervals[-1]["in_flight"] == 0
    # the two-stage plan moves activations: goodput measured on its links
    assert any(t["measured_mbps"][2] is not None and t["transfer_mb"] > 0 for t in intervals)
    assert intervals[-1]["calls"][1] == 0  # the killed device serves nothing at the end
    assert status["interval"]["index"] == len(intervals) - 1
