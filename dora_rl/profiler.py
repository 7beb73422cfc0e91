"""Profile a registered model block by block and write a ``Model`` profile (YAML).

Usage::

    python -m dora_rl.profiler --model vit_b16                # print the summary table
    python -m dora_rl.profiler --model gpt2 --out     # write dora_rl/data/profiles/gpt2.yaml
    python -m dora_rl.profiler --model resnet50 --measure --out envs/profiles/resnet50_x86_cpu.yaml
    python -m dora_rl.profiler --model my_net.py:build --input-shape 1,3,224,224 --out my_net.yaml
    python -m dora_rl.profiler --model torchvision.models:mobilenet_v2 --input-shape 1,3,224,224
    python -m dora_rl.profiler --model my_lm.py:build --tokens 512 --split-points layers.5
    python -m dora_rl.profiler --gguf tinyllama-1.1b.Q4_0.gguf --out tinyllama_q4.yaml

``--model`` takes a registered model or any ``torch.nn.Module`` from its factory
(``FILE.py:FUNCTION`` or ``package.module:FUNCTION``, called with no arguments), profiled by
:mod:`dora_rl.models.module_profile`; ``--gguf`` reads a llama-style GGUF file
(:mod:`dora_rl.models.gguf_profile`). See docs/profiles.md.

Every figure is exact for the model as built by :mod:`dora_rl.models` (float32, random weights),
counted by :mod:`dora_rl.models.counting` on fake CPU tensors: forward and backward FLOPs with
``torch.utils.flop_counter``, parameter bytes (a tied weight once, in its first block), output
bytes, the bytes autograd saves for backward (``saved_tensors_hooks``, distinct storages, no
parameters), rank-8 LoRA adapter bytes on the attention q and v projections and KV-cache bytes
per token. Quantities are per item: per sample for vision models; per token for language models,
counted over one sequence of the profile's ``seq_len`` tokens (or ``--seq-len``) and divided by
it, so the attention terms are those of that length (stated in the profile's ``source``).
``optimizer_state_bytes`` is left to its schema default (Adam: twice the parameter bytes).

``--measure`` also times each block's forward pass on this machine (evaluation mode,
``torch.inference_mode``, warm-up runs, then the median of ``--repeats`` runs) and records it under
``measured`` as seconds for the whole batch. For token models the batch is ``--batch`` sequences
of ``seq_len`` tokens and ``measured[].batch`` counts its items, i.e. tokens, so that
``time_s / batch`` is seconds per item as for every other profile quantity.

Totals of the shipped profiles against the published figures (checked when they were generated):
ViT-B/16 35.13 GFLOPs forward per image (17.56 GMACs) and 86,567,656 parameters; ResNet-50
8.18 GFLOPs (4.09 GMACs) and 25,557,032 parameters; GPT-2 small 124,439,808 parameters (124M);
TinyLlama-1.1B 1,100,048,384 parameters (1.1B).
"""

from __future__ import annotations

import platform
import socket
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from rich import box
from rich.console import Console
from rich.progress import track
from rich.table import Table

from dora_rl.config.formats import weight_bytes
from dora_rl.config.schema import Layer, Measured, Model
from dora_rl.errors import ArgParser, DoraError, run_cli
from dora_rl.models import MODELS, ModelSpec
from dora_rl.models.counting import BlockCount, count_fake, time_blocks
from dora_rl.models.gguf_profile import profile_gguf
from dora_rl.models.module_profile import (
    measure_module,
    module_source,
    profile_module,
    relative_factory,
)

BUILTIN_DIR = Path(__file__).resolve().parent / "data" / "profiles"
"""Where ``--out`` without a path writes (``dora_rl/data/profiles/<model>.yaml``)."""

_BUILTIN = "\0builtin"


