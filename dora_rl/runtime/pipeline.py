"""One micro-batch through a plan, device to device.

The server builds the micro-batch's :class:`~dora_rl.runtime.route.Route` (rows per device of
every stage, each hop's airtime over the current links), sends stage 0's rows to stage 0's
devices, and waits in its mailbox (:mod:`dora_rl.runtime.inbox`) for the last stage's output
rows. Between stages the workers send activations to each other
(:func:`dora_rl.runtime.agent.stage`). A device that fails raises :class:`WorkerLost` naming
it: the server's own call to it fails, a worker reports it unreachable, the runtime finds it
dead meanwhile, or the attempt times out and a probe finds it; the caller re-executes the
micro-batch on a plan without it.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable

from torch import Tensor
from torch.distributed import rpc

from dora_rl.costmodel import Plan
from dora_rl.runtime import agent, inbox
from dora_rl.runtime.emulation import Emulator
from dora_rl.runtime.route import Part, Route, build_route

_ATTEMPTS = itertools.count()
STALL_CAP = 20
"""Probes (each after twice the route's emulated time plus the RPC timeout) before an attempt
whose devices all answer is run again."""


class WorkerLost(Exception):
    """A worker failed during a call (died, left, or timed out)."""

    def __init__(self, device: int, cause: str) -> None:
        super().__init__(f"device {device}: {cause}")
        self.device = device


class Stalled(Exception):
    """An attempt timed out with every device of its route still answering."""


class Aborted(Exception):
    """The run is stopping (:func:`dora_rl.runtime.inbox.abort_all`)."""


def calibrate(names: list[str], emulator: Emulator, x: Tensor, server: str, lock_dir: str,
              calls: int = 20) -> None:
    """Measure, per device, the messaging overhead of a micro-batch's route through it: the
    server sends ``x`` to an empty stage (no layers, no emulated time) on the device, which
    sends it back through the server's mailbox, as a last stage does. The median of ``calls``
    goes into ``emulator.call_overhead_s``."""
    for d, name in enumerate(names):
        times = []
        rows = int(x.shape[0])
        for _ in range(calls):
            route = Route(next(_ATTEMPTS), server,
                          ((0, 0, (Part(d, name, 0, rows, 0.0, 0.0),)),), (), lock_dir)
            pending = inbox.open_request(route.request, rows, route.devices)
            try:
                start = time.perf_counter()
                rpc.rpc_sync(name, agent.stage, args=(route, 0, 0, 0, x), timeout=5.0)
                pending.done.wait(5.0)
                times.append(time.perf_counter() - start)
            finally:
                inbox.close_request(route.request)
        times.sort()
        emulator.call_overhead_s[d] = times[len(times) // 2]


def run_plan(plan: Plan, x: Tensor, names: list[str], emulator: Emulator, server: str,
             lock_dir: str, timeout_s: float,
             probe: Callable[[frozenset[int]], int | None]) -> Tensor:
    """Run micro-batch ``x`` through ``plan``; returns the model's output.

    Args:
        plan: The plan (device indices into ``names``).
        x: Input, items along dimension 0.
        names: RPC worker name of each device; server: the server's.
        emulator: Compute and link times (the route's figures).
        lock_dir: Folder of the shared media's lock files.
        timeout_s: Wait beyond the route's emulated time before probing its devices.
        probe: Returns a dead device among those given, or ``None``.

    Raises:
        WorkerLost: a device of the plan failed.
        Stalled: no answer in time, yet every device answers a probe.
        Aborted: the run is stopping.
    """
    route = build_route(plan, int(x.shape[0]), next(_ATTEMPTS), names, emulator, server,
                        lock_dir)
    pending = inbox.open_request(route.request, int(x.shape[0]), route.devices)
    try:
        if pending.aborted:
            raise Aborted(f"attempt {route.request}: the run is stopping")
        first = route.stages[0][2]
        calls = []
        for j, part in enumerate(first):
            rows = x[part.row0: part.row0 + part.rows]
            try:
                calls.append((part.device, rpc.rpc_async(part.name, agent.stage,
                                                         args=(route, 0, j, part.row0, rows),
                                                         timeout=timeout_s)))
            except Exception as error:  # noqa: BLE001 - RPC reports a dead peer many ways
                raise WorkerLost(part.device, str(error)) from None
        for d, fut in calls:
            try:
                fut.wait()
            except Exception as error:  # noqa: BLE001
                raise WorkerLost(d, str(error)) from None
        # a faded link or a queue may make it late: keep waiting while every device of the
        # route answers a probe (re-running it would only add load), up to a generous cap
        expected_s = route.expected_s()
        patience_s = (expected_s * 2 if math.isfinite(expected_s) else 0.0) + timeout_s
        waited_s = 0.0
        while not pending.done.wait(patience_s):
            waited_s += patience_s
            dead = probe(route.devices)
            if dead is not None:
                raise WorkerLost(dead, "no output in time, and it does not answer")
            if waited_s >= STALL_CAP * patience_s:
                raise Stalled(f"attempt {route.request}: no output within {waited_s:.1f} s "
                              "though every device answers")
        if pending.aborted:
            raise Aborted(f"attempt {route.request}: the run is stopping")
        if pending.lost is not None:
            raise WorkerLost(pending.lost, "unreachable from the previous stage")
        return pending.output()
    finally:
        inbox.close_request(route.request)
