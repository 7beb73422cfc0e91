"""The job's model as torch layers, one module per card layer.

A model whose profile records its torch module (``python -m dora_rl.profiler --model
FILE.py:FUNCTION``) runs that module's own blocks, split as when it was profiled, with the
weights of the card's ``weights`` file (safetensors) or random ones. A card whose model is
registered in :mod:`dora_rl.models` (``vit_b16``, ``resnet50``, ``gpt2``, ``llama_1b``) is built
from the same definitions the profiler uses, with random weights. Any other model (inline layers
like ``envs/tiny.yaml``, a GGUF profile) has no torch definition here; each of its layers
becomes a :class:`SizedLayer` stand-in on float32 vectors whose output holds exactly the layer's
``activation_bytes`` per item, so stage boundaries carry the bytes the cost model charges, and
:func:`layer_specs` warns once, on one line, that stand-ins run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor, nn

from dora_rl.config import Scenario
from dora_rl.config.schema import ModuleSource
from dora_rl.errors import DoraError
from dora_rl.models import MODELS
from dora_rl.runtime import tiny_lm

log = logging.getLogger(__name__)

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
        module: The profiled torch module the layer is a block of (else None).
        name: The layer's name in the profile (checked against the module's block).
        family: A model built from code in the runtime (``tiny_lm``:
            :mod:`dora_rl.runtime.tiny_lm`), else empty.
    """

    model: str
    registered: bool
    index: int
    in_floats: int = 0
    out_floats: int = 0
    module: ModuleSource | None = None
    name: str = ""
    family: str = ""


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
    if model.module is not None:
        return [LayerSpec(name, False, i, module=model.module, name=layer.name)
                for i, layer in enumerate(model.layers)]
    if name in MODELS:
        return [LayerSpec(name, True, i) for i in range(len(model.layers))]
    if name == tiny_lm.MODEL_NAME:
        blocks = tiny_lm.CONFIG.layers + 2
        if len(model.layers) != blocks:
            raise ModelError(f"model {name!r}: the card has {len(model.layers)} layers, the "
                             f"built-in {name} has {blocks} (embedding, "
                             f"{tiny_lm.CONFIG.layers} decoder blocks, head)")
        return [LayerSpec(name, False, i, family=name) for i in range(blocks)]
    log.warning("serve: model %r has no torch module (inline layers, or a profile without "
                "one): its %d layers run as stand-in layers sized by the profile, not the real "
                "network", name, len(model.layers))
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
    if specs[0].module is not None:
        return _module_layers(specs, specs[0].module, seed)
    if specs[0].family == tiny_lm.MODEL_NAME:
        lm_blocks = tiny_lm.build_blocks(tiny_lm.CONFIG, seed)
        return {s.index: lm_blocks[s.index] for s in specs}
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


def _module_layers(specs: list[LayerSpec], source: ModuleSource,
                   seed: int) -> dict[int, nn.Module]:
    """The profiled module's blocks for ``specs``, checked to be the profile's layers."""
    from dora_rl.models.user_module import build_blocks

    blocks = build_blocks(source, seed=seed)
    names = [info.name for info in blocks.infos]
    for s in specs:
        if s.index >= len(blocks) or names[s.index] != s.name:
            found = names[s.index] if s.index < len(names) else "nothing"
            raise ModelError(f"model {s.model!r}: {source.factory} now splits into "
                             f"{len(blocks)} blocks; block {s.index} is {found!r}, the profile "
                             f"says {s.name!r} (profile the module again)")
    return {s.index: blocks[s.index] for s in specs}


@lru_cache(maxsize=8)
def _vocabulary(factory: str) -> int:
    """Token ids a profiled token module takes (its first embedding's rows)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from dora_rl.models.user_module import build_module, vocabulary

    with FakeTensorMode(allow_non_fake_inputs=True):
        return vocabulary(build_module(ModuleSource(factory=factory, tokens=1)))


def sample_input(scenario: Scenario, job: int, items: int, seed: int) -> Tensor:
    """A random input of ``items`` items for job ``job``'s model."""
    name = scenario.jobs[job].model
    gen = torch.Generator().manual_seed(seed)
    source = scenario.models[name].module
    if source is not None and source.tokens is not None:
        ids = (items, min(source.tokens, 16))
        return torch.randint(0, _vocabulary(source.factory), ids, generator=gen)
    if name == tiny_lm.MODEL_NAME:
        return torch.randint(0, 256, (items, 16), generator=gen)
    if source is not None:
        return torch.randn([items, *(source.input_shape or [1])[1:]], generator=gen)
    if name in MODELS:
        spec = MODELS[name]
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            return spec.sample_input(batch=items, seq_len=min(spec.seq_len or 16, 16))
        finally:
            torch.random.set_rng_state(state)
    return torch.randn(items, INPUT_FLOATS, generator=gen)


def input_vocabulary(scenario: Scenario, job: int) -> int | None:
    """Token ids job ``job``'s model takes (None: its input is not token ids)."""
    name = scenario.jobs[job].model
    source = scenario.models[name].module
    if source is not None and source.tokens is not None:
        return _vocabulary(source.factory)
    if name == tiny_lm.MODEL_NAME:
        return tiny_lm.CONFIG.vocab
    if source is None and name in MODELS:
        vocab = getattr(MODELS[name].config, "vocab", None)
        return int(vocab) if vocab is not None else None
    return None


def run_layers(modules: dict[int, nn.Module], first: int, end: int, x: Tensor) -> Tensor:
    """Run layers ``[first, end)`` on ``x`` without autograd."""
    with torch.no_grad():
        for i in range(first, end):
            x = modules[i](x)
    return x
