"""What runs inside a worker for an LLM job: one pipeline stage with its own KV caches.

A token step (the prompt's prefill, or one decode token) travels the plan's stages device to
device: the server calls :func:`step` on stage 0's device, each device runs its layers on
the hidden states with its own key/value caches for that request (kept in this process,
:data:`_CACHES`) and calls the next stage's device, and the last stage returns the greedy
next token, which travels back up the chain to the server. Each stage reports its busy time
to the server's usage account (:func:`dora_rl.runtime.inbox.account`), as inference stages do.

A device computes one step at a time (the lock every stage of this worker shares with
:func:`dora_rl.runtime.agent.forward`). Caches are freed by :func:`release` when a request
ends, and those idle for :data:`STALE_S` are dropped (a request abandoned by a lost server).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from torch import Tensor
from torch.distributed import rpc

from dora_rl.runtime import agent, inbox
from dora_rl.runtime.tiny_lm import next_token, run_cached

STALE_S = 120.0
"""A request's caches unused this long are dropped."""
_CACHES: dict[int, tuple[float, dict[int, dict[str, Tensor]]]] = {}
"""Per request: time of last use, and each held layer's key/value cache."""
_LOCK = threading.Lock()


@dataclass(frozen=True)
class StageHop:
    """One stage of an LLM step's chain.

    Attributes:
        name: RPC name of the device's worker; device: its index in the card.
        first, end: The stage's layers ``[first, end)``.
    """

    name: str
    device: int
    first: int
    end: int


def _caches(request: int) -> dict[int, dict[str, Tensor]]:
    now = time.monotonic()
    with _LOCK:
        for old in [r for r, (t, _) in _CACHES.items() if now - t > STALE_S]:
            del _CACHES[old]
        caches = _CACHES.setdefault(request, (now, {}))[1]
        _CACHES[request] = (now, caches)
        return caches


def step(chain: tuple[StageHop, ...], server: str, request: int, x: Tensor, start: int,
         timeout_s: float) -> int:
    """Run stage ``chain[0]`` on ``x`` (token ids for the first stage, hidden states after;
    positions from ``start``), then the rest of the chain; returns the greedy next token.

    Raises:
        RuntimeError: this worker lacks a layer of its stage, or a later stage failed.
    """
    hop = chain[0]
    missing = [i for i in range(hop.first, hop.end) if i not in agent._HELD]
    if missing:
        raise RuntimeError(f"device {hop.device} holds no weights for layers {missing}")
    caches = _caches(request)
    with agent._BUSY:
        t0 = time.perf_counter()
        y = run_cached(agent._HELD, hop.first, hop.end, x, start, caches)
        busy_s = time.perf_counter() - t0
    try:
        rpc.rpc_async(server, inbox.account, args=([("busy", hop.device, busy_s)],))
    except Exception:  # noqa: BLE001, S110 - the server is gone: nothing left to tell
        pass
    if len(chain) == 1:
        return next_token(y)
    return int(rpc.rpc_sync(chain[1].name, step,
                            args=(chain[1:], server, request, y.contiguous(), start, timeout_s),
                            timeout=timeout_s))


def release(request: int) -> None:
    """Free the request's caches on this worker."""
    with _LOCK:
        _CACHES.pop(request, None)


def held_requests() -> int:
    """Requests whose caches this worker holds (for checks)."""
    with _LOCK:
        return len(_CACHES)
