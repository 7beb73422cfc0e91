"""Plain-torch builders of the profiled models, from their published configurations.

Every builder returns the model as a :class:`~dora_rl.models.blocks.Blocks` chain of
partitionable blocks with random weights (nothing is downloaded), and every model has a function
making a sample input. :data:`MODELS` registers them by the names the profiles use:

======== ====== ======= ================================================================
name     unit   seq_len blocks
======== ====== ======= ================================================================
vit_b16  sample         patch embedding, 12 encoder layers, norm + classifier
resnet50 sample         stem, 16 bottlenecks, pool + classifier
gpt2     token  1024    token + position embedding, 12 decoder layers, norm + LM head
llama_1b token  2048    embedding, 22 decoder layers (GQA, RoPE, SwiGLU), norm + LM head
======== ====== ======= ================================================================

Each builder takes a configuration dataclass (defaulting to the published one), so tests build
small variants of the same architectures.

Example:
    >>> sorted(MODELS)
    ['gpt2', 'llama_1b', 'resnet50', 'vit_b16']
    >>> spec = MODELS["gpt2"]
    >>> spec.unit, spec.seq_len
    ('token', 1024)
    >>> small = spec.config_type(layers=1, dim=16, heads=2, vocab=50, context=8)
    >>> spec.build(small)(spec.sample_input(batch=1, seq_len=4, config=small)).shape
    torch.Size([1, 4, 50])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from dora_rl.models import gpt2, llama, resnet, vit
from dora_rl.models.blocks import LORA_RANK, BlockInfo, Blocks

__all__ = ["LORA_RANK", "MODELS", "BlockInfo", "Blocks", "ModelSpec", "build", "get"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it and what its profile's items are.

    Attributes:
        name: Registry name, also the profile's model name.
        builder: ``builder(config) -> Blocks``, random weights.
        make_input: ``make_input(config, batch, seq_len, device) -> Tensor``.
        config: The published configuration (a frozen dataclass).
        unit: ``"sample"`` for vision models, ``"token"`` for language models.
        seq_len: Tokens per training sample for token models, else None.
        source: One-line citation of the published configuration.
    """

    name: str
    builder: Callable[[Any], Blocks]
    make_input: Callable[..., Tensor]
    config: Any
    unit: Literal["sample", "token"]
    seq_len: int | None
    source: str

    @property
    def config_type(self) -> type:
        """The configuration dataclass, for building variants."""
        return type(self.config)

    def build(self, config: Any = None) -> Blocks:
        """Build the block chain (the published configuration unless ``config`` is given)."""
        return self.builder(self.config if config is None else config)

    def sample_input(self, batch: int = 1, seq_len: int | None = None, config: Any = None,
                     device: torch.device | str | None = None) -> Tensor:
        """A random input for ``batch`` items (sequences of ``seq_len`` tokens)."""
        cfg = self.config if config is None else config
        return self.make_input(cfg, batch, seq_len, device)


MODELS: dict[str, ModelSpec] = {
    "vit_b16": ModelSpec("vit_b16", vit.build, vit.sample_input, vit.ViTConfig(), "sample",
                         None, vit.SOURCE),
    "resnet50": ModelSpec("resnet50", resnet.build, resnet.sample_input, resnet.ResNetConfig(),
                          "sample", None, resnet.SOURCE),
    "gpt2": ModelSpec("gpt2", gpt2.build, gpt2.sample_input, gpt2.GPT2Config(), "token", 1024,
                      gpt2.SOURCE),
    "llama_1b": ModelSpec("llama_1b", llama.build, llama.sample_input, llama.LlamaConfig(),
                          "token", 2048, llama.SOURCE),
}
"""The registered models by name."""


def get(name: str) -> ModelSpec:
    """The registered model called ``name``.

    Raises:
        KeyError: naming the known models.
    """
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})") from None


def build(name: str, config: Any = None) -> Blocks:
    """Build the registered model ``name`` with random weights.

    Args:
        name: A key of :data:`MODELS`.
        config: Optional configuration overriding the published one.

    Example:
        >>> len(build("resnet50", MODELS["resnet50"].config_type(stages=(1,), widths=(4,),
        ...                                                      stem_width=4)))
        3
    """
    return get(name).build(config)
