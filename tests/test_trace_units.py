"""Own traces can keep their absolute rates (``--trace-units absolute``) instead of being scaled
to their 95th percentile (the default, stated in ``--help``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from dora_rl import bench
from dora_rl.config import load_scenario
from dora_rl.dynamics import RuntimeDynamics
from dora_rl.errors import ConfigError
from dora_rl.scenarios import load, with_trace_units
from dora_rl.sim import command as sim_cli


def _constant_traces(folder: Path, mbps: float, n: int = 3) -> Path:
    for i in range(n):
        rows = "".join(f"{t},{mbps}\n" for t in range(60))
        (folder / f"walk{i}_wifi.csv").write_text("seconds,Mbps\n" + rows)
    return folder


@pytest.mark.parametrize("mbps", [200.0, 5000.0])
def test_absolute_units_keep_the_recorded_rate_of_each_device(tmp_path: Path,
                                                              mbps: float) -> None:
    home = with_trace_units(load("smart_home"), "absolute")
    dyn = RuntimeDynamics(home, bandwidth="trace", traces_dir=_constant_traces(tmp_path, mbps))
    link = dyn.reset(np.random.default_rng(0)).state.link_scale
    expected = [min(mbps / d.network.link_mbps, 1.2) for d in home.devices]
    assert np.asarray(link)[dyn.wifi] == pytest.approx(np.asarray(expected)[dyn.wifi])


def test_relative_units_scale_a_trace_to_its_95th_percentile(tmp_path: Path) -> None:
    home = load("smart_home")
    assert home.dynamics.trace_units == "relative"
    dyn = RuntimeDynamics(home, bandwidth="trace", traces_dir=_constant_traces(tmp_path, 200.0))
    link = dyn.reset(np.random.default_rng(0)).state.link_scale
    assert np.asarray(link)[dyn.wifi] == pytest.approx(1.0)


def test_trace_multipliers_follow_the_units(tmp_path: Path) -> None:
    folder = _constant_traces(tmp_path, 300.0)
    home = load("smart_home")
    phone = home.device_index("phone")
    relative = RuntimeDynamics(home, bandwidth="trace", traces_dir=folder)
    absolute = RuntimeDynamics(with_trace_units(home, "absolute"), bandwidth="trace",
                               traces_dir=folder)
    assert relative.trace_multipliers(phone) == pytest.approx(1.0)
    rate = home.devices[phone].network.link_mbps
    assert absolute.trace_multipliers(phone) == pytest.approx(min(300.0 / rate, 1.2))


def test_bench_takes_trace_units_and_states_the_default(
        capsys: pytest.CaptureFixture[str]) -> None:
    args = bench.parse(["--scenario", "tiny", "--trace-units", "absolute"])
    assert args.scenario.dynamics.trace_units == "absolute"
    assert bench.parse(["--scenario", "tiny"]).scenario.dynamics.trace_units == "relative"
    with pytest.raises(SystemExit):
        bench.parse(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--trace-units {relative,absolute}" in text
    assert "relative unless the card says otherwise" in text


def test_sim_help_states_the_trace_units_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        sim_cli.parse(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--trace-units {relative,absolute}" in text and "95th percentile" in text


def test_a_card_can_ask_for_absolute_units(tmp_path: Path) -> None:
    card = yaml.safe_load(Path(load("tiny").source).read_text())
    card.setdefault("dynamics", {})["trace_units"] = "absolute"
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(card))
    assert load_scenario(path).dynamics.trace_units == "absolute"
    card["dynamics"]["trace_units"] = "mbps"
    path.write_text(yaml.safe_dump(card))
    with pytest.raises(ConfigError, match="dynamics.trace_units: must be one of 'relative' or "
                                          "'absolute', got 'mbps'"):
        load_scenario(path)
