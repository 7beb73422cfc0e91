"""Keeping a feasible plan through faults: switches, lost and returning devices, re-plans.

:class:`PlanKeeper` is the part of :class:`~dora_rl.runtime.runner.Runtime` that decides
which plan serves. A worker that fails a call or misses its heartbeats, or a device that
leaves the emulated world, is removed and the job re-planned onto the devices left (the
decider's choice, else the least-energy candidate). When none fits, or the planner fails,
the last plan is kept and the run enters the *no-plan* state
(:class:`~dora_rl.runtime.health.Health`): requests wait for a plan, or are refused at once
when every missing device is a local worker that has exited. :meth:`PlanKeeper.recover`
leaves that state as soon as the last plan's devices answer again or a candidate fits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from dora_rl.costmodel import CostModel, Plan
from dora_rl.runtime import inbox
from dora_rl.runtime.cluster import Cluster
from dora_rl.runtime.control import Decider
from dora_rl.runtime.emulation import Emulator
from dora_rl.runtime.health import Health, NoPlan, describe
from dora_rl.runtime.live import LiveControl
from dora_rl.runtime.pipeline import WorkerLost
from dora_rl.runtime.placement import place
from dora_rl.runtime.settings import LiveState, ServeConfig
from dora_rl.runtime.usage import Usage

if TYPE_CHECKING:
    from dora_rl.runtime.runner import Runtime


class PlanKeeper:
    """Plan choice and fault handling of a run (mixed into the runtime, which sets these)."""

    cfg: ServeConfig
    decider: Decider
    cluster: Cluster
    names: list[str]
    present: list[bool]
    presence: list[dict[str, Any]]
    live: LiveState
    health: Health
    lock: Any
    changed: Any
    placing: Any
    control: LiveControl
    emulator: Emulator
    model: CostModel
    usage: Usage
    _send_links: Callable[[], None]
    """Sends every worker the links' state (the runtime's method)."""

    def available(self) -> tuple[bool, ...]:
        """Per device: its worker is alive and, in the emulated world, it is present."""
        alive = set(self.cluster.alive_devices())
        return tuple(n in alive and here for n, here in zip(self.names, self.present,
                                                             strict=True))

    def usable(self) -> tuple[bool, ...]:
        """Per device: available, and neither asleep nor waking (a plan may run on it)."""
        return tuple(a and w for a, w in zip(self.available(), self.control.awake(),
                                             strict=True))

    def plan_usable(self, plan: Plan) -> bool:
        """Every device of ``plan`` is usable now."""
        usable = self.usable()
        return all(usable[d] for d in plan.devices)

    def _switch(self, plan: Plan) -> None:
        """Place ``plan`` (retrying without devices lost meanwhile) and make it current.

        Placement (weights crossing the emulated links) holds only the placement lock, so
        requests keep flowing on the current plan meanwhile; a plan that lost a device by the
        time its weights arrived is dropped (the fault's re-plan has replaced it).

        Raises:
            NoPlan: a device was lost while placing and no plan fits the devices left.
        """
        with self.placing:
            for _ in range(len(self.names) + 1):
                try:
                    place(cast("Runtime", self), plan)
                    break
                except WorkerLost as lost:
                    if self._mark_lost(lost.device):
                        inbox.fail_device(lost.device)
                    plan = self._fallback()
        with self.changed:
            if not self.plan_usable(plan):
                return
            self.live.plans.append(plan)
            self.live.plan, self.live.plan_id = plan, len(self.live.plans) - 1
            self.live.switches.append((time.monotonic(), self.live.plan_id))
            self.live.since_switch = 0
            self.health.serving(self.live.plan_id)
            self.changed.notify_all()

    def _probe(self, devices: frozenset[int]) -> int | None:
        """A dead device among ``devices`` (already removed, exited, or not answering)."""
        name = self.cluster.probe([self.names[d] for d in sorted(devices)])
        return None if name is None else self.names.index(name)

    def _fallback(self) -> Plan:
        """The least-energy candidate on the usable devices.

        Raises:
            NoPlan: none fits, or the planner failed (its error in the reason).
        """
        usable = self.usable()
        try:
            candidates = self.decider.candidates(usable)
        except Exception as error:  # noqa: BLE001 - whatever the planner raises: no plan
            raise NoPlan(f"the planner failed on the devices left ({describe(error)})") from None
        options = [p for p in candidates if all(usable[d] for d in p.devices)]
        if not options:
            left = [n for n, ok in zip(self.names, usable, strict=True) if ok]
            raise NoPlan(f"no plan fits the devices left ({', '.join(left) or 'none'})")
        return options[0]

    def _replan(self) -> None:
        """The current plan lost a device: switch to the decider's plan or the fallback; when
        none fits, keep the last plan and enter the no-plan state (never raises)."""
        try:
            plan = self._decide(force=True)
            if plan is None or not self.plan_usable(plan):
                plan = self._fallback()
            self._switch(plan)
        except NoPlan as error:
            self._no_plan(str(error))
        except Exception as error:  # noqa: BLE001 - re-planning must not stop the runtime
            self._no_plan(f"re-planning failed ({describe(error)})")

    def _no_plan(self, reason: str) -> None:
        """Enter the no-plan state; for good when every device that is not usable now is a
        local worker whose process has exited (nothing can make a plan fit any more)."""
        usable = self.usable()
        gone = [not ok and self.cluster.exited(name)
                for name, ok in zip(self.names, usable, strict=True)]
        for_good = all(ok or g for ok, g in zip(usable, gone, strict=True))
        self.health.no_plan(reason, self.changed, for_good)

    def _mark_lost(self, device: int) -> bool:
        """Record a lost device (its injected fault, if any); False if already known."""
        name = self.names[device]
        if not self.cluster.mark_dead(name):
            return False
        now = time.monotonic()
        fault = next((f for f in self.live.faults
                      if f["device"] == name and "t_detect" not in f), None)
        if fault is None:
            fault = {"device": name, "kind": "lost", "t_kill": now}  # found, not injected
            self.live.faults.append(fault)
        fault["t_detect"] = now
        return True

    def _churn(self, available: list[bool]) -> None:
        """Apply the emulated world's device presence: a device that leaves is removed like a
        lost worker (its requests re-executed, the job re-planned without it), one that comes
        back is usable again (its worker kept its layers)."""
        for d, (was, now) in enumerate(zip(list(self.present), available, strict=True)):
            if was and not now:
                self.on_left(d)
            elif now and not was:
                self._back(d, "returned")

    def on_left(self, device: int) -> None:
        """A device left the emulated world: stop using it and re-plan if the plan did."""
        with self.lock:
            name, now = self.names[device], time.monotonic()
            self.present[device] = False
            self.presence.append({"device": name, "event": "left", "t": now})
            inbox.fail_device(device)
            self.usage.forget(device)
            if device not in self.live.plan.devices:
                return
            fault = {"device": name, "kind": "left", "t_kill": now, "t_detect": now}
            self.live.faults.append(fault)
            self._replan()
            if self.health.blocked is None:
                fault["plan_after"] = self.live.plan_id

    def _back(self, device: int, how: str) -> None:
        """A device is usable again (the controller may plan onto it from now on): it
        ``returned`` to the emulated world, or its worker ``answered again``."""
        with self.lock:
            if how == "returned":
                self.present[device] = True
            self.presence.append({"device": self.names[device], "event": how,
                                  "t": time.monotonic()})

    def on_lost(self, device: int) -> None:
        """Remove a failed device and re-plan onto the others (once per device). A device
        that left the emulated world is already planned around (:meth:`on_left`): the
        requests it held fail over without marking its worker dead."""
        with self.lock:
            if not self.present[device] or not self._mark_lost(device):
                return
            inbox.fail_device(device)
            self.usage.forget(device)
            if device not in self.live.plan.devices and self.health.blocked is None:
                return
            self._replan()
            if self.health.blocked is None:
                for f in self.live.faults:
                    if f["device"] == self.names[device]:
                        f["plan_after"] = self.live.plan_id

    def recover(self) -> None:
        """Leave the no-plan state: the last plan is usable again (its device came back), or
        a candidate fits the devices there are now (switched to); else keep waiting."""
        with self.changed:
            if self.health.blocked is None:
                return
            if self.plan_usable(self.live.plan):
                self.health.serving(self.live.plan_id)
                self.changed.notify_all()
                return
        try:
            self._switch(self._fallback())
        except NoPlan as error:
            self._no_plan(str(error))

    def _decide(self, force: bool = False) -> Plan | None:
        """Ask the decider on what was measured and apply its decision; the plan to switch to
        now (``force``: one is needed, the current plan lost a device)."""
        available = self.available()
        m = self.control.measurement(available, self.live.plan, self.live.since_switch,
                                     self.live.held)
        start = time.perf_counter()
        try:
            decision = self.decider.decide(m)
        except Exception as error:  # noqa: BLE001 - a failing controller keeps the last good plan
            self.health.error("decision", error)
            decision = None
        elapsed_s = time.perf_counter() - start
        self.live.decisions_ms.append(elapsed_s * 1e3)
        if elapsed_s > self.cfg.decision_timeout_s and not force:
            decision = None  # too late: keep everything
        plan = self.control.apply(decision, self.live.plan, available)
        self._power_changed()
        if plan is not None and not self.plan_usable(plan):
            plan = None
        if plan is None and force:
            plan = self._fallback()
        return plan

    def _power_changed(self) -> None:
        """Carry the record's power modes and medium share over to the emulated devices."""
        self.emulator.speed = self.control.power.speed(self.model.tables.lists.speed)
        share = self.control.share()
        if any(s != share for s in self.emulator.medium_share):
            self.emulator.medium_share = [share] * len(self.emulator.medium_share)
            self._send_links()

    def used(self) -> set[int]:
        """Devices the current plan, or the switch under way, uses."""
        used = set(self.live.plan.devices)
        if self.control.target is not None:
            used.update(self.control.target.devices)
        return used


__all__ = ["PlanKeeper"]
