"""Load over the day: profile files, the world's request rates, and the interval model at them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from dora_rl.config.loader import load_scenario
from dora_rl.dynamics import RuntimeDynamics
from dora_rl.dynamics.daily import RATE_STEP, load_profiles
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.errors import ConfigError
from dora_rl.scenarios import load
from dora_rl.world.control_state import Decision
from dora_rl.world.interval import IntervalModel

ENVS = Path(__file__).resolve().parent.parent / "envs"
I94 = ENVS / "traces" / "load_by_hour" / "i94_traffic_volume.csv"


def _profile(tmp_path: Path, rows: list[str], header: str = "day,hour,calls") -> Path:
    path = tmp_path / "load.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _day(name: str, values: list[float]) -> list[str]:
    return [f"{name},{h},{v}" for h, v in enumerate(values)]


def test_profile_columns_are_shares_of_their_busiest_hour(tmp_path: Path) -> None:
    path = _profile(tmp_path, _day("d1", [1.0] * 23 + [4.0]) + _day("d2", [2.0] * 24))
    profiles = load_profiles(path)
    assert profiles.days == ("d1", "d2") and profiles.columns == ("calls",)
    assert profiles.values.shape == (2, 24, 1)
    assert profiles.values.max() == 1.0 and profiles.values[0, 0, 0] == 0.25


@pytest.mark.parametrize(("rows", "where"), [
    (["d1,0,1"], "hours"),                      # a day without all 24 hours
    (_day("d1", [1.0] * 24) + ["d1,3,2"], "line 26"),  # an hour repeated
    (["d1,24,1"], "line 2: hour"),              # no such hour
    (["d1,0,x"], "line 2: calls"),              # not a number
    (["d1,0,-1"], "line 2: calls"),             # negative
    (["d1,0,1,2"], "line 2"),                   # too many fields
    (_day("d1", [0.0] * 24), "column 'calls'"),  # nothing to scale by
])
def test_a_malformed_profile_names_the_file_and_the_place(tmp_path: Path, rows: list[str],
                                                          where: str) -> None:
    path = _profile(tmp_path, rows)
    with pytest.raises(ConfigError) as err:
        load_profiles(path)
    assert str(path) in str(err.value) and where in str(err.value)


def test_a_profile_header_without_day_and_hour_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="header"):
        load_profiles(_profile(tmp_path, ["1,2,3"], header="date,h,calls"))


def _card_with(tmp_path: Path, edit: dict[str, object]) -> Path:
    card = yaml.safe_load((ENVS / "traffic_analytics.yaml").read_text())
    card["dynamics"]["traces_dir"] = str(ENVS / "traces" / "wifi_cellular_walks")
    card["dynamics"]["load_profiles"] = str(I94)
    for key, value in edit.items():
        section, field = key.split(".", 1)
        if section == "jobs":
            index, name = field.split(".")
            card["jobs"][int(index)][name] = value
        else:
            card[section][field] = value
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


def test_a_rate_profile_needs_a_profile_file(tmp_path: Path) -> None:
    path = _card_with(tmp_path, {"dynamics.load_profiles": None})
    with pytest.raises(ConfigError, match=r"jobs\[2\].rate_profile: needs dynamics"):
        load_scenario(path)


def test_a_rate_profile_naming_no_column_is_refused_with_the_columns(tmp_path: Path) -> None:
    scenario = load_scenario(_card_with(tmp_path, {"jobs.3.rate_profile": "buses"}))
    with pytest.raises(ConfigError, match=r"jobs\[3\].rate_profile: no column 'buses'.*vehicles"):
        RuntimeDynamics(scenario)


def test_an_episode_that_is_not_whole_intervals_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="episode_s"):
        load_scenario(_card_with(tmp_path, {"dynamics.episode_s": 90.0}))


def test_traffic_jobs_follow_the_road_and_camera_streams_do_not() -> None:
    dyn = RuntimeDynamics(load("traffic_analytics"), split="test", interval_s=60.0)
    rng = np.random.default_rng(3)
    worlds = [dyn.reset(rng)] + [dyn.step(rng) for _ in range(1439)]
    rates = np.array([w.rate_scale for w in worlds])
    assert (rates[:, :2] == 1.0).all()  # vehicle streams: every frame, all day
    assert (rates[:, 2] == rates[:, 3]).all()  # plates and pedestrians both follow volume
    assert rates[:, 2].min() <= 0.15 and rates[:, 2].max() >= 0.6  # night against rush hour
    steps = rates[:, 2] / RATE_STEP
    assert np.allclose(steps, np.round(steps)) and rates.min() >= RATE_STEP
    hours = np.array([w.hour for w in worlds])
    night = rates[(hours >= 1) & (hours < 4), 2].mean()
    afternoon = rates[(hours >= 14) & (hours < 18), 2].mean()
    assert afternoon > 3 * night


def test_test_days_are_days_training_never_sees() -> None:
    profiles = load_profiles(I94)
    train, test = set(profiles.split("train").tolist()), set(profiles.split("test").tolist())
    assert train and test and not train & test


def test_the_env_takes_its_interval_and_episode_from_the_card() -> None:
    env = EdgeEnv("traffic_analytics", split="test")
    assert (env.interval_s, env.episode_steps) == (60.0, 1440)
    assert EdgeEnv("traffic_analytics", episode_steps=5, interval_s=1.0).episode_steps == 5


def test_half_the_rate_halves_arrivals_and_the_work_energy() -> None:
    scenario = load("traffic_analytics")
    model = IntervalModel(scenario, interval_s=60.0)
    dyn = RuntimeDynamics(scenario, bandwidth="static", interval_s=60.0, job_churn=False,
                          qoe_changes=False)
    world = dyn.reset(np.random.default_rng(0))
    env = EdgeEnv("traffic_analytics", split="test")
    env.reset(seed=0)
    plans = [c.plans[0] for c in env.cands]
    ctl = model.initial(plans)
    outcomes = []
    for scale in (1.0, 0.5):
        rates = np.ones(len(scenario.jobs))
        rates[2] = scale
        scaled = type(world)(world.state, world.job_active, world.qoe_scale, 0, rates)
        outcomes.append(model.transition(ctl, Decision(plans=(None,) * len(plans)), scaled)[1])
    full, half = outcomes
    assert half.jobs[2].arrived == pytest.approx(full.jobs[2].arrived / 2)
    assert half.jobs[0].arrived == pytest.approx(full.jobs[0].arrived)
    busy = [sum(d.total_j for d in o.devices) for o in outcomes]
    assert busy[1] < busy[0]
