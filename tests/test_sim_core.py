"""The simulator's mechanics: sharing, queueing, plan switches, departures, energy, the env."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from dora_rl.controllers import make
from dora_rl.costmodel import CostModel, Plan
from dora_rl.scenarios import load
from dora_rl.sim import Simulator
from dora_rl.sim.channel import FluidChannel, Part
from dora_rl.sim.device import ComputeDevice, Kernel
from dora_rl.sim.env import SimEnv
from dora_rl.world.weights import weight_bytes


def _stall_s(model: CostModel, old: Plan, new: Plan) -> float:
    """Seconds until the slowest device gaining layers has them, each at its own nominal link
    rate (what the simulator's idle medium gives a switch)."""
    layer_bytes = np.diff(model.tables.lists.params).tolist()
    link = model.tables.lists.link
    return max(b / link[d] for d, b in weight_bytes(layer_bytes, old, new).items())


TINY_FAST = Plan.single(2, 8)
TINY_SPLIT = Plan(stage_end=(4, 8), stage_devices=((1,), (2,)))


def test_concurrent_transfers_split_the_medium_by_their_weights() -> None:
    env = simpy.Environment()
    channel = FluidChannel(env, [1e-7], capacity=1.0)  # 10 MB/s: 1 MB is 0.1 s alone
    done: dict[str, float] = {}
    channel.start(Part(((0, 1e6),), 3.0, lambda p: done.setdefault("heavy", env.now)))
    channel.start(Part(((0, 1e6),), 1.0, lambda p: done.setdefault("light", env.now)))
    env.run()
    # heavy gets 3/4 of the medium: done at 0.1 / 0.75; light then has the medium alone
    assert done["heavy"] == pytest.approx(0.1 / 0.75)
    assert done["light"] == pytest.approx(0.2)


def test_a_fade_mid_transfer_slows_only_the_rest_of_it() -> None:
    env = simpy.Environment()
    inv_rate = [1e-7]
    channel = FluidChannel(env, inv_rate)
    done: list[float] = []
    channel.start(Part(((0, 1e6),), 1.0, lambda p: done.append(env.now)))

    def fade(_: simpy.Event) -> None:
        inv_rate[0] = 2e-7  # half the rate from t = 0.05 s
        channel.refresh()

    env.timeout(0.05).callbacks.append(fade)
    env.run()
    assert done == [pytest.approx(0.05 + 0.1)]  # half the bytes left, at half the rate


def test_a_device_runs_one_kernel_at_a_time_and_load_slows_only_what_is_left() -> None:
    env = simpy.Environment()
    dev = ComputeDevice(env, n_jobs=1)
    ends: list[float] = []
    for _ in range(2):
        dev.submit(Kernel(0.010, 0.0, 0, 1.0, lambda k: ends.append(env.now)))

    def busy(_: simpy.Event) -> None:
        dev.set_load(0.5)

    env.timeout(0.005).callbacks.append(busy)
    env.run()
    # first kernel: 5 ms done, the other 5 ms at half speed; second: 20 ms at half speed
    assert ends == [pytest.approx(0.015), pytest.approx(0.035)]
    busy_s, attributed_s, busy_j = dev.take()
    assert busy_s[0] == pytest.approx(0.035) and busy_j == pytest.approx(0.035)
    # 5 ms unloaded, then 30 ms at half the device: 5 + 15 ms of the device's own time
    assert attributed_s[0] == pytest.approx(0.020)


def test_memory_streaming_is_not_slowed_by_background_load() -> None:
    env = simpy.Environment()
    dev = ComputeDevice(env, n_jobs=1)
    dev.set_load(0.5)
    ends: list[float] = []
    dev.submit(Kernel(0.010, 0.050, 0, 1.0, lambda k: ends.append(env.now)))
    env.run()
    assert ends == [pytest.approx(0.050)]


def test_mean_latency_of_a_single_stage_follows_the_md1_queue() -> None:
    # one deterministic 8 ms server fed by Poisson arrivals at utilisation 0.6:
    # Pollaczek-Khinchine gives W = S + rho * S / (2 (1 - rho)) = 8 + 6 = 14 ms
    sim = Simulator(load("tiny"), seed=3, rate_scale=7.5)
    sim.start([TINY_FAST])
    sim.run_until(400.0)
    units = sim.jobs[0].finished_units
    mean_ms = 1e3 * sum(u.done_s - u.arrival_s for u in units) / len(units)
    assert len(units) > 25_000
    assert mean_ms == pytest.approx(14.0, rel=0.05)


def test_a_plan_switch_stalls_new_stages_until_their_weights_arrive() -> None:
    scenario = load("tiny")
    sim = Simulator(scenario, arrivals={"classify": [0.5, 0.999, 1.0]})
    sim.start([TINY_FAST])
    sim.run_until(1.0)
    sim.set_plan(0, TINY_SPLIT)
    sim.run_until(5.0)
    model = CostModel(scenario)
    stall_s = _stall_s(model, TINY_FAST, TINY_SPLIT)
    latency = [u.done_s - u.arrival_s for u in sim.jobs[0].finished_units]
    split_s = model.evaluate(TINY_SPLIT)["latency_s"]
    assert latency[0] == pytest.approx(0.008)  # before the switch
    assert latency[1] == pytest.approx(0.008)  # in flight at the switch: drains on the old plan
    assert latency[2] == pytest.approx(stall_s + split_s)  # waits for mid's weights
    assert sim.jobs[0].outstanding() == 0


def test_work_on_a_device_that_leaves_is_re_executed_on_the_new_plan() -> None:
    scenario = load("smart_home")
    sim = Simulator(scenario, arrivals={"assistant": [0.0], "doorbell": []})
    split = Plan(stage_end=(16, 24), stage_devices=((4,), (0,)))  # the phone, then the Orin
    alone = Plan.single(2, 24)  # the MacBook
    sim.start([split, None])
    sim.run_until(0.3)  # the prefill (0.66 s) is still on the phone
    assert sim.jobs[0].current is not None
    assert [r.tokens for r in sim.jobs[0].current.members] == [0]
    sim.set_plan(0, alone)
    assert sim.lose_devices([True, True, True, True, False]) == {4}
    sim.run_until(200.0)
    job = sim.jobs[0]
    assert job.outstanding() == 0 and len(job.finished_units) == 1
    unit = job.finished_units[0]
    model = CostModel(scenario, 0)
    stall_s = _stall_s(model, split, alone)
    assert unit.restarts == 1 and job.restarted == 1
    assert unit.tokens == scenario.jobs[0].llm.output_tokens  # type: ignore[union-attr]
    # weights first (the medium is idle: the cost model's stall), then the whole request
    assert unit.done_s - unit.arrival_s == pytest.approx(
        0.3 + stall_s + model.evaluate(alone)["latency_s"])


def test_units_are_conserved_under_random_control_and_churn() -> None:
    env = SimEnv("smart_home", bandwidth="synthetic", episode_steps=400)
    env.action_space.seed(5)
    env.reset(seed=5)
    arrived = [0, 0]
    for _ in range(400):
        _, _, _, _, info = env.step(env.action_space.sample())
        assert env.last_report is not None
        for j, iv in enumerate(env.last_report.jobs):
            arrived[j] += iv.arrived
            job = env.sim.jobs[j]
            assert arrived[j] == len(job.finished_units) + job.outstanding()
        assert info["sim_outstanding"] == tuple(job.outstanding() for job in env.sim.jobs)
    assert sum(len(job.finished_units) for job in env.sim.jobs) > 1000


def test_same_seed_gives_the_same_simulation() -> None:
    runs = []
    for _ in range(2):
        env = SimEnv("smart_home", episode_steps=60)
        env.action_space.seed(2)
        env.reset(seed=7)
        trace = []
        for _ in range(60):
            _, reward, _, _, info = env.step(env.action_space.sample())
            trace.append((reward, info["energy_j"], info["sim_finished"], info["latency_ms"]))
        runs.append(repr(trace))
    assert runs[0] == runs[1]


def test_an_idle_site_draws_idle_power_and_a_request_adds_its_busy_power() -> None:
    scenario = load("tiny")
    idle_w = sum(d.power.idle_w for d in scenario.devices)
    env = SimEnv(scenario, episode_steps=3, arrivals={"classify": [1.5]})
    obs, _ = env.reset(seed=0)
    energy = []
    for _ in range(3):
        obs, _, _, _, info = env.step(make("static", env).predict(obs)[0])
        energy.append(info["energy_j"])
    fast = scenario.devices[2].power
    assert energy[0] == pytest.approx(idle_w)
    assert energy[1] == pytest.approx(idle_w + 0.008 * (fast.busy_w - fast.idle_w))
    assert info["sim_finished"] == (0,) and env.sim.jobs[0].finished_units[0].done_s < 2.0
