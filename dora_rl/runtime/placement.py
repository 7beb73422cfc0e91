"""Moving a plan's weights to the devices that gain layers, before the plan serves.

Each device of the new plan receives the layers it does not hold yet: from a live device that
holds them, over the emulated link (device to device, taking turns on the medium like any
transfer, its radio time accounted), else from the server's copy (the model as first
deployed). Old owners keep their layers, so a later switch back moves nothing.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from torch.distributed import rpc

from dora_rl.costmodel import Plan
from dora_rl.runtime import agent
from dora_rl.runtime.pipeline import WorkerLost

if TYPE_CHECKING:
    from dora_rl.runtime.runner import Runtime


def place(rt: Runtime, plan: Plan) -> None:
    """Give each device the weights of the layers it gains, and wait until they arrive:
    from a live device that holds them (over the emulated link, device to device), else
    from the server's copy (the model as first deployed)."""
    futures = []
    for k, group in enumerate(plan.stage_devices):
        first, end = plan.stage_layers(k)
        for d in group:
            held = rt.live.held.setdefault(d, set())
            need = [i for i in range(first, end) if i not in held]
            for source, layers in _sources(rt, d, need).items():
                futures.append((d, source, layers, _send_weights(rt, source, d, layers)))
    for d, source, layers, fut in futures:
        try:
            fut.wait()
        except Exception as error:  # noqa: BLE001
            dead = rt._probe(frozenset({d} if source is None else {d, source}))
            raise WorkerLost(d if dead is None else dead, str(error)) from None
        rt.live.held[d].update(layers)


def _sources(rt: Runtime, device: int, layers: list[int]) -> dict[int | None, list[int]]:
    """Where each layer comes from: a live device holding it, else ``None`` (the server)."""
    alive = rt.usable()
    out: dict[int | None, list[int]] = {}
    for i in layers:
        holder = next((h for h, held in sorted(rt.live.held.items())
                       if h != device and alive[h] and i in held), None)
        out.setdefault(holder, []).append(i)
    return out


def _send_weights(rt: Runtime, source: int | None, device: int, layers: list[int]) -> Any:
    """Start moving ``layers``' weights to ``device`` (from ``source``, or the server)."""
    nbytes = float(sum(t.numel() * t.element_size() for i in layers
                       for t in rt.weights[i].state_dict().values()))
    rt.live.migrated_bytes += nbytes
    timeout = rt.cfg.rpc_timeout_s
    if source is None:
        specs = [rt.specs[i] for i in layers]
        states = [rt.weights[i].state_dict() for i in layers]
        return rpc.rpc_async(rt.names[device], agent.load_weights, args=(specs, states),
                             timeout=timeout)
    rt.live.migrated_peer_bytes += nbytes
    seconds = rt.emulator.transfer_s(source, device, nbytes)
    fut = rpc.rpc_async(rt.names[source], agent.push_weights,
                        args=(layers, rt.names[device], rt.lock_dir, source, device,
                              nbytes),
                        timeout=timeout + 2 * seconds if math.isfinite(seconds) else 0)

    def account(done: Any) -> None:  # the radio time of the move, once it is known
        try:
            airtime, wall = done.value()
        except Exception:  # noqa: BLE001 - a failed move is handled by the waiter
            return
        rt.usage.add_transfer(source, device, airtime, nbytes, wall, activations=False)

    fut.add_done_callback(account)
    return fut


__all__ = ["place"]
