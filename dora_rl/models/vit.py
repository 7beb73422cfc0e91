"""ViT-B/16 (Dosovitskiy et al., ICLR 2021) as a chain of partitionable blocks, random weights.

Blocks: the patch embedding with class token and position embedding, then one block per
transformer encoder layer (pre-norm multi-head self-attention and a GELU MLP, each with a
residual connection), then the final LayerNorm with the classification head on the class token.
The layout and parameter count (86,567,656 for ViT-B/16 with 1000 classes) match torchvision's
``vit_b_16``.

Example:
    >>> cfg = ViTConfig(image_size=32, patch_size=16, layers=2, hidden=64, mlp=128, heads=4,
    ...                 classes=10)
    >>> chain = build(cfg)
    >>> [info.kind for info in chain.infos]
    ['embedding', 'transformer', 'transformer', 'head']
    >>> chain(sample_input(cfg, batch=2)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dora_rl.models.blocks import BlockInfo, Blocks, SelfAttention, lora_params

SOURCE = ("ViT-B/16: Dosovitskiy et al., 'An Image is Worth 16x16 Words', ICLR 2021, Table 1 "
          "(12 layers, hidden 768, MLP 3072, 12 heads, patch 16, 224x224, 1000 classes)")


@dataclass(frozen=True)
class ViTConfig:
    """Vision Transformer hyper-parameters; the defaults are ViT-B/16 at 224x224.

    Attributes:
        image_size: Input height and width in pixels.
        patch_size: Patch height and width in pixels.
        layers: Transformer encoder layers.
        hidden: Model width.
        mlp: MLP hidden width.
        heads: Attention heads.
        classes: Output classes.
        channels: Input channels.
        eps: LayerNorm epsilon.
    """

    image_size: int = 224
    patch_size: int = 16
    layers: int = 12
    hidden: int = 768
    mlp: int = 3072
    heads: int = 12
    classes: int = 1000
    channels: int = 3
    eps: float = 1e-6

    @property
    def tokens(self) -> int:
        """Sequence length: the patches plus the class token."""
        return (self.image_size // self.patch_size) ** 2 + 1


class PatchEmbedding(nn.Module):
    """Image ``(B, C, H, W)`` -> tokens ``(B, 1 + patches, hidden)``."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cfg.channels, cfg.hidden, kernel_size=cfg.patch_size,
                              stride=cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.hidden))
        self.pos_embedding = nn.Parameter(torch.empty(1, cfg.tokens, cfg.hidden))
        nn.init.normal_(self.pos_embedding, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        """Embed the patches, prepend the class token and add position embeddings."""
        x = self.proj(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        return torch.cat((cls, x), dim=1) + self.pos_embedding


class MLP(nn.Module):
    """Two linear layers with a GELU between them."""

    def __init__(self, dim: int, hidden: int, approximate: str = "none") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate=approximate)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the MLP position-wise."""
        return self.fc2(self.act(self.fc1(x)))


class EncoderBlock(nn.Module):
    """Pre-norm transformer layer: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.attn = SelfAttention(cfg.hidden, cfg.heads)
        self.ln_2 = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.mlp = MLP(cfg.hidden, cfg.mlp)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the layer."""
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class ClassifierHead(nn.Module):
    """Final LayerNorm and the linear classifier on the class token."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(cfg.hidden, eps=cfg.eps)
        self.head = nn.Linear(cfg.hidden, cfg.classes)

    def forward(self, x: Tensor) -> Tensor:
        """Normalise, take the class token and classify."""
        return self.head(self.ln(x)[:, 0])


def build(cfg: ViTConfig | None = None) -> Blocks:
    """Build the ViT as ``1 + layers + 1`` blocks with random weights.

    Args:
        cfg: Hyper-parameters; ViT-B/16 when omitted.

    Returns:
        The block chain: embedding, ``layers`` encoder blocks, head.
    """
    cfg = cfg or ViTConfig()
    modules: list[nn.Module] = [PatchEmbedding(cfg)]
    infos = [BlockInfo("embed", "embedding")]
    for i in range(cfg.layers):
        block = EncoderBlock(cfg)
        modules.append(block)
        infos.append(BlockInfo(f"encoder.{i}", "transformer",
                               lora_params=lora_params(block.attn.lora_shapes())))
    modules.append(ClassifierHead(cfg))
    infos.append(BlockInfo("head", "head"))
    return Blocks(modules, infos)


def sample_input(cfg: ViTConfig | None = None, batch: int = 1, seq_len: int | None = None,
                 device: torch.device | str | None = None) -> Tensor:
    """A random image batch ``(batch, channels, image_size, image_size)``.

    ``seq_len`` is accepted for a uniform signature and ignored.
    """
    cfg = cfg or ViTConfig()
    return torch.randn(batch, cfg.channels, cfg.image_size, cfg.image_size, device=device)
