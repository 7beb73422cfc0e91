"""Live decisions on the -v1 stack: the env's observation from measurements, the env's decoding,
the interval model's power rules and energy, without worker processes."""

from __future__ import annotations

import numpy as np
import pytest

from dora_rl.config import Scenario
from dora_rl.costmodel import Plan, State
from dora_rl.dynamics import WorldState
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.runtime.control import ControlDecider, make_decider
from dora_rl.runtime.live import LiveControl
from dora_rl.runtime.observe import Measurement, observe
from dora_rl.runtime.power_modes import PowerRecord, device_energies
from dora_rl.runtime.telemetry import IntervalTelemetry
from dora_rl.scenarios import load
from dora_rl.world import SLEEP, Decision, IntervalModel
from dora_rl.world.slack import own_demand

ALL = (True, True, True)
ON_FAST = Plan(stage_end=(8,), stage_devices=((2,),))


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    return load("tiny")


def _telemetry(index: int = 0, slack: float | None = None, completed: int = 0,
               missed: int = 0, links: float = 1.0) -> IntervalTelemetry:
    return IntervalTelemetry(
        index=index, t_s=0.5, duration_s=0.5, plan_id=0, in_flight=0, completed=completed,
        latency_ms_mean=None, latency_ms_p95=None, requests_missed=missed,
        request_violation_rate=missed / completed if completed else None, slack=slack,
        calls=[0] * 3, compute_ms=[None] * 3, queue_depth=[0] * 3, queue_depth_max=[0] * 3,
        transfer_mb=0.0, transfer_ms=0.0, link_scale=[links] * 3, measured_mbps=[None] * 3,
        modes=[0] * 3, energy_j=0.0, jobs_energy_j=0.0, device_energy_j=[0.0] * 3)


def _measured(tiny, links: float, slack: float,  # type: ignore[no-untyped-def]
              missed: int = 4) -> Measurement:
    """A measurement of the runtime serving ``tiny`` on ``fast`` after an interval with every
    link at ``links`` whose requests' smallest slack was ``slack`` (``missed`` of 10)."""
    control = LiveControl(IntervalModel(tiny), 0)
    state = State.nominal(tiny).replace(link_scale=[links] * 3)
    world = WorldState(state=state, job_active=np.array([True]), qoe_scale=np.ones(1), step=0)
    control.closed(_telemetry(slack=slack, completed=10, missed=missed, links=links), world, (),
                   plan_broken=False, moved_bytes=0.0)
    return control.measurement(ALL, ON_FAST, 5, {2: set(range(8))})


@pytest.mark.parametrize(("card", "seed", "steps", "states"), [
    ("tiny", 0, 8, set()), ("smart_home", 3, 12, {"resident"}),
    ("traffic_analytics", 0, 10, {"asleep", "switching", "inactive"}),
    ("traffic_analytics", 5, 10, {"asleep", "switching", "resident"})])
def test_a_never_reset_env_bound_to_a_measurement_observes_what_the_env_does(
        card: str, seed: int, steps: int, states: set[str]) -> None:
    env, fresh = EdgeEnv(card, bandwidth="synthetic"), EdgeEnv(card, bandwidth="synthetic")
    obs, _ = env.reset(seed=seed)
    env.action_space.seed(seed)
    seen = set()
    for step in range(steps):
        ctl = env.ctl
        seen |= {name for name, on in (
            ("asleep", SLEEP in ctl.modes), ("switching", any(jc.target for jc in ctl.jobs)),
            ("resident", any(ctl.resident)), ("inactive", not env.world.job_active.all()))
            if on}
        m = Measurement(world=env.world, ctl=ctl, last=env.last)
        np.testing.assert_array_equal(observe(fresh, m, env.history), obs,
                                      err_msg=f"step {step}")
        obs, *_ = env.step(env.action_space.sample())
    assert states <= seen  # the control states a runtime fills from its own record


def test_dora_decides_on_the_live_measurement_not_on_a_world_frozen_at_reset(tiny) -> None:  # type: ignore[no-untyped-def]
    healthy, degraded = _measured(tiny, 1.0, 0.5, missed=0), _measured(tiny, 0.05, -0.5)
    a, b = make_decider("dora", tiny, 0), make_decider("dora", tiny, 0)
    assert not hasattr(a.env, "world")  # the decider's env is never reset or stepped
    obs_h, obs_d = a.observation(healthy), b.observation(degraded)
    lay = a.env.layout
    assert obs_h[: lay.device_start].min() > 0.8 > 0.05 > obs_d[: lay.device_start].max()
    assert (lay.job(obs_h)[0, 2], lay.job(obs_d)[0, 2]) == (0.5, -0.5)  # measured slack
    assert (lay.job(obs_h)[0, 3], lay.job(obs_d)[0, 3]) == (0.0, pytest.approx(0.4))  # missed
    decision_h, decision_d = a.decide(healthy), b.decide(degraded)
    assert a.env.world is healthy.world and b.env.world is degraded.world
    # plenty of slack: the busy fast device goes to its slower mode; short of it: nominal
    assert decision_h.modes == (0, 0, 1) and decision_d.modes == (0, 0, 0)


class _Asks:
    """A controller that always asks for the given action."""

    def __init__(self, action: list[int]) -> None:
        self.action = np.array(action)

    def predict(self, obs, state=None, episode_start=None, deterministic=True):  # type: ignore[no-untyped-def]
        return self.action, state


