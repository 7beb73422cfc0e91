"""Shared transmission media as fluid processor sharing on a simpy clock.

A :class:`FluidChannel` is one medium: a WiFi domain's airtime, one direction of a wired
device's full-duplex link, or the backbone. Every active :class:`Part` (one transfer's demand
on this medium) progresses at ``capacity * weight / sum(weights of active parts)`` of the
medium, so a lone transfer gets all of it and concurrent transfers split it by their allocated
shares (weighted processor sharing). The split is recomputed whenever a part starts, finishes or
is cancelled, and whenever link rates, capacity or shares change.

A part's demand is kept as the *fraction of its bytes still to send*; its cost (seconds it would
take alone with the whole medium) is recomputed from the current link rates, so a fade in the
middle of a transfer slows the rest of it and not the part already sent.

Example:
    Two transfers of 0.1 s of airtime each start together on a medium with 80 % free airtime:
    each progresses at 0.4, both finish after 0.1 / 0.4 = 0.25 s.

    >>> import simpy
    >>> env = simpy.Environment()
    >>> inv_rate = [1.0 / 1e7]                         # one device at 10 MB/s
    >>> ch = FluidChannel(env, inv_rate, capacity=0.8)
    >>> done = []
    >>> for _ in range(2):
    ...     ch.start(Part(((0, 1e6),), 1.0, lambda p: done.append(env.now)))
    >>> env.run()
    >>> [round(t, 6) for t in done]
    [0.25, 0.25]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import simpy

INF = math.inf
FINISH_EPS_S = 1e-12
"""A part whose remaining time is below this is finished (floating-point slack)."""


class Part:
    """One transfer's demand on one channel.

    Args:
        loads: ``(index, bytes)`` pairs; the cost alone is ``scale * sum(bytes *
            inv_rate[index])`` (a WiFi part lists its sender's and receiver's bytes: the access
            point relays them).
        weight: Allocated share relative to the other parts on the channel (> 0).
        on_done: Called with the part when it finishes.
        scale: Multiplier on the bytes (items crossing).
    """

    __slots__ = ("loads", "scale", "weight", "on_done", "left", "cost_s", "channel", "owner")

    def __init__(self, loads: tuple[tuple[int, float], ...], weight: float,
                 on_done: Callable[[Part], Any], scale: float = 1.0) -> None:
        self.loads = loads
        self.scale = scale
        self.weight = weight
        self.on_done = on_done
        self.left = 1.0
        self.cost_s = 0.0
        self.channel: FluidChannel | None = None
        self.owner: Any = None

    def price(self, inv_rate: list[float]) -> float:
        """Seconds this part's bytes take alone on the whole medium at the given rates."""
        total = 0.0
        for index, nbytes in self.loads:
            total += nbytes * inv_rate[index]
        return total * self.scale


class FluidChannel:
    """A medium shared by weighted processor sharing (see the module docstring).

    Args:
        env: The simpy environment (its clock).
        inv_rate: Seconds per byte of every rate index (shared, updated in place by the owner,
            followed by :meth:`refresh`); ``inf`` is a dead link.
        capacity: Fraction of the medium available (1 - cross traffic on WiFi, 1 on a pipe).
    """

    __slots__ = ("env", "inv_rate", "capacity", "active", "_last", "_version")

    def __init__(self, env: simpy.Environment, inv_rate: list[float],
                 capacity: float = 1.0) -> None:
        self.env = env
        self.inv_rate = inv_rate
        self.capacity = capacity
        self.active: list[Part] = []
        self._last = 0.0
        self._version = 0

    # ------------------------------------------------------------------ public API
    def start(self, part: Part) -> None:
        """Put ``part`` on the medium now."""
        self._advance()
        part.channel = self
        part.cost_s = part.price(self.inv_rate)
        self.active.append(part)
        self._schedule()

    def cancel(self, part: Part) -> None:
        """Take ``part`` off the medium without finishing it (its sender left)."""
        if part in self.active:
            self._advance()
            self.active.remove(part)
            self._schedule()

    def refresh(self, capacity: float | None = None) -> None:
        """Re-cost every active part after a change of rates, shares or capacity."""
        self._advance()
        if capacity is not None:
            self.capacity = capacity
        for part in self.active:
            part.cost_s = part.price(self.inv_rate)
        self._schedule()

    # ------------------------------------------------------------------ internals
    def _total_weight(self) -> float:
        return sum(p.weight for p in self.active if p.cost_s < INF)

    def _advance(self) -> None:
        """Move every active part forward to the current time."""
        now = self.env.now
        dt = now - self._last
        self._last = now
        if dt <= 0.0 or not self.active:
            return
        total = self._total_weight()
        if total <= 0.0:
            return
        scale = dt * self.capacity / total
        for part in self.active:
            if 0.0 < part.cost_s < INF:
                part.left -= scale * part.weight / part.cost_s

    def _remaining_s(self, part: Part, total: float) -> float:
        if part.cost_s == INF or self.capacity <= 0.0:
            return INF
        return max(part.left, 0.0) * part.cost_s * total / (self.capacity * part.weight)

    def _schedule(self) -> None:
        self._version += 1
        active = self.active
        if not active:
            return
        if len(active) == 1:
            part = active[0]
            soonest = self._remaining_s(part, part.weight) if part.cost_s < INF else INF
        else:
            total = self._total_weight()
            soonest = min(self._remaining_s(p, total) for p in active)
        if soonest < INF:
            self.env.timeout(soonest, self._version).callbacks.append(self._fire)

    def _fire(self, event: simpy.Event) -> None:
        if event.value != self._version:
            return  # superseded by a later start, finish or refresh
        self._advance()
        if len(self.active) == 1:  # the common case: a lone transfer has finished
            done = self.active
            self.active = []
        else:
            total = self._total_weight()
            done = [p for p in self.active if self._remaining_s(p, total) <= FINISH_EPS_S]
            for part in done:
                self.active.remove(part)
        self._schedule()
        for part in done:
            part.channel = None
            part.on_done(part)
