"""Thermal throttling: a device with a thermal model heats with the power it draws, runs no
faster than its throttle level while hot, and cools back; the card loader checks the model;
the env, the runtime and the interval model agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dora_rl.config import load_scenario
from dora_rl.config.loader import resolve, validate
from dora_rl.config.schema import ScenarioSpec
from dora_rl.costmodel import Plan
from dora_rl.costmodel.formulas import device_temperature_c
from dora_rl.dynamics import WorldState
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.errors import ConfigError
from dora_rl.runtime.power_modes import PowerRecord
from dora_rl.world import Decision, IntervalModel

ENVS = Path(__file__).resolve().parent.parent / "envs"
FAST = 2
ON_FAST = Plan.single(FAST, 8)
KEEP = Decision(plans=(None,))
HOT = {"ambient_c": 20.0, "c_per_w": 5.0, "time_constant_s": 4.0, "throttle_c": 47.0,
       "throttle_level": 1}
"""Idles at 45 C (5 W); serving the tiny job (~5.8 W) heads for ~49 C, past 47 C."""


def _card(edit: Any = None) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ENVS / "tiny.yaml").read_text())
    data["devices"][FAST]["thermal"] = dict(HOT)
    if edit is not None:
        edit(data)
    return data


def _model(edit: Any = None) -> IntervalModel:
    return IntervalModel(resolve(validate(ScenarioSpec, _card(edit), "<test>"), "<test>", ENVS))


def _world(model: IntervalModel, active: bool = True) -> WorldState:
    return WorldState(state=model.models[0].nominal, job_active=np.array([active]),
                      qoe_scale=np.ones(1), step=0)


def test_a_loaded_device_heats_past_its_limit_and_runs_throttled_while_the_mode_it_chose_is_kept(
) -> None:
    model = _model()
    world = _world(model)
    ctl = model.initial([ON_FAST])
    assert ctl.temp_c[FAST] == pytest.approx(45.0) and ctl.temp_c[0] == 0.0
    temps, outs = [], []
    for _ in range(20):
        ctl, out = model.transition(ctl, KEEP, world)
        temps.append(ctl.temp_c[FAST])
        outs.append(out)
    first_hot = next(i for i, t in enumerate(temps) if t >= HOT["throttle_c"])
    assert all(b > a for a, b in zip(temps[:first_hot], temps[1:first_hot + 1], strict=True))
    cool, hot = outs[first_hot], outs[first_hot + 1]
    assert not cool.throttled and hot.throttled[FAST] and not hot.throttled[0]
    # the 1/2-speed level doubles the compute: a throttled interval is slower
    assert hot.jobs[0].latency_ms > cool.jobs[0].latency_ms * 1.5
    assert ctl.modes == (0, 0, 0)  # the controller's choice, not the firmware's cap


def test_an_idle_device_cools_below_its_limit_and_runs_its_chosen_mode_again() -> None:
    model = _model()
    ctl = model.initial([ON_FAST])
    for _ in range(20):
        ctl, out = model.transition(ctl, KEEP, _world(model))
    assert out.throttled[FAST]
    hot_c = ctl.temp_c[FAST]
    for _ in range(20):
        ctl, out = model.transition(ctl, KEEP, _world(model, active=False))
    assert ctl.temp_c[FAST] < HOT["throttle_c"] < hot_c
    ctl, out = model.transition(ctl, KEEP, _world(model))
    assert not out.throttled


def test_temperature_follows_the_energy_charged_by_the_first_order_formula() -> None:
    model = _model()
    ctl = model.initial([ON_FAST])
    nxt, out = model.transition(ctl, KEEP, _world(model))
    power_w = out.devices[FAST].total_j / model.interval_s
    assert nxt.temp_c[FAST] == pytest.approx(device_temperature_c(
        45.0, power_w, 20.0, 5.0, 4.0, model.interval_s))


def test_a_mode_already_slower_than_the_cap_is_not_throttled() -> None:
    model = _model()
    ctl = model.initial([ON_FAST])
    slow = Decision(plans=(None,), modes=(0, 0, 1))
    for _ in range(20):
        ctl, out = model.transition(ctl, slow, _world(model))
    assert ctl.temp_c[FAST] >= HOT["throttle_c"]  # hot, but already at the cap
    assert not out.throttled and ctl.modes[FAST] == 1


def test_cards_without_thermal_models_carry_no_temperatures() -> None:
    model = _model(lambda d: d["devices"][FAST].pop("thermal"))
    ctl = model.initial([ON_FAST])
    nxt, out = model.transition(ctl, KEEP, _world(model))
    assert ctl.temp_c == () and nxt.temp_c == () and out.throttled == ()


def test_the_runtime_record_heats_and_caps_as_the_interval_model_does() -> None:
    model = _model()
    ctl = model.initial([ON_FAST])
    record = PowerRecord(model.devices)
    record.apply(None, used={FAST})
    for _ in range(20):
        speeds = record.speed([[1.0], [1.0], [1.0, 0.5]])
        ctl, out = model.transition(ctl, KEEP, _world(model))
        assert speeds[FAST] == (0.5 if out.throttled and out.throttled[FAST] else 1.0)
        record.tick(model.interval_s, out.devices)
        assert record.temp_c == pytest.approx(list(ctl.temp_c))
    assert record.modes == [0, 0, 0] and record.effective[FAST] == 1


def test_the_env_observes_each_devices_heat_on_cards_with_a_thermal_model() -> None:
    scenario = resolve(validate(ScenarioSpec, _card(), "<test>"), "<test>", ENVS)
    env = EdgeEnv(scenario, episode_steps=30)
    obs, _ = env.reset(seed=0)
    heat = env.layout.device(obs)[:, -1]
    assert env.layout.device_fields == 9 and heat[FAST] == pytest.approx(0.0)
    hold = np.zeros(env.action_space.shape, dtype=np.int64)
    throttled = []
    for _ in range(20):
        obs, _, _, _, info = env.step(hold)
        throttled.append(info["throttled"][FAST])
    assert any(throttled) and env.layout.device(obs)[FAST, -1] == pytest.approx(1.0)
    plain = EdgeEnv("tiny", episode_steps=30)
    assert plain.layout.device_fields == 8


def test_the_pi_5_throttles_at_80_c_and_idles_near_50_c_as_measured() -> None:
    pi = load_scenario(ENVS / "smart_home.yaml").devices[3]
    t = pi.thermal
    assert pi.kind == "raspberry_pi_5" and t is not None
    assert t.throttle_c == 80.0
    assert t.ambient_c + t.c_per_w * pi.power.idle_w == pytest.approx(50.0, abs=1.0)
    # all-core load takes an idle board past 80 C in a few minutes, the cap cools it again
    seconds = 0.0
    temp = t.ambient_c + t.c_per_w * pi.power.idle_w
    while temp < t.throttle_c:
        temp = device_temperature_c(temp, pi.power.busy_w, t.ambient_c, t.c_per_w,
                                    t.time_constant_s, 1.0)
        seconds += 1.0
    assert 120 <= seconds <= 300
    capped_w = pi.dvfs[t.throttle_level - 1].busy_w
    assert t.ambient_c + t.c_per_w * capped_w < t.throttle_c


@pytest.mark.parametrize(("edit", "field", "problem"), [
    (lambda d: d["devices"][FAST]["thermal"].update(throttle_level=2),
     "devices[2].thermal.throttle_level", "names no dvfs level"),
    (lambda d: d["devices"][FAST]["thermal"].update(throttle_c=44.0),
     "devices[2].thermal", "would throttle idle"),
    (lambda d: d["devices"][0].pop("thermal"),  # the Pi kind's model, without its dvfs level
     "devices[0].kind", "names no dvfs level"),
])
def test_a_bad_thermal_model_names_the_field(edit: Any, field: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        _model(edit)
    assert field in str(err.value) and problem in str(err.value)


def test_thermal_false_drops_the_kinds_model() -> None:
    scenario = resolve(validate(ScenarioSpec, _card(), "<test>"), "<test>", ENVS)
    assert scenario.devices[0].kind == "raspberry_pi_5" and scenario.devices[0].thermal is None
