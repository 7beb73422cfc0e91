"""Cards take sizes and rates with units, check their trace folder on load, and name devices."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dora_rl import describe as inspect_cli
from dora_rl.config import load_scenario
from dora_rl.costmodel import CostModel, Plan
from dora_rl.errors import ConfigError, run_cli
from dora_rl.scenarios import load
from dora_rl.synthetic_cards import scenario_dict

BASE = scenario_dict(np.random.default_rng(0), n_devices=3, n_layers=4)


def _card(tmp_path: Path, edit: Any) -> Path:
    data = copy.deepcopy(BASE)
    edit(data)
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("text", "expected"), [
    ("4GB", 4_000_000_000), ("512MiB", 512 * 2**20), ("4.2GB", 4_200_000_000),
    ("1.5 KiB", 1536), ("8e9", 8_000_000_000),
])
def test_memory_accepts_a_size_with_a_unit(tmp_path: Path, text: str, expected: int) -> None:
    value: Any = float(text) if text == "8e9" else text
    path = _card(tmp_path, lambda d: d["devices"][0].update(memory_bytes=value))
    memory = load_scenario(path).devices[0].memory_bytes
    assert memory == expected and isinstance(memory, int)


@pytest.mark.parametrize(("text", "expected"), [
    ("866.7Mbps", 866.7), ("10Gbps", 10_000.0), ("500 kbps", 0.5), ("400MB/s", 3200.0),
])
def test_link_rate_accepts_a_rate_with_a_unit(tmp_path: Path, text: str,
                                              expected: float) -> None:
    path = _card(tmp_path, lambda d: d["devices"][1]["network"].update(link_mbps=text))
    assert load_scenario(path).devices[1].network.link_mbps == pytest.approx(expected)


def test_layer_bytes_and_memory_bandwidth_accept_units(tmp_path: Path) -> None:
    def edit(d: dict[str, Any]) -> None:
        d["models"][0]["layers"][0]["param_bytes"] = "2MiB"
        d["devices"][0]["compute"]["memory_bandwidth_gbps"] = "68GB/s"
    scenario = load_scenario(_card(tmp_path, edit))
    model = scenario.models[BASE["models"][0]["name"]]
    assert model.layers[0].param_bytes == 2 * 2**20
    assert scenario.devices[0].compute.memory_bandwidth_gbps == pytest.approx(68.0)


@pytest.mark.parametrize(("edit", "field", "problem"), [
    (lambda d: d["devices"][0].update(memory_bytes="10Gbps"), "devices[0].memory_bytes",
     "'Gbps' is a unit of rate; a size takes B, kB"),
    (lambda d: d["devices"][0].update(memory_bytes="4Gb"), "devices[0].memory_bytes",
     "unknown unit 'Gb'; a size takes"),
    (lambda d: d["devices"][0]["network"].update(link_mbps="4GB"),
     "devices[0].network.link_mbps", "'GB' is a unit of size; a rate takes bps"),
    (lambda d: d["devices"][0].update(memory_bytes="3"), "devices[0].memory_bytes",
     "must be a valid integer, not a string"),
    (lambda d: d["devices"][0].update(memory_bytes="2PB"), "devices[0].memory_bytes",
     "unknown unit 'PB'"),
    (lambda d: d["devices"][0]["network"].update(link_mbps="2Tbps"),
     "devices[0].network.link_mbps", "must be <= 1000000"),
])
def test_a_bad_unit_is_one_line_naming_file_field_and_units(
        tmp_path: Path, edit: Any, field: str, problem: str) -> None:
    path = _card(tmp_path, edit)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {field}: ") and problem in message, message
    assert "\n" not in message


def test_inspect_reports_a_bad_unit_with_exit_2(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path = _card(tmp_path, lambda d: d["devices"][0].update(memory_bytes="4 gigs"))
    assert run_cli(inspect_cli.main, [str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "devices[0].memory_bytes" in err
    assert len(err.splitlines()) == 1


def test_a_missing_traces_dir_fails_when_the_card_is_loaded(tmp_path: Path) -> None:
    path = _card(tmp_path, lambda d: d.setdefault("dynamics", {}).update(traces_dir="walks"))
    with pytest.raises(ConfigError, match=r"dynamics\.traces_dir: no such folder .*walks"):
        load_scenario(path)


def test_a_traces_dir_without_traces_fails_when_the_card_is_loaded(tmp_path: Path) -> None:
    (tmp_path / "walks").mkdir()
    (tmp_path / "walks" / "notes.txt").write_text("no traces here")
    path = _card(tmp_path, lambda d: d.setdefault("dynamics", {}).update(traces_dir="walks"))
    with pytest.raises(ConfigError, match=r"dynamics\.traces_dir: .* holds no trace files"):
        load_scenario(path)


def test_a_traces_dir_with_traces_loads(tmp_path: Path) -> None:
    (tmp_path / "walks").mkdir()
    (tmp_path / "walks" / "a_wifi.csv").write_text("seconds,Mbps\n0,10\n1,12\n")
    path = _card(tmp_path, lambda d: d.setdefault("dynamics", {}).update(traces_dir="walks"))
    assert load_scenario(path).dynamics.traces_dir == "walks"


def test_a_missing_load_profile_fails_when_the_card_is_loaded(tmp_path: Path) -> None:
    path = _card(tmp_path, lambda d: d.setdefault("dynamics", {}).update(
        load_profiles="hourly.csv"))
    with pytest.raises(ConfigError, match=r"dynamics\.load_profiles: no such file"):
        load_scenario(path)


def test_a_plan_built_from_device_names_equals_the_one_from_indices() -> None:
    scenario = load("smart_home")
    model = CostModel(scenario, job="doorbell")
    names = [d.name for d in scenario.devices]
    groups = scenario.device_groups(names[0], [names[1], names[2]])
    assert groups == ((0,), (1, 2))
    by_name = Plan(stage_end=(6, model.tables.n_layers), stage_devices=groups)
    by_index = Plan(stage_end=(6, model.tables.n_layers), stage_devices=((0,), (1, 2)))
    assert model.evaluate(by_name)["energy_j"] == model.evaluate(by_index)["energy_j"]
    named = Plan.named(scenario, (6, model.tables.n_layers), [names[0], [names[1], names[2]]])
    assert named == by_index


def test_an_unknown_device_name_lists_the_devices() -> None:
    scenario = load("tiny")
    with pytest.raises(ConfigError) as info:
        scenario.device_groups(["fast", "toaster"])
    assert "no device named 'toaster' (devices: slow, mid, fast)" in str(info.value)
    with pytest.raises(ConfigError, match="no device named 'toaster'"):
        Plan.named(scenario, (4, 8), ["slow", "toaster"])
