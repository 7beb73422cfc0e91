"""Plan sets cached on disk: read back equal, keyed by everything they depend on, never stale,
never trusted blindly, switchable off and clearable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dora_rl.config import Scenario
from dora_rl.costmodel import CostModel
from dora_rl.env.plan_choices import CandidateCache
from dora_rl.errors import InfeasibleError
from dora_rl.plan import main as plan_main
from dora_rl.planner import disk, planset
from dora_rl.scenarios import load


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(disk.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def solves(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the jobs whose plan set was solved (not read from the cache)."""
    seen: list[str] = []
    real = planset._solve_plan_set

    def counting(model: CostModel, *args: object) -> planset.PlanSet:
        seen.append(model.tables.job.name)
        return real(model, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(planset, "_solve_plan_set", counting)
    return seen


def _signature(ps: planset.PlanSet) -> list[tuple[object, ...]]:
    return [(e.plan, e.robustness, e.role, e.metrics["energy_j"], e.metrics["latency_s"])
            for e in ps.entries]


def test_a_plan_set_solved_once_is_read_back_equal(cache: Path, solves: list[str]) -> None:
    model = CostModel(load("tiny"))
    first = planset.plan_set(model, k=4)
    second = planset.plan_set(CostModel(load("tiny")), k=4)
    assert solves == ["classify"]
    assert _signature(second) == _signature(first)
    assert len(list(cache.glob("*.json"))) == 1


def test_another_card_k_or_code_is_solved_anew(cache: Path, solves: list[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = load("tiny")
    planset.plan_set(CostModel(scenario), k=4)
    planset.plan_set(CostModel(scenario), k=3)
    device = scenario.devices[2].model_copy(update={"memory_bytes": 3_000_000_000})
    changed = Scenario(**{**scenario.__dict__, "devices": (*scenario.devices[:2], device)})
    planset.plan_set(CostModel(changed), k=4)
    monkeypatch.setattr(disk, "code_fingerprint", lambda: "another version of the code")
    planset.plan_set(CostModel(scenario), k=4)
    assert len(solves) == 4
    assert len(list(cache.glob("*.json"))) == 4


def test_the_same_card_under_another_name_or_path_shares_the_entry(
        cache: Path, solves: list[str]) -> None:
    scenario = load("tiny")
    renamed = Scenario(**{**scenario.__dict__, "name": "other", "source": "/elsewhere.yaml",
                          "description": "another text"})
    planset.plan_set(CostModel(scenario), k=4)
    planset.plan_set(CostModel(renamed), k=4)
    assert len(solves) == 1


@pytest.mark.parametrize("content", [
    "not json at all",
    json.dumps({"format": disk.FORMAT, "key": "wrong", "entries": []}),
    "{}",
])
def test_an_unreadable_file_is_ignored_and_replaced(cache: Path, solves: list[str],
                                                    content: str) -> None:
    model = CostModel(load("tiny"))
    planset.plan_set(model, k=4)
    (path,) = cache.glob("*.json")
    path.write_text(content)
    again = planset.plan_set(model, k=4)
    assert len(solves) == 2
    assert json.loads(path.read_text())["key"] == path.stem
    assert again.entries


def test_a_stored_plan_the_job_cannot_run_is_not_trusted(cache: Path,
                                                         solves: list[str]) -> None:
    model = CostModel(load("tiny"))
    planset.plan_set(model, k=4)
    (path,) = cache.glob("*.json")
    data = json.loads(path.read_text())
    data["data"][0]["plan"]["stage_end"] = [99]
    data["data"][0]["plan"]["stage_devices"] = [[7]]
    path.write_text(json.dumps(data))
    again = planset.plan_set(model, k=4)
    assert len(solves) == 2
    assert all(max(e.plan.devices) < 3 for e in again.entries)


def test_the_cache_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     solves: list[str]) -> None:
    monkeypatch.setenv(disk.CACHE_ENV, "off")
    monkeypatch.chdir(tmp_path)
    model = CostModel(load("tiny"))
    planset.plan_set(model, k=4)
    planset.plan_set(model, k=4)
    assert len(solves) == 2
    assert not list(tmp_path.rglob("*.json"))


def test_plan_clear_cache_empties_the_folder(cache: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    planset.plan_set(CostModel(load("tiny")), k=4)
    planset.plan_set(CostModel(load("tiny")), k=2)
    assert plan_main(["--clear-cache"]) == 0
    assert "removed 2 cached plan sets" in capsys.readouterr().out
    assert not list(cache.glob("*"))


def test_an_unwritable_folder_only_costs_the_cache(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(disk.CACHE_ENV, str(blocker / "below"))
    assert planset.plan_set(CostModel(load("tiny")), k=4).entries


def _cache_of(scenario: Scenario, k: int = 3) -> CandidateCache:
    return CandidateCache([CostModel(scenario, j) for j in range(len(scenario.jobs))], k)


def test_an_envs_candidates_per_device_set_are_read_back_without_solving(
        cache: Path, solves: list[str]) -> None:
    scenario = load("tiny")
    first = _cache_of(scenario)
    everyone, without_fast = [True, True, True], [True, True, False]
    expected = (first.get(np.array(everyone)), first.get(np.array(without_fast)))
    assert first.solves > 0
    again = _cache_of(load("tiny"))
    assert (again.get(np.array(everyone)), again.get(np.array(without_fast))) == expected
    assert again.solves == 0
    assert len(solves) == 1  # the plan set, once


def test_a_card_no_plan_fits_is_refused_alike_from_the_cache(cache: Path) -> None:
    scenario = load("tiny")
    small = tuple(d.model_copy(update={"memory_bytes": 1000}) for d in scenario.devices)
    nowhere = Scenario(**{**scenario.__dict__, "devices": small})
    messages = []
    for _ in range(2):
        with pytest.raises(InfeasibleError) as error:
            _cache_of(nowhere).require_plannable("nowhere.yaml")
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert "not enough memory" in messages[0]
