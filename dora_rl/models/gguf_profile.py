"""Profile a llama-style GGUF model: real weight bytes per block, FLOPs from its dimensions.

Blocks: ``embed`` (``token_embd.*`` and any tensor outside the layers), ``decoder.N``
(``blk.N.*``) and ``lm_head`` (``output_norm.*`` and ``output.*``; with no ``output.weight`` the
head reads the tied embedding, counted once in ``embed``).

- **Weight bytes** are the file's own: each tensor's bytes at its GGML type, block scales
  included. The model's ``weight_format`` is that of the type holding most weights
  (:data:`GGUF_FORMATS`); ``param_bytes`` is written at ``dtype_bytes`` 4 such that
  :func:`dora_rl.config.formats.weight_bytes` in that format gives back each block's bytes in
  the file, so memory, weight moves and weight reads use the real sizes of mixed files (F32
  norms, a Q6_K head in a Q4_0 file, Q4_K with Q6_K in a Q4_K_M file).
- **FLOPs, output and saved-activation bytes and LoRA sizes** are counted like the shipped
  ``llama_1b`` profile, on :mod:`dora_rl.models.llama` built with the file's dimensions
  (``block_count``, ``embedding_length``, ``attention.head_count``, ``attention.head_count_kv``,
  ``feed_forward_length``, the vocabulary from ``token_embd.weight``), per token of
  ``seq_len``-token sequences (attention at full ``S x S`` cost): a decoder block does
  ``2 * (its matrices' weights) + 4 * S * n_head * head_dim`` forward FLOPs per token.
- **KV cache** per token and layer: ``2 * n_head_kv * head_dim`` values of 2 bytes (llama.cpp's
  default F16 cache).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from dora_rl.config.formats import bytes_per_weight
from dora_rl.config.schema import Layer, Model
from dora_rl.models.counting import count_fake
from dora_rl.models.gguf_read import GGUFFile, GGUFFileError, TensorEntry, read_gguf
from dora_rl.models.llama import LlamaConfig, build, sample_input

GGUF_FORMATS: dict[str, str] = {"F32": "fp32", "F16": "fp16", "BF16": "bf16", "Q8_0": "q8_0",
                                "Q4_0": "q4_0", "Q4_K": "q4_k_m", "Q6_K": "q4_k_m"}
"""GGML tensor type -> the cost model's weight format (:mod:`dora_rl.config.formats`)."""
COMPANION_TYPES = frozenset({"Q6_K"})
"""Types read only beside a main type (the head and half of attn_v/ffn_down in K-quant and
Q4_0 files), never as the type holding most of a model's weights."""
KV_CACHE_BYTES = 2
"""Bytes per cached key or value element (llama.cpp's default F16 cache)."""
DTYPE_BYTES = 4
"""Bytes of activations between blocks (llama.cpp computes in F32)."""
MAX_SEQ_LEN = 2048
"""Longest default sequence length: the file's context length, at most this."""
_LAYER_TENSORS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
_BLOCK = re.compile(r"blk\.(\d+)\.")


def _dims(f: GGUFFile) -> dict[str, int]:
    arch = f.key("general.architecture")
    if not isinstance(arch, str):
        raise GGUFFileError(f"{f.path}: metadata 'general.architecture' is missing")
    out: dict[str, int] = {}
    for short, key in (("layers", "block_count"), ("dim", "embedding_length"),
                       ("heads", "attention.head_count"), ("kv_heads", "attention.head_count_kv"),
                       ("intermediate", "feed_forward_length")):
        value = f.key(f"{arch}.{key}")
        if short == "kv_heads" and value is None:
            value = out["heads"]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise GGUFFileError(f"{f.path}: metadata '{arch}.{key}' must be a positive integer "
                                f"(llama-style models), got {value!r}")
        out[short] = value
    context = f.key(f"{arch}.context_length")
    out["context"] = context if isinstance(context, int) and context > 0 else MAX_SEQ_LEN
    if out["dim"] % out["heads"] or out["heads"] % out["kv_heads"]:
        raise GGUFFileError(f"{f.path}: embedding_length {out['dim']}, head_count {out['heads']} "
                            f"and head_count_kv {out['kv_heads']} do not divide evenly")
    head_dim = f.key(f"{arch}.attention.key_length")
    if head_dim is not None and head_dim != out["dim"] // out["heads"]:
        raise GGUFFileError(f"{f.path}: head size {head_dim} is not embedding_length / "
                            "head_count; only llama-style attention is profiled")
    return out


def _blocks(f: GGUFFile, layers: int) -> dict[str, list[TensorEntry]]:
    groups: dict[str, list[TensorEntry]] = defaultdict(list)
    for t in f.tensors:
        m = _BLOCK.match(t.name)
        if m is not None:
            index = int(m.group(1))
            if index >= layers:
                raise GGUFFileError(f"{f.path}: tensor {t.name} is beyond block_count {layers}")
            groups[f"decoder.{index}"].append(t)
        elif t.name.startswith(("output_norm.", "output.")):
            groups["lm_head"].append(t)
        else:
            groups["embed"].append(t)
    for i in range(layers):
        names = {t.name.split(".")[2] for t in groups[f"decoder.{i}"]}
        missing = [n for n in _LAYER_TENSORS if n not in names]
        if missing:
            raise GGUFFileError(f"{f.path}: block {i} has no {', '.join(missing)} tensor(s); "
                                "only llama-style blocks (attn_q/k/v/output, "
                                "ffn_gate/up/down) are profiled")
    if not any(t.name == "token_embd.weight" for t in groups["embed"]):
        raise GGUFFileError(f"{f.path}: no token_embd.weight tensor")
    return groups


