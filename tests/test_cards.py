"""The shipped scenario cards and the device catalog: they load, they are sane, they are sourced.

The sourcing test reads ``dora_rl/data/devices.yaml`` as text: every line that sets a number
must carry a comment on the same line or have a comment line right above it, so that each
device figure names its datasheet, paper or estimate.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dora_rl.config import device_catalog, load_scenario
from dora_rl.config.loader import validate
from dora_rl.config.schema import DeviceKind

ROOT = Path(__file__).resolve().parent.parent
ENVS = ROOT / "envs"
CATALOG = ROOT / "dora_rl" / "data" / "devices.yaml"
CARDS = ["tiny", "smart_home", "traffic_analytics", "edge_cluster"]
REQUIRED_KINDS = {
    "jetson_orin_nano", "jetson_agx_orin", "jetson_xavier_nx", "raspberry_pi_5", "laptop_x86",
    "macbook_m2", "phone_snapdragon_8gen2", "desktop_rtx3060", "server_rtx4090", "server_a100",
    "nuc_i5",
}

_NUMBER = r"[-+]?(?:\d[\d_]*)(?:\.\d*)?(?:[eE][-+]?\d+)?"
# "key: 1.5", "- key: 1.5", "- 1.5", "key: {a: 1, b: 2}" (flow mappings) with optional comment.
_SETS_NUMBER = re.compile(rf"^\s*(?:-\s*)?(?:[A-Za-z_][\w.]*\s*:\s*)?(?:{_NUMBER})\s*(?:#.*)?$")
_FLOW_NUMBER = re.compile(rf":\s*{_NUMBER}\s*[,}}]")


def _sets_number(line: str) -> bool:
    code = line.split("#", 1)[0]
    if not code.strip():
        return False
    return bool(_SETS_NUMBER.match(code)) or bool(_FLOW_NUMBER.search(code))


def unsourced_lines(text: str) -> list[tuple[int, str]]:
    """Lines setting a number with no comment on them or on the line above.

    Example:
        >>> unsourced_lines("a:\\n  x: 1  # datasheet\\n  # paper\\n  y: 2.5e9\\n  z: 3\\n")
        [(5, '  z: 3')]
    """
    lines = text.splitlines()
    bad = []
    for i, line in enumerate(lines):
        if not _sets_number(line):
            continue
        has_comment = "#" in line
        above = lines[i - 1].strip() if i > 0 else ""
        if not has_comment and not above.startswith("#"):
            bad.append((i + 1, line))
    return bad


@pytest.mark.parametrize("card", CARDS)
def test_card_loads(card: str) -> None:
    scenario = load_scenario(ENVS / f"{card}.yaml")
    assert scenario.name == card
    assert scenario.devices and scenario.jobs
    for job in scenario.jobs:
        assert job.model in scenario.models


def test_cards_have_a_top_comment() -> None:
    for card in CARDS:
        first = (ENVS / f"{card}.yaml").read_text(encoding="utf-8").lstrip().splitlines()[0]
        assert first.startswith("#"), f"{card}.yaml must start with a comment on the deployment"


def test_tiny_card_is_small_and_self_contained() -> None:
    scenario = load_scenario(ENVS / "tiny.yaml")
    assert len(scenario.devices) == 3
    assert len(scenario.network.domains) == 1
    assert scenario.network.domains[0].kind == "wifi"
    assert len(scenario.jobs) == 1
    job = scenario.jobs[0]
    assert job.workload == "inference" and job.qoe.latency_ms is not None
    assert len(scenario.models[job.model].layers) == 8


def test_smart_home_has_a_leaving_battery_phone() -> None:
    scenario = load_scenario(ENVS / "smart_home.yaml")
    leaving = [d for d in scenario.devices if d.can_leave]
    assert leaving and all(d.battery_wh is not None for d in leaving)
    assert scenario.dynamics.bandwidth == "trace"
    assert scenario.dynamics.traces_dir is not None
    traces = scenario.base_dir / scenario.dynamics.traces_dir
    assert sorted(traces.glob("*.csv")) and (traces / "SOURCE.md").is_file()


def test_every_catalog_kind_validates() -> None:
    catalog = device_catalog()
    assert REQUIRED_KINDS <= set(catalog)
    import yaml

    raw = yaml.safe_load(CATALOG.read_text(encoding="utf-8"))
    for kind, entry in raw.items():
        assert isinstance(validate(DeviceKind, entry, str(CATALOG), kind), DeviceKind)


@pytest.mark.parametrize("kind", sorted(REQUIRED_KINDS))
def test_catalog_sanity(kind: str) -> None:
    dev = device_catalog()[kind]
    assert dev.memory_bytes is not None and dev.memory_bytes > 0
    assert dev.compute is not None and dev.compute.peak_flops is not None
    assert dev.compute.peak_flops > 0
    assert dev.compute.memory_bandwidth_gbps is not None
    assert dev.power is not None
    p = dev.power
    assert p.busy_w > p.idle_w > 0
    assert p.tx_w >= p.idle_w and p.rx_w >= p.idle_w
    assert dev.link_mbps is not None and dev.link_mbps > 0
    for level in dev.dvfs:
        assert 0 < level.speed < 1
        assert p.idle_w < level.busy_w < p.busy_w


def test_battery_devices() -> None:
    catalog = device_catalog()
    for kind in ("laptop_x86", "macbook_m2", "phone_snapdragon_8gen2"):
        assert catalog[kind].battery_wh is not None


def test_every_catalog_number_is_sourced() -> None:
    bad = unsourced_lines(CATALOG.read_text(encoding="utf-8"))
    assert not bad, "numbers without a source comment:\n" + "\n".join(
        f"  devices.yaml:{n}: {line.strip()}" for n, line in bad)


def test_sourcing_check_catches_flow_mappings() -> None:
    line = "p: {idle_w: 2.0, busy_w: 6.0}"
    assert unsourced_lines(line + "\n") == [(1, line)]
    assert unsourced_lines("name: \"7W\"\ndescription: 8 GB box\n") == []
