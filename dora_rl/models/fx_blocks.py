"""Split a traceable ``torch.nn.Module`` into a chain of blocks at single-tensor cuts.

A *cut* between two data nodes of the module's graph (:mod:`dora_rl.models.fx_graph`) is valid
when exactly one value crosses it, a tensor whose first dimension is the batch: that tensor is
what a pipeline stage sends to the next. Cuts are taken where the module path changes
(``layer1.0`` -> ``layer1.1``: the unit is the child of the first ``Sequential``,
``ModuleList`` or ``ModuleDict`` on a node's path, else its path cut to the depth of the
shallowest such container, else its top-level child) or, with ``split_points``, right after each
named module. Each block is a :class:`torch.fx.GraphModule` sharing the module's parameters.

Example:
    >>> import torch
    >>> from torch import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> part = fx_partition(net, torch.zeros(2, 4))
    >>> [info.name for info in part.blocks.infos], [info.kind for info in part.blocks.infos]
    (['0', '2'], ['linear', 'head'])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, fx, nn

from dora_rl.models.block_kinds import block_kind, kv_elems_per_token, lora_params_of
from dora_rl.models.blocks import BlockInfo, Blocks
from dora_rl.models.fx_graph import (
    Graph,
    PartitionError,
    TraceError,
    analyse,
    fake_inputs,
    is_meta_query,
    needed,
    trace,
    units,
)


@dataclass(frozen=True)
class Partition:
    """A module split into blocks.

    Attributes:
        blocks: The chain; block ``i``'s output is block ``i + 1``'s input.
        recomputed: Per block, a graph module computing the floating values it recomputes that an
            earlier block already computed (their FLOPs belong to that block), or None.
        method: How the blocks were found, for the profile's ``source``.
    """

    blocks: Blocks
    recomputed: tuple[nn.Module | None, ...]
    method: str


def fx_partition(model: nn.Module, example: Tensor, *,
                 split_points: Sequence[str] | None = None, unit: str = "sample") -> Partition:
    """Split ``model`` at single-tensor cuts of its ``torch.fx`` graph.

    Blocks without parameters whose kind is ``other`` (an activation, a dropout) join the block
    before them.

    Args:
        model: The module (real or fake parameters).
        example: An input with a batch of at least 2 (to tell the batch dimension).
        split_points: Module names to cut right after, in order; None: cut where the unit
            changes (see the module docstring).
        unit: ``"token"`` to record KV-cache sizes of attention calls, else ``"sample"``.

    Raises:
        TraceError: tracing failed; PartitionError: a split point names no module or no valid cut.
    """
    g = analyse(model, example)
    if split_points is not None:
        cuts = _named_cuts(g, split_points)
        for k in range(len(cuts)):
            bad = g.bad_queries(cuts, k)
            if bad:
                raise PartitionError(f"--split-points: the block after {g.data[cuts[k]].name!r} "
                                     f"needs the shape of {bad[0].name!r}, which differs from "
                                     "its input's")
        return _build(g, cuts, unit, example)
    path_units = units(model, g.data)
    cuts, current = [], None
    for i in range(len(g.data) - 1):
        current = path_units[i] or current
        nxt = path_units[i + 1]
        if nxt is not None and current is not None and nxt != current and g.valid(i):
            cuts.append(i)
    while True:
        drop = next((k for k in range(len(cuts)) if g.bad_queries(cuts, k)), None)
        if drop is not None:
            del cuts[drop]
            continue
        part = _build(g, cuts, unit, example)
        idle = [k for k, (info, block) in enumerate(part.blocks.named_blocks())
                if k > 0 and info.kind == "other" and not any(True for _ in block.parameters())]
        if not idle:
            return part
        for k in reversed(idle):
            del cuts[k - 1]


def _named_cuts(g: Graph, names: Sequence[str]) -> list[int]:
    cuts: list[int] = []
    for name in names:
        inside = [i for i, n in enumerate(g.data) if any(
            p == name or p.startswith(name + ".")
            for p, _ in n.meta.get("nn_module_stack", {}).values())]
        if not inside:
            top = ", ".join(n for n, _ in g.gm.named_children())
            raise PartitionError(f"--split-points: no module {name!r} in the traced graph "
                                 f"(top-level: {top})")
        i = max(inside)
        if i >= len(g.data) - 1 or g.last_use[g.data[i]] >= len(g.data):
            raise PartitionError(f"--split-points: {name!r} ends the module; nothing follows it")
        if cuts and i <= cuts[-1]:
            raise PartitionError(f"--split-points: {name!r} does not come after the previous "
                                 "split point; give them in forward order")
        if not g.valid(i):
            live = g.crossing(i)
            raise PartitionError(f"--split-points: after {name!r} {len(live)} values cross "
                                 f"({', '.join(n.name for n in live)}); a cut must pass one "
                                 "batch-first tensor")
        cuts.append(i)
    return cuts


def _build(g: Graph, cuts: list[int], unit: str, example: Tensor) -> Partition:
    bounds = [-1, *cuts, len(g.data) - 1]
    modules: list[nn.Module] = []
    infos: list[BlockInfo] = []
    recomputed: list[nn.Module | None] = []
    seen: set[fx.Node] = set()
    names: set[str] = set()
    path_units = units(g.model, g.data)
    seq = int(example.shape[1]) if unit == "token" and example.dim() > 1 else 1
    for b in range(len(bounds) - 1):
        lo, hi = bounds[b] + 1, bounds[b + 1] + 1
        body = [n for n in g.data[lo:hi] if n.op != "placeholder"]
        main_in = g.data[0] if b == 0 else g.crossing(bounds[b])[0]
        last = b == len(bounds) - 2
        main_out = g.result if last else g.crossing(bounds[b + 1])[0]
        need: set[fx.Node] = set()
        for n in [*body, main_out]:
            needed(n, g.floating, need)
        order = _order(g.gm)
        block = _graph_module(g.gm, main_in, sorted(need | set(body), key=order), main_out)
        again = need & seen
        seen |= need
        recomputed.append(_recompute_module(g.gm, main_in, again) if again else None)
        name = _unique(next((u for u in path_units[lo:hi] if u), f"block{b}"), names)
        kv = kv_elems_per_token(block, body, g.meta, g.batch * seq) if unit == "token" else 0
        infos.append(BlockInfo(name, block_kind(block, body, last=last),
                               lora_params=lora_params_of(block), kv_elems_per_token=kv))
        modules.append(block)
    return Partition(Blocks(modules, infos), tuple(recomputed),
                     "torch.fx graph, cut where one tensor crosses")


def _order(gm: fx.GraphModule) -> Any:
    index = {n: i for i, n in enumerate(gm.graph.nodes)}
    return lambda n: index[n]


def _unique(name: str, taken: set[str]) -> str:
    candidate, k = name, 2
    while candidate in taken:
        candidate, k = f"{name}_{k}", k + 1
    taken.add(candidate)
    return candidate


def _graph_module(gm: fx.GraphModule, main_in: fx.Node, nodes: list[fx.Node],
                  main_out: fx.Node) -> fx.GraphModule:
    """A graph module ``x -> main_out`` running ``nodes`` with ``main_in`` replaced by ``x``."""
    graph = fx.Graph()
    x = graph.placeholder("x")
    env: dict[fx.Node, fx.Node] = {main_in: x}
    for n in nodes:
        if n in env:
            continue
        query = is_meta_query(n)

        def arg(a: fx.Node, query: bool = query, n: fx.Node = n) -> fx.Node:
            if a in env:
                return env[a]
            if query:
                return x  # the earlier tensor's shape, asked of this block's input
            raise PartitionError(f"internal: {n.name} needs {a.name} across a cut")

        env[n] = graph.node_copy(n, arg)
    graph.output(env[main_out])
    return fx.GraphModule(gm, graph)


def _recompute_module(gm: fx.GraphModule, main_in: fx.Node,
                      nodes: set[fx.Node]) -> fx.GraphModule:
    """``x -> (values...)``: the floating values in ``nodes`` a block computes again."""
    graph = fx.Graph()
    x = graph.placeholder("x")
    env: dict[fx.Node, fx.Node] = {main_in: x}
    for n in sorted(nodes, key=_order(gm)):
        env[n] = graph.node_copy(n, lambda a: env.get(a, x))
    graph.output(tuple(env[n] for n in sorted(nodes, key=_order(gm))))
    return fx.GraphModule(gm, graph)


__all__ = ["Partition", "PartitionError", "TraceError", "fake_inputs", "fx_partition", "trace"]
