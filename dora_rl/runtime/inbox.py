"""The server's mailbox: outputs, usage reports and lost receivers sent by the workers.

Workers call these module-level functions on the server over RPC (:mod:`dora_rl.runtime.agent`):
:func:`deliver` with the last stage's output rows, :func:`account` with a stage's busy,
transmit and queue figures, :func:`report_lost` when a next-stage device cannot be reached.
The server opens a :class:`Pending` per micro-batch attempt and waits on it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from dora_rl.runtime.usage import Usage


@dataclass
class Pending:
    """One micro-batch attempt the server waits for.

    Attributes:
        rows: Rows of the output to collect; devices: the devices its route uses.
        pieces: Output rows received, by first row.
        lost: A device found unreachable on the way, if any.
        aborted: The run is stopping: nobody waits for the rows any more.
        done: Set when every row is in, a device was lost or the run is stopping.
    """

    rows: int
    devices: frozenset[int]
    pieces: dict[int, Tensor] = field(default_factory=dict)
    lost: int | None = None
    aborted: bool = False
    done: threading.Event = field(default_factory=threading.Event)

    def output(self) -> Tensor:
        """The output rows in order."""
        parts = [self.pieces[r] for r in sorted(self.pieces)]
        return torch.cat(parts) if len(parts) > 1 else parts[0]


_LOCK = threading.Lock()
_PENDING: dict[int, Pending] = {}
_USAGE: list[Usage] = []
_ABORTED = threading.Event()


def bind(usage: Usage) -> None:
    """Account the workers' reports to ``usage`` (the current run's)."""
    with _LOCK:
        _USAGE[:] = [usage]
        _ABORTED.clear()


def open_request(request: int, rows: int, devices: Iterable[int]) -> Pending:
    """Start waiting for attempt ``request`` (one opened after :func:`abort_all` is done at
    once, aborted)."""
    pending = Pending(rows, frozenset(devices))
    with _LOCK:
        if _ABORTED.is_set():
            pending.aborted = True
            pending.done.set()
        _PENDING[request] = pending
    return pending


def abort_all() -> None:
    """The run is stopping: wake every attempt waiting now or opened from now on."""
    with _LOCK:
        _ABORTED.set()
        for pending in _PENDING.values():
            pending.aborted = True
            pending.done.set()


def close_request(request: int) -> None:
    """Stop waiting for attempt ``request`` (late rows for it are dropped)."""
    with _LOCK:
        _PENDING.pop(request, None)


def deliver(request: int, row0: int, y: Tensor) -> None:
    """RPC target: output rows ``row0 ...`` of attempt ``request``."""
    with _LOCK:
        pending = _PENDING.get(request)
        if pending is None:
            return
        pending.pieces[row0] = y
        if sum(int(t.shape[0]) for t in pending.pieces.values()) >= pending.rows:
            pending.done.set()


def report_lost(request: int, device: int) -> None:
    """RPC target: a worker could not reach ``device`` with rows of attempt ``request``."""
    with _LOCK:
        pending = _PENDING.get(request)
        if pending is not None and pending.lost is None:
            pending.lost = device
            pending.done.set()


def fail_device(device: int) -> None:
    """Wake every attempt whose route uses ``device`` (it was found dead)."""
    with _LOCK:
        for pending in _PENDING.values():
            if device in pending.devices and pending.lost is None:
                pending.lost = device
                pending.done.set()


def account(report: list[tuple[Any, ...]]) -> None:
    """RPC target: a stage's figures: ``("busy", device, s)``, ``("queue", device, peak,
    left)``, ``("xfer", sender, receiver, airtime_s, bytes, wall_s)``."""
    with _LOCK:
        usage = _USAGE[0] if _USAGE else None
    if usage is None:
        return
    for entry in report:
        if entry[0] == "busy":
            usage.add_busy(entry[1], entry[2])
        elif entry[0] == "queue":
            usage.note_queue(entry[1], entry[2], entry[3])
        elif entry[0] == "xfer":
            usage.add_transfer(entry[1], entry[2], entry[3], entry[4], entry[5])
