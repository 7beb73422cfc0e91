"""What a block of a user's module is: its layer kind, LoRA adapter size and KV-cache size.

The shipped models state these facts in their :class:`~dora_rl.models.blocks.BlockInfo`; for a
user's module they are read off the block:

- **kind** (:func:`block_kind`): ``transformer`` when it attends
  (:func:`~torch.nn.functional.scaled_dot_product_attention` or
  :class:`~torch.nn.MultiheadAttention`), else ``conv`` with a convolution, ``embedding`` with
  only an embedding table, ``head`` for the last block with a linear layer, ``linear``, ``pool``,
  ``norm`` (a norm module, or a class named ``...Norm``), else ``other``;
- **LoRA** (:func:`lora_params_of`): rank-:data:`~dora_rl.models.blocks.LORA_RANK` adapters on
  the attention query and value projections, found by the names the common code bases use
  (``q_proj``/``v_proj``, ``query``/``value``, ``wq``/``wv``, ``q_lin``/``v_lin``), or on the q
  and v thirds of a fused projection (``qkv``, ``c_attn``, ``query_key_value``, ``Wqkv``,
  ``qkv_proj``, a ``MultiheadAttention``'s ``in_proj``);
- **KV cache** (:func:`kv_elems_per_token`): the key and value tensors each attention call
  reads, per token, traced back through reshapes and expansions to their size before any
  ``repeat_kv``-style head repetition (grouped-query attention caches the KV heads only).

Example:
    >>> from torch import nn
    >>> block_kind(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()))
    'conv'
    >>> lora_params_of(nn.ModuleDict({"q_proj": nn.Linear(16, 16), "k_proj": nn.Linear(16, 4),
    ...                               "v_proj": nn.Linear(16, 4)}))  # 8*(16+16) + 8*(16+4)
    416
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from torch import fx, nn

from dora_rl.config.schema import LayerKind
from dora_rl.models.blocks import LORA_RANK

_Q_V_NAMES = frozenset({"q_proj", "v_proj", "query", "value", "wq", "wv", "q_lin", "v_lin"})
_FUSED_NAMES = frozenset({"qkv", "c_attn", "query_key_value", "wqkv", "qkv_proj", "in_proj"})
_SHAPE_METHODS = frozenset({"view", "reshape", "expand", "expand_as", "transpose", "permute",
                            "contiguous", "unsqueeze", "flatten", "repeat", "repeat_interleave",
                            "to", "float", "half", "type"})
_SHAPE_FUNCTIONS = frozenset({"getitem", "reshape", "transpose", "permute", "unsqueeze",
                              "flatten", "repeat_interleave"})
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
         nn.ConvTranspose3d)
_POOL = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
         nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
         nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm,
         nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.RMSNorm)


def _name(target: Any) -> str:
    return str(getattr(target, "__name__", target))


def _called(nodes: Iterable[fx.Node]) -> set[str]:
    return {_name(n.target) for n in nodes if n.op in ("call_function", "call_method")}


def block_kind(module: nn.Module, nodes: Iterable[fx.Node] = (), *,
               last: bool = False) -> LayerKind:
    """The layer kind of a block: its modules and, for a traced block, the modules its nodes
    were traced through and its function calls."""
    nodes = list(nodes)
    kinds = {type(m) for m in module.modules()} | {
        t for n in nodes for _, t in n.meta.get("nn_module_stack", {}).values()
        if isinstance(t, type)}
    calls = _called(nodes)

    def has(types: tuple[type, ...], names: Iterable[str] = ()) -> bool:
        return any(issubclass(k, types) for k in kinds) or any(c in calls for c in names)

    if has((nn.MultiheadAttention,), ("scaled_dot_product_attention",)):
        return "transformer"
    if has(_CONV, ("conv1d", "conv2d", "conv3d", "conv_transpose2d")):
        return "conv"
    linear = has((nn.Linear, nn.Bilinear), ("linear", "matmul", "mm", "bmm", "einsum"))
    if has((nn.Embedding, nn.EmbeddingBag), ("embedding",)) and not linear:
        return "embedding"
    if linear:
        return "head" if last else "linear"
    if has(_POOL, ("adaptive_avg_pool2d", "avg_pool2d", "max_pool2d", "adaptive_avg_pool1d")):
        return "pool"
    if has(_NORM, ("layer_norm", "batch_norm", "group_norm", "rms_norm")) or any(
            k.__name__.endswith("Norm") for k in kinds):
        return "norm"
    return "other"


def lora_params_of(module: nn.Module, rank: int = LORA_RANK) -> int:
    """Parameters of rank-``rank`` LoRA adapters on a block's query and value projections."""
    total = 0
    for name, m in module.named_modules():
        leaf = name.rsplit(".", 1)[-1].lower()
        if isinstance(m, nn.Linear) and leaf in _Q_V_NAMES:
            total += rank * (m.in_features + m.out_features)
        elif isinstance(m, nn.Linear) and leaf in _FUSED_NAMES:
            total += 2 * rank * (m.in_features + m.out_features // 3)
        elif isinstance(m, nn.MultiheadAttention):
            total += 2 * rank * 2 * m.embed_dim
    return total


def _numel(meta: dict[fx.Node, Any], n: fx.Node) -> int | None:
    m = meta.get(n)
    return math.prod(m[0]) if m is not None else None


def _cached_numel(n: fx.Node, meta: dict[fx.Node, Any], inside: set[fx.Node]) -> int:
    """Elements of ``n`` before any reshape/expansion chain that produced it."""
    smallest = _numel(meta, n) or 0
    while n in inside and (
            (n.op == "call_method" and n.target in _SHAPE_METHODS)
            or (n.op == "call_function" and _name(n.target) in _SHAPE_FUNCTIONS)):
        src = n.args[0] if n.args and isinstance(n.args[0], fx.Node) else None
        size = _numel(meta, src) if src is not None else None
        if src is None or size is None:
            break
        smallest, n = min(smallest, size), src
    return smallest


def kv_elems_per_token(module: nn.Module, nodes: list[fx.Node], meta: dict[fx.Node, Any],
                       tokens: int) -> int:
    """KV-cache elements per token of a traced block (see the module docstring).

    Args:
        module: The block.
        nodes: Its graph nodes (in the whole module's graph).
        meta: Each node's (shape, dtype, device) on the example input.
        tokens: Tokens in the example input (batch times sequence length).
    """
    inside = set(nodes)
    total = 0
    for n in nodes:
        if n.op == "call_function" and _name(n.target) == "scaled_dot_product_attention":
            k = n.args[1] if len(n.args) > 1 else n.kwargs.get("key")
            v = n.args[2] if len(n.args) > 2 else n.kwargs.get("value")
            for t in (k, v):
                if isinstance(t, fx.Node):
                    total += _cached_numel(t, meta, inside)
        elif n.op == "call_module":
            sub = module.get_submodule(str(n.target)) if _has(module, str(n.target)) else None
            if isinstance(sub, nn.MultiheadAttention):
                total += 2 * sub.embed_dim * tokens
    return total // max(tokens, 1)


def _has(module: nn.Module, target: str) -> bool:
    try:
        module.get_submodule(target)
    except AttributeError:
        return False
    return True


__all__ = ["block_kind", "kv_elems_per_token", "lora_params_of"]
