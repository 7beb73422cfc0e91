"""Profiling a user's own torch.nn.Module: blocks from its graph, counts that add up to torch's.

The vision models are replicas of torchvision's ResNet-18 and MobileNetV2 in plain torch
(tests/nets/vision.py: torchvision's wheels on the package index do not import beside the CPU
torch pinned here); where torchvision imports, the same checks run on its own models too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dora_rl.config import load_model
from dora_rl.config.schema import ModuleSource
from dora_rl.errors import run_cli
from dora_rl.models.counting import FLOP_FORMULAS
from dora_rl.models.module_profile import profile_module
from dora_rl.models.user_module import build_module, make_input, partition
from dora_rl.profiler import main

NETS = Path(__file__).resolve().parent / "nets"
RESNET = ModuleSource(factory=f"{NETS}/vision.py:resnet18", input_shape=[1, 3, 64, 64])
MOBILENET = ModuleSource(factory=f"{NETS}/vision.py:mobilenet_v2", input_shape=[1, 3, 64, 64])
DECODER = ModuleSource(factory=f"{NETS}/decoder.py:build", tokens=16)


def _torch_counts(source: ModuleSource) -> tuple[int, int, int]:
    """Forward FLOPs, backward FLOPs and parameters of the whole module, counted by torch.

    With torch's formulas for its CPU attention kernel, and a grouped convolution's backward
    counted once (torch's own counts it once per group: test below).
    """
    torch.manual_seed(0)
    model = build_module(source)
    x = make_input(model, source, 1)
    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as fwd:
        y = model(x)
    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as bwd:
        y.backward(torch.ones_like(y))
    return fwd.get_total_flops(), bwd.get_total_flops(), sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("groups", [1, 4, 16])
def test_conv_backward_is_two_forwards_and_torchs_own_count_where_groups_is_1(
        groups: int) -> None:
    conv = torch.nn.Conv2d(16, 32, 3, padding=1, groups=groups)
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    with FlopCounterMode(display=False) as fwd:
        y = conv(x)
    with FlopCounterMode(display=False) as stock:
        y.sum().backward(retain_graph=True)
    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as ours:
        y.sum().backward()
    assert ours.get_total_flops() == 2 * fwd.get_total_flops()
    assert (stock.get_total_flops() == ours.get_total_flops()) == (groups == 1)


@pytest.mark.parametrize("source", [RESNET, MOBILENET, DECODER], ids=["resnet18", "mobilenet_v2",
                                                                      "decoder"])
def test_blocks_add_up_to_torchs_flop_and_parameter_count_of_the_whole_module(
        source: ModuleSource) -> None:
    profile = profile_module(source)
    items = source.tokens or 1
    fwd, bwd, params = _torch_counts(source)
    assert sum(layer.forward_flops for layer in profile.layers) * items == fwd
    assert sum((layer.backward_flops or 0.0) for layer in profile.layers) * items == bwd
    assert sum(layer.param_bytes for layer in profile.layers) == 4 * params
    assert profile.module == source


def test_replicas_have_torchvisions_published_parameter_counts() -> None:
    assert _torch_counts(RESNET)[2] == 11_689_512
    assert _torch_counts(MOBILENET)[2] == 3_504_872


def test_resnet18_splits_at_its_residual_blocks_and_pools() -> None:
    profile = profile_module(RESNET)
    assert [layer.name for layer in profile.layers] == [
        "conv1", "bn1", "maxpool", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0",
        "layer3.1", "layer4.0", "layer4.1", "avgpool", "fc"]
    kinds = {layer.name: layer.kind for layer in profile.layers}
    assert (kinds["conv1"], kinds["bn1"], kinds["maxpool"], kinds["layer2.0"], kinds["fc"]) == (
        "conv", "norm", "pool", "conv", "head")
    by_name = {layer.name: layer for layer in profile.layers}
    assert by_name["layer1.1"].activation_bytes == 64 * 16 * 16 * 4  # 64 channels at 1/4 of 64
    assert by_name["fc"].activation_bytes == 1000 * 4
    assert profile.unit == "sample" and profile.seq_len is None


def test_mobilenet_v2_splits_at_its_inverted_residuals() -> None:
    names = [layer.name for layer in profile_module(MOBILENET).layers]
    assert names == [f"features.{i}" for i in range(19)] + ["classifier.1"]


def test_hf_style_decoder_blocks_carry_kv_cache_and_lora_sizes() -> None:
    profile = profile_module(DECODER)
    assert [layer.name for layer in profile.layers] == [
        "model.embed_tokens", "model.layers.0", "model.layers.1", "model.layers.2",
        "model.norm", "lm_head"]
    assert [layer.kind for layer in profile.layers] == [
        "embedding", "transformer", "transformer", "transformer", "norm", "head"]
    layer = profile.layers[1]
    assert layer.kv_bytes_per_token == 2 * 2 * 8 * 4  # k and v, 2 KV heads of 8, float32
    assert layer.lora_param_bytes == (8 * (32 + 32) + 8 * (32 + 16)) * 4  # q_proj, v_proj
    assert profile.layers[0].param_bytes == 97 * 32 * 4  # the tied head counts once
    assert profile.layers[-1].param_bytes == 0.0
    assert profile.unit == "token" and profile.seq_len == 16


def test_later_decoder_layers_recompute_the_rotary_tables_from_their_input() -> None:
    torch.manual_seed(0)
    model = build_module(DECODER)
    part = partition(model, DECODER)
    assert [r is not None for r in part.recomputed] == [False, False, True, True, False, False]


@pytest.mark.parametrize("source", [RESNET, MOBILENET, DECODER], ids=["resnet18", "mobilenet_v2",
                                                                      "decoder"])
def test_blocks_in_a_row_give_the_modules_own_output(source: ModuleSource) -> None:
    torch.manual_seed(0)
    model = build_module(source).eval()
    blocks = partition(model, source).blocks.eval()
    x = make_input(model, source, 3, seed=5)
    with torch.no_grad():
        assert torch.equal(blocks(x), model(x))


def test_split_points_cut_right_after_the_named_modules() -> None:
    source = RESNET.model_copy(update={"split_points": ["layer2", "layer4"]})
    profile = profile_module(source)
    assert [layer.name for layer in profile.layers] == ["conv1", "layer3.0", "avgpool"]
    assert profile.layers[0].activation_bytes == 128 * 8 * 8 * 4
    whole = profile_module(RESNET)
    assert sum(lay.forward_flops for lay in profile.layers) == sum(
        lay.forward_flops for lay in whole.layers)


UNTRACEABLE = '''
import torch
from torch import nn


class Gate(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(8, 16)
        self.b = nn.Linear(16, 4)

    def forward(self, x):
        if x.sum() > 1e9:  # branches on values: torch.fx cannot trace it
            x = x * 0
        return self.b(self.a(x))


class Act(Gate):
    def forward(self, x):
        if x.sum() > 1e9:
            x = x * 0
        return self.b(torch.relu(self.a(x)))  # a function between the children


class Skip(Gate):
    def __init__(self):
        super().__init__()
        self.skip = nn.Linear(8, 4)

    def forward(self, x):
        if x.sum() > 1e9:
            x = x * 0
        return self.b(self.a(x)) + self.skip(x)


def gate():
    return Gate()


def skip():
    return Skip()


def act():
    return Act()


def not_a_module():
    return 3


def broken():
    raise RuntimeError("no weights here")
'''


def test_an_untraceable_module_falls_back_to_its_top_level_children(tmp_path: Path) -> None:
    (tmp_path / "gate.py").write_text(UNTRACEABLE)
    source = ModuleSource(factory=f"{tmp_path}/gate.py:gate", input_shape=[2, 8])
    profile = profile_module(source)
    assert [layer.name for layer in profile.layers] == ["a", "b"]
    assert "top-level children" in profile.source and "checked" in profile.source
    assert [layer.forward_flops for layer in profile.layers] == [2 * 8 * 16, 2 * 16 * 4]


def _one_line(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    assert run_cli(main, argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize(("tail", "needles"), [
    (["gate.py:skip", "--input-shape", "2,8"], ("top-level children do not run as a chain",)),
    (["gate.py:act", "--input-shape", "2,8"], ("gate.py:act", "do not give the module's output")),
    (["gate.py:not_a_module", "--input-shape", "2,8"], ("returned int", "not a torch.nn.Module")),
    (["gate.py:broken", "--input-shape", "2,8"], ("gate.py:broken", "no weights here")),
    (["gate.py:nothing", "--input-shape", "2,8"], ("has no function 'nothing'",)),
    (["missing.py:gate", "--input-shape", "2,8"], ("missing.py", "no such file")),
    (["gate.py:gate"], ("one of --input-shape", "--tokens")),
    (["gate.py:gate", "--input-shape", "2,8", "--tokens", "4"], ("one of --input-shape",)),
    (["gate.py:gate", "--input-shape", "2,x"], ("--input-shape", "positive integers")),
    (["gate.py:gate", "--tokens", "4"], ("--tokens", "no nn.Embedding")),
    (["gate.py:gate", "--input-shape", "2,8", "--seq-len", "4"], ("--seq-len", "--tokens")),
    (["bad.py:gate", "--input-shape", "2,8"], ("bad.py", "importing it failed")),
    (["no_such_package_x.mod:f", "--input-shape", "2,8"], ("cannot import",)),
])
def test_bad_module_arguments_exit_2_with_one_line(
        tail: list[str], needles: tuple[str, ...], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "gate.py").write_text(UNTRACEABLE)
    (tmp_path / "bad.py").write_text("def gate(:\n")
    monkeypatch.chdir(tmp_path)
    _one_line(["--model", *tail], capsys, *needles)


def test_a_failing_fake_kernel_prints_one_line_from_the_command(tmp_path: Path) -> None:
    (tmp_path / "gate.py").write_text(UNTRACEABLE)
    run = subprocess.run([sys.executable, "-m", "dora_rl.profiler", "--model", "gate.py:skip",
                          "--input-shape", "2,8"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "do not run as a chain" in run.stderr


@pytest.mark.parametrize(("points", "needles"), [
    ("layer1.0.conv1", ("--split-points", "after 'layer1.0.conv1' 2 values cross")),
    ("nope", ("--split-points", "no module 'nope'", "top-level: conv1")),
    ("layer3,layer2", ("--split-points", "'layer2' does not come after")),
    ("fc", ("--split-points", "'fc' ends the module")),
])
def test_bad_split_points_exit_2_with_one_line(points: str, needles: tuple[str, ...],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _one_line(["--model", RESNET.factory, "--input-shape", "1,3,32,32", "--split-points",
               points], capsys, *needles)


def test_module_flags_on_a_registered_model_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    _one_line(["--model", "gpt2", "--tokens", "8"], capsys, "--tokens", "registered model")


def test_the_cli_writes_a_profile_whose_module_the_loader_finds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "profiles" / "net.yaml"
    argv = ["--model", f"{NETS}/vision.py:small_resnet", "--input-shape", "1,3,32,32",
            "--out", str(out), "--name", "my_net"]
    assert run_cli(main, argv) == 0
    assert "wrote" in capsys.readouterr().out
    text = out.read_text()
    assert "factory: ../../" in text and "vision.py:small_resnet" in text  # relative to the file
    model = load_model(out)
    assert model.name == "my_net" and model.module is not None
    assert Path(model.module.factory.rpartition(":")[0]) == NETS / "vision.py"
    assert model.module.input_shape == [1, 3, 32, 32]


def test_measure_times_every_block_of_a_module(tmp_path: Path) -> None:
    out = tmp_path / "net.yaml"
    argv = ["--model", f"{NETS}/vision.py:small_resnet", "--input-shape", "1,3,32,32",
            "--measure", "--warmup", "0", "--repeats", "1", "--device-name", "here",
            "--out", str(out)]
    assert run_cli(main, argv) == 0
    model = load_model(out)
    (measured,) = model.measured
    assert measured.device == "here" and measured.batch == 1 and measured.dtype == "float32"
    assert len(measured.time_s) == len(model.layers) and all(t > 0 for t in measured.time_s)
