"""Where a job's weights are: the layers each device holds, and weights on their way.

A device keeps the layers it has held while its memory allows (least recently used first out),
so switching back to a plan it served before moves nothing. A device gaining layers loads them
from its local storage when it has one (``storage`` in the card or catalog), otherwise from the
nearest device holding them over the network, sharing the medium with the job's traffic.
Layer sets are bit masks (bit ``l`` = layer ``l``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from dora_rl.costmodel import Plan
from dora_rl.costmodel.formulas import airtime_s
from dora_rl.world.devices import DeviceFacts

STORAGE = -1
"""Source of a transfer read from the receiver's own storage."""
ORIGIN = -2
"""Source of a transfer no device holds: fetched over the receiver's own link."""

Resident = tuple[tuple[tuple[int, int, int], ...], ...]
"""Per device, ``(job, layer mask, last step used)`` entries of weights kept but not in use."""


@dataclass(frozen=True)
class Transfer:
    """Weights one device still has to receive for a switch."""

    receiver: int
    source: int
    """A device index, :data:`STORAGE` or :data:`ORIGIN`."""
    bytes_left: float


@functools.lru_cache(maxsize=8192)
def plan_masks(plan: Plan | None) -> dict[int, int]:
    """The layers each device holds under ``plan`` (a bit mask per device; shared: read
    only).

    Example:
        >>> plan_masks(Plan(stage_end=(2, 4), stage_devices=((0,), (1, 2))))
        {0: 3, 1: 12, 2: 12}
    """
    if plan is None:
        return {}
    out: dict[int, int] = {}
    for k, group in enumerate(plan.stage_devices):
        first, end = plan.stage_layers(k)
        mask = ((1 << end) - 1) ^ ((1 << first) - 1)
        for d in group:
            out[d] = mask
    return out


def mask_bytes(layer_bytes: Sequence[float], mask: int) -> float:
    """Bytes of the layers in ``mask``.

    Example:
        >>> mask_bytes([1.0, 2.0, 4.0], 0b101)
        5.0
    """
    total, layer = 0.0, 0
    while mask:
        if mask & 1:
            total += layer_bytes[layer]
        mask >>= 1
        layer += 1
    return total


def weight_bytes(layer_bytes: Sequence[float], old: Plan | None, new: Plan) -> dict[int, float]:
    """Bytes of weights each device of ``new`` lacks when switching from ``old`` (nothing
    kept besides ``old``'s layers): the simulator sends these over its network.

    Example:
        >>> weight_bytes([3.0, 4.0], Plan.single(0, 2),
        ...              Plan(stage_end=(1, 2), stage_devices=((0,), (1,))))
        {1: 4.0}
    """
    now = plan_masks(old)
    out = {}
    for d, mask in sorted(plan_masks(new).items()):
        nbytes = mask_bytes(layer_bytes, mask & ~now.get(d, 0))
        if nbytes > 0:
            out[d] = nbytes
    return out


def held_mask(resident: Resident, device: int, job: int) -> int:
    """Layers of ``job`` kept on ``device`` (not counting the plan it serves now)."""
    mask = 0
    for j, m, _ in resident[device]:
        if j == job:
            mask |= m
    return mask


