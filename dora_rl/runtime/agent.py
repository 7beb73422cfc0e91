"""What runs inside a worker process: its layers, and the functions called on it over RPC.

The server and the other workers call these module-level functions with
``torch.distributed.rpc``; each worker process holds one device's layers in :data:`_HELD`. A
device runs one micro-batch at a time (:data:`_BUSY`) and stays busy for the emulated compute
time of each call: the real forward pass runs, the worker sleeps until its reply time, and the
next call waits until the device is free (:data:`_FREE_AT`).

Micro-batches travel device to device (:func:`stage`): a device collects the rows of its
input from the previous stage's devices, computes, and sends each next-stage device the rows
it needs (moving them over the emulated links, :func:`send_bytes`), or the server its
output. A courier thread pool does the sending, so the RPC thread is free for the
next call, and tells the server when a receiver cannot be reached; the device's busy,
transmit and queue figures go to the server with each stage.
"""

from __future__ import annotations

import fcntl
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributed import rpc

from dora_rl.runtime import inbox
from dora_rl.runtime.emulation import Links
from dora_rl.runtime.layers import LayerSpec, build_layers, run_layers
from dora_rl.runtime.route import Hop, Route

_HELD: dict[int, nn.Module] = {}
_SPECS: dict[int, LayerSpec] = {}
_BUSY = threading.Lock()
_STOP = threading.Event()
_FREE_AT = 0.0
_DEPTH = [0]
"""Stage calls at this device now (computing or waiting for it)."""
_DEPTH_LOCK = threading.Lock()
_PIECES: dict[tuple[int, int, int], tuple[float, list[tuple[int, Tensor]]]] = {}
"""Input rows received so far per (request, stage, part), with the time of the first."""
_PIECES_LOCK = threading.Lock()
STALE_S = 60.0
"""Rows of an attempt still incomplete after this long are dropped (it was abandoned)."""
_COURIER = ThreadPoolExecutor(16, thread_name_prefix="courier")
_MEDIA: dict[str, int] = {}
_THREAD_MEDIA: dict[int, threading.Lock] = {}
_LINKS: list[Links] = []
"""The links as the server last sent them (empty: no emulated transfer time)."""
_LINKS_CHANGED = threading.Condition()
DOWN_POLL_S = 0.5
"""How often a transfer over a link that is down looks again (besides each update)."""
_MEDIA_LOCK = threading.Lock()


def load_weights(specs: list[LayerSpec], weights: list[dict[str, Tensor]]) -> int:
    """Build the given layers and load their weights (sent by the server or by the device
    that holds them); returns the number of layers now held."""
    modules = build_layers(specs)
    for spec, state in zip(specs, weights, strict=True):
        modules[spec.index].load_state_dict(state)
        _SPECS[spec.index] = spec
    _HELD.update(modules)
    return len(_HELD)


def push_weights(layers: list[int], to: str, lock_dir: str, sender: int, receiver: int,
                 nbytes: float) -> tuple[float, float]:
    """Send this device's (``sender``'s) weights of ``layers`` to worker ``to`` (device
    ``receiver``): the emulated transfer of ``nbytes`` (:func:`send_bytes`), then load them
    there. Returns the transfer's airtime and wall seconds."""
    missing = [i for i in layers if i not in _HELD]
    if missing:
        raise RuntimeError(f"worker {os.getpid()} holds no weights for layers {missing}")
    specs = [_SPECS[i] for i in layers]
    states = [_HELD[i].state_dict() for i in layers]
    airtime, wall = send_bytes(lock_dir, sender, receiver, nbytes)
    rpc.rpc_sync(to, load_weights, args=(specs, states))
    return airtime, wall


def forward(first: int, end: int, x: Tensor, compute_s: float,
            reply_s: float | None = None) -> tuple[Tensor, float, float]:
    """Run layers ``[first, end)`` on ``x``; the device stays busy for ``compute_s`` seconds.

    Args:
        first, end: Layer range.
        x: Input.
        compute_s: Emulated compute time: the device takes no other call for this long.
        reply_s: When to return, from the start (default ``compute_s``); set shorter by the
            messaging overhead so that the caller sees ``compute_s``.

    Returns:
        The output, the busy time (seconds) and the real compute time (seconds).
    """
    global _FREE_AT
    with _BUSY:
        wait = _FREE_AT - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        start = time.perf_counter()
        missing = [i for i in range(first, end) if i not in _HELD]
        if missing:
            raise RuntimeError(f"worker {os.getpid()} holds no weights for layers {missing}")
        y = run_layers(_HELD, first, end, x)
        real_s = time.perf_counter() - start
        reply = compute_s if reply_s is None else min(reply_s, compute_s)
        if reply > real_s:
            time.sleep(reply - real_s)
        _FREE_AT = start + max(compute_s, real_s)
        return y.contiguous(), max(compute_s, real_s), real_s


def ping() -> int:
    """Heartbeat: the worker's process id."""
    return os.getpid()


def stop() -> None:
    """Ask the worker to shut down."""
    _STOP.set()


def wait_for_stop(parent_pid: int | None, poll_s: float = 0.2) -> None:
    """Block until :func:`stop` is called or the parent process (if given) is gone."""
    while not _STOP.wait(poll_s):
        if parent_pid is not None and os.getppid() != parent_pid:
            return