@dataclass(frozen=True)
class Args:
    """Command-line arguments of ``python -m dora_rl.profiler``."""

    model: str | None = None
    """Registered model (a key of ``dora_rl.models.MODELS``) or ``FILE.py:FUNCTION`` /
    ``package.module:FUNCTION`` returning a ``torch.nn.Module``."""
    gguf: str | None = None
    """A GGUF file to profile instead of a torch module."""
    input_shape: str | None = None
    """Input batch shape of a module taking float tensors, e.g. ``1,3,224,224``."""
    tokens: int | None = None
    """Tokens per sequence of a module taking token ids, or of a GGUF model's attention."""
    split_points: str | None = None
    """Comma-separated module names to cut the module after (default: found from its graph)."""
    name: str | None = None
    """Profile name (default: the factory's function name, or the GGUF file's stem)."""
    measure: bool = False
    """Also time every block on this machine and record it under ``measured``."""
    batch: int = 1
    """Samples (vision) or sequences (language) per counted and timed batch."""
    seq_len: int | None = None
    """Tokens per sequence for token models; defaults to the model's training length."""
    out: str | None = None
    """YAML file to write; ``--out`` alone writes the shipped profile; omitted: summary only."""
    device_name: str | None = None
    """Device name recorded with measured times; defaults to the host name."""
    warmup: int = 2
    """Untimed runs of each block before timing (with ``--measure``)."""
    repeats: int = 5
    """Timed runs of each block; their median is recorded (with ``--measure``)."""


def parse_args(argv: Sequence[str] | None) -> Args:
    """Parse the command line into :class:`Args`."""
    p = ArgParser(prog="python -m dora_rl.profiler",
                                description=(__doc__ or "").split("\n")[0])
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--model", help=f"one of {', '.join(sorted(MODELS))}, or FILE.py:FUNCTION "
                      "or package.module:FUNCTION returning a torch.nn.Module")
    what.add_argument("--gguf", help="a llama-style GGUF file")
    p.add_argument("--input-shape", help="input batch shape of a module, e.g. 1,3,224,224")
    p.add_argument("--tokens", type=int, help="tokens per sequence (a module taking token ids; "
                   "a GGUF model's attention, default its context length, at most 2048)")
    p.add_argument("--split-points", help="comma-separated module names to cut the module after")
    p.add_argument("--name", help="profile name (default: the factory or GGUF file name)")
    p.add_argument("--measure", action="store_true", help="time every block on this machine")
    p.add_argument("--batch", type=int, default=1, help="samples or sequences per batch")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (token models)")
    p.add_argument("--out", nargs="?", const=_BUILTIN, default=None,
                   help="YAML file to write (alone: dora_rl/data/profiles/<model>.yaml)")
    p.add_argument("--device-name", default=None, help="device name for measured times")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs per block")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per block (median)")
    ns = p.parse_args(argv)
    return Args(**vars(ns))


_MODULE_FLAGS = (("--input-shape", "input_shape"), ("--tokens", "tokens"),
                 ("--split-points", "split_points"), ("--name", "name"))


def _check(args: Args) -> ModelSpec:
    assert args.model is not None
    if args.model not in MODELS:
        raise DoraError(f"--model: unknown model {args.model!r} "
                        f"(known: {', '.join(sorted(MODELS))}; or FILE.py:FUNCTION or "
                        "package.module:FUNCTION returning a torch.nn.Module)")
    for flag, field in _MODULE_FLAGS:
        if getattr(args, field) is not None:
            raise DoraError(f"{flag}: only for a module factory or --gguf, not the registered "
                            f"model {args.model!r}")
    spec = MODELS[args.model]
    for flag, value, low in (("--batch", args.batch, 1), ("--seq-len", args.seq_len, 1),
                             ("--warmup", args.warmup, 0), ("--repeats", args.repeats, 1)):
        if value is not None and value < low:
            raise DoraError(f"{flag}: must be >= {low}, got {value}")
    if args.seq_len is not None and spec.unit != "token":
        raise DoraError(f"--seq-len: model {spec.name!r} takes images, not token sequences")
    context = getattr(spec.config, "context", None)
    if args.seq_len is not None and context is not None and args.seq_len > context:
        raise DoraError(f"--seq-len: {args.seq_len} exceeds {spec.name}'s context of {context}")
    return spec


