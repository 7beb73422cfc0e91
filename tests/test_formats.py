"""Weight formats: bytes per weight, what they change in the cost tables, and card errors."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dora_rl.config import bytes_per_weight, load_builtin_model, load_scenario
from dora_rl.config.formats import WEIGHT_FORMATS, weight_bytes
from dora_rl.costmodel.tables import build_tables
from dora_rl.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent

DEVICE: dict[str, Any] = {
    "name": "box", "kind": "jetson_orin_nano", "memory_bytes": 8_000_000_000,
    "compute": {"peak_flops": 1e12, "default_efficiency": 0.5, "memory_bandwidth_gbps": 100.0},
    "power": {"idle_w": 5.0, "busy_w": 15.0, "tx_w": 6.0, "rx_w": 6.0},
    "network": {"domain": "ap", "link_mbps": 100.0},
}
LAYER = {"name": "fc", "kind": "linear", "forward_flops": 2e9, "param_bytes": 4_000_000.0,
         "activation_bytes": 4000.0, "kv_bytes_per_token": 512.0}
"""One 1,000,000-weight FP32 layer: 2 GFLOP per item, 4 MB of weights."""


def _card(models: list[dict[str, Any]], job: dict[str, Any] | None = None,
          device: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": "formats", "devices": [copy.deepcopy(device or DEVICE)],
        "network": {"domains": [{"name": "ap", "kind": "wifi"}]},
        "models": models,
        "jobs": [job or {"name": "job", "model": "m", "workload": "inference",
                         "inference": {"request_rate_per_s": 1.0}, "qoe": {"latency_ms": 100}}],
    }


def _inline(fmt: str | None = None, **extra: Any) -> dict[str, Any]:
    model: dict[str, Any] = {"name": "m", "layers": [dict(LAYER)], **extra}
    if fmt is not None:
        model["weight_format"] = fmt
    return model


def _load(tmp_path: Path, data: dict[str, Any], name: str = "card.yaml") -> Any:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return load_scenario(path)


def _error(tmp_path: Path, data: dict[str, Any]) -> str:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    return message


def test_bytes_per_weight_include_block_scales() -> None:
    assert bytes_per_weight("fp32") == 4.0
    assert bytes_per_weight("bf16") == bytes_per_weight("fp16") == 2.0
    assert bytes_per_weight("int8") == 1.0
    assert bytes_per_weight("q8_0") == 34 / 32  # FP16 scale + 32 int8 per block
    assert bytes_per_weight("q4_0") == 18 / 32  # FP16 scale + 16 bytes of nibbles
    assert bytes_per_weight("q4_k_m") == pytest.approx(4.85 / 8)
    assert weight_bytes(4_000_000, 4, "q4_0") == 562_500.0
    assert set(WEIGHT_FORMATS) == {"fp32", "fp16", "bf16", "int8", "q8_0", "q4_0", "q4_k_m"}


@pytest.mark.parametrize(("fmt", "expected"), [("q4_0", 562_500.0), ("q8_0", 1_062_500.0),
                                               ("fp32", 4_000_000.0), ("int8", 1_000_000.0)])
def test_inline_layer_weight_bytes_and_reads_follow_the_format(tmp_path: Path, fmt: str,
                                                               expected: float) -> None:
    t = build_tables(_load(tmp_path, _card([_inline(fmt)])))
    assert t.param_prefix_bytes[-1] == pytest.approx(expected)
    assert t.weight_read_prefix_s[0, -1] == pytest.approx(expected / 100e9)
    # activations and the KV cache stay at the model's dtype
    assert t.activation_bytes[0] == 4000.0 and t.kv_prefix_bytes[-1] == 512.0


def test_llama_1b_q4_k_m_weights_and_token_reads_match_the_hand_formula(tmp_path: Path) -> None:
    job = {"name": "chat", "model": "llama_1b", "workload": "llm_inference",
           "llm": {"request_rate_per_s": 0.1, "prompt_tokens": 64, "output_tokens": 16},
           "qoe": {"ttft_ms": 3000, "tpot_ms": 250}}
    data = _card([{"name": "llama_1b", "weight_format": "q4_k_m"}], job)
    scenario = _load(tmp_path, data)
    fp32 = load_builtin_model("llama_1b")
    weights = sum(layer.param_bytes for layer in fp32.layers) / 4  # 1.100e9 FP32 weights
    expected = weights * 4.85 / 8  # ~0.667 GB with the block scales
    t = build_tables(scenario)
    assert scenario.models["llama_1b"].weight_format == "q4_k_m"
    assert expected == pytest.approx(0.667e9, rel=1e-3)
    assert t.param_prefix_bytes[-1] == pytest.approx(expected)
    assert t.weight_read_prefix_s[0, -1] == pytest.approx(expected / 100e9)
    per_layer = np.diff(t.param_prefix_bytes)
    assert per_layer == pytest.approx([lay.param_bytes / 4 * 4.85 / 8 for lay in fp32.layers])
    assert t.kv_prefix_bytes[-1] == sum(lay.kv_bytes_per_token for lay in fp32.layers)


def test_format_speed_scales_compute_time(tmp_path: Path) -> None:
    device = copy.deepcopy(DEVICE)
    device["compute"]["format_speed"] = {"int8": 2.0, "fp32": 0.5}
    times = {}
    for fmt in ("fp32", "fp16", "int8"):
        t = build_tables(_load(tmp_path, _card([_inline(fmt)], device=device), f"{fmt}.yaml"))
        times[fmt] = (t.fwd_prefix_s[0, -1], t.bwd_prefix_s[0, -1])
    nominal = 2e9 / (1e12 * 0.5)  # 4 ms at the nominal precision (fp16: not listed -> 1.0)
    assert times["fp16"][0] == pytest.approx(nominal)
    assert times["fp32"][0] == pytest.approx(nominal / 0.5)
    assert times["int8"][0] == pytest.approx(nominal / 2.0)
    assert times["int8"][1] == pytest.approx(2 * nominal / 2.0)  # backward: 2x forward FLOPs


def test_measured_profile_times_scale_by_the_ratio_of_format_speeds(tmp_path: Path) -> None:
    profile = {"name": "m", "layers": [dict(LAYER)],
               "measured": [{"device": "box", "batch": 2, "dtype": "float32",
                             "time_s": [0.020]}]}
    (tmp_path / "m_box.yaml").write_text(yaml.safe_dump(profile))
    device = copy.deepcopy(DEVICE)
    device["compute"] = {"measured": {"m": "m_box.yaml"}, "format_speed": {"fp32": 0.5}}
    t32 = build_tables(_load(tmp_path, _card([_inline("fp32")], device=device), "a.yaml"))
    t16 = build_tables(_load(tmp_path, _card([_inline("fp16")], device=device), "b.yaml"))
    assert t32.fwd_prefix_s[0, -1] == pytest.approx(0.010)  # 20 ms for a batch of 2
    assert t16.fwd_prefix_s[0, -1] == pytest.approx(0.010 * 0.5 / 1.0)


def test_mixed_precision_training_keeps_an_fp32_master_copy(tmp_path: Path) -> None:
    job = {"name": "ft", "model": "m", "workload": "training",
           "training": {"global_batch": 4, "micro_batches": 2}, "qoe": {"iteration_ms": 1000}}
    fp32 = build_tables(_load(tmp_path, _card([_inline("fp32")], job), "a.yaml"))
    bf16 = build_tables(_load(tmp_path, _card([_inline("bf16")], job), "b.yaml"))
    assert fp32.optimizer_prefix_bytes[-1] == 8_000_000.0  # Adam moments at 4 bytes
    assert bf16.param_prefix_bytes[-1] == 2_000_000.0
    assert bf16.optimizer_prefix_bytes[-1] == 8_000_000.0 + 4_000_000.0  # + FP32 master


def test_quantized_full_training_is_refused_but_lora_is_not(tmp_path: Path) -> None:
    job = {"name": "ft", "model": "m", "workload": "training",
           "training": {"global_batch": 4, "micro_batches": 2, "method": "full"},
           "qoe": {"iteration_ms": 1000}}
    message = _error(tmp_path, _card([_inline("q4_0")], job))
    assert "jobs[0].training.method: full training needs float weights" in message
    job["training"]["method"] = "lora"
    assert _load(tmp_path, _card([_inline("q4_0")], job)).models["m"].weight_format == "q4_0"


def test_weight_format_defaults_to_the_dtype(tmp_path: Path) -> None:
    scenario = _load(tmp_path, _card([_inline(None, dtype_bytes=2)]))
    assert scenario.models["m"].weight_format == "fp16"
    assert load_builtin_model("gpt2").weight_format == "fp32"
    message = _error(tmp_path, _card([_inline(None, dtype_bytes=8)]))
    assert "models[0]" in message and "weight_format is required" in message


def test_card_may_name_a_builtin_profile_with_only_its_format(tmp_path: Path) -> None:
    job = {"name": "cam", "model": "vit_b16", "workload": "inference",
           "inference": {"request_rate_per_s": 1.0}, "qoe": {"latency_ms": 200}}
    scenario = _load(tmp_path, _card([{"name": "vit_b16", "weight_format": "fp16"}], job))
    model = scenario.models["vit_b16"]
    assert model.weight_format == "fp16"
    assert model.layers == load_builtin_model("vit_b16").layers


@pytest.mark.parametrize(("model", "expected"), [
    ({"name": "gpt5"}, "models[0]: give 'profile' or 'layers' ('gpt5' is not a built-in"),
    ({"name": "gpt2", "dtype_bytes": 2}, "models[0].dtype_bytes: only with inline 'layers'"),
    ({"name": "gpt2", "weight_format": "q3_k"},
     "models[0].weight_format: must be one of 'fp32', 'fp16', 'bf16', 'int8', 'q8_0', 'q4_0' or "
     "'q4_k_m', got 'q3_k'"),
    ({"name": "n", "profile": "x.yaml", "layers": [LAYER]},
     "models[0]: give one of 'profile' or 'layers', not both"),
])
def test_bad_model_references_name_the_field(tmp_path: Path, model: dict[str, Any],
                                             expected: str) -> None:
    assert expected in _error(tmp_path, _card([model, _inline()]))


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda d: d["compute"].update(format_speed={"q3": 1.0}),
     "devices[0].compute.format_speed.q3: must be one of"),
    (lambda d: d["compute"].update(format_speed={"int8": 0.0}),
     "devices[0].compute.format_speed.int8: must be > 0, got 0.0"),
])
def test_bad_format_speed_names_the_field(tmp_path: Path, edit: Any, expected: str) -> None:
    device = copy.deepcopy(DEVICE)
    edit(device)
    assert expected in _error(tmp_path, _card([_inline()], device=device))


def test_shipped_cards_show_their_formats() -> None:
    expected = {"smart_home": {"llama_1b": "q4_k_m", "vit_b16": "fp16"},
                "edge_cluster": {"gpt2": "bf16", "llama_1b": "fp16"},
                "traffic_analytics": {"resnet50": "int8", "vit_b16": "fp16"},
                "tiny": {"tiny8": "fp32"}}
    for card, formats in expected.items():
        scenario = load_scenario(ROOT / "envs" / f"{card}.yaml")
        assert {m: scenario.models[m].weight_format for m in formats} == formats
