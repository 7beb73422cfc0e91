"""One energy formula: the simulator's accounting gives the interval model's energy when it is
fed the interval model's own activity, and tracks it when the activity is simulated."""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest

from dora_rl.config import Scenario
from dora_rl.costmodel import Plan
from dora_rl.dynamics import RuntimeDynamics, WorldState
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.scenarios import load
from dora_rl.sim.accounting import simulated_energy
from dora_rl.sim.env import SimEnv
from dora_rl.world import SLEEP, ControlState, Decision, IntervalModel
from dora_rl.world.slack import own_demand

SPLIT = Plan(stage_end=(4, 8), stage_devices=((1,), (2,)))  # mid then fast, over WiFi


def _worlds(scenario: Scenario, n: int) -> list[WorldState]:
    dynamics = RuntimeDynamics(scenario)
    rng = np.random.default_rng(0)
    dynamics.reset(rng)
    return [dynamics.step(rng) for _ in range(n)]


def _activity(model: IntervalModel, ctl: ControlState, nxt: ControlState,
              world: WorldState) -> tuple[list[float], list[float], list[float]]:
    """Busy, transmit and receive seconds per device of the one job serving its plan, worked
    out from the cost model (what the interval model charges; no switch under way)."""
    interval = model.interval_s
    plan = ctl.jobs[0].plan
    assert plan is not None
    state = world.state
    share = model.shares([jc.level for jc in nxt.jobs], world.job_active.tolist())[0]
    view = model.view(state, share, state.lists[1])
    metrics = model.models[0].evaluate(model.moded(plan, nxt.modes), view, check=False)
    scale = interval / metrics["interval_s"]
    busy = [x * interval for x in own_demand(metrics, view)]
    return (busy, [t * scale for t in metrics["tx_s"]], [r * scale for r in metrics["rx_s"]])


@pytest.mark.parametrize("unused", ["idle", "off"])
def test_the_models_own_activity_gives_back_the_models_energy(unused: str) -> None:
    """Tiny card, static links, the split plan over WiFi, the fast device at its slower
    power mode; with ``idle`` the slow device (made sleepable) sleeps, then wakes."""
    base = load("tiny")
    scenario = replace(base, objective=base.objective.model_copy(
        update={"unused_devices": unused}))
    model = IntervalModel(scenario)
    model.devices = (replace(model.devices[0], dedicated=True), *model.devices[1:])
    modes = [(SLEEP, 0, 1), (0, 0, 1), (0, 0, 0)] if unused == "idle" else [(0, 0, 1)] * 3
    ctl = model.initial([SPLIT])
    charged_any = {"sleep": 0.0, "wake": 0.0, "off": 0}
    for world, wanted in zip(_worlds(scenario, 3), modes, strict=True):
        nxt, out = model.transition(ctl, Decision(plans=(None,), modes=wanted), world)
        busy, tx, rx = _activity(model, ctl, nxt, world)
        for d, facts in enumerate(model.devices):
            charged = out.devices[d]
            mine = simulated_energy(facts, nxt.modes[d], model.interval_s, charged, busy[d],
                                    tx[d], rx[d])
            for f in fields(charged):
                assert getattr(mine, f.name) == pytest.approx(getattr(charged, f.name),
                                                              rel=1e-12, abs=1e-12), (d, f)
            charged_any["sleep"] += charged.sleep_j
            charged_any["wake"] += charged.wake_j
            charged_any["off"] += charged.total_j == 0.0
        assert sum(busy) > 0 and sum(tx) > 0 and sum(rx) > 0
        ctl = nxt
    if unused == "idle":  # the cases the on-time recovery must get right were exercised
        assert charged_any["sleep"] > 0 and charged_any["wake"] > 0
    else:
        assert charged_any["off"] == 3  # the slow device, unused, is off every interval


def test_simulated_energy_tracks_the_interval_model_on_a_steady_world() -> None:
    """Tiny at 10 requests a second on one device (utilisation 0.08): the simulated busy time
    is Poisson around the interval model's expectation; energy within 0.5 %, the jobs' part
    within 5 %, over the same 300 intervals (the interval model's figures ride along in
    ``info``) and against a separate EdgeEnv episode of the same seed."""
    env = SimEnv("tiny", episode_steps=300)
    plain = EdgeEnv("tiny", episode_steps=300)
    keep = np.array([2, 0, 0, 0])
    totals = np.zeros(5)
    for e in (env, plain):
        e.reset(seed=3)
    for _ in range(300):
        info = env.step(keep)[4]
        base = plain.step(keep)[4]
        totals += [info["energy_j"], info["jobs_energy_j"], info["model_energy_j"],
                   info["model_jobs_energy_j"], base["jobs_energy_j"]]
    energy, jobs, model_energy, model_jobs, plain_jobs = totals
    assert model_jobs == pytest.approx(plain_jobs, rel=1e-9)  # same control, same world
    assert energy == pytest.approx(model_energy, rel=0.005)
    assert jobs == pytest.approx(model_jobs, rel=0.05)
    assert jobs > 0.03 * energy  # the busy part is not lost in the idle power
