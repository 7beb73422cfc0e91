"""A user's own ``torch.nn.Module``: load its factory, make its input, split it into blocks.

A module is named by a factory reference, ``path/to/file.py:function`` or
``package.module:function`` (e.g. ``torchvision.models:resnet18``); the function is called with
no arguments and returns the module. :func:`partition` splits it with its ``torch.fx`` graph
(:mod:`dora_rl.models.fx_blocks`) and, where the module does not trace, into its top-level
children when they run as a chain: the chain must give the module's output shape and FLOPs on
fake tensors (where the module runs on them; code branching on values does not, and is checked
on real values by :func:`dora_rl.models.module_profile.verify`). :func:`build_blocks` gives the
live runtime the same blocks with real weights (from a ``safetensors`` file when one is given).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from dora_rl.config.schema import ModuleSource
from dora_rl.errors import DoraError
from dora_rl.models.block_kinds import block_kind, lora_params_of
from dora_rl.models.blocks import BlockInfo, Blocks
from dora_rl.models.counting import count_flops
from dora_rl.models.fx_blocks import (
    Partition,
    PartitionError,
    TraceError,
    fake_inputs,
    fx_partition,
)
from dora_rl.models.fx_graph import quiet_fake

ANALYSIS_BATCH = 2
"""Batch of the input the partition is found on (two rows tell the batch dimension)."""


def load_factory(ref: str, base_dir: Path | None = None) -> Callable[[], nn.Module]:
    """The function ``ref`` names (``file.py:function`` or ``package.module:function``).

    Args:
        ref: The factory reference.
        base_dir: Folder a relative file path is relative to (default: the working folder).

    Raises:
        DoraError: one line naming the reference and what is wrong.
    """
    where, sep, attr = ref.rpartition(":")
    if not sep or not where or not attr.isidentifier():
        raise DoraError(f"--model: {ref!r} is not FILE.py:FUNCTION or package.module:FUNCTION")
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise DoraError(f"{path}: no such file (from the module factory {ref!r})")
        name = "dora_rl_user_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise DoraError(f"{path}: cannot be imported as Python")
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception as exc:  # noqa: BLE001 - the user's file failed; say how
                raise DoraError(f"{path}: importing it failed: {_line(exc)}") from None
            sys.modules[name] = module
    else:
        try:
            module = importlib.import_module(where)
        except Exception as exc:  # noqa: BLE001 - missing package or failing import
            raise DoraError(f"--model: cannot import {where!r}: {_line(exc)}") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise DoraError(f"--model: {where} has no function {attr!r}")
    return factory


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def build_module(source: ModuleSource, base_dir: Path | None = None) -> nn.Module:
    """Call the factory of ``source`` and check it returns a module (random weights)."""
    factory = load_factory(source.factory, base_dir)
    try:
        model = factory()
    except Exception as exc:  # noqa: BLE001 - the user's factory failed; say how
        raise DoraError(f"{source.factory}: calling it failed: {_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise DoraError(f"{source.factory}: returned {type(model).__name__}, "
                        "not a torch.nn.Module")
    return model


def vocabulary(model: nn.Module) -> int:
    """Rows of the module's first ``nn.Embedding``: the token ids its input may hold."""
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            return int(m.num_embeddings)
    raise DoraError("--tokens: the module has no nn.Embedding to take token ids; give "
                    "--input-shape for a module taking a float tensor")


def make_input(model: nn.Module, source: ModuleSource, batch: int,
               seq_len: int | None = None, seed: int = 0) -> Tensor:
    """An input of ``batch`` items: a tensor of ``input_shape`` with its first dimension set to
    ``batch`` (in the dtype of the module's parameters), or ``batch`` sequences of ``seq_len``
    (default ``tokens``) token ids."""
    gen = torch.Generator().manual_seed(seed)
    if source.tokens is not None:
        vocab = vocabulary(model)
        return torch.randint(0, vocab, (batch, seq_len or source.tokens), generator=gen)
    shape = list(source.input_shape or [])
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return torch.randn([batch, *shape[1:]], generator=gen).to(dtype)


def partition(model: nn.Module, source: ModuleSource) -> Partition:
    """Split ``model`` into blocks: its ``torch.fx`` graph, else its top-level children.

    Raises:
        DoraError: one line saying why no chain of blocks was found.
    """
    unit = "token" if source.tokens is not None else "sample"
    example = make_input(model, source, ANALYSIS_BATCH)
    try:
        return fx_partition(model, example, split_points=source.split_points, unit=unit)
    except TraceError as exc:
        reason = str(exc)
    return children_partition(model, example, reason, source.split_points)


