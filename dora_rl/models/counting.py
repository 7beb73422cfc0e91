"""Exact per-block counts (FLOPs, bytes) and wall-clock timing of a :class:`Blocks` chain.

FLOPs are what :class:`torch.utils.flop_counter.FlopCounterMode` counts: two per multiply-add of
every matrix product, convolution and attention product, forward and backward; element-wise
operations (norms, activations, softmax) count zero, as in the published GFLOP figures. On CPU,
PyTorch runs :func:`~torch.nn.functional.scaled_dot_product_attention` with a kernel the counter
does not know (``_scaled_dot_product_flash_attention_for_cpu``), so :data:`CPU_SDPA_FLOPS` maps
it to the counter's own attention formulas (full, non-causal ``S x S`` cost, as for the GPU
kernels), and :func:`conv_backward_flops` counts a grouped convolution's backward once, not once
per group (:data:`FLOP_FORMULAS` holds both).

Counting runs on fake CPU tensors (:class:`~torch._subclasses.fake_tensor.FakeTensorMode`):
shapes, dtypes, kernel choice and what autograd saves are those of a real CPU run, but nothing is
computed or allocated, so the 1.1B-parameter decoder counts at its full context in seconds.

Example:
    >>> from dora_rl.models.blocks import BlockInfo, Blocks
    >>> chain = Blocks([torch.nn.Linear(8, 4)], [BlockInfo("fc", "linear")])
    >>> c = count_blocks(chain, torch.randn(3, 8), items=3)[0]
    >>> c.forward_flops, c.param_bytes, c.activation_bytes  # 2*8*4 per item; 36 floats; 4 floats
    (64.0, 144.0, 16.0)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils.flop_counter import (
    FlopCounterMode,
    conv_flop_count,
    sdpa_backward_flop_count,
    sdpa_flop_count,
)

from dora_rl.models.blocks import Blocks

aten = torch.ops.aten


def _cpu_sdpa_flops(query: Any, key: Any, value: Any, *args: Any, out_shape: Any = None,
                    **kwargs: Any) -> int:
    return int(sdpa_flop_count(query, key, value))


def _cpu_sdpa_backward_flops(grad_out: Any, query: Any, key: Any, value: Any, *args: Any,
                             out_shape: Any = None, **kwargs: Any) -> int:
    return int(sdpa_backward_flop_count(grad_out, query, key, value))


CPU_SDPA_FLOPS: dict[Any, Callable[..., int]] = {
    aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
    aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward_flops,
}
"""FLOP formulas for the CPU attention kernels, passed to ``FlopCounterMode(custom_mapping=)``."""


def conv_backward_flops(grad_out_shape: Any, x_shape: Any, w_shape: Any, _bias: Any,
                        _stride: Any, _padding: Any, _dilation: Any, transposed: bool,
                        _output_padding: Any, _groups: Any, output_mask: Any,
                        out_shape: Any = None, **kwargs: Any) -> int:
    """A convolution's backward FLOPs: the forward's for each gradient asked for.

    The input gradient (a transposed convolution of the output gradient) and the weight
    gradient (a convolution of the input with the output gradient) each take the forward's
    multiply-adds. torch's own formula builds them from the full input and output channel
    counts, ignoring ``groups``: it puts a 96-channel depthwise 3x3's backward at 97 times its
    forward instead of 2. For ``groups == 1`` the two agree.

    Example:
        A depthwise 3x3 on 8 channels of 4 x 4: forward 2 * 8 * 9 * 16 = 2304 FLOPs.

        >>> conv_backward_flops([1, 8, 4, 4], [1, 8, 4, 4], [8, 1, 3, 3], None, 1, 1, 1,
        ...                     False, 0, 8, [True, True, False])
        4608
    """
    fwd = conv_flop_count(list(x_shape), list(w_shape), list(grad_out_shape),
                          transposed=transposed)
    return int(fwd * (bool(output_mask[0]) + bool(output_mask[1])))


FLOP_FORMULAS: dict[Any, Callable[..., int]] = {
    **CPU_SDPA_FLOPS, aten.convolution_backward: conv_backward_flops}
"""Every formula :func:`count_flops` replaces or adds to torch's counter."""


@dataclass(frozen=True)
class BlockCount:
    """Exact per-item figures of one block (bytes in the model's dtype).

    Attributes:
        name: Block name.
        kind: Block kind.
        forward_flops: Forward FLOPs per item.
        backward_flops: Backward FLOPs per item (input and parameter gradients).
        param_bytes: Bytes of the parameters this block owns (a tied weight counts once, in the
            first block holding it).
        activation_bytes: Bytes of the block's output per item.
        saved_activation_bytes: Bytes autograd keeps for the backward pass per item (distinct
            storages, parameters and buffers excluded).
        lora_param_bytes: Bytes of its rank-8 LoRA adapters on the attention q and v projections.
        kv_bytes_per_token: KV-cache bytes per token of context.
    """

    name: str
    kind: str
    forward_flops: float
    backward_flops: float
    param_bytes: float
    activation_bytes: float
    saved_activation_bytes: float
    lora_param_bytes: float
    kv_bytes_per_token: float


