"""Profiling GGUF files: real bytes per block, FLOPs from the dimensions, one-line errors.

Every file is written here with the ``gguf`` package itself (nothing is downloaded); quantized
tensors are zero bytes of their type's exact size, which is all the profiler reads.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFWriter

from dora_rl.config import load_scenario
from dora_rl.config.formats import WEIGHT_FORMATS, weight_bytes
from dora_rl.costmodel import CostModel
from dora_rl.errors import run_cli
from dora_rl.models.counting import count_fake
from dora_rl.models.gguf_profile import GGUF_FORMATS, profile_gguf
from dora_rl.models.gguf_read import read_gguf
from dora_rl.models.llama import LlamaConfig, build, sample_input
from dora_rl.profiler import main

DIM, HEADS, KV_HEADS, FF, VOCAB, LAYERS, CONTEXT = 256, 4, 2, 512, 320, 3, 64
HEAD_DIM = DIM // HEADS
MATRICES = {"attn_q": (DIM, DIM), "attn_k": (KV_HEADS * HEAD_DIM, DIM),
            "attn_v": (KV_HEADS * HEAD_DIM, DIM), "attn_output": (DIM, DIM),
            "ffn_gate": (FF, DIM), "ffn_up": (FF, DIM), "ffn_down": (DIM, FF)}


def _tensor(w: GGUFWriter, name: str, shape: tuple[int, int], qtype: str) -> None:
    rows, cols = shape
    if qtype == "F32":
        w.add_tensor(name, np.zeros(shape, np.float32))
    elif qtype == "F16":
        w.add_tensor(name, np.zeros(shape, np.float16))
    else:
        kind = GGMLQuantizationType[qtype]
        block, size = GGML_QUANT_SIZES[kind]
        w.add_tensor(name, np.zeros((rows, cols // block * size), np.uint8), raw_dtype=kind)


def write_gguf(path: Path, *, main_type: str = "Q4_0", head_type: str = "Q6_K",
               down_type: str | None = None, tied: bool = False, arch: str = "llama",
               skip: tuple[str, ...] = ()) -> Path:
    """A llama-style GGUF file of the module's dimensions (tensor data all zeros)."""
    w = GGUFWriter(str(path), arch)
    w.add_block_count(LAYERS)
    w.add_embedding_length(DIM)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    if "ffn" not in skip:
        w.add_feed_forward_length(FF)
    w.add_context_length(CONTEXT)
    w.add_name("tiny test model")
    _tensor(w, "token_embd.weight", (VOCAB, DIM), main_type)
    for i in range(LAYERS):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(DIM, np.float32))
        for name, shape in MATRICES.items():
            if name not in skip:
                kind = down_type if (name == "ffn_down" and down_type) else main_type
                _tensor(w, f"blk.{i}.{name}.weight", shape, kind)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(DIM, np.float32))
    w.add_tensor("output_norm.weight", np.ones(DIM, np.float32))
    if not tied:
        _tensor(w, "output.weight", (VOCAB, DIM), head_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_every_gguf_type_maps_to_a_weight_format_the_cost_model_knows() -> None:
    assert set(GGUF_FORMATS.values()) <= set(WEIGHT_FORMATS)


@pytest.mark.parametrize(("main_type", "fmt"), [("Q4_0", "q4_0"), ("Q8_0", "q8_0"),
                                                ("F16", "fp16"), ("Q4_K", "q4_k_m"),
                                                ("F32", "fp32")])
def test_weight_bytes_per_block_are_the_files_own(tmp_path: Path, main_type: str,
                                                  fmt: str) -> None:
    path = write_gguf(tmp_path / "m.gguf", main_type=main_type)
    model = profile_gguf(path)
    assert model.weight_format == fmt and model.dtype_bytes == 4 and model.unit == "token"
    assert [layer.name for layer in model.layers] == [
        "embed", *(f"decoder.{i}" for i in range(LAYERS)), "lm_head"]
    table = read_gguf(path).tensors
    for layer in model.layers:
        prefix = {"embed": "token_embd.", "lm_head": "output"}.get(
            layer.name, "blk." + layer.name.removeprefix("decoder.") + ".")
        expected = sum(t.n_bytes for t in table if t.name.startswith(prefix))
        assert weight_bytes(layer.param_bytes, 4, fmt) == pytest.approx(expected, rel=1e-12)
    total = sum(weight_bytes(lay.param_bytes, 4, fmt) for lay in model.layers)
    assert total == pytest.approx(sum(t.n_bytes for t in table), rel=1e-12)


def test_a_q4_0_block_holds_18_bytes_per_32_weights_plus_f32_norms(tmp_path: Path) -> None:
    model = profile_gguf(write_gguf(tmp_path / "m.gguf"))
    weights = sum(r * c for r, c in MATRICES.values())
    expected = weights * 18 / 32 + 2 * DIM * 4
    assert weight_bytes(model.layers[1].param_bytes, 4, "q4_0") == pytest.approx(expected)
    head = VOCAB * DIM * 210 / 256 + DIM * 4  # a Q6_K head: 210 bytes per 256 weights
    assert weight_bytes(model.layers[-1].param_bytes, 4, "q4_0") == pytest.approx(head)


def test_decoder_flops_follow_the_dimensions(tmp_path: Path) -> None:
    model = profile_gguf(write_gguf(tmp_path / "m.gguf"), seq_len=32)
    weights = sum(r * c for r, c in MATRICES.values())
    assert model.seq_len == 32
    assert model.layers[1].forward_flops == 2 * weights + 4 * 32 * HEADS * HEAD_DIM
    assert model.layers[-1].forward_flops == 2 * DIM * VOCAB
    assert model.layers[0].forward_flops == 0.0
    assert model.layers[1].kv_bytes_per_token == 2 * KV_HEADS * HEAD_DIM * 2  # F16 cache


def test_counts_equal_the_plain_torch_llama_of_the_same_dimensions(tmp_path: Path) -> None:
    model = profile_gguf(write_gguf(tmp_path / "m.gguf"))
    cfg = LlamaConfig(layers=LAYERS, dim=DIM, intermediate=FF, heads=HEADS, kv_heads=KV_HEADS,
                      vocab=VOCAB, context=CONTEXT)
    counts = count_fake(lambda: build(cfg), lambda: sample_input(cfg, 1, CONTEXT), CONTEXT)
    assert model.seq_len == CONTEXT
    for layer, c in zip(model.layers, counts, strict=True):
        assert (layer.forward_flops, layer.backward_flops, layer.activation_bytes,
                layer.saved_activation_bytes, layer.lora_param_bytes) == (
            c.forward_flops, c.backward_flops, c.activation_bytes, c.saved_activation_bytes,
            c.lora_param_bytes)
        if layer.name.startswith("decoder"):
            assert c.param_bytes == 4 * (sum(r * k for r, k in MATRICES.values()) + 2 * DIM)


def test_a_tied_head_counts_only_its_norm(tmp_path: Path) -> None:
    model = profile_gguf(write_gguf(tmp_path / "m.gguf", tied=True))
    assert weight_bytes(model.layers[-1].param_bytes, 4, "q4_0") == DIM * 4
    assert model.layers[-1].forward_flops == 2 * DIM * VOCAB


def test_a_q4_k_m_mix_with_q6_k_tensors_is_q4_k_m(tmp_path: Path) -> None:
    model = profile_gguf(write_gguf(tmp_path / "m.gguf", main_type="Q4_K", down_type="Q6_K"))
    assert model.weight_format == "q4_k_m"


def test_a_card_plans_with_the_gguf_profile_at_the_files_size(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf")
    assert run_cli(main, ["--gguf", str(path), "--out", str(tmp_path / "m.yaml")]) == 0
    card = (Path(__file__).resolve().parent.parent / "envs" / "tiny.yaml").read_text()
    start, end = card.index("models:"), card.index("jobs:")
    card = card[:start] + "models:\n  - name: tiny8\n    profile: m.yaml\n\n" + card[end:]
    card = card.replace("workload: inference\n    inference: {request_rate_per_s: 10.0, batch: 1}",
                        "workload: inference\n    inference: {request_rate_per_s: 1.0, batch: 1}")
    (tmp_path / "card.yaml").write_text(card)
    scenario = load_scenario(tmp_path / "card.yaml")
    model = scenario.models["tiny8"]
    assert model.weight_format == "q4_0"
    tables = CostModel(scenario).tables
    file_weights = sum(t.n_bytes for t in read_gguf(path).tensors)
    assert tables.param_prefix_bytes[-1] == pytest.approx(file_weights, rel=1e-9)


def _one_line(argv: list[str], capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    assert run_cli(main, argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    for needle in needles:
        assert needle in lines[0], lines[0]


def _header(path: Path, kv_count: int, tensor_count: int = 0, extra: bytes = b"") -> Path:
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, tensor_count, kv_count) + extra)
    return path


@pytest.mark.parametrize(("make", "needles"), [
    (lambda d: write_gguf(d / "m.gguf", main_type="F16", down_type="Q5_K"),
     ("m.gguf", "blk.0.ffn_down.weight", "GGUF type Q5_K", "no weight format")),
    (lambda d: write_gguf(d / "m.gguf", main_type="Q6_K"), ("m.gguf", "most weights are Q6_K")),
    (lambda d: write_gguf(d / "m.gguf", skip=("ffn",)),
     ("m.gguf", "llama.feed_forward_length", "positive integer")),
    (lambda d: write_gguf(d / "m.gguf", skip=("ffn_gate",)), ("block 0 has no ffn_gate",)),
    (lambda d: _truncated(write_gguf(d / "m.gguf")), ("m.gguf", "malformed GGUF", "truncated")),
    (lambda d: _header(d / "m.gguf", 2**62), ("m.gguf", "malformed GGUF")),
    (lambda d: _header(d / "m.gguf", 1, extra=struct.pack("<Q", 2**60)),
     ("m.gguf", "malformed GGUF", "truncated")),
    (lambda d: _write(d / "m.gguf", b"GGML" + bytes(40)), ("m.gguf", "not a GGUF file")),
    (lambda d: _write(d / "m.gguf", b""), ("m.gguf", "not a GGUF file")),
    (lambda d: d / "absent.gguf", ("absent.gguf", "no such file")),
])
def test_bad_gguf_files_exit_2_with_one_line(make, needles: tuple[str, ...],  # type: ignore[no-untyped-def]
                                             tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _one_line(["--gguf", str(make(tmp_path))], capsys, *needles)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _truncated(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    return path


def test_gguf_flags_that_do_not_apply_exit_2(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = write_gguf(tmp_path / "m.gguf")
    _one_line(["--gguf", str(path), "--measure"], capsys, "--measure", "not for --gguf")
    _one_line(["--gguf", str(path), "--input-shape", "1,2"], capsys, "--input-shape")
    _one_line(["--gguf", str(path), "--out"], capsys, "--out", "give a file name")


def test_a_huge_array_count_stays_within_bounded_memory(tmp_path: Path) -> None:
    """An array claiming 2**40 one-byte entries in a small file ends at the file's end."""
    key = b"x.arr"
    body = struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 0, 2**40) + bytes(64)
    path = _header(tmp_path / "m.gguf", 1, extra=body)
    run = subprocess.run([sys.executable, "-c", (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "from dora_rl.errors import run_cli\n"
        "from dora_rl.profiler import main\n"
        f"sys.exit(run_cli(main, ['--gguf', {str(path)!r}]))\n")],
        capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "truncated" in run.stderr
