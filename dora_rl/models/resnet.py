"""ResNet-50 (He et al., CVPR 2016) as a chain of partitionable blocks, random weights.

Blocks: the stem (7x7 convolution, batch norm, ReLU, 3x3 max pooling), then each of the 16
bottleneck blocks of the four stages ([3, 4, 6, 3] blocks), then global average pooling with the
fully connected classifier. Downsampling sits on the 3x3 convolution of a stage's first block
(the "v1.5" layout of torchvision's ``resnet50``, 25,557,032 parameters, 4.1 GMACs at 224x224).

Example:
    >>> cfg = ResNetConfig(stages=(1, 1), widths=(8, 16), stem_width=8, image_size=32,
    ...                    classes=10)
    >>> chain = build(cfg)
    >>> [info.name for info in chain.infos]
    ['stem', 'layer1.0', 'layer2.0', 'head']
    >>> chain(sample_input(cfg, batch=2)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dora_rl.models.blocks import BlockInfo, Blocks

SOURCE = ("ResNet-50: He et al., 'Deep Residual Learning for Image Recognition', CVPR 2016, "
          "Table 1 (bottleneck blocks [3, 4, 6, 3]; stride on the 3x3 conv as torchvision v1.5)")


@dataclass(frozen=True)
class ResNetConfig:
    """Bottleneck ResNet hyper-parameters; the defaults are ResNet-50 at 224x224.

    Attributes:
        stages: Bottleneck blocks per stage.
        widths: Bottleneck (3x3) width per stage; a block outputs ``expansion`` times as many.
        stem_width: Output channels of the stem convolution.
        expansion: Output/bottleneck width ratio.
        classes: Output classes.
        image_size: Input height and width in pixels.
        channels: Input channels.
    """

    stages: tuple[int, ...] = (3, 4, 6, 3)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_width: int = 64
    expansion: int = 4
    classes: int = 1000
    image_size: int = 224
    channels: int = 3


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out)]


class Stem(nn.Module):
    """7x7/2 convolution, batch norm, ReLU and 3x3/2 max pooling."""

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(cfg.channels, cfg.stem_width, 7, 2),
                                  nn.ReLU(inplace=True),
                                  nn.MaxPool2d(kernel_size=3, stride=2, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        """Apply the stem."""
        return self.body(x)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided) and 1x1 expand convolutions with a residual connection.

    Args:
        c_in: Input channels.
        width: Bottleneck width.
        c_out: Output channels.
        stride: Stride of the 3x3 convolution.
    """

    def __init__(self, c_in: int, width: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv_bn(c_in, width, 1), nn.ReLU(inplace=True),
            *_conv_bn(width, width, 3, stride), nn.ReLU(inplace=True),
            *_conv_bn(width, c_out, 1),
        )
        self.downsample: nn.Module = (
            nn.Sequential(*_conv_bn(c_in, c_out, 1, stride))
            if stride != 1 or c_in != c_out else nn.Identity()
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the block."""
        return self.relu(self.body(x) + self.downsample(x))


class Head(nn.Module):
    """Global average pooling and the fully connected classifier."""

    def __init__(self, c_in: int, classes: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, classes)

    def forward(self, x: Tensor) -> Tensor:
        """Pool and classify."""
        return self.fc(self.pool(x).flatten(1))


def build(cfg: ResNetConfig | None = None) -> Blocks:
    """Build the ResNet as stem, one block per bottleneck, head; random weights.

    Args:
        cfg: Hyper-parameters; ResNet-50 when omitted.

    Returns:
        The block chain.
    """
    cfg = cfg or ResNetConfig()
    if len(cfg.stages) != len(cfg.widths):
        raise ValueError("stages and widths must have the same length")
    modules: list[nn.Module] = [Stem(cfg)]
    infos = [BlockInfo("stem", "conv")]
    c_in = cfg.stem_width
    for s, (blocks, width) in enumerate(zip(cfg.stages, cfg.widths, strict=True)):
        c_out = width * cfg.expansion
        for b in range(blocks):
            stride = 2 if b == 0 and s > 0 else 1
            modules.append(Bottleneck(c_in, width, c_out, stride))
            infos.append(BlockInfo(f"layer{s + 1}.{b}", "conv"))
            c_in = c_out
    modules.append(Head(c_in, cfg.classes))
    infos.append(BlockInfo("head", "head"))
    _init(modules)
    return Blocks(modules, infos)


def _init(modules: list[nn.Module]) -> None:
    """He-normal convolutions, unit batch norms (as torchvision initialises ResNets)."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)


def sample_input(cfg: ResNetConfig | None = None, batch: int = 1, seq_len: int | None = None,
                 device: torch.device | str | None = None) -> Tensor:
    """A random image batch ``(batch, channels, image_size, image_size)``.

    ``seq_len`` is accepted for a uniform signature and ignored.
    """
    cfg = cfg or ResNetConfig()
    return torch.randn(batch, cfg.channels, cfg.image_size, cfg.image_size, device=device)
