"""The planning command line: JSON shape, figures, PipeEdge mode and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dora_rl.costmodel import CostModel
from dora_rl.errors import run_cli
from dora_rl.plan import main
from dora_rl.planner.exact.partition import Mode, solve
from dora_rl.scenarios import ENVS_DIR, load
from dora_rl.synthetic_cards import benchmark_scenario

REQUIRED = ("stages", "latency_s", "throughput_per_s", "energy_j", "bottleneck_s")


def _run(argv: list[str], tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "plans.json"
    assert main([*argv, "--json", str(out)]) == 0
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def _layers(stages: list[dict[str, Any]]) -> list[int]:
    covered: list[int] = []
    for stage in stages:
        first, last = stage["layers"]
        covered.extend(range(first, last + 1))
    return covered


def test_json_has_the_required_keys_and_one_based_inclusive_layers(tmp_path: Path) -> None:
    data = _run(["--scenario", "envs/tiny.yaml"], tmp_path)
    assert isinstance(data["solve_time_s"], float) and data["solve_time_s"] > 0
    assert data["plans"], "no plans"
    for plan in data["plans"]:
        assert all(key in plan for key in REQUIRED)
        for stage in plan["stages"]:
            assert set(stage) >= {"layers", "devices"} and stage["devices"]
    n_layers = len(load("tiny").models["tiny8"].layers)
    assert _layers(data["plans"][0]["stages"]) == list(range(1, n_layers + 1))
    assert set(data["baselines"]) == {"throughput", "even", "memory", "single"}
    assert "schedule" in data["plans"][0] and data["jobs"]["classify"]["plans"] == data["plans"]


@pytest.mark.parametrize(("card", "job", "mode"), [("tiny", "classify", "energy"),
                                                   ("smart_home", "doorbell", "time")])
def test_first_plan_is_the_partitioners_optimum(tmp_path: Path, card: str, job: str,
                                                mode: Mode) -> None:
    data = _run(["--scenario", card, "--job", job, "--mode", mode], tmp_path)
    scenario = load(card)
    model = CostModel(scenario, job)
    best = solve(model, mode)
    names = [d.name for d in scenario.devices]
    expected = [{"layers": [best.plan.stage_layers(k)[0] + 1, best.plan.stage_layers(k)[1]],
                 "devices": [names[d] for d in group]}
                for k, group in enumerate(best.plan.stage_devices)]
    first = data["plans"][0]
    assert [{"layers": s["layers"], "devices": s["devices"]} for s in first["stages"]] == expected
    assert first["latency_s"] == pytest.approx(best.time_s)
    assert first["energy_j"] == pytest.approx(best.energy_j)
    assert first["bottleneck_s"] == pytest.approx(best.metrics["period_s"])
    assert data["mode"] == mode and data["jobs"][job]["plans"][0] == first


def test_png_is_written(tmp_path: Path) -> None:
    png = tmp_path / "plans.png"
    assert main(["--scenario", "smart_home", "--job", "doorbell", "--png", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_pipeedge_writes_the_schedule(tmp_path: Path) -> None:
    data = _run(["--pipeedge", str(ENVS_DIR / "pipeedge_sample"),
                 "--model", "google/vit-base-patch16-224", "--mode", "throughput"], tmp_path)
    assert data["solve_time_s"] >= 0
    plan = data["plans"][0]
    assert all(key in plan for key in REQUIRED) and plan["energy_j"] is None
    assert _layers(plan["stages"]) == list(range(1, 49))
    assert plan["throughput_per_s"] == pytest.approx(8 / plan["bottleneck_s"])


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_unknown_job_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    err = _one_line_error(capsys, ["--scenario", "envs/tiny.yaml", "--job", "nope"])
    assert "nope" in err and "classify" in err


@pytest.mark.parametrize("argv", [["--scenario", "tiny", "--mode", "fast"],
                                  ["--pipeedge", "envs/pipeedge_sample", "--model", "m",
                                   "--mode", "energy"],
                                  ["--scenario", "missing_dir/none.yaml"]])
def test_bad_arguments_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    _one_line_error(capsys, argv)


def test_a_card_that_fits_nowhere_names_memory(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    card = yaml.safe_load((ENVS_DIR / "tiny.yaml").read_text())
    for device in card["devices"]:
        device["memory_bytes"] = 1000
    path = tmp_path / "cramped.yaml"
    path.write_text(yaml.safe_dump(card))
    err = _one_line_error(capsys, ["--scenario", str(path)])
    assert "memory" in err and "weights" in err and "classify" in err


@pytest.mark.parametrize(("spec", "workload"), [("synthetic:6x8", "inference"),
                                                ("synthetic:6x8:llm", "llm_inference"),
                                                ("synthetic:6x8:train", "training")])
def test_plan_solves_the_synthetic_instance_to_a_proven_optimum(
        tmp_path: Path, spec: str, workload: str) -> None:
    data = _run(["--scenario", spec, "--k", "2", "--no-schedule"], tmp_path)
    model = CostModel(benchmark_scenario(6, 8, workload))  # type: ignore[arg-type]
    best = solve(model, "energy")
    assert data["scenario"] == "bench_6x8" and data["proven_optimal"] is True
    assert data["plans"][0]["energy_j"] == pytest.approx(best.energy_j)
    assert data["solve_time_s"] > 0


@pytest.mark.parametrize("argv", [["--scenario", "synthetic:6"],
                                  ["--scenario", "synthetic:6x3:gpu"],
                                  ["--scenario", "synthetic:6x1"],
                                  ["--scenario", "tiny", "--time-limit", "0"],
                                  ["--scenario", "tiny", "--time-limit", "nan"]])
def test_bad_synthetic_specs_and_time_limits_are_one_line(
        capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    assert run_cli(main, argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --")