def gained(layer_bytes: Sequence[float], job: int, serving: Plan | None, target: Plan,
           resident: Resident, devices: Sequence[DeviceFacts]) -> tuple[Transfer, ...]:
    """What switching ``job`` from ``serving`` to ``target`` must move: per device of the
    target the bytes of layers it neither serves nor keeps, from its storage, else from a
    device holding them (a wired one first), else from the origin.

    Example:
        >>> from dora_rl.world.devices import DeviceFacts
        >>> dev = DeviceFacts(1.0, 2.0, 2.0, (5.0,), None, 0.0, 0.0, False, None, 1e8, True, 0)
        >>> a, b = Plan.single(0, 2), Plan(stage_end=(1, 2), stage_devices=((0,), (1,)))
        >>> gained([3.0, 4.0], 0, a, b, ((), ()), [dev, dev])
        (Transfer(receiver=1, source=0, bytes_left=4.0),)
        >>> gained([3.0, 4.0], 0, b, a, ((), ()), [dev, dev])  # device 0 keeps layer 0
        (Transfer(receiver=0, source=1, bytes_left=4.0),)
    """
    now = plan_masks(serving)
    out = []
    for d, mask in sorted(plan_masks(target).items()):
        missing = mask & ~(now.get(d, 0) | held_mask(resident, d, job))
        if not missing:
            continue
        nbytes = mask_bytes(layer_bytes, missing)
        if nbytes <= 0:
            continue
        source = ORIGIN
        if devices[d].storage_bytes_per_s is not None:
            source = STORAGE
        else:
            holders = [e for e, m in now.items() if e != d and m & missing]
            holders += [e for e in range(len(resident))
                        if e != d and e not in holders and held_mask(resident, e, job) & missing]
            if holders:
                source = min(holders, key=lambda e: (devices[e].wifi, e))
        out.append(Transfer(d, source, nbytes))
    return tuple(out)


@dataclass(frozen=True)
class Progress:
    """One interval of weight transfers: what is left, and each device's radio seconds."""

    left: tuple[Transfer, ...]
    tx_s: dict[int, float]
    rx_s: dict[int, float]


def advance(pending: Sequence[Transfer], devices: Sequence[DeviceFacts],
            link_scale: Sequence[float], airtime_fraction: Sequence[float],
            interval_s: float) -> Progress:
    """Move ``pending`` weights for one interval.

    Storage reads go at the storage's rate. Over WiFi a transfer relayed through the access
    point takes :func:`~dora_rl.costmodel.formulas.airtime_s` per byte, out of the airtime
    the job may give it on that medium (``airtime_fraction`` per domain: its share of the free
    airtime less what its own traffic uses), transfers served in order; wired hops go at the
    slower end's rate. A link at rate 0 (a fade) moves nothing: the transfer waits.

    Example:
        100 MB from a wired holder to a WiFi device at 100 MB/s with half the airtime: 1 s
        moves 50 MB.

        >>> from dora_rl.world.devices import DeviceFacts
        >>> wired = DeviceFacts(1.0, 2.0, 2.0, (5.0,), None, 0.0, 0.0, False, None, 1e8, False, 1)
        >>> radio = DeviceFacts(1.0, 2.0, 2.0, (5.0,), None, 0.0, 0.0, False, None, 1e8, True, 0)
        >>> p = advance([Transfer(1, 0, 1e8)], [wired, radio], [1.0, 1.0], [0.5, 1.0], 1.0)
        >>> p.left[0].bytes_left, p.rx_s
        (50000000.0, {1: 0.5})
    """
    budget = [interval_s * a for a in airtime_fraction]  # airtime seconds left per domain
    left: list[Transfer] = []
    tx: dict[int, float] = {}
    rx: dict[int, float] = {}
    for t in pending:
        recv = devices[t.receiver]
        r_recv = recv.link_bytes_per_s * link_scale[t.receiver]
        if t.source == STORAGE:
            rate = recv.storage_bytes_per_s or 0.0
            moved = min(t.bytes_left, rate * interval_s)
        else:
            send = devices[t.source] if t.source >= 0 else None
            r_send = send.link_bytes_per_s * link_scale[t.source] if send is not None else None
            moved = _network_bytes(t, recv, send, r_recv, r_send, budget, interval_s)
            if moved > 0:  # both ends' radios or NICs are busy for their own link's time
                rx[t.receiver] = rx.get(t.receiver, 0.0) + moved / r_recv
                if send is not None and r_send:
                    tx[t.source] = tx.get(t.source, 0.0) + moved / r_send
        rest = t.bytes_left - moved
        if rest > 1e-9 * t.bytes_left and rest > 0.5:
            left.append(Transfer(t.receiver, t.source, rest))
    return Progress(tuple(left), tx, rx)


