"""The LLM pipeline on three workers: tokens equal the unpartitioned model's, and a request
survives the loss of a worker mid-stream. The runtime runs in a subprocess (torch.distributed
RPC allows one cluster per process, and the test process may hold another)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from dora_rl.runtime import tiny_lm

RUN = """
import json
from dora_rl.runtime import tiny_lm
from dora_rl.runtime.control import FixedDecider, make_decider, parse_plan
from dora_rl.runtime.llm_serving import LlmRuntime
from dora_rl.runtime.settings import ServeConfig
from dora_rl.scenarios import load

scenario = load("envs/tiny_llm.yaml")
plan = parse_plan("3:slow,6:mid,8:fast", ["slow", "mid", "fast"], 8)
rt = LlmRuntime(ServeConfig(scenario=scenario, job=0, plan_wait_s=5.0),
                FixedDecider(plan, make_decider("static", scenario, 0)))
rt.start()
try:
    first_plan = [list(g) for g in rt.live.plan.stage_devices]
    whole = [list(rt.generate(tiny_lm.encode(t), 24)) for t in ("Hello, world", "a")]
    tokens = rt.generate(tiny_lm.encode("failover"), 30)
    failover = [next(tokens) for _ in range(5)]
    rt.cluster.kill("mid")
    failover += list(tokens)
    print(json.dumps({"first_plan": first_plan, "whole": whole, "failover": failover,
                      "plan_after": [list(g) for g in rt.live.plan.stage_devices],
                      "faults": [f["device"] for f in rt.live.faults],
                      "completed": rt.metrics.jobs["chat"].completed}))
finally:
    rt.close()
"""


def reference(text: str, max_tokens: int) -> list[int]:
    """Greedy tokens of the whole model in this process (seed 0, the runtime's)."""
    return tiny_lm.reference_tokens(text, max_tokens)


def test_three_worker_tokens_equal_the_unpartitioned_model_even_after_a_worker_dies() -> None:
    env = dict(os.environ, TORCH_CPP_LOG_LEVEL="ERROR")
    done = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True,
                          timeout=120, env=env, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["first_plan"] == [[0], [1], [2]]
    assert out["whole"] == [reference("Hello, world", 24), reference("a", 24)]
    assert out["failover"] == reference("failover", 30)  # nothing lost, nothing repeated
    assert out["faults"] == ["mid"]
    assert all(1 not in group for group in out["plan_after"])
    assert out["completed"] == 3
