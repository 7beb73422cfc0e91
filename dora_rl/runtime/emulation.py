"""The card's world on this host: device compute times and shaped links, time-dilated.

Every emulated duration is the cost model's figure times ``time_scale`` (1.0 runs the card's
world in real time; 2.0 runs it twice as slow, leaving room for the host's own compute).
Compute: layers ``[first, end)`` on device ``d`` take the cost model's forward seconds per item
times the items the device gets, divided by the speed of the device's power mode (its ``dvfs``
level; 1 at the nominal mode). Links: a transfer on a WiFi medium takes
``(bytes / rate_sender + bytes / rate_receiver) / ((1 - cross_traffic) * share)`` (relayed by
the access point, in the job's share of the airtime other traffic leaves free: the share its
bandwidth level asks for, :meth:`dora_rl.world.IntervalModel.shares`) and the sending worker
holds the medium for
that long (:func:`dora_rl.runtime.agent.transmit`), so concurrent transfers on one WiFi queue
behind each other (the medium's shared budget); on a switch it takes ``bytes / min(rates)``
and holds nothing. Rates follow ``link_scale``, which the runtime moves along the card's
bandwidth dynamics every control interval.
"""

from __future__ import annotations

import math
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
        speed: Per device: speed factor of its power mode (1 = nominal).
        medium_share: Per domain: the job's share of the airtime other traffic leaves.
    """

    tables: JobTables
    time_scale: float = 1.0
    link_scale: list[float] = field(default_factory=list)
    call_overhead_s: list[float] = field(default_factory=list)
    cross_traffic: list[float] = field(default_factory=list)
    speed: list[float] = field(default_factory=list)
    medium_share: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        lists = self.tables.lists
        n, w = len(lists.link), len(lists.wifi)
        self.link_scale = self.link_scale or [1.0] * n
        self.cross_traffic = self.cross_traffic or [0.0] * w
        self.call_overhead_s = self.call_overhead_s or [0.0] * n
        self.speed = self.speed or [1.0] * n
        self.medium_share = self.medium_share or [1.0] * w

    def compute_s(self, device: int, first: int, end: int, items: int) -> float:
        """Emulated seconds for ``items`` items through layers ``[first, end)`` on ``device``
        in its power mode.

        Example:
            The ``fast`` device of ``tiny`` runs the whole model in 8 ms, 16 ms at half speed.

            >>> from dora_rl.costmodel import CostModel
            >>> from dora_rl.scenarios import load
            >>> em = Emulator(CostModel(load("tiny"), 0).tables)
            >>> round(em.compute_s(2, 0, 8, 1) * 1e3, 6)
            8.0
            >>> em.speed[2] = 0.5
            >>> round(em.compute_s(2, 0, 8, 1) * 1e3, 6)
            16.0
        """
        prefix = self.tables.lists.fwd[device]
        return (prefix[end] - prefix[first]) * items * self.time_scale / self.speed[device]

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
        """Emulated seconds to move ``nbytes`` from ``sender`` to ``receiver`` over the links
        as they are now (0 if the same device; infinite while a link is down)."""
        if sender == receiver or nbytes <= 0:
            return 0.0
        return nbytes * self.links().seconds_per_byte(sender, receiver) * self.time_scale

    def links(self) -> Links:
        """The links as they are now (what the workers emulate transfers with)."""
        lists = self.tables.lists
        return Links(rate=tuple(r * s for r, s in zip(lists.link, self.link_scale, strict=True)),
                     domain=tuple(lists.domain), wifi=tuple(lists.wifi),
                     free=tuple((1.0 - c) * s for c, s in zip(self.cross_traffic,
                                                              self.medium_share, strict=True)),
                     backbone=self.tables.backbone_bytes_per_s, time_scale=self.time_scale)


@dataclass(frozen=True)
class Links:
    """The emulated links at one moment; the server sends it to every worker each control
    interval.

    Attributes:
        rate: Per device, its link's rate now (bytes per modelled second).
        domain: Per device, its contention domain; wifi: per domain, whether it is WiFi.
        free: Per domain, the airtime the job may use (what other traffic leaves, times the
            job's share).
        backbone: Rate of the link joining domains (bytes per modelled second).
        time_scale: Emulated seconds per modelled second.
    """

    rate: tuple[float, ...]
    domain: tuple[int, ...]
    wifi: tuple[bool, ...]
    free: tuple[float, ...]
    backbone: float
    time_scale: float

    def seconds_per_byte(self, sender: int, receiver: int) -> float:
        """Modelled seconds per byte from ``sender`` to ``receiver`` (infinite while either
        link is down): on one WiFi medium the access point relays, so both links' airtime
        counts, in the airtime other traffic leaves; otherwise the slower link, and across
        domains at most the backbone's rate.

        Example:
            Two WiFi devices at 100 and 50 bytes/s with 20 % cross traffic:
            (1/100 + 1/50) / 0.8 = 0.0375 s per byte.

            >>> links = Links((100.0, 50.0), (0, 0), (True,), (0.8,), 1e9, 1.0)
            >>> round(links.seconds_per_byte(0, 1), 6)
            0.0375
        """
        rate_s, rate_r = self.rate[sender], self.rate[receiver]
        if rate_s <= 0 or rate_r <= 0:
            return math.inf
        domain = self.domain[sender]
        same = domain == self.domain[receiver]
        if same and self.wifi[domain]:
            return (1.0 / rate_s + 1.0 / rate_r) / max(self.free[domain], 1e-3)
        per_byte = 1.0 / min(rate_s, rate_r)
        return per_byte if same else max(per_byte, 1.0 / self.backbone)

    def medium(self, device: int) -> int:
        """The WiFi domain a transfer from ``device`` holds, or -1 (a wired link)."""
        domain = self.domain[device]
        return domain if self.wifi[domain] else -1


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
