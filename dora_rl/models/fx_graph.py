"""Read a module's ``torch.fx`` graph for splitting: which nodes carry data, which float, and
where the module path changes.

The module is traced with :mod:`torch.fx`, buffers proxied (so code like Hugging Face's rotary
embeddings traces). Its nodes fall in two groups:

- *floating* nodes hold no data of the input: attribute reads (``get_attr``), shape, dtype and
  device queries, and anything computed from those alone (position ids, rotary tables, masks).
  A block that needs one recomputes it from its own input (a query on an earlier tensor is asked
  of the block's input, which must then have the same shape, dtype and device);
- *data* nodes carry the input forward: the input itself and everything computed from it.

Each node's shape, dtype and device come from one run on fake tensors (:func:`metadata`).

Example:
    >>> from torch import nn
    >>> g = analyse(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), torch.zeros(2, 4))
    >>> [n.name for n in g.data], g.valid(1)
    (['input_1', '_0', '_1'], True)
"""

from __future__ import annotations

import builtins
import contextlib
import inspect
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, fx, nn
from torch._guards import detect_fake_mode
from torch._subclasses.fake_tensor import FakeTensorMode

from dora_rl.errors import DoraError

_META_ATTRS = frozenset({"shape", "dtype", "device", "ndim", "is_cuda"})
_META_METHODS = frozenset({"size", "dim"})
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


class PartitionError(DoraError):
    """The module cannot be split into a chain of single-tensor blocks."""


class TraceError(PartitionError):
    """``torch.fx`` cannot trace the module (the reason is the message)."""


class _Tracer(fx.Tracer):
    proxy_buffer_attributes = True


