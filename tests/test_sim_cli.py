"""``python -m dora_rl.sim``: the per-job report, the JSON file and one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dora_rl.scenarios import ENVS_DIR
from dora_rl.sim.command import main

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"


def test_report_and_json_hold_every_job_and_the_run_totals(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    out = tmp_path / "sim.json"
    code = main(["--scenario", str(ENVS_DIR / "smart_home.yaml"), "--controller", "dora",
                 "--duration", "60", "--seed", "1", "--compare-analytic", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "assistant" in printed and "doorbell" in printed and "analytic ms" in printed
    data = json.loads(out.read_text())
    assert {"energy_j", "jobs_energy_j", "request_violation_rate", "replans",
            "migrated_bytes", "jobs"} <= set(data)
    assert 0 < data["jobs_energy_j"] < data["energy_j"]
    assert 0.0 <= data["request_violation_rate"] <= 1.0
    assert [job["name"] for job in data["jobs"]] == ["assistant", "doorbell"]
    doorbell = data["jobs"][1]
    assert set(doorbell["latency_ms"]) == {"mean", "p50", "p95", "p99"}
    lat = doorbell["latency_ms"]
    assert lat["p50"] <= lat["p95"] <= lat["p99"]
    assert doorbell["completed"] > 100 and doorbell["lost"] == 0
    assert 0.0 <= doorbell["qoe_attainment"] <= 1.0
    assert 0.0 <= doorbell["request_violation_rate"] <= 1.0
    assert doorbell["sim_latency_ms_mean"] == lat["mean"]
    assert doorbell["analytic_latency_ms"] > 0
    assert data["energy_j"] > 0 and all(job["lost"] == 0 for job in data["jobs"])


def test_arrivals_from_a_file_replace_the_poisson_stream(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    trace = tmp_path / "arrivals.csv"
    trace.write_text("job,time_s\nclassify,0.5\nclassify,1.5\nclassify,1.5\n")
    out = tmp_path / "sim.json"
    assert main(["--scenario", "tiny", "--controller", "static", "--duration", "5",
                 "--arrivals", str(trace), "--json", str(out)]) == 0
    job = json.loads(out.read_text())["jobs"][0]
    assert job["completed"] == 3
    # the second of two simultaneous requests waits for the first: 8 ms, 8 ms and 16 ms
    assert job["latency_ms"]["mean"] == pytest.approx((8 + 8 + 16) / 3)


@pytest.mark.parametrize(("argv", "where"), [
    (["--scenario", "tiny", "--controller", "psychic"], "--controller: 'psychic'"),
    (["--scenario", "tiny", "--controller", "static", "--duration", "0"], "--duration:"),
    (["--scenario", "tiny", "--controller", "static", "--duration", "nan"], "--duration:"),
    (["--scenario", "nowhere.yaml", "--controller", "static"], "--scenario:"),
    (["--scenario", "tiny", "--controller", "static", "--rate-scale", "-1"], "--rate-scale:"),
    (["--scenario", "tiny", "--controller", "static", "--queue", "0"], "--queue:"),
    (["--scenario", "tiny"], "--controller"),
])
def test_bad_input_is_one_line_with_exit_status_2(argv: list[str], where: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and where in err[0], err
    assert "Traceback" not in err[0]


@pytest.mark.parametrize(("rows", "where"), [
    ("job,time_s\nnobody,1.0\n", "line 2: job: unknown job 'nobody'"),
    ("job,time_s\nclassify,soon\n", "line 2: time_s: must be seconds >= 0"),
    ("job,time_s\nclassify,-1\n", "line 2: time_s"),
])
def test_a_bad_arrivals_file_names_the_file_line_and_field(
        tmp_path: Path, rows: str, where: str, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "arrivals.csv"
    trace.write_text(rows)
    assert main(["--scenario", "tiny", "--controller", "static", "--arrivals",
                 str(trace)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {trace}: ") and where in err


def _trained(card: str) -> Path | None:
    runs = sorted((CHECKPOINTS / card).glob("ppo_*/best_model.zip"))
    return runs[-1].parent if runs else None


@pytest.mark.skipif(_trained("smart_home") is None, reason="no trained smart_home controller")
def test_a_trained_controller_runs_in_the_simulator(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _trained("smart_home")
    out = tmp_path / "sim.json"
    assert main(["--scenario", "smart_home", "--controller", str(run_dir), "--duration", "30",
                 "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["controller"] == str(run_dir)
    assert all(job["lost"] == 0 for job in data["jobs"])
    assert math.isfinite(data["energy_j"])
    # and it refuses a card it was not trained on
    assert main(["--scenario", "tiny", "--controller", str(run_dir)]) == 2
    assert "was trained on scenario 'smart_home'" in capsys.readouterr().err
