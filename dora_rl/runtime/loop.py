"""The control thread and the status file.

Every control interval (:func:`control_step`): measure the interval that closed, move the
emulated world on, watch the workers (heartbeats, revivals, churn), leave the no-plan state if
possible, ask the decider, set the power state, and rewrite the status file. Each part is
guarded: one that raises (a planner's ``RecursionError``, a full disk) is recorded in the
run's :class:`~dora_rl.runtime.health.Health` and logged, the last good plan is kept, and the
other parts (heartbeats and status above all) still run, then and at every later interval.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from dora_rl.runtime.health import NoPlan
from dora_rl.runtime.telemetry import IntervalTelemetry

if TYPE_CHECKING:
    from dora_rl.runtime.runner import Runtime

T = TypeVar("T")


def guarded(rt: Runtime, where: str, step: Callable[[], T]) -> T | None:
    """Run ``step``; an exception is recorded (``where``) and ``None`` returned."""
    try:
        return step()
    except Exception as error:  # noqa: BLE001 - the control thread must never die
        rt.health.error(where, error)
        return None


def control_loop(rt: Runtime) -> None:
    """One :func:`control_step` every ``control_interval_s`` until the run is done."""
    while not rt.done.wait(rt.cfg.control_interval_s):
        control_step(rt)


def control_step(rt: Runtime) -> None:
    """One control interval (see the module docstring)."""
    tel = guarded(rt, "telemetry", rt.close_interval)
    if tel is not None:
        guarded(rt, "world", lambda: _advance(rt, tel))
    guarded(rt, "heartbeat", lambda: _watch(rt))
    guarded(rt, "decision", lambda: _decide(rt))
    guarded(rt, "power", lambda: _power(rt))
    guarded(rt, "status", lambda: write_status(rt, tel))


def _advance(rt: Runtime, tel: IntervalTelemetry) -> None:
    with rt.lock:
        assert rt.world_now is not None
        broken = not rt.plan_usable(rt.live.plan)
        moved, rt.moved_seen = (rt.live.migrated_bytes - rt.moved_seen,
                                rt.live.migrated_bytes)
        rt.control.closed(tel, rt.world_now, rt.telemetry.energies, broken, moved)
    rt._world(tel.device_energy_j)


def _watch(rt: Runtime) -> None:
    for name in rt.cluster.heartbeat(max_missed=rt.cfg.max_missed):
        rt.cluster.workers[name].alive = True  # let on_lost record it
        rt.on_lost(rt.names.index(name))
    for name in rt.cluster.take_revived():
        rt._back(rt.names.index(name), "answered again")
    rt._churn(rt.next_present)


def _decide(rt: Runtime) -> None:
    rt.recover()
    if rt.health.blocked is not None:
        return
    with rt.lock:
        plan = rt._decide()
        current = rt.live.plan
    if plan is not None and plan != current:
        try:
            rt._switch(plan)  # requests keep running on the current plan meanwhile
        except NoPlan as error:
            rt._no_plan(str(error))
    else:
        with rt.lock:
            rt.live.since_switch += 1


def _power(rt: Runtime) -> None:
    with rt.lock:
        rt.power_now = rt.control.power.interval(rt.present, rt.used())


def status(rt: Runtime, tel: IntervalTelemetry | None = None,
           final: bool = False) -> dict[str, object]:
    """The status: state (``serving``, ``no_plan``, ``stopping``, ``finished``,
    ``interrupted``), workers, counts, the no-plan reason, control errors, and the last
    interval's telemetry (``tel``, else none)."""
    state = rt.health.state()
    if rt.stop.is_set():
        state = "interrupted" if final else "stopping"
    elif final:
        state = "finished"
    with rt.lock:
        return {"state": state, "updated_s": time.monotonic() - rt.start_t,
                "workers": rt.cluster.status(), "sent": rt.sent,
                "completed": len(rt.records), "not_completed": len(rt.health.failed),
                "plan_id": rt.live.plan_id, "replans": len(rt.live.switches) - 1,
                "faults": [f["device"] for f in rt.live.faults],
                "no_plan": rt.health.blocked, "control_errors": rt.health.error_count,
                "last_error": rt.health.errors[-1]["error"] if rt.health.errors else None,
                "intervals": len(rt.telemetry.intervals),
                "interval": tel.to_dict() if tel is not None else None}


def write_status(rt: Runtime, tel: IntervalTelemetry | None = None,
                 final: bool = False) -> None:
    """Rewrite the status file (if any) with :func:`status`, atomically."""
    if rt.cfg.status is None:
        return
    path = rt.cfg.status
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status(rt, tel, final)))
    os.replace(tmp, path)


__all__ = ["control_loop", "control_step", "guarded", "status", "write_status"]
