"""What runs inside a worker for an LLM job: one pipeline stage with its own KV caches.

A token step (the prompt's prefill, or one decode token) travels the plan's stages device to
device: the server calls :func:`step` on stage 0's device, each device runs its layers on
the hidden states with its own key/value caches for that request (kept in this process,
:data:`_CACHES`) and calls the next stage's device, and the last stage returns the greedy
next token, which travels back up the chain to the server. Each stage reports its busy time
and its transfer to the server's usage account (:func:`dora_rl.runtime.inbox.account`), as
inference stages do.

The card's world is emulated as on the inference path: each stage stays busy for its
emulated compute time of the step (the server sends it, from
:func:`dora_rl.costmodel.llm_steps.llm_step_s` times the time scale), sleeping out what its
real compute leaves, and the hidden states cross the emulated link to the next stage
(:func:`dora_rl.runtime.agent.send_bytes`, holding the WiFi medium). A device computes one
step at a time (the lock every stage of this worker shares with
:func:`dora_rl.runtime.agent.forward`), so the requests in flight share it step by step.

Caches are freed by :func:`release` when a request ends, and those idle for :data:`STALE_S`
are dropped (a request abandoned by a lost server).
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
         timeout_s: float, compute_s: tuple[float, ...] = (), sleep_s: tuple[float, ...] = (),
         send_bytes: tuple[float, ...] = (), lock_dir: str = "") -> int:
    """Run stage ``chain[0]`` on ``x`` (token ids for the first stage, hidden states after;
    positions from ``start``), then the rest of the chain; returns the greedy next token.

    ``compute_s``: per stage of the chain, its emulated compute time of this step (none: no
    emulation), of which the device stays busy ``sleep_s`` (the rest is the measured cost of
    calling it); ``send_bytes``: per boundary, the bytes the step moves to the next stage
    (emulated over the links when ``lock_dir``, the media's lock folder, is given).

    Raises:
        RuntimeError: this worker lacks a layer of its stage, or a later stage failed.
    """
    hop = chain[0]
    missing = [i for i in range(hop.first, hop.end) if i not in agent._HELD]
    if missing:
        raise RuntimeError(f"device {hop.device} holds no weights for layers {missing}")
    caches = _caches(request)
    emulated = compute_s[0] if compute_s else 0.0
    budget = sleep_s[0] if sleep_s else emulated
    with agent._BUSY:
        t0 = time.perf_counter()
        y = run_cached(agent._HELD, hop.first, hop.end, x, start, caches)
        real_s = time.perf_counter() - t0
        if budget > real_s:
            time.sleep(budget - real_s)
    report: list[tuple[object, ...]] = [("busy", hop.device, max(emulated, real_s))]
    if len(chain) > 1 and send_bytes and lock_dir:
        airtime, wall = agent.send_bytes(lock_dir, hop.device, chain[1].device, send_bytes[0])
        report.append(("xfer", hop.device, chain[1].device, airtime, send_bytes[0], wall))
    agent._COURIER.submit(_account, server, report)  # off the step's critical path
    if len(chain) == 1:
        return next_token(y)
    return int(rpc.rpc_sync(chain[1].name, step,
                            args=(chain[1:], server, request, y.contiguous(), start, timeout_s,
                                  compute_s[1:], sleep_s[1:], send_bytes[1:], lock_dir),
                            timeout=timeout_s))


def _account(server: str, report: list[tuple[object, ...]]) -> None:
    try:
        rpc.rpc_async(server, inbox.account, args=(report,))
    except Exception:  # noqa: BLE001, S110 - the server is gone: nothing left to tell
        pass


def release(request: int) -> None:
    """Free the request's caches on this worker."""
    with _LOCK:
        _CACHES.pop(request, None)


def held_requests() -> int:
    """Requests whose caches this worker holds (for checks)."""
    with _LOCK:
        return len(_CACHES)