def test_an_infeasible_choice_goes_through_the_envs_safety_layer_and_the_power_rules(
        tiny: Scenario) -> None:
    env = EdgeEnv(tiny, bandwidth="static")
    # candidate 4 of a job with one candidate, the whole medium; fast asked to sleep (value 2)
    decider = ControlDecider(_Asks([4 * 4 + 3, 0, 0, 2]), env, 0)
    m = _measured(tiny, 1.0, 0.5)
    decision = decider.decide(m)
    assert decision.plans == (ON_FAST,) and decision.levels == (3,)
    assert decision.modes == (0, 0, SLEEP) and decider.invalid == 1
    control = LiveControl(IntervalModel(tiny), 0)
    assert control.apply(decision, ON_FAST, ALL) is None  # already serving: kept
    assert control.power.modes == [0, 0, 0] and control.power.refused == 1  # fast is busy
    assert control.share() == 1.0


def test_a_plan_on_a_sleeping_device_waits_for_it_to_wake() -> None:
    home = load("smart_home")
    model = IntervalModel(home)
    wake_s = model.devices[0].wake_s
    control = LiveControl(model, 1)
    on_laptop = Plan(stage_end=(14,), stage_devices=((1,),))
    on_orin = Plan(stage_end=(14,), stage_devices=((0,),))
    usable = (True,) * 5
    asleep = Decision(plans=(None, None), modes=(SLEEP, 0, 0, 0, 0))
    assert control.apply(asleep, on_laptop, usable) is None
    assert control.awake()[0] is False
    wanted = Decision(plans=(None, on_orin), levels=(2, 1), modes=(SLEEP, 0, 0, 0, 0))
    assert control.apply(wanted, on_laptop, usable) is None  # the orin must wake first
    assert control.target == on_orin and control.power.modes[0] == 0
    assert control.power.wake_left_s[0] == wake_s and control.power.refused == 1
    assert control.share() == 0.5  # level 1 of 4 for the only job with work
    ctl = control.control_state(on_laptop, 0, {1: set(range(14))}, usable)
    assert ctl.jobs[1].target == on_orin and ctl.jobs[1].pending_bytes > 0
    control.power.tick(wake_s)
    assert control.apply(None, on_laptop, usable) == on_orin and control.target is None


def test_going_back_to_the_serving_plan_calls_a_waiting_switch_off(tiny) -> None:  # type: ignore[no-untyped-def]
    control = LiveControl(IntervalModel(tiny), 0)
    control.target = ON_FAST
    on_mid = Plan(stage_end=(8,), stage_devices=((1,),))
    assert control.apply(Decision(plans=(on_mid,)), on_mid, ALL) is None
    assert control.target is None


def test_runtime_energy_equals_the_interval_models_for_the_same_busy_and_radio_time(
        tiny: Scenario) -> None:
    model = IntervalModel(tiny, interval_s=1.0)
    plan = Plan(stage_end=(4, 8), stage_devices=((1,), (2,)))
    ctl = model.initial([plan])
    state = State.nominal(tiny)
    world = WorldState(state=state, job_active=np.array([True]), qoe_scale=np.ones(1), step=0)
    modes = (0, 0, 1)  # fast at its "half" level
    _, out = model.transition(ctl, Decision(plans=(None,), modes=modes), world)
    # what the runtime would have measured: the job's own busy time and its plan's radio time
    share = model.shares([ctl.jobs[0].level], [True])[0]
    view = model.view(state, share, state.lists[1])
    metrics = model.models[0].evaluate(model.moded(plan, modes), view, check=False)
    per_s = 1.0 / metrics["interval_s"]
    busy = own_demand(metrics, view)  # the job's own busy share, as the model charges it
    tx = [t * per_s for t in metrics["tx_s"]]
    rx = [r * per_s for r in metrics["rx_s"]]
    assert busy[2] > 0 and tx[1] > 0 and rx[2] > 0
    record = PowerRecord(model.devices)
    record.apply(modes, used=plan.devices)
    power = record.interval(present=ALL, used=set(plan.devices))
    energy = device_energies(model.devices, power, 1.0, busy, tx, rx, model.power_off_unused)
    assert [e.total_j for e in energy] == pytest.approx([e.total_j for e in out.devices])
    assert [e.jobs_j for e in energy] == pytest.approx([e.jobs_j for e in out.devices])
    assert energy[2].busy_j == pytest.approx((8.0 - 5.0) * busy[2])  # the mode's busy power


@pytest.mark.parametrize("name", ["static", "throughput", "dora", "greedy", "mpc", "random"])
def test_every_v1_controller_decides_on_a_measurement(tiny: Scenario, name: str) -> None:
    decider = make_decider(name, tiny, 0)
    start = decider.env.initial_plans  # the throughput baseline starts the env on its plan
    assert decider.initial(ALL) == (start[0] if start else decider.candidates(ALL)[0])
    decision = decider.decide(_measured(tiny, 0.5, 0.2))
    assert len(decision.plans) == 1 and decision.modes is not None and len(decision.modes) == 3


def test_the_hindsight_oracle_is_refused_by_a_live_runtime(tiny: Scenario) -> None:
    from dora_rl.errors import DoraError

    decider = make_decider("oracle", tiny, 0)
    with pytest.raises(DoraError, match="live runtime cannot know"):
        decider.decide(_measured(tiny, 0.5, 0.2))
