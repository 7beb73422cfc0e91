"""Long checks (the ``slow`` tier, ``make test-slow``): the exact planner on the synthetic
benchmark instances, where the plan search and the mixed-integer program must agree.

(48 x 8 training in energy mode is left out: the program alone does not prove its optimum in
five minutes, gap 8.3 %.)"""

from __future__ import annotations

import pytest

from dora_rl.costmodel import CostModel
from dora_rl.planner.exact import search as search_module
from dora_rl.planner.exact.partition import solve
from dora_rl.synthetic_cards import benchmark_scenario

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("layers", "devices", "workload", "mode"), [
    (48, 8, "inference", "energy"), (48, 8, "llm_inference", "energy"),
    (48, 8, "training", "time"), (96, 16, "inference", "energy"),
    (96, 16, "llm_inference", "time")])
def test_the_plan_search_and_the_milp_reach_the_same_optimum(
        monkeypatch: pytest.MonkeyPatch, layers: int, devices: int, workload: str,
        mode: str) -> None:
    model = CostModel(benchmark_scenario(layers, devices, workload))  # type: ignore[arg-type]
    searched = solve(model, mode, time_limit_s=120.0)  # type: ignore[arg-type]
    assert searched.status == "optimal"
    monkeypatch.setattr(search_module, "MAX_PLANS", 0)  # every solve through the MILP
    programmed = solve(model, mode, time_limit_s=300.0)  # type: ignore[arg-type]
    assert programmed.status == "optimal"
    assert programmed.objective == pytest.approx(searched.objective, rel=1e-6)
