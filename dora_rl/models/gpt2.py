"""GPT-2 small (Radford et al., 2019) as a chain of partitionable blocks, random weights.

Blocks: token plus position embedding, then one block per decoder layer (pre-norm causal
multi-head self-attention and a tanh-GELU MLP, each with a residual connection), then the final
LayerNorm with the language-model head. The head's weight is tied to the token embedding, as in
GPT-2, so the embedding block owns it; GPT-2 small has 124,439,808 parameters.

Example:
    >>> cfg = GPT2Config(layers=2, dim=32, heads=4, vocab=100, context=16)
    >>> chain = build(cfg)
    >>> [info.kind for info in chain.infos]
    ['embedding', 'transformer', 'transformer', 'head']
    >>> chain(sample_input(cfg, batch=2, seq_len=8)).shape
    torch.Size([2, 8, 100])
    >>> chain[-1].lm_head.weight is chain[0].wte.weight
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from dora_rl.models.blocks import BlockInfo, Blocks, SelfAttention, lora_params
from dora_rl.models.vit import MLP

SOURCE = ("GPT-2 small: Radford et al., 'Language Models are Unsupervised Multitask Learners', "
          "2019, and the openai-community/gpt2 model card (12 layers, d_model 768, 12 heads, "
          "vocab 50257, context 1024, 124M parameters)")


@dataclass(frozen=True)
class GPT2Config:
    """GPT-2 hyper-parameters; the defaults are GPT-2 small (124M).

    Attributes:
        layers: Decoder layers.
        dim: Model width.
        heads: Attention heads.
        vocab: Vocabulary size.
        context: Maximum sequence length (position embeddings).
        eps: LayerNorm epsilon.
    """

    layers: int = 12
    dim: int = 768
    heads: int = 12
    vocab: int = 50257
    context: int = 1024
    eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.dim // self.heads


class Embedding(nn.Module):
    """Token ids ``(B, S)`` -> token plus position embeddings ``(B, S, dim)``."""

    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab, cfg.dim)
        self.wpe = nn.Embedding(cfg.context, cfg.dim)
        nn.init.normal_(self.wte.weight, std=0.02)
        nn.init.normal_(self.wpe.weight, std=0.01)

    def forward(self, ids: Tensor) -> Tensor:
        """Embed the tokens and their positions."""
        pos = torch.arange(ids.shape[1], device=ids.device)
        return self.wte(ids) + self.wpe(pos)


class DecoderBlock(nn.Module):
    """Pre-norm decoder layer: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))``."""

    def __init__(self, cfg: GPT2Config) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.attn = SelfAttention(cfg.dim, cfg.heads, causal=True)
        self.ln_2 = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.mlp = MLP(cfg.dim, 4 * cfg.dim, approximate="tanh")

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer."""
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class LMHead(nn.Module):
    """Final LayerNorm and the vocabulary projection (no bias)."""

    def __init__(self, cfg: GPT2Config, tied: nn.Parameter | None = None) -> None:
        super().__init__()
        self.ln_f = nn.LayerNorm(cfg.dim, eps=cfg.eps)
        self.lm_head = nn.Linear(cfg.dim, cfg.vocab, bias=False)
        if tied is not None:
            self.lm_head.weight = tied

    def forward(self, x: Tensor) -> Tensor:
        """Logits over the vocabulary for every position."""
        return self.lm_head(self.ln_f(x))


def build(cfg: GPT2Config | None = None) -> Blocks:
    """Build GPT-2 as embedding, ``layers`` decoder blocks and the LM head; random weights.

    Args:
        cfg: Hyper-parameters; GPT-2 small when omitted.

    Returns:
        The block chain; the head's weight is the embedding's (tied).
    """
    cfg = cfg or GPT2Config()
    embed = Embedding(cfg)
    modules: list[nn.Module] = [embed]
    infos = [BlockInfo("embed", "embedding")]
    for i in range(cfg.layers):
        block = DecoderBlock(cfg)
        for name, p in block.named_parameters():
            if name.endswith("weight") and p.dim() == 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias") and "ln" not in name:
                nn.init.zeros_(p)
        modules.append(block)
        infos.append(BlockInfo(f"decoder.{i}", "transformer",
                               lora_params=lora_params(block.attn.lora_shapes()),
                               kv_elems_per_token=2 * cfg.heads * cfg.head_dim))
    modules.append(LMHead(cfg, tied=cast(nn.Parameter, embed.wte.weight)))
    infos.append(BlockInfo("lm_head", "head"))
    return Blocks(modules, infos)


def sample_input(cfg: GPT2Config | None = None, batch: int = 1, seq_len: int | None = None,
                 device: torch.device | str | None = None) -> Tensor:
    """Random token ids ``(batch, seq_len)``; ``seq_len`` defaults to the context length."""
    cfg = cfg or GPT2Config()
    seq_len = seq_len or cfg.context
    if seq_len > cfg.context:
        raise ValueError(f"seq_len {seq_len} exceeds the context length {cfg.context}")
    return torch.randint(0, cfg.vocab, (batch, seq_len), device=device)