def count_flops(fn: Callable[[], Any]) -> tuple[int, Any]:
    """Run ``fn()`` under a FLOP counter; return (FLOPs, its result)."""
    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as counter:
        result = fn()
    return int(counter.get_total_flops()), result


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _storages(tensors: Iterable[Tensor]) -> set[StorageWeakRef]:
    return {StorageWeakRef(t.untyped_storage()) for t in tensors}


class _SavedBytes:
    """``saved_tensors_hooks`` pack hook summing distinct non-parameter storages."""

    def __init__(self, exclude: set[StorageWeakRef]) -> None:
        self.exclude = exclude
        self.seen: set[StorageWeakRef] = set()
        self.total = 0

    def __call__(self, t: Tensor) -> Tensor:
        ref = StorageWeakRef(t.untyped_storage())
        if ref not in self.exclude and ref not in self.seen:
            self.seen.add(ref)
            self.total += t.untyped_storage().nbytes()
        return t


def count_blocks(blocks: Blocks, x: Tensor, items: int) -> list[BlockCount]:
    """Count every block of ``blocks`` on input ``x`` holding ``items`` items.

    Each block runs forward on the previous block's (detached) output, then backward from a
    gradient of ones; the counts of every block but the first (whose input is data) include
    the gradient for its input. The chain is put in
    training mode; parameter gradients are cleared after each block.

    Args:
        blocks: The chain (real or fake tensors).
        x: Its input (a batch of samples or of token sequences).
        items: Items in ``x``: samples, or ``batch * seq_len`` tokens.

    Returns:
        One :class:`BlockCount` per block, per item.
    """
    blocks.train()
    state = _storages(list(blocks.parameters()) + list(blocks.buffers()))
    owned: set[int] = set()
    out_counts = []
    for i, (info, block) in enumerate(blocks.named_blocks()):
        params = [p for p in block.parameters() if id(p) not in owned]
        owned.update(id(p) for p in params)
        dtype_bytes = next((p.element_size() for p in block.parameters()), 4)
        x_in = x.detach().requires_grad_(i > 0 and x.is_floating_point())
        saved = _SavedBytes(state)
        with torch.autograd.graph.saved_tensors_hooks(saved, lambda t: t):
            fwd, out = count_flops(partial(block, x_in))
        bwd = 0
        if out.requires_grad:
            bwd, _ = count_flops(partial(out.backward, torch.ones_like(out)))
        block.zero_grad(set_to_none=True)
        out_counts.append(BlockCount(
            name=info.name, kind=info.kind,
            forward_flops=fwd / items, backward_flops=bwd / items,
            param_bytes=float(sum(_nbytes(p) for p in params)),
            activation_bytes=_nbytes(out) / items,
            saved_activation_bytes=saved.total / items,
            lora_param_bytes=float(info.lora_params * dtype_bytes),
            kv_bytes_per_token=float(info.kv_elems_per_token * dtype_bytes),
        ))
        x = out.detach()
        del out, x_in
    return out_counts


def count_fake(build: Callable[[], Blocks], make_input: Callable[[], Tensor],
               items: int) -> list[BlockCount]:
    """Build and count a chain on fake CPU tensors: exact counts, no compute, no memory.

    Args:
        build: Builds the chain (called under fake mode).
        make_input: Makes the input (called under fake mode).
        items: Items in the input.
    """
    with FakeTensorMode(allow_non_fake_inputs=True):
        blocks = build()
        return count_blocks(blocks, make_input(), items)


def time_blocks(blocks: Blocks, x: Tensor, *, warmup: int = 2, repeats: int = 5,
                progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None) -> list[float]:
    """Median wall-clock seconds of each block's forward pass on this machine.

    Blocks run in evaluation mode under :func:`torch.inference_mode`; each is timed ``repeats``
    times after ``warmup`` untimed runs, on the previous block's output.

    Args:
        blocks: The chain (real tensors).
        x: Its input batch.
        warmup: Untimed runs per block.
        repeats: Timed runs per block; the median is reported.
        progress: Optional wrapper of the block iterable (e.g. ``rich.progress.track``).

    Returns:
        Seconds for the whole batch, one entry per block.
    """
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    blocks.eval()
    pairs: Iterable[Any] = list(blocks.named_blocks())
    if progress is not None:
        pairs = progress(pairs)
    times: list[float] = []
    with torch.inference_mode():
        for _, block in pairs:
            out = _time_one(block, x, warmup, repeats, times)
            x = out
    return times


def _time_one(block: nn.Module, x: Tensor, warmup: int, repeats: int,
              times: list[float]) -> Tensor:
    for _ in range(warmup):
        block(x)
    runs = []
    out = x
    for _ in range(repeats):
        start = time.perf_counter()
        out = block(x)
        runs.append(time.perf_counter() - start)
    times.append(statistics.median(runs))
    return out