def _network_bytes(t: Transfer, recv: DeviceFacts, send: DeviceFacts | None, r_recv: float,
                   r_send: float | None, budget: list[float], interval_s: float) -> float:
    """Bytes of ``t`` moved this interval over the network (``budget``: airtime left per
    domain, consumed)."""
    if not r_recv > 0 or (r_send is not None and not r_send > 0):
        return 0.0  # a faded end: the transfer waits
    per_byte_air: dict[int, float] = {}
    wired_rate = []
    if recv.wifi:
        per_byte_air[recv.domain] = airtime_s(1.0, r_recv, 1e300) if send is None else 0.0
    else:
        wired_rate.append(r_recv)
    if send is not None and r_send is not None:
        if send.wifi and recv.wifi and send.domain == recv.domain:
            per_byte_air[recv.domain] = airtime_s(1.0, r_send, r_recv)  # relayed by the AP
        else:
            if recv.wifi:
                per_byte_air[recv.domain] = airtime_s(1.0, r_recv, 1e300)
            if send.wifi:
                per_byte_air[send.domain] = per_byte_air.get(send.domain, 0.0) + \
                    airtime_s(1.0, r_send, 1e300)
            else:
                wired_rate.append(r_send)
    moved = t.bytes_left
    for w, air in per_byte_air.items():
        if air > 0:
            moved = min(moved, budget[w] / air)
    for rate in wired_rate:
        moved = min(moved, rate * interval_s)
    moved = max(moved, 0.0)
    for w, air in per_byte_air.items():
        budget[w] -= moved * air
    return moved


def keep(resident: Resident, job: int, old: Plan | None, new: Plan | None, step: int,
         budget_bytes: Sequence[float], layer_bytes: Sequence[Sequence[float]]) -> Resident:
    """Residency after ``job`` cuts over from ``old`` to ``new`` at ``step``: the layers each
    device stops serving are kept (marked used at ``step``), layers it now serves leave the
    kept set, and each device drops least recently used entries until what it keeps fits
    ``budget_bytes`` (its memory less what the serving plans need). ``layer_bytes[j]`` are
    job ``j``'s weight bytes per layer.

    Example:
        >>> r = keep(((), ()), 0, Plan.single(0, 2), Plan.single(1, 2), 5, [10.0, 10.0],
        ...          [[3.0, 4.0]])
        >>> r
        (((0, 3, 5),), ())
        >>> keep(r, 0, Plan.single(1, 2), Plan.single(0, 2), 6, [10.0, 10.0], [[3.0, 4.0]])
        ((), ((0, 3, 6),))
        >>> keep(r, 0, None, None, 7, [5.0, 10.0], [[3.0, 4.0]])  # 7 bytes kept > 5: dropped
        ((), ())
    """
    before, after = plan_masks(old), plan_masks(new)
    out = []
    for d, entries in enumerate(resident):
        kept = []
        for j, m, used in entries:
            if j == job:
                m &= ~after.get(d, 0)
            if m:
                kept.append((j, m, used))
        freed = before.get(d, 0) & ~after.get(d, 0)
        if freed:
            merged = [e for e in kept if e[0] == job]
            mask = freed | (merged[0][1] if merged else 0)
            kept = [e for e in kept if e[0] != job] + [(job, mask, step)]
        kept.sort(key=lambda e: e[2])
        while kept and sum(mask_bytes(layer_bytes[j], m) for j, m, _ in kept) > budget_bytes[d]:
            kept.pop(0)
        out.append(tuple(kept))
    return tuple(out)


__all__ = ["ORIGIN", "STORAGE", "Progress", "Resident", "Transfer", "advance", "gained",
           "held_mask", "keep", "mask_bytes", "plan_masks", "weight_bytes"]