def trace(model: nn.Module) -> fx.GraphModule:
    """Trace ``model`` with buffers proxied; extra arguments with defaults are fixed to them.

    Raises:
        TraceError: naming why tracing failed, on one line.
    """
    params = list(inspect.signature(model.forward).parameters.values())
    extra = {p.name: p.default for p in params[1:]
             if p.default is not inspect.Parameter.empty}
    required = [p.name for p in params[1:] if p.default is inspect.Parameter.empty
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not params or required:
        raise PartitionError(f"forward must take one input tensor (it takes {len(params)} "
                             f"arguments; required besides the first: {', '.join(required)})")
    try:
        graph = _Tracer().trace(model, concrete_args=extra or None)
    except Exception as exc:  # noqa: BLE001 - any tracing failure is reported, not raised
        raise TraceError(one_line(exc)) from None
    return fx.GraphModule(model, graph)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def is_meta_query(n: fx.Node) -> bool:
    if n.op == "call_function" and n.target is builtins.getattr:
        return len(n.args) > 1 and n.args[1] in _META_ATTRS
    return n.op == "call_method" and n.target in _META_METHODS


def inputs(n: fx.Node) -> list[fx.Node]:
    return list(n.all_input_nodes)


def floating_nodes(gm: fx.GraphModule) -> set[fx.Node]:
    """Nodes that hold no data of the input (see the module docstring)."""
    floating: set[fx.Node] = set()
    for n in gm.graph.nodes:
        if n.op == "get_attr" or is_meta_query(n):
            floating.add(n)
        elif n.op in ("call_function", "call_method") or (
                n.op == "call_module" and not any(True for _ in
                                                  gm.get_submodule(n.target).parameters())):
            if all(a in floating for a in inputs(n)):
                floating.add(n)
    return floating


@contextlib.contextmanager
def quiet_fake() -> Iterator[None]:
    """Silence torch's log of a fake-tensor kernel that fails (a traceback on stderr): the
    failure reaches the caller as an exception, which reports it in one line."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def fake_inputs(*tensors: Tensor) -> tuple[Any, list[Tensor]]:
    """A context to run on fake tensors and ``tensors`` as fake ones: the fake mode the module
    already lives in (built under one), else a new one."""
    mode = detect_fake_mode(list(tensors))
    if mode is not None:
        return contextlib.nullcontext(), list(tensors)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    return mode, [mode.from_tensor(t) for t in tensors]


def metadata(gm: fx.GraphModule, example: Tensor) -> dict[fx.Node, Any]:
    """Each node's value on fake tensors: (shape, dtype, device) for tensors, else None."""
    out: dict[fx.Node, Any] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            value = super().run_node(n)
            out[n] = ((tuple(value.shape), value.dtype, value.device)
                      if isinstance(value, Tensor) else None)
            return value

    was_training = gm.training
    gm.eval()
    first = next(iter([*gm.parameters(), *gm.buffers()]), example)
    ctx, (x, _) = fake_inputs(example, first)
    try:
        with ctx, torch.no_grad(), quiet_fake():
            Recorder(gm).run(x)
    except Exception as exc:  # noqa: BLE001 - the user's module failed on the example input
        raise PartitionError(f"the module fails on an input of shape "
                             f"{tuple(example.shape)}: {one_line(exc)}") from None
    finally:
        gm.train(was_training)
    return out


def units(model: nn.Module, nodes: list[fx.Node]) -> list[str | None]:
    """Each node's partition unit (see the module docstring); None for root-level calls.

    Containers are found in the module tree, not on the call stack: a ``ModuleList`` is
    iterated, never called.
    """
    containers = {name for name, m in model.named_modules() if isinstance(m, _CONTAINERS)}
    paths = [next(reversed(n.meta["nn_module_stack"].values()))[0]
             if n.meta.get("nn_module_stack") else None for n in nodes]

    def in_container(path: str) -> int | None:
        parts = path.split(".")
        return next((k for k in range(len(parts)) if ".".join(parts[:k]) in containers), None)

    found = [k for p in paths if p is not None for k in [in_container(p)] if k is not None]
    depth = max(min(found, default=1), 1)
    units: list[str | None] = []
    for path in paths:
        k = in_container(path) if path is not None else None
        if path is None:
            units.append(None)
        else:
            keep = k + 1 if k is not None else depth
            units.append(".".join(path.split(".")[:keep]))
    return units


@dataclass
class Graph:
    """The traced module with what the cut search needs."""

    gm: fx.GraphModule
    model: nn.Module
    meta: dict[fx.Node, Any]
    floating: set[fx.Node]
    data: list[fx.Node]
    last_use: dict[fx.Node, int]
    result: fx.Node
    batch: int

    def crossing(self, i: int) -> list[fx.Node]:
        """Data values defined up to ``data[i]`` and used after it."""
        return [n for n in self.data[: i + 1] if self.last_use[n] > i]

    def valid(self, i: int) -> bool:
        """One batch-first tensor crosses the cut after ``data[i]``."""
        live = self.crossing(i)
        m = self.meta.get(live[0]) if len(live) == 1 else None
        return m is not None and len(m[0]) > 0 and m[0][0] == self.batch

    def bad_queries(self, cuts: list[int], k: int) -> list[fx.Node]:
        """Earlier tensors whose shape block ``k + 1`` (after ``cuts[k]``) asks of its input,
        shaped otherwise than that input."""
        start = cuts[k] + 1
        end = cuts[k + 1] + 1 if k + 1 < len(cuts) else len(self.data)
        main = self.crossing(cuts[k])[0]
        need: set[fx.Node] = set()
        for n in self.data[start:end]:
            needed(n, self.floating, need)
        early = set(self.data[:start])
        return [a for q in need if is_meta_query(q) for a in inputs(q)
                if a in early and self.meta.get(a) != self.meta.get(main)]


def analyse(model: nn.Module, example: Tensor) -> Graph:
    gm = trace(model)
    meta = metadata(gm, example)
    floating = floating_nodes(gm)
    nodes = list(gm.graph.nodes)
    result = nodes[-1].args[0]
    if not isinstance(result, fx.Node) or meta.get(result) is None:
        raise PartitionError("the module must return one tensor (it returns "
                             f"{type(result).__name__})")
    data = [n for n in nodes if n.op != "output" and n not in floating]
    pos = {n: i for i, n in enumerate(data)}
    last_use = {n: max([pos.get(u, len(data)) for u in n.users if not is_meta_query(u)],
                       default=-1) for n in data}
    return Graph(gm, model, meta, floating, data, last_use, result, int(example.shape[0]))


def needed(n: fx.Node, floating: set[fx.Node], acc: set[fx.Node]) -> None:
    for a in inputs(n):
        if a in floating and a not in acc:
            acc.add(a)
            needed(a, floating, acc)




__all__ = ["Graph", "PartitionError", "TraceError", "analyse", "fake_inputs", "inputs",
           "is_meta_query", "metadata", "needed", "one_line", "quiet_fake", "trace", "units"]
