"""What runs inside a worker process: its layers, and the functions the server calls over RPC.

The server calls these module-level functions with ``torch.distributed.rpc``; each worker
process holds one device's layers in :data:`_HELD`. A device runs one micro-batch at a time
(:data:`_BUSY`) and stays busy for the emulated compute time of each call: the real forward
pass runs, the worker sleeps until its reply time, and the next call waits until the device is
free (:data:`_FREE_AT`).
"""

from __future__ import annotations

import os
import threading
import time

from torch import Tensor, nn

from dora_rl.runtime.layers import LayerSpec, build_layers, run_layers

_HELD: dict[int, nn.Module] = {}
_BUSY = threading.Lock()
_STOP = threading.Event()
_FREE_AT = 0.0


def load_weights(specs: list[LayerSpec], weights: list[dict[str, Tensor]]) -> int:
    """Build the given layers and load their weights (sent by the server); returns the number
    of layers now held."""
    modules = build_layers(specs)
    for spec, state in zip(specs, weights, strict=True):
        modules[spec.index].load_state_dict(state)
    _HELD.update(modules)
    return len(_HELD)


def forward(first: int, end: int, x: Tensor, compute_s: float,
            reply_s: float | None = None) -> tuple[Tensor, float, float]:
    """Run layers ``[first, end)`` on ``x``; the device stays busy for ``compute_s`` seconds.

    Args:
        first, end: Layer range.
        x: Input.
        compute_s: Emulated compute time: the device takes no other call for this long.
        reply_s: When to reply, from the start (default ``compute_s``); the server sets it
            shorter by the call's round-trip overhead so that it sees ``compute_s``.

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

