"""The controller benchmark CLI: outputs, determinism, same episodes, one-line errors."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dora_rl.controllers
from dora_rl.bench import main
from dora_rl.benchmark.bench_tables import finite_or_none
from dora_rl.benchmark.controllers import parse_controllers
from dora_rl.scenarios import load

FIGURES = ("energy_j", "qoe_violation_rate", "latency_ms_p95", "replans", "migration_mb",
           "episode_reward")
BASE = ["--scenario", "tiny", "--seeds", "0", "--episodes", "1", "--episode-steps", "30"]


def _bench(out: Path, controllers: str = "static,dora", *extra: str) -> list[dict[str, Any]]:
    assert main([*BASE, "--controllers", controllers, "--out", str(out),
                 "--json", str(out / "rows.json"), *extra]) == 0
    rows: list[dict[str, Any]] = json.loads((out / "rows.json").read_text())
    return rows


def _scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("bench")
    return out, _bench(out)


def test_writes_every_output(first: tuple[Path, list[dict[str, Any]]],
                             capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = first
    results = out / "results"
    for name in ("bench_tiny.csv", "bench_tiny.md", "bench_tiny_tradeoff.png",
                 "bench_tiny_episode.png"):
        assert (results / name).stat().st_size > 0, name
    assert (results / "bench_tiny_tradeoff.png").read_bytes()[:4] == b"\x89PNG"
    for label in ("static", "dora"):
        run = out / "runs" / "bench" / "tiny" / f"{label}_seed0"
        assert list(run.glob("events.out.tfevents.*")), run
    md = (results / "bench_tiny.md").read_text()
    assert "| static |" in md and "| dora |" in md and "classify/latency_ms_p95" in md
    csv_lines = (results / "bench_tiny.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and "classify/qoe_violation_rate" in csv_lines[0]


def test_json_rows_have_the_required_finite_figures(
        first: tuple[Path, list[dict[str, Any]]]) -> None:
    _, rows = first
    assert [(r["scenario"], r["controller"], r["seed"]) for r in rows] == [
        ("tiny", "static", 0), ("tiny", "dora", 0)]
    for row in rows:
        for key in FIGURES:
            assert isinstance(row[key], (int, float)) and math.isfinite(row[key]), key
        assert row["energy_j"] > 0 and 0 <= row["qoe_violation_rate"] <= 1
        job = row["jobs"]["classify"]
        assert math.isfinite(job["latency_ms_p95"]) and 0 <= job["qoe_violation_rate"] <= 1


def test_tensorboard_has_episode_and_interval_tags(
        first: tuple[Path, list[dict[str, Any]]]) -> None:
    out, rows = first
    run = out / "runs" / "bench" / "tiny" / "static_seed0"
    energy = _scalars(run, "dora/energy_j")
    assert energy == [(0, pytest.approx(rows[0]["energy_j"]))]
    assert len(_scalars(run, "dora/interval/energy_j")) == 30
    assert len(_scalars(run, "dora/interval/classify/latency_ms")) == 30
    assert _scalars(run, "dora/classify/latency_ms_p95")


def test_same_command_gives_the_same_figures(first: tuple[Path, list[dict[str, Any]]],
                                             tmp_path: Path) -> None:
    _, rows = first
    assert _bench(tmp_path, "static,dora", "--no-plots") == rows
    assert not (tmp_path / "results" / "bench_tiny_episode.png").exists()


def test_controllers_replay_the_same_episodes(first: tuple[Path, list[dict[str, Any]]]) -> None:
    out, _ = first
    runs = out / "runs" / "bench" / "tiny"
    static = _scalars(runs / "static_seed0", "dora/interval/bandwidth_scale")
    dora = _scalars(runs / "dora_seed0", "dora/interval/bandwidth_scale")
    assert len(static) == 30 and static == dora
    assert np.std([v for _, v in static]) > 0  # the held-out trace moves


class _Keep:
    """A stand-in for a trained controller (the contract of ``dora_rl.controllers.load``)."""

    def __init__(self, scenario: str) -> None:
        self.scenario = load(scenario)
        self.env_kwargs = {"k": 2, "episode_steps": 300, "bandwidth": "trace", "interval_s": 1.0}
        self.starts: list[bool] = []

    def predict(self, obs: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[Any, Any]:
        self.starts.append(bool(episode_start[0]))
        return np.array([2, 0, 0, 0]), state  # keep the plan at the middle level, nominal modes


def test_trained_controller_runs_on_its_own_spaces(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    stub = _Keep("tiny")
    monkeypatch.setattr(dora_rl.controllers, "load", lambda run_dir: stub, raising=False)
    (tmp_path / "run").mkdir()
    rows = _bench(tmp_path, f"ppo={tmp_path / 'run'},static", "--no-plots")
    assert [r["controller"] for r in rows] == ["ppo", "static"]
    assert stub.starts[0] and not any(stub.starts[1:]) and len(stub.starts) == 30
    # keeping the first plan is what static does: same figures
    assert {k: rows[0][k] for k in FIGURES} == {k: rows[1][k] for k in FIGURES}


def test_trained_on_another_scenario_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(dora_rl.controllers, "load", lambda run_dir: _Keep("smart_home"),
                        raising=False)
    assert main([*BASE, "--controllers", f"ppo={tmp_path}", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "smart_home" in err and "--controllers" in err


def test_controller_entries() -> None:
    specs = parse_controllers("static, fast=throughput")
    assert [(s.label, s.baseline, s.run_dir) for s in specs] == [
        ("static", "static", None), ("fast", "throughput", None)]
    assert finite_or_none([1.0, math.inf, {"a": math.nan}]) == [1.0, None, {"a": None}]


@pytest.mark.parametrize(("argv", "words"), [
    (["--controllers", "static,nope"], ["--controllers", "nope"]),
    (["--controllers", "static,static"], ["--controllers", "more than once"]),
    (["--controllers", "static,"], ["--controllers"]),
    (["--scenario", "no_such_card"], ["--scenario", "no_such_card"]),
    (["--traces", "{tmp}/missing"], ["--traces", "no such directory"]),
    (["--traces", "{tmp}/empty"], ["--traces", "no trace files"]),
    (["--traces", "{tmp}/junk"], ["--traces", "junk"]),
    (["--episodes", "0"], ["--episodes", "between 1"]),
    (["--episodes", "two"], ["--episodes", "invalid int"]),
    (["--seeds", "0,x"], ["--seeds", "integers"]),
    (["--seeds", "1,1"], ["--seeds", "repeated"]),
    (["--seeds", "-1"], ["--seeds", ">= 0"]),
    (["--episode-steps", "0"], ["--episode-steps"]),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], words: list[str], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a_wifi.csv").write_text("not a trace\n")
    args = dict(zip(BASE[::2], BASE[1::2], strict=True))
    args["--controllers"] = "static"
    args["--out"] = str(tmp_path / "out")
    args.update(zip(argv[::2], [a.format(tmp=tmp_path) for a in argv[1::2]], strict=True))
    code = main([x for kv in args.items() for x in kv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    for word in words:
        assert word in err, (word, err)
    assert not (tmp_path / "out").exists()


def test_sim_backend_writes_its_own_results(tmp_path: Path) -> None:
    code = main(["--scenario", "tiny", "--controllers", "static", "--seeds", "0",
                 "--episodes", "1", "--episode-steps", "10", "--backend", "sim",
                 "--no-plots", "--out", str(tmp_path)])
    assert code == 0
    assert (tmp_path / "results" / "bench_tiny_sim.md").exists()
    assert "sim backend" in (tmp_path / "results" / "bench_tiny_sim.md").read_text()
    assert not (tmp_path / "results" / "bench_tiny.md").exists()
