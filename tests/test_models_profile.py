"""Model builders, exact per-block counting and the profiler CLI (small models only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from dora_rl.config import load_builtin_model, load_model
from dora_rl.errors import run_cli
from dora_rl.models import MODELS, BlockInfo, Blocks, build
from dora_rl.models.counting import count_blocks, count_fake, time_blocks
from dora_rl.models.gpt2 import GPT2Config
from dora_rl.models.llama import LlamaConfig
from dora_rl.models.resnet import ResNetConfig
from dora_rl.models.vit import ViTConfig
from dora_rl.profiler import main, profile_model

SMALL: dict[str, Any] = {
    "vit_b16": ViTConfig(image_size=32, patch_size=8, layers=2, hidden=32, mlp=64, heads=4,
                         classes=10),
    "resnet50": ResNetConfig(stages=(2, 1), widths=(4, 8), stem_width=8, image_size=32,
                             classes=10),
    "gpt2": GPT2Config(layers=2, dim=32, heads=4, vocab=101, context=16),
    "llama_1b": LlamaConfig(layers=2, dim=64, intermediate=96, heads=8, kv_heads=2, vocab=101,
                            context=32),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_block_chain_runs_end_to_end_and_matches_the_whole_model(name: str) -> None:
    torch.manual_seed(0)
    spec, cfg = MODELS[name], SMALL[name]
    blocks = spec.build(cfg).eval()
    x = spec.sample_input(batch=2, seq_len=8, config=cfg)
    with torch.no_grad():
        y = x
        for block in blocks:
            y = block(y)
        whole = blocks(x)
    assert torch.equal(y, whole)
    expected = (2, 10) if spec.unit == "sample" else (2, 8, 101)
    assert tuple(y.shape) == expected
    assert torch.isfinite(y).all()
    assert blocks.infos[0].kind in ("embedding", "conv") and blocks.infos[-1].kind == "head"


def test_registry_names_units_and_published_block_counts() -> None:
    assert sorted(MODELS) == ["gpt2", "llama_1b", "resnet50", "vit_b16"]
    assert {n: (s.unit, s.seq_len) for n, s in MODELS.items()} == {
        "vit_b16": ("sample", None), "resnet50": ("sample", None),
        "gpt2": ("token", 1024), "llama_1b": ("token", 2048)}
    assert all(s.source for s in MODELS.values())
    with pytest.raises(KeyError, match="known: gpt2"):
        build("nope")


def test_flops_of_a_single_linear_block_are_two_in_out_per_item() -> None:
    chain = Blocks([nn.Linear(24, 10)], [BlockInfo("fc", "linear")])
    (count,) = count_blocks(chain, torch.randn(5, 24), items=5)
    assert count.forward_flops == 2 * 24 * 10
    assert count.backward_flops == 2 * 24 * 10  # first block: weight gradient only
    assert count.param_bytes == (24 * 10 + 10) * 4
    assert count.activation_bytes == 10 * 4


def test_inner_block_backward_includes_input_gradient_and_saves_no_parameters() -> None:
    chain = Blocks([nn.Linear(8, 4), nn.Linear(4, 6)],
                   [BlockInfo("a", "linear"), BlockInfo("b", "linear")])
    _, second = count_blocks(chain, torch.randn(3, 8), items=3)
    assert second.backward_flops == 2 * (2 * 4 * 6)
    assert second.saved_activation_bytes == 4 * 4  # its input only, not the weight


@pytest.mark.parametrize("name", sorted(SMALL))
def test_param_bytes_sum_to_the_torch_total_with_tied_weights_once(name: str) -> None:
    spec, cfg = MODELS[name], SMALL[name]
    blocks = spec.build(cfg)
    torch_total = sum(p.numel() * p.element_size() for p in blocks.parameters())
    s = 8 if spec.unit == "token" else 1
    counts = count_fake(lambda: spec.build(cfg), lambda: spec.sample_input(1, 8, cfg), items=s)
    assert sum(c.param_bytes for c in counts) == torch_total
    if name == "gpt2":
        assert counts[-1].param_bytes == 2 * 32 * 4  # ln_f only: lm_head is tied to wte


def test_fake_counting_equals_real_counting_on_a_small_gpt2() -> None:
    spec, cfg = MODELS["gpt2"], SMALL["gpt2"]
    torch.manual_seed(0)
    x = spec.sample_input(2, 8, cfg)
    real = count_blocks(spec.build(cfg), x, items=16)
    fake = count_fake(lambda: spec.build(cfg), lambda: spec.sample_input(2, 8, cfg), items=16)
    assert real == fake


def test_small_llama_counts_match_a_hand_count_per_token() -> None:
    cfg, s = SMALL["llama_1b"], 16
    model, used = profile_model(MODELS["llama_1b"], seq_len=s, config=cfg)
    assert used == s and model.seq_len == s and model.unit == "token"
    d, kv, hd, ff = cfg.dim, cfg.kv_heads * cfg.head_dim, cfg.head_dim, cfg.intermediate
    matmul = 2 * (d * (d + 2 * kv) + d * d + 3 * d * ff)
    attention = 2 * 2 * s * cfg.heads * hd  # q @ k^T and p @ v, full S x S cost
    decoder = model.layers[1]
    assert decoder.forward_flops == matmul + attention
    assert decoder.kv_bytes_per_token == 2 * cfg.kv_heads * hd * 4
    assert decoder.lora_param_bytes == 8 * ((d + d) + (d + kv)) * 4
    assert model.layers[0].forward_flops == 0 and model.layers[0].kind == "embedding"
    assert model.layers[-1].forward_flops == 2 * d * cfg.vocab
    assert model.layers[-1].activation_bytes == cfg.vocab * 4
    assert all(lay.saved_activation_bytes and lay.saved_activation_bytes > 0
               for lay in model.layers[1:])


PUBLISHED_PARAMS = {"vit_b16": 86.6e6, "resnet50": 25.6e6, "gpt2": 124e6, "llama_1b": 1.1e9}
PUBLISHED_GFLOPS = {"vit_b16": 2 * 17.56, "resnet50": 2 * 4.09}


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_shipped_profiles_load_and_match_published_totals(name: str) -> None:
    model = load_builtin_model(name)
    assert model.name == name and model.unit == MODELS[name].unit
    params = sum(lay.param_bytes for lay in model.layers) / model.dtype_bytes
    assert params == pytest.approx(PUBLISHED_PARAMS[name], rel=0.05)
    if name in PUBLISHED_GFLOPS:
        gflops = sum(lay.forward_flops for lay in model.layers) / 1e9
        assert gflops == pytest.approx(PUBLISHED_GFLOPS[name], rel=0.05)
    else:
        assert model.seq_len == MODELS[name].seq_len


def test_profiler_main_writes_yaml_that_load_model_accepts(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    out = tmp_path / "sub" / "resnet50.yaml"
    assert main(["--model", "resnet50", "--out", str(out)]) == 0
    model = load_model(out)
    assert [lay.name for lay in model.layers][:2] == ["stem", "layer1.0"]
    assert len(model.layers) == 18 and model.measured == []
    printed = capsys.readouterr().out
    assert "layer1.0" in printed and "total" in printed and "GFLOPs" in printed


def test_profiler_without_out_prints_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["--model", "vit_b16"]) == 0
    assert "encoder.11" in capsys.readouterr().out
    assert list(tmp_path.iterdir()) == []


def test_profiler_measure_records_one_time_per_layer(tmp_path: Path) -> None:
    out = tmp_path / "m.yaml"
    argv = ["--model", "resnet50", "--measure", "--warmup", "0", "--repeats", "1",
            "--device-name", "test-cpu", "--out", str(out)]
    assert main(argv) == 0
    (measured,) = load_model(out).measured
    assert measured.device == "test-cpu" and measured.batch == 1
    assert len(measured.time_s) == 18 and all(t > 0 for t in measured.time_s)


def test_time_blocks_gives_a_median_per_block() -> None:
    spec, cfg = MODELS["vit_b16"], SMALL["vit_b16"]
    times = time_blocks(spec.build(cfg), spec.sample_input(2, config=cfg), warmup=1, repeats=3)
    assert len(times) == cfg.layers + 2 and all(t > 0 for t in times)


@pytest.mark.parametrize(("argv", "needle"), [
    (["--model", "nope"], "--model: unknown model 'nope' (known: gpt2, llama_1b, resnet50"),
    (["--model", "vit_b16", "--seq-len", "8"], "--seq-len"),
    (["--model", "gpt2", "--batch", "0"], "--batch: must be >= 1"),
    (["--model", "gpt2", "--seq-len", "4096"], "exceeds"),
])
def test_bad_arguments_exit_2_with_one_line_and_no_traceback(
        argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(main, argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in captured.err
