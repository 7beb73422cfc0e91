"""A tiny decoder language model built from code, for serving LLM jobs without downloads.

The model of ``envs/tiny_llm.yaml`` (``tiny_lm``): a byte-level decoder with random weights
drawn from a seed, one module per card layer: the embedding (tokens and learned positions),
:data:`CONFIG` ``.layers`` decoder blocks (causal self-attention, GELU MLP, pre-norm), and the
final norm with the LM head. Every block takes ``(x, start, cache)``: ``start`` is the
position of ``x``'s first token and ``cache`` the block's key/value cache for one request (a
dict filled on the first call and grown on each later one); without a cache a block attends
over ``x`` alone, so :func:`~dora_rl.runtime.layers.run_layers` runs the model in one pass.

The tokenizer is byte-level: token id = byte (0-255), plus :data:`BOS` and :data:`EOS`.

Example:
    >>> blocks = build_blocks(CONFIG, seed=0)
    >>> len(blocks), encode("hi")
    (8, [256, 104, 105])
    >>> tokens = generate(blocks, encode("hi"), max_tokens=4)
    >>> len(tokens) <= 4 and all(0 <= t < CONFIG.vocab for t in tokens)
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

BOS = 256
"""Begins every prompt."""
EOS = 257
"""Ends a generation early."""
MODEL_NAME = "tiny_lm"
"""The card model name served by this module."""


@dataclass(frozen=True)
class TinyLmConfig:
    """Shape of the model.

    Attributes:
        layers: Decoder blocks (the card's model has ``layers + 2`` layers).
        dim: Hidden width; heads: attention heads.
        context_tokens: Longest sequence (prompt and output) the positions cover.
        vocab: Token ids (256 bytes and the two specials).
    """

    layers: int = 6
    dim: int = 64
    heads: int = 4
    context_tokens: int = 256
    vocab: int = 258


CONFIG = TinyLmConfig()
"""The configuration ``envs/tiny_llm.yaml`` describes."""


def encode(text: str) -> list[int]:
    """Token ids of ``text``: :data:`BOS`, then its UTF-8 bytes."""
    return [BOS, *text.encode("utf-8")]


def decode(tokens: list[int]) -> str:
    """Text of generated tokens (specials dropped; invalid UTF-8 replaced)."""
    return bytes(t for t in tokens if t < 256).decode("utf-8", errors="replace")


class Embed(nn.Module):
    """Token and position embeddings: ids ``[B, T]`` to hidden ``[B, T, dim]``."""

    def __init__(self, cfg: TinyLmConfig) -> None:
        super().__init__()
        self.tokens = nn.Embedding(cfg.vocab, cfg.dim)
        self.positions = nn.Embedding(cfg.context_tokens, cfg.dim)

    def forward(self, x: Tensor, start: int = 0, cache: dict[str, Tensor] | None = None
                ) -> Tensor:
        pos = torch.arange(start, start + x.shape[1])
        return self.tokens(x) + self.positions(pos)


class Block(nn.Module):
    """One pre-norm decoder block with a key/value cache per request."""

    def __init__(self, cfg: TinyLmConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.norm2 = nn.LayerNorm(cfg.dim)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, 4 * cfg.dim), nn.GELU(),
                                 nn.Linear(4 * cfg.dim, cfg.dim))

    def forward(self, x: Tensor, start: int = 0, cache: dict[str, Tensor] | None = None
                ) -> Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        past = k.shape[2] - t
        # query i (at position past + i) sees keys 0 .. past + i
        mask = torch.ones(t, k.shape[2], dtype=torch.bool).tril(diagonal=past)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.mlp(self.norm2(x))


class Head(nn.Module):
    """Final norm and LM head: hidden ``[B, T, dim]`` to logits ``[B, T, vocab]``."""

    def __init__(self, cfg: TinyLmConfig) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(cfg.dim)
        self.out = nn.Linear(cfg.dim, cfg.vocab)

    def forward(self, x: Tensor, start: int = 0, cache: dict[str, Tensor] | None = None
                ) -> Tensor:
        return self.out(self.norm(x))


def build_blocks(cfg: TinyLmConfig = CONFIG, seed: int = 0) -> list[nn.Module]:
    """The model's modules, one per card layer, with weights drawn from ``seed`` (the same on
    every process; the global RNG is left as it was). In evaluation mode."""
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        blocks: list[nn.Module] = [Embed(cfg), *(Block(cfg) for _ in range(cfg.layers)),
                                   Head(cfg)]
        for block in blocks:  # wider than PyTorch's defaults: greedy output varies
            for name, p in block.named_parameters():
                if p.dim() == 2:
                    nn.init.normal_(p, std=0.6 if "tokens" in name or "positions" in name
                                    else 1.2 / math.sqrt(p.shape[1]))
    finally:
        torch.random.set_rng_state(state)
    return [block.eval() for block in blocks]


def run_cached(blocks: dict[int, nn.Module] | list[nn.Module], first: int, end: int, x: Tensor,
               start: int, caches: dict[int, dict[str, Tensor]]) -> Tensor:
    """Run layers ``[first, end)`` on ``x`` (positions from ``start``), each with its cache in
    ``caches`` (created on first use), without autograd."""
    with torch.no_grad():
        for i in range(first, end):
            x = blocks[i](x, start, caches.setdefault(i, {}))
    return x


def next_token(logits: Tensor) -> int:
    """The greedy choice after the last position of ``logits`` ``[1, T, vocab]``."""
    return int(logits[0, -1].argmax())


def generate(blocks: list[nn.Module], prompt: list[int], max_tokens: int) -> list[int]:
    """Greedy decoding on the whole model in this process (the reference a partitioned run
    must match): prefill, then one token at a time; stops after :data:`EOS`."""
    caches: dict[int, dict[str, Tensor]] = {}
    x = torch.tensor([prompt])
    out: list[int] = []
    start = 0
    while len(out) < max_tokens:
        token = next_token(run_cached(blocks, 0, len(blocks), x, start, caches))
        out.append(token)
        if token == EOS:
            break
        start += int(x.shape[1])
        x = torch.tensor([[token]])
    return out


def reference_tokens(text: str, max_tokens: int, seed: int = 0) -> list[int]:
    """Greedy tokens of the unpartitioned model built with ``seed``, on one thread (as the
    workers run): what a served completion of ``text`` must equal."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return generate(build_blocks(seed=seed), encode(text), max_tokens)
    finally:
        torch.set_num_threads(threads)
