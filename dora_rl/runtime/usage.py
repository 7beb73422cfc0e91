"""What the devices did, as the server accounts it: busy, radio and queue figures."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Usage:
    """Per-device busy, transmit and receive seconds, calls, queue depth and bytes moved
    (thread safe; cumulative, :meth:`snapshot` copies them for per-interval deltas).

    Attributes:
        busy_s, tx_s, rx_s: Emulated compute and radio seconds per device (wall).
        calls: Stage calls completed per device.
        link_bytes, link_wall_s: Bytes each device sent or received, and the wall seconds
            those transfers took including the wait for a shared medium (measured goodput).
        queued: Stage calls at each device (running plus waiting) when it last reported;
            queued_max: the most since the last snapshot.
        bytes_moved, transfer_s: Activation bytes and their emulated airtime in all.
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
                     wall_s: float | None = None, activations: bool = True) -> None:
        """One transfer: ``seconds`` of airtime, ``wall_s`` from asking for the medium to
        the end (default ``seconds``); ``activations=False`` for weights moving to a new
        owner (radio time and link bytes, not the activation totals)."""
        wall = seconds if wall_s is None else wall_s
        with self._lock:
            self.tx_s[sender] += seconds
            self.rx_s[receiver] += seconds
            if activations:
                self.bytes_moved += nbytes
                self.transfer_s += seconds
            for d in (sender, receiver):
                self.link_bytes[d] += nbytes
                self.link_wall_s[d] += wall

    def note_queue(self, device: int, peak: int, now: int) -> None:
        """A device's report: ``peak`` stage calls at it when the last one arrived, ``now``
        when it finished."""
        with self._lock:
            self.queued[device] = now
            self.queued_max[device] = max(self.queued_max[device], peak)

    def forget(self, device: int) -> None:
        """A lost device holds no calls any more."""
        with self._lock:
            self.queued[device] = 0

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
