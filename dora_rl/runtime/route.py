"""The route of one micro-batch through a plan, as the workers follow it device to device.

The server builds a :class:`Route` per attempt of a micro-batch and sends stage 0's rows to
stage 0's devices; from there each device sends the rows of its output that the next stage's
devices need straight to them, and the last stage's devices send theirs to the server. A
data-parallel stage owns consecutive rows of the micro-batch, in proportion to its devices'
speed (:func:`split_items`), so a transfer between two stages carries exactly the rows the
sender and the receiver share. The route also carries what the worker needs to emulate the
card's world: each part's compute time and each hop's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from dora_rl.costmodel import Plan
from dora_rl.runtime.emulation import Emulator


@dataclass(frozen=True)
class Part:
    """One device's share of one stage.

    Attributes:
        device: Device index (card order); name: its RPC worker name.
        row0, rows: The rows of the micro-batch it computes.
        compute_s: Emulated compute seconds (the device takes no other call meanwhile).
        reply_s: When it passes its output on, less the measured messaging overhead so that
            the whole route lasts the emulated time.
    """

    device: int
    name: str
    row0: int
    rows: int
    compute_s: float
    reply_s: float


@dataclass(frozen=True)
class Hop:
    """Rows moving between two devices of consecutive stages.

    Attributes:
        stage: The receiving stage; sender, receiver: device indices.
        row0, rows: The rows carried.
        nbytes: Their activation bytes; seconds: emulated airtime over the links as they are
            when the route is built (the workers follow the links as they change).
    """

    stage: int
    sender: int
    receiver: int
    row0: int
    rows: int
    nbytes: float
    seconds: float


@dataclass(frozen=True)
class Route:
    """Everything the workers need to run one micro-batch attempt without the server.

    Attributes:
        request: Attempt id (unique in the run); server: the server's RPC name.
        stages: Per stage ``(first layer, end layer, parts)``.
        hops: Every transfer between consecutive stages.
        lock_dir: Folder of the media's lock files (shared by workers on one host).
    """

    request: int
    server: str
    stages: tuple[tuple[int, int, tuple[Part, ...]], ...]
    hops: tuple[Hop, ...]
    lock_dir: str

    @property
    def devices(self) -> frozenset[int]:
        """Devices the route uses."""
        return frozenset(p.device for _, _, parts in self.stages for p in parts)

    def hops_from(self, stage: int, sender: int) -> list[tuple[int, Hop]]:
        """The hops ``sender`` (in ``stage``) starts, with the receiving part's index."""
        if stage + 1 >= len(self.stages):
            return []
        parts = self.stages[stage + 1][2]
        index = {p.device: j for j, p in enumerate(parts)}
        return [(index[h.receiver], h) for h in self.hops
                if h.stage == stage + 1 and h.sender == sender]

    def expected_s(self) -> float:
        """Emulated seconds of the route with nothing else running, over the links as they
        were when it was built (for time-outs; infinite if a link was down)."""
        compute = sum(max(p.compute_s for p in parts) for _, _, parts in self.stages)
        return compute + sum(h.seconds for h in self.hops)


def split_items(items: int, speeds: list[float]) -> list[int]:
    """Items per device of a data-parallel stage, in proportion to speed (largest remainder).

    Example:
        >>> split_items(5, [1.0, 1.0]), split_items(4, [1.0, 3.0]), split_items(1, [2.0, 1.0])
        ([3, 2], [1, 3], [1, 0])
    """
    total = sum(speeds)
    exact = [items * s / total for s in speeds]
    counts = [int(e) for e in exact]
    order = sorted(range(len(speeds)), key=lambda i: (counts[i] - exact[i], -speeds[i]))
    for i in order[: items - sum(counts)]:
        counts[i] += 1
    return counts


def build_route(plan: Plan, items: int, request: int, names: list[str], emulator: Emulator,
                server: str, lock_dir: str) -> Route:
    """The route of an ``items``-row micro-batch through ``plan`` over the current links.

    Example:
        >>> from dora_rl.costmodel import CostModel
        >>> from dora_rl.scenarios import load
        >>> em = Emulator(CostModel(load("tiny"), 0).tables)
        >>> plan = Plan(stage_end=(4, 8), stage_devices=((0, 1), (2,)))
        >>> r = build_route(plan, 4, 7, ["slow", "mid", "fast"], em, "server", "/tmp")
        >>> [(p.name, p.row0, p.rows) for p in r.stages[0][2]]
        [('slow', 0, 1), ('mid', 1, 3)]
        >>> [(h.sender, h.receiver, h.row0, h.rows) for h in r.hops]
        [(0, 2, 0, 1), (1, 2, 1, 3)]
    """
    stages = []
    last = len(plan.stage_devices) - 1
    for k, group in enumerate(plan.stage_devices):
        first, end = plan.stage_layers(k)
        speeds = [1.0 / max(emulator.compute_s(d, first, end, 1), 1e-12) for d in group]
        row0, parts = 0, []
        for d, n in zip(group, split_items(items, speeds), strict=True):
            if n > 0:  # a device with no rows takes no part
                # messaging overhead to discount: half a round trip in, and on the last stage
                # half a round trip out to the server
                trips = 1.0 if k == last else 0.5
                parts.append(Part(d, names[d], row0, n, emulator.compute_s(d, first, end, n),
                                  emulator.sleep_budget_s(d, first, end, n, trips)))
            row0 += n
        stages.append((first, end, tuple(parts)))
    hops = []
    for k in range(1, len(stages)):
        first = stages[k][0]
        for src in stages[k - 1][2]:
            for dst in stages[k][2]:
                lo = max(src.row0, dst.row0)
                hi = min(src.row0 + src.rows, dst.row0 + dst.rows)
                if lo < hi:
                    nbytes = emulator.activation_bytes(first - 1, hi - lo)
                    hops.append(Hop(k, src.device, dst.device, lo, hi - lo, nbytes,
                                    emulator.transfer_s(src.device, dst.device, nbytes)))
    return Route(request, server, tuple(stages), tuple(hops), lock_dir)