def weight_format(f: GGUFFile) -> str:
    """The weight format of the type holding most of the file's weights.

    Raises:
        GGUFFileError: a tensor type with no weight format, or a companion type holding most.
    """
    weights: dict[str, int] = defaultdict(int)
    for t in f.tensors:
        if t.type_name not in GGUF_FORMATS:
            raise GGUFFileError(f"{f.path}: tensor {t.name} has GGUF type {t.type_name}, which "
                                f"has no weight format here (known: {', '.join(GGUF_FORMATS)})")
        weights[t.type_name] += t.n_elements
    if not weights:
        raise GGUFFileError(f"{f.path}: the tensor table is empty")
    main = max(weights, key=lambda k: weights[k])
    if main in COMPANION_TYPES:
        raise GGUFFileError(f"{f.path}: most weights are {main}, which has no weight format of "
                            "its own here (it is read beside Q4_K or Q4_0 weights only)")
    return GGUF_FORMATS[main]


def _check_shapes(f: GGUFFile, dims: dict[str, int], block: list[TensorEntry]) -> None:
    head_dim = dims["dim"] // dims["heads"]
    want = {"attn_q": (dims["dim"], dims["heads"] * head_dim),
            "attn_k": (dims["dim"], dims["kv_heads"] * head_dim),
            "attn_v": (dims["dim"], dims["kv_heads"] * head_dim),
            "ffn_up": (dims["dim"], dims["intermediate"])}
    for t in block:
        kind = t.name.split(".")[2]
        if kind in want and t.name.endswith(".weight") and t.shape[:2] != want[kind]:
            raise GGUFFileError(f"{f.path}: tensor {t.name} has shape {list(t.shape)}, the "
                                f"metadata's dimensions give {list(want[kind])}")


def profile_gguf(path: str | Path, *, seq_len: int | None = None,
                 name: str | None = None) -> Model:
    """The profile of a GGUF file (see the module docstring).

    Args:
        path: The GGUF file.
        seq_len: Tokens per sequence the attention FLOPs are counted at; default the file's
            context length, at most :data:`MAX_SEQ_LEN`.
        name: Profile name; default the file name's stem made safe.

    Raises:
        GGUFFileError: one line naming the file and the problem.
    """
    f = read_gguf(path)
    dims = _dims(f)
    groups = _blocks(f, dims["layers"])
    fmt = weight_format(f)
    _check_shapes(f, dims, groups["decoder.0"])
    embd = next(t for t in groups["embed"] if t.name == "token_embd.weight")
    vocab = embd.shape[1] if len(embd.shape) > 1 else 0
    s = seq_len or min(dims["context"], MAX_SEQ_LEN)
    cfg = LlamaConfig(layers=1, dim=dims["dim"], intermediate=dims["intermediate"],
                      heads=dims["heads"], kv_heads=dims["kv_heads"], vocab=vocab,
                      context=max(s, 1))
    embed, decoder, head = count_fake(lambda: build(cfg),
                                      lambda: sample_input(cfg, batch=1, seq_len=s), items=s)
    scale = DTYPE_BYTES / bytes_per_weight(fmt)
    kv = 2 * dims["kv_heads"] * (dims["dim"] // dims["heads"]) * KV_CACHE_BYTES
    order = ["embed", *(f"decoder.{i}" for i in range(dims["layers"])), "lm_head"]
    layers = []
    for block in order:
        c = embed if block == "embed" else head if block == "lm_head" else decoder
        file_bytes = sum(t.n_bytes for t in groups[block])
        layers.append(Layer(
            name=block, kind=c.kind,  # type: ignore[arg-type]
            forward_flops=c.forward_flops, backward_flops=c.backward_flops,
            param_bytes=file_bytes * scale, activation_bytes=c.activation_bytes,
            saved_activation_bytes=c.saved_activation_bytes,
            lora_param_bytes=c.lora_param_bytes,
            kv_bytes_per_token=kv if block.startswith("decoder.") else 0.0))
    arch = f.key("general.architecture")
    source = (f"GGUF file {Path(path).name} ({arch}, {dims['layers']} layers, hidden "
              f"{dims['dim']}, {dims['heads']} heads, {dims['kv_heads']} KV heads, ffn "
              f"{dims['intermediate']}, vocab {vocab}); weight bytes as stored, per block, "
              f"given as param_bytes at 4 bytes per weight in {fmt}; FLOPs and activations "
              f"counted on the llama-style architecture of these dimensions, per token of "
              f"{s}-token sequences; KV cache F16")
    return Model(name=name or safe_stem(Path(path)), unit="token", dtype_bytes=DTYPE_BYTES,
                 weight_format=fmt, seq_len=s, source=source, layers=layers)  # type: ignore[arg-type]


def safe_stem(path: Path) -> str:
    """A file name's stem as a safe profile name.

    Example:
        >>> safe_stem(Path("models/TinyLlama 1.1B Q4_0.gguf"))
        'TinyLlama_1.1B_Q4_0'
    """
    stem = re.sub(r"[^A-Za-z0-9_.\-]", "_", path.stem).lstrip(".-")[:64]
    return stem or "gguf_model"


__all__ = ["COMPANION_TYPES", "GGUF_FORMATS", "KV_CACHE_BYTES", "profile_gguf", "safe_stem",
           "weight_format"]
