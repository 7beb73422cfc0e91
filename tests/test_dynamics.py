"""Run-time dynamics: trace files, splits, synthetic generators and the world process."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from dora_rl.config import Scenario, load_scenario
from dora_rl.costmodel.state import State
from dora_rl.dynamics import (
    RuntimeDynamics,
    Trace,
    WorldState,
    contention_bursts,
    default_traces_dir,
    load_trace,
    load_traces,
    split_traces,
    synthetic_bandwidth,
)
from dora_rl.dynamics.process import CHUNK_STEPS
from dora_rl.dynamics.synthetic import two_state_chain
from dora_rl.dynamics.traces import SPLITS
from dora_rl.errors import ConfigError, DoraError

ROOT = Path(__file__).resolve().parent.parent
SMART_HOME = ROOT / "envs" / "smart_home.yaml"
MODES = ("trace", "synthetic", "static")
FIELDS = tuple(State.__dataclass_fields__)


@pytest.fixture(scope="module")
def home() -> Scenario:
    return load_scenario(SMART_HOME)


def with_dynamics(scenario: Scenario, **changes: object) -> Scenario:
    return dataclasses.replace(scenario, dynamics=scenario.dynamics.model_copy(update=changes))


def run(dyn: RuntimeDynamics, seed: int, steps: int,
        energy: np.ndarray | None = None) -> list[WorldState]:
    rng = np.random.default_rng(seed)
    worlds = [dyn.reset(rng)]
    worlds += [dyn.step(rng, energy) for _ in range(steps)]
    return worlds


def stacked(worlds: list[WorldState], name: str) -> np.ndarray:
    if name in ("job_active", "qoe_scale"):
        return np.array([getattr(w, name) for w in worlds])
    return np.array([getattr(w.state, name) for w in worlds])


# ------------------------------------------------------------------ trace files
def test_walk_format_loads_as_mbps(tmp_path: Path) -> None:
    path = tmp_path / "a_wifi.csv"
    path.write_text("1,125000\r\n2,250000\r\n3,0\r\n\n")
    trace = load_trace(path)
    assert trace.name == "a_wifi"
    assert trace.mbps.dtype == np.float64
    assert trace.mbps.tolist() == [1.0, 2.0, 0.0]


def test_mbps_format_with_header_loads_and_resamples(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("seconds, Mbps\n0, 10\n1, 20.5\n2, 0\n")
    assert load_trace(tmp_path / "a.csv").mbps.tolist() == [10.0, 20.5, 0.0]
    (tmp_path / "b.csv").write_text("time_s Throughput_MBPS\n0 0\n2 4\n")
    assert load_trace(tmp_path / "b.csv").mbps.tolist() == [0.0, 2.0, 4.0]


@pytest.mark.parametrize(("text", "where"), [
    ("1,abc\n2,5\n", "line 1"),
    ("1,5\n2,-5\n", "line 2"),
    ("1,5\n2,nan\n", "line 2"),
    ("1,5\n2,inf\n", "line 2"),
    ("1,5\n", ""),
    ("seconds,Mbps\n1,5\n", ""),
    ("", ""),
    ("1,5\n1,6\n", "line 2"),
    ("2,5\n1,6\n", "line 2"),
    ("1,5,7\n2,5,7\n", "line 1"),
    ("time,bytes\n1,5\n2,6\n", "line 1"),
])
def test_malformed_trace_raises_config_error(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_trace(path)
    assert info.value.source == str(path) and info.value.path == where
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_unreadable_trace_raises_config_error(tmp_path: Path) -> None:
    for path in (tmp_path / "missing.csv", tmp_path):
        with pytest.raises(ConfigError, match="cannot read"):
            load_trace(path)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(ConfigError, match="bin.csv"):
        load_trace(binary)


def test_load_traces_errors_on_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no trace files"):
        load_traces(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_traces(tmp_path / "nope")
    (tmp_path / "x_cellular.csv").write_text("1,1\n2,2\n")
    with pytest.raises(ConfigError, match="kind 'wifi'"):
        load_traces(tmp_path, kind="wifi")


def test_walk_folder_wifi_traces_and_splits() -> None:
    folder = default_traces_dir()
    n_wifi = len(list(folder.glob("*_wifi.csv")))
    assert n_wifi == 23
    wifi = load_traces(folder, kind="wifi")
    assert len(wifi) == n_wifi and all(t.name.endswith("_wifi") for t in wifi)
    assert [t.name for t in wifi] == sorted(t.name for t in wifi)
    assert len(load_traces(folder)) == len(list(folder.glob("*.csv")))
    assert all(t.mbps.size >= 28 and np.all(np.isfinite(t.mbps) & (t.mbps >= 0)) for t in wifi)
    parts = {s: [t.name for t in split_traces(wifi, s)] for s in SPLITS}
    names = [n for p in parts.values() for n in p]
    assert sorted(names) == sorted(t.name for t in wifi) and len(set(names)) == len(names)
    assert all(parts.values()) and len(parts["train"]) > len(parts["test"])
    shuffled = [wifi[i] for i in np.random.default_rng(0).permutation(len(wifi))]
    assert {s: [t.name for t in split_traces(shuffled, s)] for s in SPLITS} == parts


def test_small_sets_still_fill_every_split() -> None:
    traces = [Trace(f"t{i}", np.ones(3)) for i in range(3)]
    parts = [split_traces(traces, s) for s in SPLITS]
    assert [len(p) for p in parts] == [1, 1, 1]
    with pytest.raises(ValueError):
        split_traces(traces, "dev")  # type: ignore[arg-type]


# ------------------------------------------------------------------ synthetic generators
def test_synthetic_bandwidth_fades_holds_and_range() -> None:
    x = synthetic_bandwidth(np.random.default_rng(0), 5000)
    assert x.min() >= 0.0 and x.max() <= 1.2 and (x < 0.1).any()
    assert np.array_equal(x, synthetic_bandwidth(np.random.default_rng(0), 5000))
    held = synthetic_bandwidth(np.random.default_rng(1), 5000, jitter=0.0)
    changes = np.count_nonzero(np.diff(held))
    assert 5000 / (changes + 1) > 2.0  # mean run of equal values well above one step


def test_contention_bursts_range_and_bursts() -> None:
    x = contention_bursts(np.random.default_rng(0), 5000, 0.2)
    assert x.min() >= 0.0 and x.max() < 0.95 and (x > 0.3).mean() > 0.02
    assert contention_bursts(np.random.default_rng(0), 100, 1.0).max() < 0.95


def test_two_state_chain_continues_with_zero_length_first_segment() -> None:
    on, seg = two_state_chain(np.random.default_rng(0), 10_000, True, 4.0, 4.0)
    assert 0.4 < on.mean() < 0.6 and np.all(np.diff(seg) >= 0)
    never, _ = two_state_chain(np.random.default_rng(0), 100, True, np.inf, 5.0)
    assert never.all()


# ------------------------------------------------------------------ the world process
@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_sequence_and_ranges(home: Scenario, mode: str) -> None:
    dyn = RuntimeDynamics(home, bandwidth=mode)  # type: ignore[arg-type]
    energy = np.full(len(home.devices), 10.0)
    a, b = run(dyn, 7, 300, energy), run(dyn, 7, 300, energy)
    for name in (*FIELDS, "job_active", "qoe_scale"):
        assert np.array_equal(stacked(a, name), stacked(b, name), equal_nan=True), name
    assert [w.step for w in a] == list(range(301))
    for w in a:
        State(**{k: getattr(w.state, k) for k in FIELDS})  # runs State's own range checks
        assert w.state.available.any() and w.job_active[0]
        assert w.state.cross_traffic.min() >= 0 and w.state.cross_traffic.max() < 0.95
        assert w.state.link_scale.min() >= 0 and w.state.link_scale.max() <= 1.2
    if mode != "static":
        c = run(dyn, 8, 300, energy)
        assert not np.array_equal(stacked(a, "link_scale"), stacked(c, "link_scale"))


def test_static_without_churn_is_nominal(home: Scenario) -> None:
    quiet = with_dynamics(home, churn_per_hour=0.0, background_load_max=0.0)
    dyn = RuntimeDynamics(quiet, bandwidth="static", job_churn=False, qoe_changes=False)
    nominal = State.nominal(quiet)
    for w in run(dyn, 3, CHUNK_STEPS + 50):
        for name in FIELDS:
            assert np.array_equal(getattr(w.state, name), getattr(nominal, name),
                                  equal_nan=True), name
        assert w.job_active.all() and np.all(w.qoe_scale == 1.0)


def test_phone_leaves_and_returns_with_high_churn(home: Scenario) -> None:
    dyn = RuntimeDynamics(with_dynamics(home, churn_per_hour=30.0), bandwidth="static")
    avail = stacked(run(dyn, 0, 6000), "available")
    phone = home.device_index("phone")
    moves = np.diff(avail[:, phone].astype(int))
    assert (moves == -1).sum() >= 3 and (moves == 1).sum() >= 3
    others = np.delete(avail, phone, axis=1)
    assert others.all()


def test_when_every_device_can_leave_one_stays(home: Scenario) -> None:
    devices = tuple(d.model_copy(update={"can_leave": True}) for d in home.devices)
    leaving = with_dynamics(dataclasses.replace(home, devices=devices), churn_per_hour=60.0)
    avail = stacked(run(RuntimeDynamics(leaving, bandwidth="static"), 1, 3000), "available")
    assert avail[:, 0].all() and not avail[:, 1:].all()


def test_background_load_jobs_and_qoe_change(home: Scenario) -> None:
    worlds = run(RuntimeDynamics(home, bandwidth="synthetic"), 2, 3000)
    load, active = stacked(worlds, "load"), stacked(worlds, "job_active")
    busy = load[load > 0]
    assert 0.2 < (load > 0).mean() < 0.8 and busy.min() >= 0.1 and busy.max() <= 0.5
    assert active[:, 0].all() and 0.3 < active[:, 1].mean() < 0.95
    assert set(np.unique(stacked(worlds, "qoe_scale"))) == {0.8, 1.0, 1.25}


def test_battery_drains_and_reports_zero_below_floor(home: Scenario) -> None:
    phone = home.device_index("phone")
    capacity = home.devices[phone].battery_wh
    assert capacity is not None
    dyn = RuntimeDynamics(home, bandwidth="static")
    energy = np.zeros(len(home.devices))
    energy[phone] = 3600.0  # 1 Wh per step
    worlds = run(dyn, 0, 30, energy)
    battery = stacked(worlds, "battery_wh")[:, phone]
    assert battery[1] == pytest.approx(capacity - 1.0)
    floor = home.dynamics.battery_floor * capacity
    first_zero = int(np.argmax(battery == 0.0))
    assert battery[first_zero - 1] >= floor and capacity - first_zero < floor
    assert not worlds[-1].state.usable[phone] and worlds[5].state.usable[phone]
    assert dyn.charge_wh[phone] == 0.0 and np.isnan(stacked(worlds, "battery_wh")[:, 0]).all()


def test_bad_arguments_raise(home: Scenario) -> None:
    with pytest.raises(DoraError, match="bandwidth"):
        RuntimeDynamics(home, bandwidth="wobbly")  # type: ignore[arg-type]
    with pytest.raises(DoraError, match="split"):
        RuntimeDynamics(home, split="dev")
    dyn = RuntimeDynamics(home)
    with pytest.raises(DoraError, match="reset"):
        dyn.step(np.random.default_rng(0))
    dyn.reset(np.random.default_rng(0))
    with pytest.raises(DoraError, match="shape"):
        dyn.step(np.random.default_rng(0), np.zeros(2))
    with pytest.raises(DoraError, match=">= 0"):
        dyn.step(np.random.default_rng(0), np.full(len(home.devices), -1.0))


def test_a_users_trace_folder_is_replayed_whole(home: Scenario, tmp_path: Path) -> None:
    for i in range(14):
        kind = "wifi" if i % 2 else "cellular"
        (tmp_path / f"walk{i}_{kind}.csv").write_text(
            f"seconds,Mbps\n0,{10 + i}\n1,0\n2,{5 + i}\n")
    dyn = RuntimeDynamics(home, bandwidth="trace", traces_dir=tmp_path, split="test")
    assert sorted(t.name for t in dyn.traces) == sorted(f"walk{i}_wifi" for i in range(1, 14, 2))
    link = stacked(run(dyn, 0, 20), "link_scale")
    assert link.min() == 0.0 and link.max() <= 1.2


def test_the_projects_own_traces_are_split_by_file(home: Scenario) -> None:
    names = {s: {t.name for t in RuntimeDynamics(home, split=s).traces}
             for s in ("train", "validation", "test")}
    assert names["train"] and names["test"] and not names["train"] & names["test"]


def test_interval_scaling_keeps_ranges(home: Scenario) -> None:
    for interval in (0.25, 5.0):
        dyn = RuntimeDynamics(home, interval_s=interval)
        worlds = run(dyn, 4, CHUNK_STEPS + 10)
        assert all(w.state.available.any() and w.job_active[0] for w in worlds)
        assert stacked(worlds, "link_scale").max() <= 1.2


def test_world_states_list_views_match_their_arrays(home: Scenario) -> None:
    """The process hands out each State with its list views precomputed (the env's hot path);
    they must equal what the State derives from its own arrays, across chunks and draining."""
    dyn = RuntimeDynamics(with_dynamics(home, churn_per_hour=200.0))
    phone = home.device_index("phone")
    energy = np.zeros(len(home.devices))
    energy[phone] = 400.0
    for world in run(dyn, 3, CHUNK_STEPS + 40, energy):
        fresh = State(**{f: getattr(world.state, f) for f in State.__dataclass_fields__})
        assert world.state.lists == fresh.lists
