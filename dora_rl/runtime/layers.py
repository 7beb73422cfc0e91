"""The job's model as torch layers, one module per card layer, with random weights.

A card whose model is registered in :mod:`dora_rl.models` (``vit_b16``, ``resnet50``, ``gpt2``,
``llama_1b``) is built from the same definitions the profiler uses. A model defined inline in
the card (a list of layers with FLOPs and bytes, like ``envs/tiny.yaml``) has no torch
definition; each of its layers becomes a :class:`SizedLayer` on float32 vectors whose output
holds exactly the layer's ``activation_bytes`` per item, so stage boundaries carry the bytes
the cost model charges and a partitioned run can be checked against the whole model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dora_rl.config import Scenario
from dora_rl.errors import DoraError
from dora_rl.models import MODELS

INPUT_FLOATS = 64
"""Width of an inline model's input vector (float32 per item)."""


class ModelError(DoraError):
    """The job's model cannot be built in torch."""


@dataclass(frozen=True)
class LayerSpec:
    """How to build layer ``index`` of a job's model (picklable, sent to workers).

    Attributes:
        model: Model name in the card.
        registered: The model is in :data:`dora_rl.models.MODELS` (else inline).
        index: Layer index (0-based).
        in_floats: Input width per item (inline models).
        out_floats: Output width per item (inline models).
    """

    model: str
    registered: bool
    index: int
    in_floats: int = 0
    out_floats: int = 0


class SizedLayer(nn.Module):
    """``y = tanh(x[:, src] * scale + bias)``: any input width to ``out_floats``, elementwise.

    Every output element reads one input element (spread evenly over the input), so the cost
    is linear in the output size and the parameters are two vectors of the output's size.

    Args:
        in_floats: Input width per item.
        out_floats: Output width per item.

    Example:
        >>> SizedLayer(4, 10)(torch.zeros(3, 4)).shape
        torch.Size([3, 10])
    """

    def __init__(self, in_floats: int, out_floats: int) -> None:
        super().__init__()
        self.src: Tensor
        self.register_buffer("src", torch.arange(out_floats) * in_floats // out_floats)
        self.scale = nn.Parameter(torch.randn(out_floats) * 0.5 + 1.0)
        self.bias = nn.Parameter(torch.randn(out_floats) * 0.1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(x[:, self.src] * self.scale + self.bias)


def layer_specs(scenario: Scenario, job: int) -> list[LayerSpec]:
    """One :class:`LayerSpec` per layer of job ``job``'s model.

    Raises:
        ModelError: a registered model whose block count differs from the card's profile.
    """
    name = scenario.jobs[job].model
    model = scenario.models[name]
    if name in MODELS:
        return [LayerSpec(name, True, i) for i in range(len(model.layers))]
    widths = [INPUT_FLOATS] + [max(1, round(layer.activation_bytes / 4))
                               for layer in model.layers]
    return [LayerSpec(name, False, i, widths[i], widths[i + 1])
            for i in range(len(model.layers))]


def build_layers(specs: list[LayerSpec], seed: int = 0) -> dict[int, nn.Module]:
    """Build the given layers with weights drawn from ``seed`` (the same on every process).

    Raises:
        ModelError: the registered model's block count differs from the specs.
    """
    if not specs:
        return {}
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if specs[0].registered:
            blocks = MODELS[specs[0].model].build()
            modules = {s.index: blocks[s.index] for s in specs if s.index < len(blocks)}
            if len(modules) != len(specs):
                raise ModelError(f"model {specs[0].model!r}: {len(blocks)} torch blocks do not "
                                 "cover the profile's layers")
        else:
            modules = {s.index: SizedLayer(s.in_floats, s.out_floats) for s in specs}
    finally:
        torch.random.set_rng_state(gen_state)
    for module in modules.values():
        module.eval()
    return modules


def sample_input(scenario: Scenario, job: int, items: int, seed: int) -> Tensor:
    """A random input of ``items`` items for job ``job``'s model."""
    name = scenario.jobs[job].model
    gen = torch.Generator().manual_seed(seed)
    if name in MODELS:
        spec = MODELS[name]
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            return spec.sample_input(batch=items, seq_len=min(spec.seq_len or 16, 16))
        finally:
            torch.random.set_rng_state(state)
    return torch.randn(items, INPUT_FLOATS, generator=gen)


def run_layers(modules: dict[int, nn.Module], first: int, end: int, x: Tensor) -> Tensor:
    """Run layers ``[first, end)`` on ``x`` without autograd."""
    with torch.no_grad():
        for i in range(first, end):
            x = modules[i](x)
    return x