def children_partition(model: nn.Module, example: Tensor, reason: str,
                       split_points: Sequence[str] | None = None) -> Partition:
    """The module's top-level children as a chain (``Sequential`` children opened), grouped
    to end at ``split_points`` when given; checked to give the module's output shape and FLOPs.

    Raises:
        DoraError: the children are not a chain of the module.
    """
    children = _chain_children(model)
    groups = _groups(children, split_points)
    modules = [m if len(g) == 1 else nn.Sequential(*[c for _, c in g]) for g in groups
               for m in [g[0][1]]]
    names = [g[0][0] if len(g) == 1 else f"{g[0][0]}..{g[-1][0]}" for g in groups]
    blocks = Blocks(modules, [BlockInfo(n, block_kind(m, last=i == len(modules) - 1),
                                        lora_params=lora_params_of(m))
                              for i, (n, m) in enumerate(zip(names, modules, strict=True))])
    why = f"torch.fx could not trace it ({reason}) and its top-level children"
    first = next(iter([*model.parameters(), *model.buffers()]), example)
    ctx, (x, _) = fake_inputs(example, first)
    with ctx, torch.no_grad(), quiet_fake():
        try:
            chain_flops, chain = count_flops(lambda: blocks(x))
        except Exception as exc:  # noqa: BLE001 - a child that does not take the previous output
            raise DoraError(f"cannot split the module: {why} do not run as a chain "
                            f"({_line(exc)}); give --split-points or make it traceable") from None
        try:
            whole_flops, whole = count_flops(lambda: model(x))
        except Exception:  # noqa: BLE001 - data-dependent code needs real values (checked later)
            whole_flops, whole = chain_flops, chain
    if not isinstance(whole, Tensor) or chain.shape != whole.shape or chain_flops != whole_flops:
        raise DoraError(f"cannot split the module: {why} are not a chain (their output or "
                        "FLOPs differ from the module's); make it traceable by torch.fx")
    return Partition(blocks, (None,) * len(blocks), f"top-level children ({reason})")


def _chain_children(model: nn.Module) -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential):
            out.extend((f"{name}.{n}", c) for n, c in child.named_children())
        else:
            out.append((name, child))
    if not out:
        raise DoraError("cannot split the module: torch.fx could not trace it and it has no "
                        "child modules")
    return out


def _groups(children: list[tuple[str, nn.Module]],
            split_points: Sequence[str] | None) -> list[list[tuple[str, nn.Module]]]:
    if split_points is None:
        return [[c] for c in children]
    names = [n for n, _ in children]
    groups, start = [], 0
    for point in split_points:
        ends = [i for i, n in enumerate(names) if n == point or n.startswith(point + ".")]
        if not ends or max(ends) < start:
            raise DoraError(f"--split-points: {point!r} is not a top-level child after the "
                            f"previous split point (children: {', '.join(names)})")
        groups.append(children[start: max(ends) + 1])
        start = max(ends) + 1
    if start < len(children):
        groups.append(children[start:])
    return groups


def build_blocks(source: ModuleSource, base_dir: Path | None = None, seed: int = 0) -> Blocks:
    """The module's blocks with real weights: from ``source.weights`` (a safetensors file), else
    random from ``seed``. In evaluation mode."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = build_module(source, base_dir)
    finally:
        torch.random.set_rng_state(state)
    if source.weights is not None:
        load_safetensors(model, Path(source.weights))
    try:
        blocks = partition(model, source).blocks
    except PartitionError as exc:
        raise DoraError(f"{source.factory}: {exc}") from None
    return blocks.eval()


def load_safetensors(model: nn.Module, path: Path) -> None:
    """Load a safetensors file into ``model``: every weight, of the module's shapes (a tied
    weight stored once, as ``safetensors.torch.save_model`` writes it)."""
    from safetensors.torch import load_model

    if not path.is_file():
        raise DoraError(f"{path}: no such weights file")
    try:
        missing, unexpected = load_model(model, path, strict=False)
    except Exception as exc:  # noqa: BLE001 - unreadable file or a shape mismatch
        raise DoraError(f"{path}: cannot load it into the module ({_line(exc)})") from None
    if missing or unexpected:
        raise DoraError(f"{path}: weights do not match the module (missing: "
                        f"{', '.join(sorted(missing)[:3]) or 'none'}; unexpected: "
                        f"{', '.join(sorted(unexpected)[:3]) or 'none'})")


__all__ = ["ANALYSIS_BATCH", "build_blocks", "build_module",
           "children_partition", "load_factory", "load_safetensors", "make_input", "partition",
           "vocabulary"]
