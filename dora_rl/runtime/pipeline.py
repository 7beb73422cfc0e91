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
    """Per-device busy, transmit and receive seconds and bytes moved (thread safe)."""

    n_devices: int
    busy_s: list[float] = field(default_factory=list)
    tx_s: list[float] = field(default_factory=list)
    rx_s: list[float] = field(default_factory=list)
    bytes_moved: float = 0.0
    transfer_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.busy_s = [0.0] * self.n_devices
        self.tx_s = [0.0] * self.n_devices
        self.rx_s = [0.0] * self.n_devices

    def add_busy(self, device: int, seconds: float) -> None:
        with self._lock:
            self.busy_s[device] += seconds

    def add_transfer(self, sender: int, receiver: int, seconds: float, nbytes: float) -> None:
        with self._lock:
            self.tx_s[sender] += seconds
            self.rx_s[receiver] += seconds
            self.bytes_moved += nbytes
            self.transfer_s += seconds


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
        calls = []
        for i, (d, chunk, n) in enumerate(zip(group, chunks, counts, strict=True)):
            if n == 0:
                continue
            if senders and first > 0:
                src = senders[i % len(senders)]
                nbytes = emulator.activation_bytes(first - 1, n)
                seconds = emulator.send(src, d, nbytes)
                usage.add_transfer(src, d, seconds, nbytes)
            try:
                fut = rpc.rpc_async(names[d], agent.forward,
                                    args=(first, end, chunk,
                                          emulator.compute_s(d, first, end, n),
                                          emulator.sleep_budget_s(d, first, end, n)),
                                    timeout=timeout_s)
            except Exception as error:  # noqa: BLE001 - RPC reports a dead peer many ways
                raise WorkerLost(d, str(error)) from None
            calls.append((d, fut))
        outs = []
        for d, fut in calls:
            try:
                y, busy_s, _ = fut.wait()
            except Exception as error:  # noqa: BLE001
                raise WorkerLost(d, str(error)) from None
            usage.add_busy(d, busy_s)
            outs.append(y)
        x = torch.cat(outs) if len(outs) > 1 else outs[0]
        senders = [d for d, _ in calls]
    return x
