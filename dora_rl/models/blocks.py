"""The partitionable block chain every model builder returns, and parts the builders share.

A model is a :class:`Blocks` sequence: block ``i``'s output is block ``i + 1``'s input, so any
contiguous run of blocks is a pipeline stage. Each block carries a :class:`BlockInfo` with the
facts the profiler cannot read off the module itself (its name, its kind, the size of its LoRA
adapters and of its KV cache).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dora_rl.config.schema import LayerKind

LORA_RANK = 8
"""Rank of the LoRA adapters the profiles size (``lora_param_bytes``)."""


@dataclass(frozen=True)
class BlockInfo:
    """What the profiler needs to know about one block besides its module.

    Attributes:
        name: Layer name written to the profile, unique within the model.
        kind: Layer kind (see :data:`dora_rl.config.schema.LayerKind`).
        lora_params: Parameters of the rank-:data:`LORA_RANK` adapters on its attention q and v
            projections; 0 for blocks without attention.
        kv_elems_per_token: KV-cache elements the block holds per token of context
            (``2 * n_kv_heads * head_dim`` for a decoder block, else 0).
    """

    name: str
    kind: LayerKind
    lora_params: int = 0
    kv_elems_per_token: int = 0


class Blocks(nn.ModuleList):
    """An ordered chain of blocks; calling it runs them in order.

    Args:
        blocks: The modules, in order.
        infos: One :class:`BlockInfo` per module.

    Example:
        >>> chain = Blocks([nn.Linear(4, 3), nn.ReLU()],
        ...                [BlockInfo("fc", "linear"), BlockInfo("act", "other")])
        >>> chain(torch.zeros(2, 4)).shape
        torch.Size([2, 3])
        >>> [info.name for info in chain.infos]
        ['fc', 'act']
    """

    def __init__(self, blocks: Iterable[nn.Module], infos: Sequence[BlockInfo]) -> None:
        super().__init__(blocks)
        if len(infos) != len(self):
            raise ValueError(f"{len(infos)} infos for {len(self)} blocks")
        names = [i.name for i in infos]
        if len(set(names)) != len(names):
            raise ValueError("block names must be unique")
        self.infos: tuple[BlockInfo, ...] = tuple(infos)

    def forward(self, x: Tensor) -> Tensor:
        """Run every block in order."""
        for block in self:
            x = block(x)
        return x

    def named_blocks(self) -> Iterator[tuple[BlockInfo, nn.Module]]:
        """Pairs of (info, module) in order."""
        return zip(self.infos, self, strict=True)


def lora_params(pairs: Iterable[tuple[int, int]], rank: int = LORA_RANK) -> int:
    """Parameters of LoRA adapters on matrices of the given (d_in, d_out) shapes.

    An adapter ``B @ A`` has ``A: rank x d_in`` and ``B: d_out x rank``.

    Example:
        >>> lora_params([(768, 768), (768, 768)])  # q and v of a ViT-B block
        24576
    """
    return sum(rank * (d_in + d_out) for d_in, d_out in pairs)


class SelfAttention(nn.Module):
    """Multi-head (optionally grouped-query, causal, rotary) self-attention on ``(B, S, D)``.

    The q, k and v projections are one fused linear layer, the layout ViT and GPT-2 use; the
    attention itself is :func:`torch.nn.functional.scaled_dot_product_attention`.

    Args:
        dim: Model width.
        n_heads: Query heads.
        n_kv_heads: Key/value heads (``n_heads`` for plain multi-head attention).
        bias: Whether the projections have biases.
        causal: Mask future positions (decoders).
        rotary_base: Base of rotary position embeddings; None for none.
    """

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int | None = None, *,
                 bias: bool = True, causal: bool = False,
                 rotary_base: float | None = None) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads or n_heads
        self.head_dim = dim // n_heads
        self.causal = causal
        kv_dim = self.n_kv_heads * self.head_dim
        self.qkv = nn.Linear(dim, dim + 2 * kv_dim, bias=bias)
        self.proj = nn.Linear(dim, dim, bias=bias)
        self.rotary_base = rotary_base
        if rotary_base is not None:
            exps = torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim
            self.register_buffer("inv_freq", 1.0 / rotary_base**exps, persistent=False)

    def lora_shapes(self) -> list[tuple[int, int]]:
        """(d_in, d_out) of the q and v projections, the matrices LoRA adapts."""
        dim = self.proj.in_features
        return [(dim, dim), (dim, self.n_kv_heads * self.head_dim)]

    def forward(self, x: Tensor) -> Tensor:
        """Attend over the sequence dimension of ``x``."""
        b, s, d = x.shape
        kv_dim = self.n_kv_heads * self.head_dim
        q, k, v = self.qkv(x).split([d, kv_dim, kv_dim], dim=-1)
        q = q.view(b, s, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(b, s, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, s, self.n_kv_heads, self.head_dim).transpose(1, 2)
        if self.rotary_base is not None:
            cos, sin = self._rotary(s, x.dtype)
            q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        gqa = self.n_kv_heads != self.n_heads
        out = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, enable_gqa=gqa)
        return self.proj(out.transpose(1, 2).reshape(b, s, d))

    def _rotary(self, seq_len: int, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        inv_freq: Tensor = self.inv_freq  # type: ignore[assignment]
        pos = torch.arange(seq_len, dtype=torch.float32, device=inv_freq.device)
        freqs = torch.outer(pos, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Apply rotary embeddings (the half-split "rotate_half" convention of LLaMA)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin

