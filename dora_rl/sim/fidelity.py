"""One unit of work alone in the simulator, next to the cost model's figure for it.

With one request in flight and constant rates nothing queues, so the simulated latency should
be the cost model's: the fidelity check of the two implementations (``tests/test_sim_fidelity``
and ``experiments/sim_fidelity.py``).

Example:
    >>> from dora_rl.costmodel import CostModel, Plan
    >>> from dora_rl.scenarios import load
    >>> model = CostModel(load("tiny"))
    >>> plan = Plan(stage_end=(4, 8), stage_devices=((1,), (2,)))
    >>> alone = isolated_unit(model, plan)
    >>> round(alone.latency_s * 1e3, 3), round(model.evaluate(plan)["latency_s"] * 1e3, 3)
    (25.2, 25.2)
"""

from __future__ import annotations

from dataclasses import dataclass

from dora_rl.costmodel import CostModel, Plan, State, check_plan
from dora_rl.sim.simulator import Simulator


@dataclass(frozen=True)
class Isolated:
    """Figures of one unit of work that had the system to itself.

    Attributes:
        latency_s: Arrival to finish (request) or the iteration time (training).
        ttft_s, tpot_s: Time to first token and mean time per further token (LLM; NaN
            otherwise).
    """

    latency_s: float
    ttft_s: float
    tpot_s: float


def isolated_unit(model: CostModel, plan: Plan, state: State | None = None) -> Isolated:
    """Simulate one unit of ``model``'s job on ``plan`` with nothing else running.

    Args:
        model: The job's cost model (its scenario's other jobs stay idle).
        plan: The plan (checked).
        state: Rates, load and shares (the cost model's nominal state when omitted); the
            job's share of each medium is ``state.medium_share``.
    """
    check_plan(plan, model.tables)
    state = state or model.nominal
    scenario = model.scenario
    j = model.tables.job_index
    names = [job.name for job in scenario.jobs]
    models = [model if i == j else CostModel(scenario, i) for i in range(len(names))]
    sim = Simulator(scenario, models, arrivals={n: ([0.0] if i == j else [])
                                                for i, n in enumerate(names)})
    sim.set_world(state, job_active=[i == j for i in range(len(names))])
    sim.start([plan if i == j else None for i in range(len(names))])
    job = sim.jobs[j]
    job.active = False  # a training job runs this one iteration only
    sim.env.run()
    unit = job.finished_units[0]
    llm = job.spec.kind == "llm"
    nan = float("nan")
    return Isolated(latency_s=unit.done_s - unit.arrival_s,
                    ttft_s=unit.ttft_s if llm else nan, tpot_s=unit.tpot_s if llm else nan)
