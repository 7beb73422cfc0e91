"""The card's world on this host: device compute times and shaped links, time-dilated.

Every emulated duration is the cost model's figure times ``time_scale`` (1.0 runs the card's
world in real time; 2.0 runs it twice as slow, leaving room for the host's own compute).
Compute: layers ``[first, end)`` on device ``d`` take the cost model's forward seconds per item
times the items the device gets. Links: a transfer on a WiFi medium takes
``(bytes / rate_sender + bytes / rate_receiver) / (1 - cross_traffic)`` (relayed by the access
point, in the airtime other traffic leaves free) and the sending worker holds the medium for
that long (:func:`dora_rl.runtime.agent.transmit`), so concurrent transfers on one WiFi queue
behind each other (the medium's shared budget); on a switch it takes ``bytes / min(rates)``
and holds nothing. Rates follow ``link_scale``, which the runtime moves along the card's
bandwidth dynamics every control interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dora_rl.costmodel.tables import JobTables


@dataclass
class Emulator:
    """Compute and link times of the card's devices for one job.

    Args:
        tables: The job's cost tables (per-layer times, activation bytes, link rates).
        time_scale: Emulated seconds per modelled second.
        link_scale: Current multiplier of each device's link rate (1 = the card's rate).
        call_overhead_s: Per device: measured round trip of an empty call to its worker.
        cross_traffic: Per domain: airtime taken by other traffic.
    """

    tables: JobTables
    time_scale: float = 1.0
    link_scale: list[float] = field(default_factory=list)
    call_overhead_s: list[float] = field(default_factory=list)
    cross_traffic: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        lists = self.tables.lists
        if not self.link_scale:
            self.link_scale = [1.0] * len(lists.link)
        if not self.cross_traffic:
            self.cross_traffic = [0.0] * len(lists.wifi)
        if not self.call_overhead_s:
            self.call_overhead_s = [0.0] * len(lists.link)

    def compute_s(self, device: int, first: int, end: int, items: int) -> float:
        """Emulated seconds for ``items`` items through layers ``[first, end)`` on ``device``."""
        prefix = self.tables.lists.fwd[device]
        return (prefix[end] - prefix[first]) * items * self.time_scale

    def sleep_budget_s(self, device: int, first: int, end: int, items: int,
                       trips: float = 1.0) -> float:
        """What a worker should stretch a call to: the emulated compute time less ``trips``
        times the measured round-trip overhead of a call to that worker (loopback RPC,
        serialisation), so that the route as the server sees it lasts the emulated time."""
        return max(self.compute_s(device, first, end, items)
                   - trips * self.call_overhead_s[device], 0.0)

    def activation_bytes(self, layer: int, items: int) -> float:
        """Bytes of layer ``layer``'s output for ``items`` items."""
        return self.tables.lists.act[layer] * items

    def transfer_s(self, sender: int, receiver: int, nbytes: float) -> float:
        """Emulated seconds to move ``nbytes`` from ``sender`` to ``receiver`` (0 if same)."""
        if sender == receiver or nbytes <= 0:
            return 0.0
        lists = self.tables.lists
        rate_s = lists.link[sender] * self.link_scale[sender]
        rate_r = lists.link[receiver] * self.link_scale[receiver]
        if rate_s <= 0 or rate_r <= 0:
            return float("inf")
        same = lists.domain[sender] == lists.domain[receiver]
        if same and lists.wifi[lists.domain[sender]]:
            free = max(1.0 - self.cross_traffic[lists.domain[sender]], 1e-3)
            seconds = (nbytes / rate_s + nbytes / rate_r) / free
        else:
            seconds = nbytes / min(rate_s, rate_r)
            if not same:
                seconds = max(seconds, nbytes / self.tables.backbone_bytes_per_s)
        return seconds * self.time_scale


AUTO_MARGIN = 1.5
"""Head room of an automatic time scale: the host also runs the other workers and the server."""


def auto_time_scale(host_s_per_item: float, fastest_s_per_item: float) -> float:
    """The time scale that maps the card's fastest device to this host's speed (with
    :data:`AUTO_MARGIN`), never below 1.

    Example:
        >>> round(auto_time_scale(0.3, 0.005), 6), auto_time_scale(0.0001, 0.008)
        (90.0, 1.0)
    """
    if not fastest_s_per_item > 0:
        return 1.0
    return max(1.0, AUTO_MARGIN * host_s_per_item / fastest_s_per_item)


def host_seconds(run: Callable[[], object], repeats: int = 3) -> float:
    """Median wall seconds of ``run()`` over ``repeats`` calls, after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
