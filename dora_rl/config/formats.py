"""Weight formats: bytes per weight (block scales included) and compute speed factors.

A model's weights carry one format. Profiles store ``param_bytes`` at the model's
``dtype_bytes`` (4 for the shipped FP32 profiles), so a layer holds ``param_bytes / dtype_bytes``
weights, and in format ``fmt`` they take ``weights * bytes_per_weight(fmt)`` bytes. Activations,
saved activations, LoRA adapters and the KV cache stay at the model's ``dtype_bytes``.

| format   | bits/weight | layout                                                            |
|----------|-------------|-------------------------------------------------------------------|
| fp32     | 32          | IEEE binary32                                                     |
| fp16     | 16          | IEEE binary16                                                     |
| bf16     | 16          | bfloat16                                                          |
| int8     | 8           | per-output-channel scales, one FP32 per row: 4 bytes per 768+     |
|          |             | weights (<0.6 % for rows of 768 or more), neglected               |
| q8_0     | 8.5         | GGUF blocks of 32: one FP16 scale + 32 int8 = 34 bytes            |
| q4_0     | 4.5         | GGUF blocks of 32: one FP16 scale + 16 bytes of nibbles = 18 bytes|
| q4_k_m   | 4.85        | llama.cpp mix: Q4_K (4.5 bits: 144 bytes per 256-weight           |
|          |             | super-block) with Q6_K (6.5625 bits) for half of attn_v/ffn_down  |
|          |             | and the output head; average over a whole model                   |

Sources: the block structs ``block_q8_0`` and ``block_q4_0`` in llama.cpp's ``ggml-quants.h``
(sizes asserted there); the bits-per-weight table in llama.cpp's ``examples/quantize/README.md``
(Q4_K_M: 4.84 for Llama-2-7B, 4.83 for 13B, 4.80 for 70B). Small models keep a larger share in
Q6_K: TinyLlama-1.1B's Q4_K_M GGUF file is 668.8 MB for 1.100e9 weights, 4.86 bits per weight
with its vocabulary and metadata; 4.85 is used. GGUF keeps norm weights in FP32; they are under
0.1 % of a model's weights and are counted at the format's rate like the rest.

Compute speed: a device's ``compute.format_speed`` maps a format to its throughput relative to
the catalog's nominal engine precision (see ``dora_rl/data/devices.yaml``); formats it does not
list run at the nominal rate (factor 1.0).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

WeightFormat = Literal["fp32", "fp16", "bf16", "int8", "q8_0", "q4_0", "q4_k_m"]
WEIGHT_FORMATS: tuple[str, ...] = WeightFormat.__args__  # type: ignore[attr-defined]

BITS_PER_WEIGHT: dict[str, float] = {
    "fp32": 32.0,
    "fp16": 16.0,
    "bf16": 16.0,
    "int8": 8.0,
    "q8_0": 34 * 8 / 32,
    "q4_0": 18 * 8 / 32,
    "q4_k_m": 4.85,
}
"""Bits each weight takes in memory, block scales included (see the module table)."""

QUANTIZED: frozenset[str] = frozenset({"int8", "q8_0", "q4_0", "q4_k_m"})
"""Integer formats: they cannot be trained directly, only carry frozen base weights (QLoRA)."""

_DEFAULT_BY_DTYPE_BYTES = {4: "fp32", 2: "fp16", 1: "int8"}
_BY_TORCH_DTYPE = {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16",
                   "bfloat16": "bf16", "int8": "int8", "qint8": "int8"}


def bytes_per_weight(fmt: str) -> float:
    """Bytes one weight takes in format ``fmt``, block scales included.

    Example:
        q4_0 stores 32 weights in 18 bytes (one FP16 scale and 16 bytes of 4-bit values):

        >>> bytes_per_weight("q4_0"), bytes_per_weight("q8_0"), bytes_per_weight("fp16")
        (0.5625, 1.0625, 2.0)

    Raises:
        KeyError: for a format not in :data:`WEIGHT_FORMATS`.
    """
    return BITS_PER_WEIGHT[fmt] / 8.0


def weight_bytes(param_bytes: float, dtype_bytes: int, fmt: str) -> float:
    """Bytes of a layer's weights in ``fmt``, from its profile bytes at ``dtype_bytes``.

    Example:
        A 1,000,000-weight layer profiled in FP32 (4,000,000 bytes) stored in q4_0:
        1e6 * 18 / 32 = 562,500 bytes.

        >>> weight_bytes(4_000_000, 4, "q4_0")
        562500.0
    """
    return param_bytes / dtype_bytes * bytes_per_weight(fmt)


def default_format(dtype_bytes: int) -> str | None:
    """The format a model's weights have when only ``dtype_bytes`` is known.

    Example:
        >>> default_format(4), default_format(2), default_format(8)
        ('fp32', 'fp16', None)
    """
    return _DEFAULT_BY_DTYPE_BYTES.get(dtype_bytes)


def format_of_dtype(dtype: str) -> str | None:
    """The weight format of a torch dtype name (as ``Measured.dtype`` records it), if any.

    Example:
        >>> format_of_dtype("float32"), format_of_dtype("torch.bfloat16"), format_of_dtype("x")
        ('fp32', 'bf16', None)
    """
    return _BY_TORCH_DTYPE.get(dtype.removeprefix("torch."))


def compute_factor(format_speed: Mapping[Any, float], fmt: str) -> float:
    """Throughput of ``fmt`` relative to the device's nominal precision (1.0 when unlisted).

    Example:
        An NVIDIA GPU whose nominal rate is FP16 tensor cores runs FP32 layers on TF32 tensor
        cores at half that rate; a 10 ms FP16 layer then takes 10 / 0.5 = 20 ms in FP32.

        >>> speed = {"fp32": 0.5, "int8": 2.0}
        >>> 0.010 / compute_factor(speed, "fp32"), compute_factor(speed, "fp16")
        (0.02, 1.0)
    """
    return float(format_speed.get(fmt, 1.0))


def measured_time_factor(format_speed: Mapping[Any, float], measured_fmt: str | None,
                         fmt: str) -> float:
    """Factor turning a time measured in ``measured_fmt`` into a time in ``fmt``.

    Measured profiles are taken in one precision (FP32 for ``python -m dora_rl.profiler
    --measure``). Running the model in another format scales the time by the ratio of the two
    formats' speed factors, with the same default of 1.0 for unlisted formats as the analytic
    path; an unknown measured precision leaves the time as measured.

    Example:
        Measured in FP32 on a GPU with ``{fp32: 0.5}``, run in FP16: 20 ms * 0.5 / 1.0 = 10 ms.

        >>> measured_time_factor({"fp32": 0.5}, "fp32", "fp16")
        0.5
        >>> measured_time_factor({"fp32": 0.5}, None, "fp16")
        1.0
    """
    if measured_fmt is None:
        return 1.0
    return compute_factor(format_speed, measured_fmt) / compute_factor(format_speed, fmt)
