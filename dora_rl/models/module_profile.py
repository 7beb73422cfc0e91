"""Profile a user's own ``torch.nn.Module`` block by block into a ``Model`` profile.

The module is built from its factory on fake CPU tensors (nothing is allocated, so a 1B-parameter
module counts in seconds), split into blocks (:func:`dora_rl.models.user_module.partition`) and
counted with :func:`dora_rl.models.counting.count_blocks`, the counter of the shipped profiles:
forward and backward FLOPs, parameter bytes (a tied weight once), output, saved-activation,
LoRA and KV-cache bytes per item. A value a block recomputes that an earlier block already
computed (rotary tables, position ids) has its FLOPs counted once, in the first block, so the
blocks add up to the whole module. The split is then checked on real values for modules up to
:data:`VERIFY_MAX_PARAMS` parameters: the blocks in a row must give the module's own output.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from rich.console import Console
from rich.progress import track
from torch._subclasses.fake_tensor import FakeTensorMode

from dora_rl.config.names import is_safe_name
from dora_rl.config.schema import Layer, Measured, Model, ModuleSource
from dora_rl.errors import DoraError
from dora_rl.models.counting import BlockCount, count_blocks, count_flops, time_blocks
from dora_rl.models.fx_blocks import Partition, PartitionError
from dora_rl.models.fx_graph import quiet_fake
from dora_rl.models.user_module import build_module, make_input, partition

VERIFY_MAX_PARAMS = 200_000_000
"""Largest module whose split is checked on real values (that needs a real build)."""
VERIFY_SEQ_LEN = 16
"""Tokens per sequence of the real check of a token module."""


def _shape(text: str) -> list[int]:
    try:
        shape = [int(part) for part in text.split(",")]
    except ValueError:
        shape = []
    if not shape or min(shape) < 1:
        raise DoraError(f"--input-shape: give positive integers separated by commas, e.g. "
                        f"1,3,224,224; got {text!r}")
    return shape


def module_source(factory: str, *, input_shape: str | None, tokens: int | None,
                  split_points: str | None, batch: int = 1) -> ModuleSource:
    """The module to profile from the command line's text, checked (one line on a problem).

    Example:
        >>> module_source("net.py:build", input_shape="1,3,32,32", tokens=None,
        ...               split_points="layer1, layer2").split_points
        ['layer1', 'layer2']
    """
    if (input_shape is None) == (tokens is None):
        raise DoraError("--model: a module factory needs one of --input-shape (a float input) "
                        "or --tokens (token ids)")
    for flag, value in (("--tokens", tokens), ("--batch", batch)):
        if value is not None and value < 1:
            raise DoraError(f"{flag}: must be >= 1, got {value}")
    points = None
    if split_points is not None:
        points = [p.strip() for p in split_points.split(",") if p.strip()]
    try:
        return ModuleSource(factory=factory, tokens=tokens, split_points=points,
                            input_shape=_shape(input_shape) if input_shape else None)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise DoraError(f"--model: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None


def relative_factory(factory: str, folder: Path) -> str:
    """A ``FILE.py:FUNCTION`` factory with its file relative to ``folder`` (the profile's).

    Example:
        >>> relative_factory("/a/b/net.py:build", Path("/a/c"))
        '../b/net.py:build'
        >>> relative_factory("torchvision.models:resnet18", Path("/a"))
        'torchvision.models:resnet18'
    """
    where, _, attr = factory.rpartition(":")
    if not (where.endswith(".py") or "/" in where):
        return factory
    rel = os.path.relpath(Path(where).resolve(), folder.resolve())
    return f"{Path(rel).as_posix()}:{attr}"


def default_name(source: ModuleSource) -> str:
    """The profile name of a module: its factory function's name when that is a safe name.

    Example:
        >>> default_name(ModuleSource(factory="nets/vision.py:resnet18", input_shape=[1, 3]))
        'resnet18'
    """
    name = source.factory.rpartition(":")[2]
    return name if is_safe_name(name) else "module"


def _split(model: torch.nn.Module, source: ModuleSource) -> Partition:
    try:
        return partition(model, source)
    except PartitionError as exc:
        raise DoraError(f"{source.factory}: {exc}") from None


def count_module(source: ModuleSource, batch: int = 1,
                 base_dir: Path | None = None) -> tuple[list[BlockCount], Partition, int]:
    """Count every block of the module per item, on fake tensors.

    Returns:
        The counts, the partition (on fake parameters) and the parameters' bytes per element.
    """
    with FakeTensorMode(allow_non_fake_inputs=True), quiet_fake():
        model = build_module(source, base_dir)
        part = _split(model, source)
        x = make_input(model, source, batch)
        items = batch * (source.tokens or 1)
        counts = count_blocks(part.blocks, x, items)
        again = _recomputed_flops(part, x)
    counts = [c if not extra else _less_forward(c, extra / items)
              for c, extra in zip(counts, again, strict=True)]
    dtype_bytes = next((p.element_size() for p in model.parameters()
                        if p.is_floating_point()), 4)
    return counts, part, dtype_bytes


def _recomputed_flops(part: Partition, x: torch.Tensor) -> list[int]:
    """FLOPs of the values each block recomputes (counted in an earlier block already)."""
    out: list[int] = []
    part.blocks.eval()
    with torch.no_grad():
        for block, again in zip(part.blocks, part.recomputed, strict=True):
            out.append(0 if again is None else count_flops(partial(again, x))[0])
            x = block(x)
    return out


def _less_forward(c: BlockCount, flops: float) -> BlockCount:
    return dataclasses.replace(c, forward_flops=max(c.forward_flops - flops, 0.0))


def verify(source: ModuleSource, base_dir: Path | None = None) -> bool:
    """Check on real values that the blocks in a row give the module's output.

    Returns:
        False when the module is over :data:`VERIFY_MAX_PARAMS` parameters (not checked).

    Raises:
        DoraError: the outputs differ.
    """
    with FakeTensorMode(allow_non_fake_inputs=True):
        size = sum(p.numel() for p in build_module(source, base_dir).parameters())
    if size > VERIFY_MAX_PARAMS:
        return False
    torch.manual_seed(0)
    model = build_module(source, base_dir).eval()
    blocks = _split(model, source).blocks.eval()
    seq = min(source.tokens, VERIFY_SEQ_LEN) if source.tokens else None
    x = make_input(model, source, 2, seq_len=seq)
    with torch.no_grad():
        whole, chained = model(x), blocks(x)
    if not torch.allclose(whole, chained, rtol=1e-4, atol=1e-5):
        diff = float((whole - chained).abs().max())
        raise DoraError(f"{source.factory}: the blocks in a row do not give the module's output "
                        f"(max difference {diff:.3g}); give --split-points")
    return True


def profile_module(source: ModuleSource, *, name: str | None = None, batch: int = 1,
                   base_dir: Path | None = None) -> Model:
    """The profile of a user's module (no measured times); ``module`` records ``source``.

    Args:
        source: Factory, input and split points.
        name: Profile name; by default the factory function's name.
        batch: Samples (or sequences) counted at once.
        base_dir: Folder a relative factory path is relative to.
    """
    counts, part, dtype_bytes = count_module(source, batch, base_dir)
    checked = verify(source, base_dir)
    token = source.tokens is not None
    how = (f"{source.factory}; blocks: {part.method}; counted with torch.utils.flop_counter on "
           f"fake CPU tensors, {dtype_bytes * 8}-bit parameters, random weights")
    if token:
        how += f", per token of {source.tokens}-token sequences"
    how += "; blocks checked against the whole module on real values" if checked else ""
    layers = [Layer(name=c.name, kind=c.kind,  # type: ignore[arg-type]
                    forward_flops=c.forward_flops, backward_flops=c.backward_flops,
                    param_bytes=c.param_bytes, activation_bytes=c.activation_bytes,
                    saved_activation_bytes=c.saved_activation_bytes,
                    lora_param_bytes=c.lora_param_bytes,
                    kv_bytes_per_token=c.kv_bytes_per_token) for c in counts]
    return Model(name=name or default_name(source), unit="token" if token else "sample",
                 dtype_bytes=dtype_bytes, seq_len=source.tokens, source=how, layers=layers,
                 module=source)


def measure_module(source: ModuleSource, *, device: str, batch: int = 1, warmup: int = 2,
                   repeats: int = 5, base_dir: Path | None = None) -> Measured:
    """Time every block of the module (random weights) on this machine."""
    torch.manual_seed(0)
    model = build_module(source, base_dir)
    blocks = _split(model, source).blocks
    x = make_input(model, source, batch)

    def bar(pairs: Iterable[Any]) -> Iterable[Any]:
        return track(pairs, description="timing", console=Console(stderr=True))

    times = time_blocks(blocks, x, warmup=warmup, repeats=repeats, progress=bar)
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    return Measured(device=device, batch=batch * (source.tokens or 1),
                    dtype=str(dtype).removeprefix("torch."), time_s=times)


__all__ = ["VERIFY_MAX_PARAMS", "count_module", "default_name", "measure_module",
           "module_source", "profile_module", "relative_factory", "verify"]
