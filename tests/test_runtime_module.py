"""The live runtime runs the user's own profiled module, with the card's weights, in stages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_model

from dora_rl.config import load_scenario
from dora_rl.config.schema import ModuleSource
from dora_rl.errors import ConfigError, DoraError, run_cli
from dora_rl.models.user_module import build_module
from dora_rl.profiler import main
from dora_rl.runtime.layers import build_layers, layer_specs, run_layers, sample_input
from dora_rl.scenarios import load

NETS = Path(__file__).resolve().parent / "nets"
TINY = (Path(__file__).resolve().parent.parent / "envs" / "tiny.yaml").read_text()
VISION = ModuleSource(factory=f"{NETS}/vision.py:small_resnet", input_shape=[1, 3, 32, 32])
DECODER = ModuleSource(factory=f"{NETS}/decoder.py:build", tokens=16)


def _card(tmp_path: Path, source: ModuleSource, weights: str | None) -> Path:
    """Profile ``source`` into tmp_path and write the tiny card with it as its model."""
    flags = (["--tokens", str(source.tokens)] if source.tokens else
             ["--input-shape", ",".join(map(str, source.input_shape or []))])
    assert run_cli(main, ["--model", source.factory, *flags,
                          "--out", str(tmp_path / "net.yaml")]) == 0
    start, end = TINY.index("models:"), TINY.index("jobs:")
    ref = "models:\n  - name: tiny8\n    profile: net.yaml\n"
    if weights is not None:
        ref += f"    weights: {weights}\n"
    (tmp_path / "card.yaml").write_text(TINY[:start] + ref + "\n" + TINY[end:])
    return tmp_path / "card.yaml"


def _trained(source: ModuleSource, path: Path) -> torch.nn.Module:
    """The module with weights of its own (seed 7), saved as safetensors to ``path``."""
    torch.manual_seed(7)
    model = build_module(source).eval()
    save_model(model, str(path))
    return model


@pytest.mark.parametrize("source", [VISION, DECODER], ids=["resnet", "decoder"])
def test_stages_of_a_profiled_module_give_the_unpartitioned_modules_output(
        tmp_path: Path, source: ModuleSource, caplog: pytest.LogCaptureFixture) -> None:
    model = _trained(source, tmp_path / "net.safetensors")
    with caplog.at_level(logging.WARNING):
        scenario = load_scenario(_card(tmp_path, source, "net.safetensors"))
        specs = layer_specs(scenario, 0)
    assert not [r for r in caplog.records if "stand-in" in r.getMessage()]
    n = len(specs)
    assert n == len(scenario.models["tiny8"].layers) > 3
    layers = build_layers(specs, seed=123)  # the file's weights, not the seed's
    x = sample_input(scenario, 0, 4, seed=1)
    with torch.no_grad():
        whole = model(x)
    k = n // 2
    staged = run_layers(layers, k, n, run_layers(layers, 0, k, x))
    by_rows = torch.cat([run_layers(layers, k, n, run_layers(layers, 0, k, part))
                         for part in torch.split(x, [1, 3])])
    assert torch.allclose(staged, whole, rtol=1e-5, atol=1e-6)
    assert torch.allclose(by_rows, whole, rtol=1e-5, atol=1e-5)


def test_without_a_weights_file_the_module_runs_with_random_weights(tmp_path: Path) -> None:
    scenario = load_scenario(_card(tmp_path, VISION, None))
    specs = layer_specs(scenario, 0)
    a, b = build_layers(specs, seed=0), build_layers(specs, seed=1)
    x = sample_input(scenario, 0, 2, seed=3)
    ya, yb = run_layers(a, 0, len(specs), x), run_layers(b, 0, len(specs), x)
    assert ya.shape == (2, 10) and not torch.equal(ya, yb)
    assert torch.equal(ya, run_layers(build_layers(specs, seed=0), 0, len(specs), x))


def test_stand_in_layers_are_announced_once_on_one_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="dora_rl.runtime.layers"):
        layer_specs(load("tiny"), 0)
    records = [r for r in caplog.records if r.name == "dora_rl.runtime.layers"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "\n" not in message and "'tiny8'" in message and "stand-in" in message


def test_card_weights_errors_name_the_field(tmp_path: Path) -> None:
    card = _card(tmp_path, VISION, "absent.safetensors")
    with pytest.raises(ConfigError, match=r"models\[0\].weights: no such file"):
        load_scenario(card)
    inline = TINY.replace("    unit: sample\n", "    unit: sample\n    weights: w.st\n", 1)
    (tmp_path / "inline.yaml").write_text(inline)
    with pytest.raises(ConfigError, match=r"models\[0\].weights: only with a 'profile'"):
        load_scenario(tmp_path / "inline.yaml")


def test_weights_of_another_module_are_refused_in_one_line(tmp_path: Path) -> None:
    _trained(DECODER, tmp_path / "other.safetensors")
    scenario = load_scenario(_card(tmp_path, VISION, "other.safetensors"))
    with pytest.raises(DoraError, match="other.safetensors: .*(do not match|cannot load)"):
        build_layers(layer_specs(scenario, 0))
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    scenario = load_scenario(_card(tmp_path, VISION, "junk.safetensors"))
    with pytest.raises(DoraError, match="junk.safetensors: cannot load"):
        build_layers(layer_specs(scenario, 0))


def test_a_profile_that_no_longer_matches_its_module_is_refused(tmp_path: Path) -> None:
    card = _card(tmp_path, VISION, None)
    profile = tmp_path / "net.yaml"
    profile.write_text(profile.read_text().replace("name: layer1.0", "name: renamed"))
    with pytest.raises(DoraError, match="now splits into .* 'renamed'"):
        build_layers(layer_specs(load_scenario(card), 0))


def test_where_the_modules_file_lies_does_not_change_what_plans_depend_on(tmp_path: Path) -> None:
    from dora_rl.planner.disk import scenario_text

    first = tmp_path / "a"
    first.mkdir()
    (first / "net.py").write_text((NETS / "vision.py").read_text())
    source = VISION.model_copy(update={"factory": f"{first}/net.py:small_resnet"})
    card = _card(first, source, None)
    second = tmp_path / "b"
    second.mkdir()
    for name in ("net.py", "net.yaml", "card.yaml"):
        (second / name).write_text((first / name).read_text())
    a, b = load_scenario(card), load_scenario(second / "card.yaml")
    assert a.models["tiny8"].module != b.models["tiny8"].module
    assert scenario_text(a) == scenario_text(b)