def _profile_other(args: Args, path: Path | None) -> Model:
    """Profile a module factory or a GGUF file (with --measure: also time a module's blocks)."""
    if args.gguf is not None:
        for flag, value in (("--input-shape", args.input_shape), ("--seq-len", args.seq_len),
                            ("--split-points", args.split_points),
                            ("--measure", args.measure or None)):
            if value is not None:
                raise DoraError(f"{flag}: not for --gguf (a GGUF profile is counted from the "
                                "file's dimensions; --tokens sets its sequence length)")
        if args.tokens is not None and args.tokens < 1:
            raise DoraError(f"--tokens: must be >= 1, got {args.tokens}")
        return profile_gguf(args.gguf, seq_len=args.tokens, name=args.name)
    if args.seq_len is not None:
        raise DoraError("--seq-len: for registered models; a module factory takes --tokens")
    source = module_source(str(args.model), input_shape=args.input_shape, tokens=args.tokens,
                           split_points=args.split_points, batch=args.batch)
    model = profile_module(source, name=args.name, batch=args.batch)
    if args.measure:
        measured = measure_module(source, device=args.device_name or socket.gethostname(),
                                  batch=args.batch, warmup=args.warmup, repeats=args.repeats)
        model = model.model_copy(update={"measured": [measured], "source": (
            f"{model.source}; measured on {_cpu_name()}, {torch.get_num_threads()} threads, "
            f"torch {torch.__version__}")})
    if path is not None:
        model = model.model_copy(update={"module": source.model_copy(
            update={"factory": relative_factory(source.factory, path.parent)})})
    return model


def profile_model(spec: ModelSpec, *, batch: int = 1, seq_len: int | None = None,
                  config: object | None = None) -> tuple[Model, int]:
    """Count a model's blocks and return its profile (no measured times) and the seq_len used.

    Args:
        spec: The registered model.
        batch: Samples or sequences counted at once.
        seq_len: Tokens per sequence (token models); by default the model's ``seq_len``, capped
            at the context length of ``config``.
        config: Optional configuration overriding the published one (e.g. a small variant).
    """
    cfg = spec.config if config is None else config
    s = 1
    if spec.unit == "token":
        context: int = getattr(cfg, "context", spec.seq_len or 1)
        s = seq_len or min(spec.seq_len or context, context)
    counts = count_fake(lambda: spec.build(cfg),
                        lambda: spec.sample_input(batch, s if spec.unit == "token" else None, cfg),
                        items=batch * s)
    how = "counted with torch.utils.flop_counter on fake CPU tensors, float32, random weights"
    if spec.unit == "token":
        how += f", per token of {s}-token sequences (attention at full non-causal S x S cost)"
    layers = [_layer(c) for c in counts]
    model = Model(name=spec.name, unit=spec.unit, dtype_bytes=4,
                  seq_len=s if spec.unit == "token" else None,
                  source=f"{spec.source}; {how}", layers=layers)
    return model, s


def _layer(c: BlockCount) -> Layer:
    return Layer(name=c.name, kind=c.kind, forward_flops=c.forward_flops,  # type: ignore[arg-type]
                 backward_flops=c.backward_flops, param_bytes=c.param_bytes,
                 activation_bytes=c.activation_bytes,
                 saved_activation_bytes=c.saved_activation_bytes,
                 lora_param_bytes=c.lora_param_bytes, kv_bytes_per_token=c.kv_bytes_per_token)


def measure(spec: ModelSpec, args: Args, seq_len: int) -> Measured:
    """Time every block of the real model on this machine (see the module docstring)."""
    blocks = spec.build()
    token = spec.unit == "token"
    x = spec.sample_input(args.batch, seq_len if token else None)

    def bar(blocks: Iterable[Any]) -> Iterable[Any]:
        return track(blocks, description=f"timing {spec.name}", console=Console(stderr=True))

    times = time_blocks(blocks, x, warmup=args.warmup, repeats=args.repeats, progress=bar)
    return Measured(device=args.device_name or socket.gethostname(),
                    batch=args.batch * (seq_len if token else 1), dtype="float32", time_s=times)


