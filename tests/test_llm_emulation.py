"""The LLM path emulates the card's world: each step's stage times are the cost model's."""

from __future__ import annotations

import pytest

from dora_rl.costmodel import CostModel, Plan
from dora_rl.costmodel.llm_steps import llm_step_s
from dora_rl.runtime.control import make_decider
from dora_rl.runtime.llm_serving import LlmRuntime
from dora_rl.runtime.settings import ServeConfig
from dora_rl.scenarios import load

PLANS = [Plan((8,), ((2,),), 1), Plan((3, 6, 8), ((0,), (1,), (2,)), 1),
         Plan((5, 8), ((1,), (2,)), 1)]
CASES = [("envs/tiny_llm.yaml", p) for p in PLANS] + [
    ("smart_home", Plan((24,), ((0,),), 1)),  # TinyLlama on the Orin Nano: memory-bound decode
    ("smart_home", Plan((12, 24), ((0,), (2,)), 1))]


@pytest.fixture(scope="module")
def model() -> CostModel:
    return CostModel(load("envs/tiny_llm.yaml"))


@pytest.mark.parametrize(("card", "plan"), CASES, ids=lambda x: str(getattr(x, "stage_end", x)))
def test_a_prefill_and_decode_steps_sum_to_the_cost_models_ttft_and_tpot(
        card: str, plan: Plan) -> None:
    model = CostModel(load(card))
    work = model.tables.job.llm
    assert work is not None
    figures = model.evaluate(plan, model.nominal)
    prompt, out = work.prompt_tokens, work.output_tokens
    network_s = sum(figures["transfer_s"])  # the prompt's hidden states across boundaries
    prefill = sum(llm_step_s(model.tables, plan, prompt, 0))
    assert prefill + network_s == pytest.approx(figures["ttft_s"], rel=1e-9)
    # a decode step at the mean context is the model's time per token
    decode = sum(llm_step_s(model.tables, plan, 1, prompt + 0.5 * out))
    assert decode + network_s / prompt == pytest.approx(figures["tpot_s"], rel=1e-9)


def test_a_memory_bound_decode_step_reads_more_cache_the_longer_the_context() -> None:
    model = CostModel(load("smart_home"))
    plan = CASES[-2][1]
    short, long = (llm_step_s(model.tables, plan, 1, c)[0] for c in (16, 1024))
    assert long > short


def test_a_slower_power_mode_lengthens_the_step_as_the_catalog_says(model: CostModel) -> None:
    plan = PLANS[0]
    nominal = llm_step_s(model.tables, plan, 32, 0)[0]
    half = llm_step_s(model.tables, Plan((8,), ((2,),), 1, dvfs_levels=(0, 0, 1)), 32, 0)[0]
    assert half == pytest.approx(2.0 * nominal)  # the fast device's "half" mode: speed 0.5


def test_the_runtime_sleeps_the_emulated_time_less_the_measured_overhead() -> None:
    card = load("envs/tiny_llm.yaml")
    rt = LlmRuntime(ServeConfig(card, time_scale=4.0), make_decider("static", card, 0))
    try:
        rt.step_overhead_s = [0.001, 0.002, 0.5]
        plan = PLANS[1]
        compute, sleep, send = rt.emulated(plan, 32, 0)
        expected = [4.0 * s for s in llm_step_s(rt.model.tables, plan, 32, 0)]
        assert compute == pytest.approx(expected)
        assert sleep == pytest.approx([expected[0] - 0.001, expected[1] - 0.002,
                                       max(expected[2] - 0.5, 0.0)])
        act = rt.model.tables.lists.act
        assert send == (act[2] * 32, act[5] * 32)
    finally:
        rt.cluster.close()
