"""Catalog levers: power modes, sleep, storage, format speeds and dedicated devices.

Every catalog kind has a documented slower power mode, a storage medium, a format-speed table
and (except phones, which an app cannot suspend) a sleep state; the shipped cards resolve them
and say which devices are dedicated to their jobs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dora_rl.config import device_catalog, load_scenario
from dora_rl.config.formats import WEIGHT_FORMATS
from dora_rl.errors import ConfigError
from dora_rl.synthetic_cards import scenario_dict

ROOT = Path(__file__).resolve().parent.parent
CARDS = ["tiny", "smart_home", "traffic_analytics", "edge_cluster"]
KINDS = sorted(device_catalog())


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_a_slower_power_mode_below_nominal_power(kind: str) -> None:
    spec = device_catalog()[kind]
    assert spec.power is not None
    assert spec.dvfs, f"{kind} has no documented slower power mode"
    for level in spec.dvfs:
        assert 0 < level.speed <= 1, (kind, level)
        assert level.busy_w < spec.power.busy_w, (kind, level)
        assert level.name, kind


@pytest.mark.parametrize("kind", KINDS)
def test_sleep_draws_less_than_idle(kind: str) -> None:
    spec = device_catalog()[kind]
    assert spec.power is not None
    if spec.sleep is None:
        assert kind.startswith("phone"), f"{kind}: only phones may lack a sleep state"
        return
    assert spec.sleep.sleep_w < spec.power.idle_w
    assert spec.sleep.wake_s > 0 and spec.sleep.wake_j >= 0


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_has_storage_and_format_speeds(kind: str) -> None:
    spec = device_catalog()[kind]
    assert spec.storage is not None and spec.storage.read_mbps > 0
    assert spec.compute is not None and spec.compute.format_speed
    assert set(spec.compute.format_speed) <= set(WEIGHT_FORMATS)
    assert all(v > 0 for v in spec.compute.format_speed.values())


def test_pi5_sleep_is_the_halt_state_and_its_power_mode_the_1_5_ghz_cap() -> None:
    pi = device_catalog()["raspberry_pi_5"]
    assert pi.sleep is not None and pi.sleep.sleep_w == 0.01 and pi.sleep.wake_s >= 10
    assert [(v.name, v.speed) for v in pi.dvfs] == [("1.5GHz", 0.625)]
    assert pi.storage is not None and pi.storage.medium == "microsd"


@pytest.mark.parametrize("card", CARDS)
def test_shipped_cards_resolve_storage_sleep_and_dedicated(card: str) -> None:
    scenario = load_scenario(ROOT / "envs" / f"{card}.yaml")
    catalog = device_catalog()
    for dev in scenario.devices:
        assert isinstance(dev.dedicated, bool)
        assert dev.storage == catalog[dev.kind].storage and dev.storage is not None
        assert dev.sleep == catalog[dev.kind].sleep


def test_dedicated_devices_in_the_shipped_cards() -> None:
    def dedicated(card: str) -> set[str]:
        scenario = load_scenario(ROOT / "envs" / f"{card}.yaml")
        return {d.name for d in scenario.devices if d.dedicated}

    assert dedicated("smart_home") == {"orin_nano"}
    for card in ("traffic_analytics", "edge_cluster"):
        scenario = load_scenario(ROOT / "envs" / f"{card}.yaml")
        assert dedicated(card) == {d.name for d in scenario.devices}


BASE = scenario_dict(np.random.default_rng(0), n_devices=2, n_layers=3)


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_card_overrides_storage_and_sleep_of_its_kind(tmp_path: Path) -> None:
    data = copy.deepcopy(BASE)
    data["devices"][0]["storage"] = {"medium": "sata_ssd", "read_mbps": 4400}
    data["devices"][0]["sleep"] = {"sleep_w": 0.5, "wake_s": 3, "wake_j": 4}
    data["devices"][0]["dedicated"] = True
    scenario = load_scenario(_write(tmp_path, data))
    dev, other = scenario.devices
    assert dev.storage is not None and dev.storage.medium == "sata_ssd"
    assert dev.sleep is not None and dev.sleep.wake_s == 3 and dev.dedicated
    assert other.storage == device_catalog()[other.kind].storage and not other.dedicated


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda d: d.update(storage={"medium": "nvme", "read_mbps": -5}),
     "devices[0].storage.read_mbps: must be > 0, got -5"),
    (lambda d: d.update(storage={"medium": "floppy", "read_mbps": 1}),
     "devices[0].storage.medium: must be one of"),
    (lambda d: d.update(sleep={"sleep_w": 0.1, "wake_s": 1, "wake_j": 1, "naps": 2}),
     "devices[0].sleep.naps: unknown key"),
    (lambda d: d.update(sleep={"sleep_w": 0.1, "wake_s": 1}),
     "devices[0].sleep.wake_j: required field is missing"),
    (lambda d: d.update(sleep={"sleep_w": 1e4, "wake_s": 1, "wake_j": 1}),
     "devices[0].sleep.sleep_w: sleep_w 10000 W must be below idle_w"),
    (lambda d: d.update(dedicated="sometimes"),
     "devices[0].dedicated: must be a valid boolean"),
])
def test_bad_levers_name_file_and_field(tmp_path: Path, edit: Any, expected: str) -> None:
    data = copy.deepcopy(BASE)
    edit(data["devices"][0])
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    assert expected in message, message
