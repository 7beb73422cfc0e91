"""Bad cards give one line naming the file, the field path and the problem; exit code 2."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dora_rl import describe as inspect_cli
from dora_rl.config import load_scenario
from dora_rl.errors import ConfigError
from dora_rl.synthetic_cards import scenario_dict

BASE = scenario_dict(np.random.default_rng(0), n_devices=3, n_layers=4)


def _write(tmp_path: Path, data: Any, name: str = "card.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def _mutated(edit: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    edit(data)
    return data


CASES = {
    "unknown key": (lambda d: d["devices"][1].update(colour="red"),
                    "devices[1].colour: unknown key"),
    "missing field": (lambda d: d["devices"][0]["network"].pop("link_mbps"),
                      "devices[0].network.link_mbps: required field is missing"),
    "wrong type": (lambda d: d["devices"][2]["compute"].update(peak_flops="fast"),
                   "devices[2].compute.peak_flops: must be a valid number"),
    "negative number": (lambda d: d["devices"][2].update(memory_bytes=-5),
                        "devices[2].memory_bytes: must be > 0, got -5"),
    "non-finite number": (lambda d: d["devices"][0]["power"].update(busy_w=float("inf")),
                          "devices[0].power.busy_w: must be a finite number, got inf"),
    "negative bandwidth": (lambda d: d["devices"][1]["network"].update(link_mbps=-10.0),
                           "devices[1].network.link_mbps: must be > 0, got -10.0"),
    "unknown device kind": (lambda d: d["devices"][1].update(kind="toaster"),
                            "devices[1].kind: unknown device kind 'toaster'"),
    "unknown model": (lambda d: d["jobs"][0].update(model="gpt5"),
                      "jobs[0].model: unknown model 'gpt5'"),
    "missing device in job": (lambda d: d["jobs"][0].update(devices=["dev0", "ghost"]),
                              "jobs[0].devices[1]: no device named 'ghost'"),
    "unknown domain": (lambda d: d["devices"][0]["network"].update(domain="moon"),
                       "devices[0].network.domain: unknown domain 'moon'"),
    "duplicate device": (lambda d: d["devices"][1].update(name="dev0"),
                         "devices[1].name: duplicate device name 'dev0'"),
    "workload without its section": (lambda d: d["jobs"][0].update(workload="training"),
                                     "jobs[0].training: required for workload 'training'"),
    "bad literal": (lambda d: d["network"]["domains"][0].update(kind="lte"),
                    "network.domains[0].kind: must be one of 'wifi' or 'switch', got 'lte'"),
    "empty device list": (lambda d: d.update(devices=[]),
                          "devices: list should have at least 1 item"),
    "no QoE target": (lambda d: d["jobs"][0].update(qoe={}),
                      "jobs[0].qoe: workload 'inference' needs at least one of"),
    "boolean as integer": (lambda d: d["jobs"][0]["inference"].update(batch=True),
                           "jobs[0].inference.batch: must be a valid integer, not a boolean"),
    "string as number": (lambda d: d["devices"][0].update(memory_bytes="3"),
                         "devices[0].memory_bytes: must be a valid integer, not a string"),
    "string as float": (lambda d: d["jobs"][0]["qoe"].update(latency_ms="50"),
                        "jobs[0].qoe.latency_ms: must be a valid number, not a string"),
    "integer as boolean": (lambda d: d["devices"][0].update(can_leave=1),
                           "devices[0].can_leave: must be a valid boolean, got 1"),
    "name that climbs up": (lambda d: d.update(name=".."),
                            "name: must be a safe name"),
    "name with a slash": (lambda d: d["jobs"][0].update(name="a/b"),
                          "jobs[0].name: must be a safe name"),
    "device name with a control character": (
        lambda d: d["devices"][1].update(name="dev\x1b[2J"),
        "devices[1].name: must be a safe name"),
    "every device may leave": (lambda d: [x.update(can_leave=True) for x in d["devices"]],
                               "devices[2].can_leave: every device may leave"),
    "request rate beyond the limit": (
        lambda d: d["jobs"][0]["inference"].update(request_rate_per_s=1e308),
        "jobs[0].inference.request_rate_per_s: must be <= 10000, got 1e+308"),
    "too many layers": (
        lambda d: d["models"][0].update(layers=[dict(x) for x in d["models"][0]["layers"] * 1025]),
        "models[0].layers: has more than 4,096 items"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_card_names_file_field_and_problem(tmp_path: Path, case: str) -> None:
    edit, expected = CASES[case]
    path = _write(tmp_path, _mutated(edit))
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message
    assert "\n" not in message


def test_the_base_card_is_valid(tmp_path: Path) -> None:
    scenario = load_scenario(_write(tmp_path, BASE))
    assert len(scenario.devices) == 3 and scenario.jobs[0].name == "job"


def test_invalid_yaml_syntax_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: x\ndevices: [\n  - a: 1\n")
    with pytest.raises(ConfigError, match=r"line \d+: invalid YAML"):
        load_scenario(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_scenario(tmp_path / "nope.yaml")


def test_card_that_is_not_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="must be a mapping, got list"):
        load_scenario(_write(tmp_path, "- 1\n- 2\n"))


def test_exponent_without_a_dot_reads_as_a_number(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE).replace("memory_bytes: ", "memory_bytes: 8e9 #", 1)
    scenario = load_scenario(_write(tmp_path, text))
    assert scenario.devices[0].memory_bytes == 8_000_000_000


def test_catalog_defaults_fill_fields_the_card_omits(tmp_path: Path) -> None:
    data = _mutated(lambda d: [d["devices"][0].pop(k) for k in ("compute", "power", "dvfs")])
    scenario = load_scenario(_write(tmp_path, data))
    dev = scenario.devices[0]
    assert dev.compute.peak_flops is not None and dev.power.busy_w > dev.power.idle_w


def test_inspect_prints_summary_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert inspect_cli.main(["tiny", "--plans"]) == 0
    out = capsys.readouterr().out
    assert "classify" in out and "single:fast" in out and "latency_ms=50" in out


def test_inspect_on_bad_card_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    path = _write(tmp_path, _mutated(CASES["negative number"][0]))
    proc = subprocess.run([sys.executable, "-m", "dora_rl.describe", str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"error: {path}: devices[2].memory_bytes: must be > 0, got -5"]


def test_inspect_json_has_devices_and_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert inspect_cli.main(["tiny", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data["devices"]] == ["slow", "mid", "fast"]
    assert data["jobs"][0]["layers"] == 8


def test_duplicate_keys_are_an_error_naming_the_key(tmp_path: Path) -> None:
    text = yaml.safe_dump(BASE).replace("jobs:\n", "jobs: []\njobs:\n", 1)
    with pytest.raises(ConfigError, match=r": jobs: duplicate key \(line \d+; also on line \d+\)"):
        load_scenario(_write(tmp_path, text))


def test_an_integer_for_a_float_field_and_a_whole_float_for_an_integer_are_fine(
        tmp_path: Path) -> None:
    data = _mutated(lambda d: (d["jobs"][0]["qoe"].update(latency_ms=50),
                               d["devices"][0].update(memory_bytes=8.0e9)))
    scenario = load_scenario(_write(tmp_path, data))
    assert scenario.jobs[0].qoe.latency_ms == 50.0
    assert scenario.devices[0].memory_bytes == 8_000_000_000


def test_a_huge_value_is_shown_cut_in_the_error(tmp_path: Path) -> None:
    data = _mutated(lambda d: d["devices"][0].update(kind="k" * 10_000))
    with pytest.raises(ConfigError) as info:
        load_scenario(_write(tmp_path, data))
    assert "devices[0].kind" in str(info.value) and len(str(info.value)) < len(str(tmp_path)) + 200