def _cpu_name() -> str:
    """The CPU model name from /proc/cpuinfo, else the machine architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({platform.machine()})"
    except OSError:
        pass
    return platform.machine() or "unknown CPU"


def summary(model: Model) -> Table:
    """A table: layer, kind, forward GFLOPs, weight MB (in the model's weight format,
    :func:`~dora_rl.config.formats.weight_bytes`) and output KB per item, with the totals.

    Example:
        >>> m = Model(name="m", layers=[Layer(name="fc", kind="linear", forward_flops=2e9,
        ...                                   param_bytes=4e6, activation_bytes=4096)])
        >>> import io
        >>> out = Console(width=80, record=True, file=io.StringIO())
        >>> out.print(summary(m))
        >>> for line in out.export_text().splitlines():
        ...     if line.strip() and "─" not in line:
        ...         print(line.split())
        ['layer', 'kind', 'GFLOPs', 'weights', 'MB', 'act', 'KB']
        ['fc', 'linear', '2.000', '4.000', '4.096']
        ['total', '2.000', '4.000']
    """
    def mb(layer: Layer) -> float:
        return weight_bytes(layer.param_bytes, model.dtype_bytes, model.weight_format) / 1e6

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    for name in ("layer", "kind"):
        table.add_column(name)
    for name in ("GFLOPs", "weights MB", "act KB"):
        table.add_column(name, justify="right")
    for layer in model.layers:
        table.add_row(layer.name, layer.kind, f"{layer.forward_flops / 1e9:.3f}",
                      f"{mb(layer):.3f}", f"{layer.activation_bytes / 1e3:.3f}")
    table.add_section()
    table.add_row("total", "", f"{sum(lay.forward_flops for lay in model.layers) / 1e9:.3f}",
                  f"{sum(mb(lay) for lay in model.layers):.3f}", "")
    return table


def write_yaml(model: Model, path: Path, command: str) -> None:
    """Write ``model`` as a profile YAML file (schema field names, defaults left out)."""
    data = model.model_dump(mode="json", exclude_none=True)
    if model.module is not None:
        data["module"] = model.module.model_dump(mode="json", exclude_none=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = f"# Generated by: {command}\n"
    path.write_text(header + yaml.safe_dump(data, sort_keys=False, width=100), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    """Profile ``--model`` or ``--gguf``, print the summary and write the YAML with ``--out``."""
    args = parse_args(argv)
    if args.gguf is not None or (args.model not in MODELS and ":" in str(args.model)):
        if args.out == _BUILTIN:
            raise DoraError("--out: give a file name for the profile of a module or GGUF file")
        path = _out_path(args, "")
        model = _profile_other(args, path)
    else:
        spec = _check(args)
        path = _out_path(args, spec.name)
        model, s = profile_model(spec, batch=args.batch, seq_len=args.seq_len)
        if args.measure:
            measured = measure(spec, args, s)
            source = (f"{model.source}; measured on {_cpu_name()}, {torch.get_num_threads()} "
                      f"threads, torch {torch.__version__}")
            model = model.model_copy(update={"measured": [measured], "source": source})
    print(f"{model.name}: {len(model.layers)} layers, unit {model.unit}"
          + (f", seq_len {model.seq_len}" if model.seq_len else ""))
    Console().print(summary(model))
    if path is not None:
        cmd = " ".join(["python -m dora_rl.profiler", *(sys.argv[1:] if argv is None else argv)])
        try:
            write_yaml(model, path, cmd)
        except OSError as exc:
            raise DoraError(f"--out: cannot write {path} ({exc.strerror or exc})") from None
        print(f"wrote {path}")
    return 0


def _out_path(args: Args, name: str) -> Path | None:
    """The file ``--out`` names, checked before any work: not a directory."""
    if args.out is None:
        return None
    path = BUILTIN_DIR / f"{name}.yaml" if args.out == _BUILTIN else Path(args.out)
    if path.is_dir():
        raise DoraError(f"--out: {path} is a directory; give a file name, e.g. "
                        f"{path / (name + '.yaml')}")
    return path


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
