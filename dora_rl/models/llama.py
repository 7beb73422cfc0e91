"""A LLaMA-style decoder with the TinyLlama-1.1B configuration, as partitionable blocks.

Blocks: the token embedding, then one block per decoder layer (RMSNorm, causal grouped-query
self-attention with rotary position embeddings, RMSNorm, SwiGLU MLP, each sub-layer with a
residual connection, no biases), then the final RMSNorm with the (untied) language-model head.
TinyLlama-1.1B (22 layers, hidden 2048, 32 query heads over 4 key/value heads) has
1,100,048,384 parameters: about 4.4 GB in float32.

Example:
    >>> cfg = LlamaConfig(layers=2, dim=64, intermediate=96, heads=4, kv_heads=2, vocab=100,
    ...                   context=32)
    >>> chain = build(cfg)
    >>> [info.name for info in chain.infos]
    ['embed', 'decoder.0', 'decoder.1', 'lm_head']
    >>> chain(sample_input(cfg, batch=2, seq_len=8)).shape
    torch.Size([2, 8, 100])
    >>> chain.infos[1].kv_elems_per_token  # 2 * kv_heads * head_dim
    64
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dora_rl.models.blocks import BlockInfo, Blocks, SelfAttention, lora_params

SOURCE = ("TinyLlama-1.1B: Zhang et al., 'TinyLlama: An Open-Source Small Language Model', "
          "arXiv:2401.02385, and the TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T "
          "config.json (22 layers, hidden 2048, intermediate 5632, 32 heads, 4 KV heads, "
          "vocab 32000, context 2048)")


@dataclass(frozen=True)
class LlamaConfig:
    """LLaMA-style decoder hyper-parameters; the defaults are TinyLlama-1.1B.

    Attributes:
        layers: Decoder layers.
        dim: Model width.
        intermediate: SwiGLU hidden width.
        heads: Query heads.
        kv_heads: Key/value heads (grouped-query attention).
        vocab: Vocabulary size.
        context: Maximum sequence length.
        eps: RMSNorm epsilon.
        rope_theta: Rotary embedding base.
    """

    layers: int = 22
    dim: int = 2048
    intermediate: int = 5632
    heads: int = 32
    kv_heads: int = 4
    vocab: int = 32000
    context: int = 2048
    eps: float = 1e-5
    rope_theta: float = 10000.0

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.dim // self.heads


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learned scale (no bias, no centring)."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise the last dimension."""
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))`` with bias-free projections."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the gated MLP position-wise."""
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Embedding(nn.Module):
    """Token ids ``(B, S)`` -> embeddings ``(B, S, dim)`` (positions enter via rotary)."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab, cfg.dim)
        nn.init.normal_(self.embed_tokens.weight, std=0.02)

    def forward(self, ids: Tensor) -> Tensor:
        """Look the tokens up."""
        return self.embed_tokens(ids)


class DecoderBlock(nn.Module):
    """``x + attn(norm(x))``, then ``x + mlp(norm(x))``."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.dim, cfg.eps)
        self.attn = SelfAttention(cfg.dim, cfg.heads, cfg.kv_heads, bias=False, causal=True,
                                  rotary_base=cfg.rope_theta)
        self.post_attention_layernorm = RMSNorm(cfg.dim, cfg.eps)
        self.mlp = SwiGLU(cfg.dim, cfg.intermediate)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer."""
        x = x + self.attn(self.input_layernorm(x))
        return x + self.mlp(self.post_attention_layernorm(x))


class LMHead(nn.Module):
    """Final RMSNorm and the vocabulary projection."""

    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.norm = RMSNorm(cfg.dim, cfg.eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Logits over the vocabulary for every position."""
        return self.lm_head(self.norm(x))


def build(cfg: LlamaConfig | None = None) -> Blocks:
    """Build the decoder as embedding, ``layers`` decoder blocks and the LM head.

    Weights are random (N(0, 0.02) for every matrix, as LLaMA-family models are initialised).

    Args:
        cfg: Hyper-parameters; TinyLlama-1.1B when omitted.

    Returns:
        The block chain.
    """
    cfg = cfg or LlamaConfig()
    modules: list[nn.Module] = [Embedding(cfg)]
    infos = [BlockInfo("embed", "embedding")]
    for i in range(cfg.layers):
        block = DecoderBlock(cfg)
        modules.append(block)
        infos.append(BlockInfo(f"decoder.{i}", "transformer",
                               lora_params=lora_params(block.attn.lora_shapes()),
                               kv_elems_per_token=2 * cfg.kv_heads * cfg.head_dim))
    modules.append(LMHead(cfg))
    infos.append(BlockInfo("lm_head", "head"))
    for module in modules:
        for p in module.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
    return Blocks(modules, infos)


def sample_input(cfg: LlamaConfig | None = None, batch: int = 1, seq_len: int | None = None,
                 device: torch.device | str | None = None) -> Tensor:
    """Random token ids ``(batch, seq_len)``; ``seq_len`` defaults to the context length."""
    cfg = cfg or LlamaConfig()
    seq_len = seq_len or cfg.context
    if seq_len > cfg.context:
        raise ValueError(f"seq_len {seq_len} exceeds the context length {cfg.context}")
    return torch.randint(0, cfg.vocab, (batch, seq_len), device=device)
