"""The scenario's network as simpy channels: one medium per WiFi domain, a full-duplex pipe
per wired device, and the backbone between domains.

A :class:`Transfer` puts a flow's bytes on every channel it crosses at once (its parts) and is
done when the last part is: in isolation it takes the slowest of its WiFi airtime over the free
share of the medium, its wired endpoints' links and the backbone, which is the cost model's
transfer time. Under contention each part only gets its share of its channel.

How jobs share a WiFi medium: by default (``partitioned=False``, the simulator used on its
own) every job's flows share one channel per medium, weighted by the job's share, so a
lone flow takes all the free airtime. With ``partitioned=True`` (the interval model's
simulation) each job holds its own part of the medium, ``share * free airtime``, as the
interval model and the live runtime enforce a job's bandwidth level; within it the job's flows
share by their planned shares, and weights on their way (:meth:`Network.move`) only take what
the job's own traffic leaves (a weight of :data:`BACKGROUND_WEIGHT`).

Radio time (the energy model's transmit and receive time) is each device's own bytes over its
own link rate, booked when the transfer finishes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import simpy

from dora_rl.costmodel import JobTables
from dora_rl.sim.channel import FluidChannel, Part
from dora_rl.sim.plan_work import RX, TX, FlowWork

INF = math.inf
MIN_SHARE = 1e-3
"""Smallest part of a medium a job holds (as in the interval model's job view)."""
BACKGROUND_WEIGHT = 1e-3
"""Weight of a weight transfer against the job's traffic in its part of a medium."""


class Transfer:
    """One flow crossing the network; ``on_done`` runs once every part has finished."""

    __slots__ = ("parts", "pending", "on_done", "radio", "scale", "cancelled")

    def __init__(self, on_done: Callable[[Transfer], Any], radio: tuple[tuple[int, float,
                 float], ...], scale: float) -> None:
        self.parts: list[Part] = []
        self.pending = 0
        self.on_done = on_done
        self.radio = radio
        self.scale = scale
        self.cancelled = False


class Network:
    """Channels of one scenario, with link rates, cross traffic and shares of the interval.

    Args:
        env: The simpy environment.
        tables: Cost tables of any job of the scenario (device links and domains are shared).
        n_jobs: Number of jobs (airtime shares are per job).
        partitioned: Give each job its own part of every WiFi medium (see the module
            docstring).

    Attributes:
        tx_s, rx_s: Radio seconds per device (transmit, receive) since the last :meth:`take`.
    """

    def __init__(self, env: simpy.Environment, tables: JobTables, n_jobs: int,
                 partitioned: bool = False) -> None:
        lt = tables.lists
        self.env = env
        self.n_devices = tables.n_devices
        self.link = list(lt.link)
        self.domain = list(lt.domain)
        self.wifi = list(lt.wifi)
        self.backbone_index = self.n_devices
        self.inv_rate = [1.0 / r for r in self.link] + [1.0 / tables.backbone_bytes_per_s]
        self.partitioned = partitioned
        parts = n_jobs if partitioned else 1
        self.media = [[FluidChannel(env, self.inv_rate) for _ in range(parts)] if w else None
                      for w in self.wifi]
        """Per domain, its channel (one per job when partitioned), None if wired."""
        self.pipes = [(FluidChannel(env, self.inv_rate), FluidChannel(env, self.inv_rate))
                      if not self.wifi[self.domain[d]] else None for d in range(self.n_devices)]
        self.backbone = FluidChannel(env, self.inv_rate)
        self.job_share = [1.0] * n_jobs
        self.tx_s = [0.0] * self.n_devices
        self.rx_s = [0.0] * self.n_devices
        self._routes: dict[int, list[tuple[FluidChannel, tuple[tuple[int, float], ...],
                                                bool]]] = {}

    def set_state(self, link_scale: list[float], free: list[float],
                  job_share: list[float]) -> None:
        """Apply the interval's link rates, free airtime per domain and per-job shares."""
        changed = False
        for d, scale in enumerate(link_scale):
            inv = 1.0 / (self.link[d] * scale) if scale > 0.0 else INF
            if inv != self.inv_rate[d]:
                self.inv_rate[d], changed = inv, True
        self.job_share = list(job_share)  # weights of transfers that start from now on
        for w, media in enumerate(self.media):
            for j, medium in enumerate(media or ()):
                capacity = free[w] * max(job_share[j], MIN_SHARE) if self.partitioned \
                    else free[w]
                if changed or capacity != medium.capacity:
                    medium.refresh(capacity)
        if changed:
            for pair in self.pipes:
                if pair is not None:
                    pair[0].refresh()
                    pair[1].refresh()

    def send(self, flow: FlowWork, scale: float, job: int, flow_share: float,
             on_done: Callable[[Transfer], Any]) -> Transfer | None:
        """Start ``flow`` with its bytes multiplied by ``scale`` (items crossing it).

        Returns the transfer, or None when nothing crosses the network (``on_done`` is not
        called then: the caller continues at once).
        """
        if flow.empty or scale <= 0.0:
            return None
        xfer = Transfer(on_done, flow.radio, scale)
        route = self._routes.get(id(flow))  # compiled flows live as long as their job
        if route is None:
            route = self._routes[id(flow)] = self._route(flow, job)
        weight = flow_share if self.partitioned else self.job_share[job] * flow_share
        for channel, loads, shared in route:
            self._add(xfer, channel, loads, weight if shared else 1.0, scale)
        return xfer

    def medium(self, domain: int, job: int) -> FluidChannel | None:
        """The channel job ``job`` uses on ``domain`` (None: a wired domain)."""
        media = self.media[domain]
        if media is None:
            return None
        return media[job] if self.partitioned else media[0]

    def _route(self, flow: FlowWork, job: int) -> list[tuple[FluidChannel,
                                                            tuple[tuple[int, float], ...], bool]]:
        """The channels job ``job``'s ``flow`` crosses, with its bytes on each; ``True`` where
        its share applies (a WiFi medium)."""
        route: list[tuple[FluidChannel, tuple[tuple[int, float], ...], bool]] = []
        for w, loads in flow.wifi:
            medium = self.medium(w, job)
            assert medium is not None
            route.append((medium, loads, True))
        for d, direction, nbytes in flow.pipes:
            pair = self.pipes[d]
            assert pair is not None
            route.append((pair[0] if direction == TX else pair[1], ((d, nbytes),), False))
        if flow.backbone_bytes > 0.0:
            route.append((self.backbone, ((self.backbone_index, flow.backbone_bytes),), False))
        return route

    def receive(self, device: int, nbytes: float, job: int,
                on_done: Callable[[Transfer], Any]) -> Transfer | None:
        """Bring ``nbytes`` (weights) to ``device`` over its own link (down from the access
        point on WiFi, into its port on a switch); on WiFi as :meth:`move`."""
        if nbytes <= 0.0:
            return None
        xfer = Transfer(on_done, ((device, 0.0, nbytes),), 1.0)
        medium = self.medium(self.domain[device], job)
        if medium is not None:
            self._add(xfer, medium, ((device, nbytes),), self._weights_weight(job))
        else:
            pair = self.pipes[device]
            assert pair is not None
            self._add(xfer, pair[1], ((device, nbytes),), 1.0)
        return xfer

    def move(self, receiver: int, source: int, nbytes: float, job: int,
             on_done: Callable[[Transfer], Any]) -> Transfer | None:
        """Move ``nbytes`` (weights) from device ``source`` to ``receiver``, or from the
        origin (``source < 0``: down the receiver's own link, :meth:`receive`). Between two
        devices of one WiFi domain the access point relays the bytes (airtime at both rates);
        otherwise each end uses its own medium or port, and the backbone joins two domains.
        On a WiFi medium the transfer is the job's (see the module docstring)."""
        if source < 0:
            return self.receive(receiver, nbytes, job, on_done)
        if nbytes <= 0.0:
            return None
        xfer = Transfer(on_done, ((source, nbytes, 0.0), (receiver, 0.0, nbytes)), 1.0)
        weight = self._weights_weight(job)
        w_recv, w_send = self.domain[receiver], self.domain[source]
        if self.wifi[w_recv] and w_recv == w_send:
            medium = self.medium(w_recv, job)
            assert medium is not None
            self._add(xfer, medium, ((source, nbytes), (receiver, nbytes)), weight)
            return xfer
        for device, direction in ((receiver, RX), (source, TX)):
            medium = self.medium(self.domain[device], job)
            if medium is not None:
                self._add(xfer, medium, ((device, nbytes),), weight)
            else:
                pair = self.pipes[device]
                assert pair is not None
                self._add(xfer, pair[direction], ((device, nbytes),), 1.0)
        if w_recv != w_send:
            self._add(xfer, self.backbone, ((self.backbone_index, nbytes),), 1.0)
        return xfer

    def _weights_weight(self, job: int) -> float:
        return BACKGROUND_WEIGHT if self.partitioned else self.job_share[job]

    def take(self) -> tuple[list[float], list[float]]:
        """Radio seconds per device since the last call (transmit, receive); restart both."""
        out = self.tx_s, self.rx_s
        self.tx_s = [0.0] * self.n_devices
        self.rx_s = [0.0] * self.n_devices
        return out

    def cancel(self, xfer: Transfer) -> None:
        """Stop ``xfer`` without calling ``on_done`` (an endpoint left)."""
        xfer.cancelled = True
        for part in xfer.parts:
            if part.channel is not None:
                part.channel.cancel(part)

    # ------------------------------------------------------------------ internals
    def _add(self, xfer: Transfer, channel: FluidChannel, loads: tuple[tuple[int, float], ...],
             weight: float, scale: float = 1.0) -> None:
        part = Part(loads, max(weight, 1e-6), self._part_done, scale)
        part.owner = xfer
        xfer.parts.append(part)
        xfer.pending += 1
        channel.start(part)

    def _part_done(self, part: Part) -> None:
        xfer: Transfer = part.owner
        xfer.pending -= 1
        if xfer.pending or xfer.cancelled:
            return
        inv = self.inv_rate
        for d, tx, rx in xfer.radio:
            if inv[d] < INF:
                self.tx_s[d] += tx * xfer.scale * inv[d]
                self.rx_s[d] += rx * xfer.scale * inv[d]
        xfer.on_done(xfer)
