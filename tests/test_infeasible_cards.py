"""Cards no plan fits: one line naming the binding constraint, the same in every CLI.

Issue 17 item 2 (the diagnosis recursed for ever when even the solve without QoE was
infeasible; extreme figures reached HiGHS) and item 8 (``plan`` refused a model that fits
nowhere while ``sim`` and ``bench`` ran and ``train`` trained).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

import dora_rl  # noqa: F401  (registers the ids)
from dora_rl.bench import main as bench_main
from dora_rl.config import Scenario
from dora_rl.costmodel import CostModel
from dora_rl.errors import InfeasibleError, run_cli
from dora_rl.plan import main as plan_main
from dora_rl.planner.exact.candidates import MAX_STAGE_CANDIDATES
from dora_rl.planner.exact.partition import solve
from dora_rl.planner.exact.solver import NumericRangeError, solve_milp
from dora_rl.scenarios import load
from dora_rl.sim.command import main as sim_main
from dora_rl.train import main as train_main

REPO = Path(__file__).resolve().parent.parent


def _tiny(memory_bytes: int | None = None, link_mbps: float | None = None,
          activation_bytes: float | None = None) -> Scenario:
    """tiny with figures replaced after validation (some are beyond the card's limits)."""
    sc = load("tiny")
    devices = tuple(d.model_copy(update={
        **({"memory_bytes": memory_bytes} if memory_bytes is not None else {}),
        **({"network": d.network.model_copy(update={"link_mbps": link_mbps})}
           if link_mbps is not None else {})}) for d in sc.devices)
    models = dict(sc.models)
    if activation_bytes is not None:
        m = models["tiny8"]
        layers = (m.layers[0].model_copy(update={"activation_bytes": activation_bytes}),
                  *m.layers[1:])
        models["tiny8"] = m.model_copy(update={"layers": layers})
    return dataclasses.replace(sc, devices=devices, models=models)


@pytest.fixture(autouse=True)
def _shallow_stack() -> Iterator[None]:
    """A recursion shows up fast (as a RecursionError, not minutes of solving)."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(400)
    yield
    sys.setrecursionlimit(old)


def test_huge_activations_name_memory_without_recursing() -> None:
    model = CostModel(_tiny(activation_bytes=1e308))
    with pytest.raises(InfeasibleError, match=r"job 'classify': not enough memory: tiny8 layer "
                                              r"'embed' outputs 1e\+299 GB of activations"):
        solve(model)


def test_a_kv_cache_that_fits_nowhere_names_memory_without_recursing() -> None:
    sc = load("smart_home")
    jobs = list(sc.jobs)
    llm = jobs[0].llm
    assert llm is not None
    jobs[0] = jobs[0].model_copy(update={"llm": llm.model_copy(update={"output_tokens": 10**12})})
    model = CostModel(dataclasses.replace(sc, jobs=tuple(jobs)), job=0)
    with pytest.raises(InfeasibleError, match=r"job 'assistant': not enough memory: the KV "
                                              r"cache of 1,000,000,000,256 tokens needs"):
        solve(model)


def test_plan_names_a_kv_cache_within_the_card_limits_that_fits_nowhere(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (REPO / "envs" / "smart_home.yaml").read_text()
    text = text.replace("output_tokens: 64", "output_tokens: 1048576").replace(
        "traces_dir: traces/", f"traces_dir: {REPO / 'envs' / 'traces'}/")
    card = tmp_path / "long_answers.yaml"
    card.write_text(text)
    code, err = _cli(plan_main, ["--scenario", str(card), "--job", "assistant",
                                 "--no-schedule"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {card}: job 'assistant': not enough memory: the KV cache of "
                          "1,048,832 tokens needs 47.26 GB; every usable device together holds")


def test_absurdly_slow_links_leave_single_device_plans() -> None:
    result = solve(CostModel(_tiny(link_mbps=1e-300)))
    assert len(result.plan.stage_devices) == 1 and np.isfinite(result.energy_j)


def test_absurdly_slow_links_where_one_device_is_too_small_name_the_link() -> None:
    model = CostModel(_tiny(link_mbps=1e-300, memory_bytes=20_000_000))
    with pytest.raises(InfeasibleError, match=r"job 'classify': links too slow: sending one "
                                              r"item over the link of .* takes .* s"):
        solve(model)


def test_the_solver_refuses_numbers_outside_its_range_instead_of_a_silent_status() -> None:
    for matrix, cost in (([[2e300, 1.0]], [-1.0, -1.0]), ([[2.0, 1.0]], [np.nan, -1.0])):
        with pytest.raises(NumericRangeError):
            solve_milp(np.array(cost), sparse.csc_array(matrix), np.array([-np.inf]),
                       np.array([3.0]), np.zeros(2), np.ones(2), np.array([True, True]))


@pytest.fixture(scope="module")
def nowhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny with 1 kB per device: the model fits nowhere (within every limit of the card)."""
    card = tmp_path_factory.mktemp("cards") / "nowhere.yaml"
    text = (REPO / "envs" / "tiny.yaml").read_text()
    for size in ("1000000000", "2000000000", "4000000000"):
        text = text.replace(f"memory_bytes: {size}", "memory_bytes: 1000")
    card.write_text(text)
    return card


def _cli(main: Callable[[Sequence[str] | None], int], argv: list[str],
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = run_cli(main, argv)
    return code, capsys.readouterr().err


def _every_cli(card: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """The one stderr line of ``plan``, ``sim``, ``bench`` and ``train`` on ``card``, each
    checked to exit 2 without a traceback."""
    agent = tmp_path / "agent.yaml"
    agent.write_text("default: {timesteps: 64, n_envs: 1, ppo: {n_steps: 32, batch_size: 32}}\n")
    runs = {
        "plan": (plan_main, ["--scenario", card, "--no-schedule"]),
        "sim": (sim_main, ["--scenario", card, "--controller", "static", "--duration", "5"]),
        "bench": (bench_main, ["--scenario", card, "--controllers", "static", "--episodes", "1",
                               "--seeds", "0", "--episode-steps", "2", "--out",
                               str(tmp_path / "bench"), "--no-plots"]),
        "train": (train_main, ["--scenario", card, "--agent", str(agent), "--out",
                               str(tmp_path / "ck"), "--no-progress"]),
    }
    lines = {}
    for name, (main, argv) in runs.items():
        code, err = _cli(main, argv, capsys)
        assert code == 2, name
        assert err.count("\n") == 1 and "Traceback" not in err, (name, err)
        lines[name] = err
    assert not (tmp_path / "ck").exists() or not any((tmp_path / "ck").rglob("ppo_*"))
    assert not (tmp_path / "bench" / "results").exists()
    return lines


def test_every_cli_refuses_a_card_that_fits_nowhere_with_the_same_line(
        nowhere: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = str(nowhere)
    lines = _every_cli(card, tmp_path, capsys)
    expected = (f"error: {card}: job 'classify': not enough memory: tiny8 layer 'fc1' needs "
                "8.00 MB of weights; the largest usable device (slow) holds 1000 B\n")
    assert lines == dict.fromkeys(lines, expected)


def test_a_plan_space_too_large_to_build_stops_every_cli_in_bounded_memory(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """1,000 layers on tiny's three devices: 3.0 million stage candidates, beyond
    :data:`MAX_STAGE_CANDIDATES` (a 4,096-layer card took 24 GB before the planner refused)."""
    text = (REPO / "envs" / "tiny.yaml").read_text()
    start = text.index("    layers:\n") + len("    layers:\n")
    layers = "".join(f"      - {{name: l{i}, kind: linear, forward_flops: 1.0e+6, "
                     "param_bytes: 1.0e+3, activation_bytes: 1.0e+3}\n" for i in range(1000))
    card = tmp_path / "layered.yaml"
    card.write_text(text[:start] + layers + text[text.index("\njobs:"):])
    lines = _every_cli(str(card), tmp_path, capsys)
    assert len(set(lines.values())) == 1
    assert "job 'classify': the plan space has 3,003,000 stage candidates" in lines["plan"]
    assert f"more than the {MAX_STAGE_CANDIDATES:,}" in lines["plan"]