def stage(route: Route, k: int, j: int, row0: int, x: Tensor) -> None:
    """Rows ``row0 ...`` of stage ``k``'s input for part ``j`` of ``route``. Once all of the
    part's rows are in, computes them and hands the output to the courier."""
    first, end, parts = route.stages[k]
    part = parts[j]
    key = (route.request, k, j)
    now = time.monotonic()
    with _PIECES_LOCK:
        for old in [q for q, (t, _) in _PIECES.items() if now - t > STALE_S]:
            del _PIECES[old]
        pieces = _PIECES.setdefault(key, (now, []))[1]
        pieces.append((row0, x))
        if sum(int(t.shape[0]) for _, t in pieces) < part.rows:
            return
        del _PIECES[key]
    pieces.sort(key=lambda piece: piece[0])
    x = torch.cat([t for _, t in pieces]) if len(pieces) > 1 else pieces[0][1]
    with _DEPTH_LOCK:
        _DEPTH[0] += 1
        peak = _DEPTH[0]
    try:
        y, busy_s, _ = forward(first, end, x, part.compute_s, part.reply_s)
    finally:
        with _DEPTH_LOCK:
            _DEPTH[0] -= 1
            left = _DEPTH[0]
    report: list[tuple[Any, ...]] = [("busy", part.device, busy_s), ("queue", part.device, peak,
                                                                       left)]
    hops = route.hops_from(k, part.device)
    if not hops:  # the last stage: output rows to the server, then the figures
        try:
            rpc.rpc_async(route.server, inbox.deliver, args=(route.request, part.row0, y))
            rpc.rpc_async(route.server, inbox.account, args=(report,))
        except Exception:  # noqa: BLE001, S110 - the server is gone: nothing left to tell
            pass
    for n, (jn, hop) in enumerate(hops):
        piece = y[hop.row0 - part.row0: hop.row0 - part.row0 + hop.rows].contiguous()
        _COURIER.submit(_send, route, jn, hop, piece, report if n == len(hops) - 1 else [])


def _send(route: Route, j: int, hop: Hop, piece: Tensor, report: list[tuple[Any, ...]]) -> None:
    """Move the hop's rows over the emulated link, pass them on, and report (or report the
    receiver lost)."""
    airtime, wall = send_bytes(route.lock_dir, hop.sender, hop.receiver, hop.nbytes)
    receiver = route.stages[hop.stage][2][j]
    try:
        fut = rpc.rpc_async(receiver.name, stage, args=(route, hop.stage, j, hop.row0, piece))
        report = [*report, ("xfer", hop.sender, hop.receiver, airtime, hop.nbytes, wall)]
        rpc.rpc_async(route.server, inbox.account, args=(report,))
        fut.wait()
    except Exception:  # noqa: BLE001 - RPC reports a dead peer many ways
        _tell_server(route, receiver.device)


def _tell_server(route: Route, device: int) -> None:
    try:
        rpc.rpc_async(route.server, inbox.report_lost, args=(route.request, device)).wait()
    except Exception:  # noqa: BLE001, S110 - the server is gone: nothing left to tell
        pass


def set_links(links: Links) -> None:
    """The links as they are now (the server sends them every control interval)."""
    with _LINKS_CHANGED:
        _LINKS[:] = [links]
        _LINKS_CHANGED.notify_all()


def send_bytes(lock_dir: str, sender: int, receiver: int, nbytes: float) -> tuple[float, float]:
    """Emulate moving ``nbytes`` from ``sender`` to ``receiver``: progress at the links'
    current rate, re-read whenever the server moves them on, and none while a link is down;
    on WiFi, holding the medium (a lock file that every worker on this host shares) so that
    transfers on one medium take turns. Returns the airtime and the wall seconds (the latter
    including the wait for the medium), both in this host's time."""
    start = time.perf_counter()
    airtime, remaining = 0.0, nbytes
    with _LINKS_CHANGED:
        medium = _LINKS[0].medium(sender) if _LINKS else -1
    fd = _medium_fd(lock_dir, medium) if medium >= 0 else None
    if fd is not None:
        # flock orders processes; threads of this one share the descriptor, so they also
        # take turns on a lock of their own
        thread_lock = _medium_lock(medium)
        thread_lock.acquire()
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with _LINKS_CHANGED:
            while remaining > 0 and _LINKS and not _STOP.is_set():
                links = _LINKS[0]
                per_byte = links.seconds_per_byte(sender, receiver) * links.time_scale
                if not math.isfinite(per_byte):
                    _LINKS_CHANGED.wait(timeout=DOWN_POLL_S)  # a link is down: wait
                    continue
                need = remaining * per_byte
                t0 = time.perf_counter()
                _LINKS_CHANGED.wait(timeout=need)  # done, or the links changed meanwhile
                spent = min(time.perf_counter() - t0, need)
                airtime += spent
                remaining -= spent / per_byte if per_byte > 0 else remaining
    finally:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            thread_lock.release()
    return airtime, time.perf_counter() - start


def _medium_lock(domain: int) -> threading.Lock:
    with _MEDIA_LOCK:
        lock = _THREAD_MEDIA.get(domain)
        if lock is None:
            lock = _THREAD_MEDIA[domain] = threading.Lock()
        return lock


def _medium_fd(lock_dir: str, domain: int) -> int:
    path = str(Path(lock_dir) / f"medium-{domain}.lock")
    with _MEDIA_LOCK:
        if path not in _MEDIA:
            Path(lock_dir).mkdir(parents=True, exist_ok=True)
            _MEDIA[path] = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        return _MEDIA[path]
