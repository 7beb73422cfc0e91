"""One micro-batch through a plan: stage by stage, data-parallel stages split the items.

The server drives each micro-batch: it sends stage ``k``'s input to the devices of stage ``k``
over RPC (split in proportion to their speed when the stage is data parallel), waits out the
emulated transfer from the previous stage's devices, and gathers the outputs in order. A
device that fails mid-call raises :class:`WorkerLost` naming it; the caller re-executes the
micro-batch on a plan without it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.distributed import rpc

from dora_rl.costmodel import Plan
from dora_rl.runtime import agent
from dora_rl.runtime.emulation import Emulator


class WorkerLost(Exception):
    """A worker failed during a call (died, left, or timed out)."""

    def __init__(self, device: int, cause: str) -> None:
        super().__init__(f"device {device}: {cause}")
        self.device = device


@dataclass
class Usage:
    """Per-device busy, transmit and receive seconds, calls, queue depth and bytes moved
    (thread safe; cumulative, :meth:`snapshot` copies them for per-interval deltas).

    Attributes:
        busy_s, tx_s, rx_s: Emulated compute and radio seconds per device (wall).
        calls: Stage calls completed per device.
        link_bytes, link_wall_s: Bytes each device sent or received, and the wall seconds
            those transfers took including the wait for a shared medium (measured goodput).
        queued: Stage calls outstanding at each device now (running plus waiting);
            queued_max: the most since the last snapshot.
        bytes_moved, transfer_s: Activation bytes and emulated transfer seconds in all.
    """

    n_devices: int
    busy_s: list[float] = field(default_factory=list)
    tx_s: list[float] = field(default_factory=list)
    rx_s: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    link_bytes: list[float] = field(default_factory=list)
    link_wall_s: list[float] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)
    queued_max: list[int] = field(default_factory=list)
    bytes_moved: float = 0.0
    transfer_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        n = self.n_devices
        self.busy_s, self.tx_s, self.rx_s = [0.0] * n, [0.0] * n, [0.0] * n
        self.calls, self.queued, self.queued_max = [0] * n, [0] * n, [0] * n
        self.link_bytes, self.link_wall_s = [0.0] * n, [0.0] * n

    def add_busy(self, device: int, seconds: float) -> None:
        with self._lock:
            self.busy_s[device] += seconds
            self.calls[device] += 1

    def add_transfer(self, sender: int, receiver: int, seconds: float, nbytes: float,
                     wall_s: float | None = None) -> None:
        """One transfer: ``seconds`` of airtime, ``wall_s`` from asking for the medium to
        the end (default ``seconds``)."""
        wall = seconds if wall_s is None else wall_s
        with self._lock:
            self.tx_s[sender] += seconds
            self.rx_s[receiver] += seconds
            self.bytes_moved += nbytes
            self.transfer_s += seconds
            for d in (sender, receiver):
                self.link_bytes[d] += nbytes
                self.link_wall_s[d] += wall

    def enter(self, device: int) -> None:
        """A stage call to ``device`` was sent."""
        with self._lock:
            self.queued[device] += 1
            self.queued_max[device] = max(self.queued_max[device], self.queued[device])

    def leave(self, device: int) -> None:
        """A stage call to ``device`` returned (or failed)."""
        with self._lock:
            self.queued[device] -= 1

    def snapshot(self) -> Usage:
        """A copy of the figures now; starts a new window for ``queued_max``."""
        with self._lock:
            copy = Usage(self.n_devices)
            for name in ("busy_s", "tx_s", "rx_s", "calls", "link_bytes", "link_wall_s",
                         "queued", "queued_max"):
                setattr(copy, name, list(getattr(self, name)))
            copy.bytes_moved, copy.transfer_s = self.bytes_moved, self.transfer_s
            self.queued_max = list(self.queued)
            return copy


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


def calibrate(names: list[str], emulator: Emulator, x: Tensor, calls: int = 20) -> None:
    """Measure each worker's round trip of an empty stage call (median of ``calls``) into
    ``emulator.call_overhead_s`` (an empty layer range, so no weights are needed)."""
    for d, name in enumerate(names):
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            rpc.rpc_sync(name, agent.forward, args=(0, 0, x, 0.0), timeout=5.0)
            times.append(time.perf_counter() - start)
        times.sort()
        emulator.call_overhead_s[d] = times[len(times) // 2]


def run_plan(plan: Plan, x: Tensor, names: list[str], emulator: Emulator, usage: Usage,
             timeout_s: float) -> Tensor:
    """Run micro-batch ``x`` through ``plan``; returns the model's output.

    Args:
        plan: The plan (device indices into ``names``).
        x: Input, items along dimension 0.
        names: RPC worker name of each device.
        emulator: Compute and link times.
        usage: Accumulates busy and transfer time.
        timeout_s: Timeout of each stage call.

    Raises:
        WorkerLost: a device of the plan failed.
    """
    items = int(x.shape[0])
    senders: list[int] = []
    for k, group in enumerate(plan.stage_devices):
        first, end = plan.stage_layers(k)
        speeds = [1.0 / max(emulator.compute_s(d, first, end, 1), 1e-12) for d in group]
        counts = split_items(items, speeds)
        chunks = torch.split(x, counts)
        calls: list[tuple[int, Any]] = []
        for i, (d, chunk, n) in enumerate(zip(group, chunks, counts, strict=True)):
            if n == 0:
                continue
            if senders and first > 0:
                src = senders[i % len(senders)]
                nbytes = emulator.activation_bytes(first - 1, n)
                start = time.perf_counter()
                seconds = emulator.send(src, d, nbytes)
                usage.add_transfer(src, d, seconds, nbytes, time.perf_counter() - start)
            usage.enter(d)
            try:
                fut = rpc.rpc_async(names[d], agent.forward,
                                    args=(first, end, chunk,
                                          emulator.compute_s(d, first, end, n),
                                          emulator.sleep_budget_s(d, first, end, n)),
                                    timeout=timeout_s)
            except Exception as error:  # noqa: BLE001 - RPC reports a dead peer many ways
                usage.leave(d)
                for d_sent, _ in calls:
                    usage.leave(d_sent)
                raise WorkerLost(d, str(error)) from None
            calls.append((d, fut))
        outs = []
        for i, (d, fut) in enumerate(calls):
            try:
                y, busy_s, _ = fut.wait()
            except Exception as error:  # noqa: BLE001
                for d_open, _ in calls[i:]:
                    usage.leave(d_open)
                raise WorkerLost(d, str(error)) from None
            usage.leave(d)
            usage.add_busy(d, busy_s)
            outs.append(y)
        x = torch.cat(outs) if len(outs) > 1 else outs[0]
        senders = [d for d, _ in calls]
    return x
