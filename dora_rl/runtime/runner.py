"""The serving loop: stream requests through the current plan, re-plan, survive faults.

:func:`serve` starts one worker per device, places the first plan's weights, and streams
``requests`` micro-batches at the card's rate (time-dilated by ``time_scale``) through the
pipeline, at most ``max_in_flight`` at once. A control thread closes a control interval
every ``control_interval_s`` (telemetry, energy by the interval model), pings the workers,
and asks the decider for a :class:`~dora_rl.world.Decision` on what it measured
(:class:`~dora_rl.runtime.live.LiveControl`): the job's bandwidth level sets its share of the
emulated media, power modes slow or sleep the emulated devices, and a new plan's weights move
to the devices that gain layers before it becomes current; micro-batches already running
finish on the plan they started on (old owners keep their layers). A worker that fails a call
or misses a heartbeat is removed and the job is re-planned onto the devices left (the
decider's choice, or the least-energy candidate when it has none or it names a lost device);
micro-batches it held are run again from the start. A decider that raises, or answers after
``decision_timeout_s``, leaves everything in place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributed import rpc

from dora_rl.config import Scenario
from dora_rl.costmodel import CostModel, Plan
from dora_rl.dynamics import RuntimeDynamics, WorldState
from dora_rl.runtime import agent, inbox
from dora_rl.runtime.cluster import SERVER_NAME, Cluster
from dora_rl.runtime.control import Decider
from dora_rl.runtime.emulation import Emulator, auto_time_scale, host_seconds
from dora_rl.runtime.layers import build_layers, layer_specs, run_layers, sample_input
from dora_rl.runtime.live import LiveControl
from dora_rl.runtime.pipeline import Stalled, WorkerLost, calibrate, run_plan
from dora_rl.runtime.placement import place
from dora_rl.runtime.power import PowerInterval
from dora_rl.runtime.report import Record, summarise
from dora_rl.runtime.telemetry import IntervalTelemetry, TelemetryLog
from dora_rl.runtime.usage import Usage
from dora_rl.world import IntervalModel
from dora_rl.world.requests import certain_wait_s

MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one run.

    Attributes:
        scenario: The card; job: index of the job to serve.
        requests: Micro-batches to send; rate_per_s: their rate in the card's world.
        batch: Items per micro-batch (default: the job's inference batch).
        time_scale: Emulated seconds per modelled second; ``None`` picks it so that the card's
            fastest device runs at this host's speed (:func:`emulation.auto_time_scale`).
        control_interval_s: Wall seconds between control steps.
        kills: ``(device name, request index)``: SIGKILL the device's worker when that request
            is sent.
        status: Status file, rewritten every control step (workers, counts and the last
            interval's telemetry).
        tensorboard: Directory for TensorBoard scalars, written every control step.
        seed: Seed of the weights and inputs.
        rpc_timeout_s: Timeout of each stage call.
        max_in_flight: Micro-batches in the pipeline at once.
        keep_outputs: Keep every output tensor in the result (for checks).
        bandwidth: Link dynamics the emulated links follow, one step per control interval:
            ``static`` (the card's rates), ``trace`` (the card's test-split traces) or
            ``synthetic`` (:class:`dora_rl.dynamics.RuntimeDynamics`).
        decision_timeout_s: A decision that takes longer is discarded (the plan is kept).
        max_missed: Consecutive unanswered heartbeats (one per control step) before a worker
            whose process this machine cannot see is removed; a local worker that exited is
            removed at the next heartbeat.
    """

    scenario: Scenario
    job: int = 0
    requests: int = 100
    rate_per_s: float | None = None
    batch: int | None = None
    time_scale: float | None = 1.0
    control_interval_s: float = 0.5
    kills: tuple[tuple[str, int], ...] = ()
    status: Path | None = None
    tensorboard: Path | None = None
    seed: int = 0
    rpc_timeout_s: float = 5.0
    max_in_flight: int = 8
    keep_outputs: bool = False
    bandwidth: str = "static"
    decision_timeout_s: float = 0.1
    max_missed: int = 3


@dataclass
class _Live:
    plan: Plan
    plan_id: int = 0
    plans: list[Plan] = field(default_factory=list)
    held: dict[int, set[int]] = field(default_factory=dict)
    switches: list[tuple[float, int]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    decisions_ms: list[float] = field(default_factory=list)
    since_switch: int = 0
    migrated_bytes: float = 0.0
    migrated_peer_bytes: float = 0.0


class Runtime:
    """One serving run (see :func:`serve`)."""

    def __init__(self, cfg: ServeConfig, decider: Decider) -> None:
        self.cfg, self.decider = cfg, decider
        self.model = CostModel(cfg.scenario, cfg.job)
        self.specs = layer_specs(cfg.scenario, cfg.job)
        self.weights = build_layers(self.specs, cfg.seed)
        self.names = [d.name for d in cfg.scenario.devices]
        job = cfg.scenario.jobs[cfg.job]
        self.batch = cfg.batch or (job.inference.batch if job.inference else 1)
        self.time_scale = cfg.time_scale if cfg.time_scale is not None else self._auto_scale()
        self.emulator = Emulator(self.model.tables, self.time_scale)
        rate = cfg.rate_per_s or (job.inference.request_rate_per_s if job.inference else 1.0)
        self.period_s = self.time_scale / rate
        self.slo_ms = job.qoe.latency_ms
        self.job = job
        self.intervals = IntervalModel(
            cfg.scenario, cfg.control_interval_s / self.time_scale,
            models=[self.model if j == cfg.job else CostModel(cfg.scenario, j)
                    for j in range(len(cfg.scenario.jobs))])
        self.control = LiveControl(self.intervals, cfg.job)
        self.power_now = PowerInterval.nominal(len(self.names))
        """The devices' power state in the current interval."""
        self.world_now: WorldState | None = None
        """The emulated world of the current interval."""
        self.moved_seen = 0.0
        """Weight bytes moved up to the last closed interval."""
        self.usage = Usage(len(self.names))
        inbox.bind(self.usage)
        self.lock_dir = ""
        """Folder of the emulated media's lock files (made by :meth:`run`, removed after)."""
        self.records: list[Record] = []
        self.outputs: dict[int, Tensor] = {}
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.placing = threading.Lock()
        """Held while weights move to a plan's devices (one placement at a time)."""
        self.done = threading.Event()
        self.cluster = Cluster(self.names, rpc_timeout_s=cfg.rpc_timeout_s)
        self.sent = 0
        self.dynamics = RuntimeDynamics(cfg.scenario, bandwidth=cfg.bandwidth,  # type: ignore[arg-type]
                                        split="test", job_churn=False)
        self.rng = np.random.default_rng(cfg.seed)
        self.link_log: list[tuple[float, float]] = []
        self.present = [True] * len(self.names)
        self.next_present = list(self.present)
        """Per device: present in the emulated world (the card's churn: a phone leaves)."""
        self.presence: list[dict[str, Any]] = []
        """Devices leaving and coming back (emulated churn, or a worker answering again)."""
        self.start_t = time.monotonic()
        self.telemetry = TelemetryLog(self.intervals.devices, self.time_scale,
                                      certain_wait_s(job, 1.0) * 1e3, self.start_t,
                                      self.intervals.power_off_unused)
        self.board: Any = None

    def _world(self, energy_j: list[float] | None = None) -> None:
        """Move the emulated world one control interval along the card's dynamics (links,
        presence, QoE scale; batteries drain by ``energy_j`` per device, the interval's
        measured energy), and tell the workers (their transfers follow the links)."""
        world = self.dynamics.reset(self.rng) if energy_j is None else \
            self.dynamics.step(self.rng, energy_j)
        self.world_now = world
        if self.control.world is None:
            self.control.world = world
        self.emulator.link_scale = [float(v) for v in world.state.link_scale]
        self.emulator.cross_traffic = [float(v) for v in world.state.cross_traffic]
        self.link_log.append((time.monotonic(), float(np.mean(self.emulator.link_scale))))
        self.next_present = [bool(v) for v in world.state.usable]  # an empty battery leaves
        self._send_links()

    def _send_links(self) -> None:
        """Tell every live worker the links as they are now."""
        links = self.emulator.links()
        for name in self.cluster.alive_devices():
            try:
                rpc.rpc_async(name, agent.set_links, args=(links,))
            except Exception:  # noqa: BLE001, S110 - a lost worker is found by the heartbeat
                pass

    def _auto_scale(self) -> float:
        """Time the whole model for one item here against the fastest device's time."""
        x = sample_input(self.cfg.scenario, self.cfg.job, 1, self.cfg.seed)
        n = len(self.specs)
        host_s = host_seconds(lambda: run_layers(self.weights, 0, n, x))
        fwd = self.model.tables.lists.fwd
        usable = [row[n] for row, ok in zip(fwd, self.model.tables.can_run.tolist(), strict=True)
                  if ok]
        return auto_time_scale(host_s, min(usable) if usable else 0.0)

    # ------------------------------------------------------------------ plans
    def available(self) -> tuple[bool, ...]:
        """Per device: its worker is alive and, in the emulated world, it is present."""
        alive = set(self.cluster.alive_devices())
        return tuple(n in alive and here for n, here in zip(self.names, self.present,
                                                             strict=True))

    def usable(self) -> tuple[bool, ...]:
        """Per device: available, and neither asleep nor waking (a plan may run on it)."""
        return tuple(a and w for a, w in zip(self.available(), self.control.awake(),
                                             strict=True))

    def _switch(self, plan: Plan) -> None:
        """Place ``plan`` (retrying without devices lost meanwhile) and make it current.

        Placement (weights crossing the emulated links) holds only the placement lock, so
        requests keep flowing on the current plan meanwhile; a plan that lost a device by the
        time its weights arrived is dropped (the fault's re-plan has replaced it)."""
        with self.placing:
            for _ in range(len(self.names) + 1):
                try:
                    place(self, plan)
                    break
                except WorkerLost as lost:
                    if self._mark_lost(lost.device):
                        inbox.fail_device(lost.device)
                    plan = self._fallback()
        with self.changed:
            if not all(self.usable()[d] for d in plan.devices):
                return
            self.live.plans.append(plan)
            self.live.plan, self.live.plan_id = plan, len(self.live.plans) - 1
            self.live.switches.append((time.monotonic(), self.live.plan_id))
            self.live.since_switch = 0
            self.changed.notify_all()

    def _probe(self, devices: frozenset[int]) -> int | None:
        """A dead device among ``devices`` (already removed, exited, or not answering)."""
        name = self.cluster.probe([self.names[d] for d in sorted(devices)])
        return None if name is None else self.names.index(name)

    def _fallback(self) -> Plan:
        usable = self.usable()
        options = [p for p in self.decider.candidates(usable)
                   if all(usable[d] for d in p.devices)]
        if not options:
            raise RuntimeError("no plan fits the devices left")
        return options[0]

    def _mark_lost(self, device: int) -> bool:
        """Record a lost device (its injected fault, if any); False if already known."""
        name = self.names[device]
        if not self.cluster.mark_dead(name):
            return False
        now = time.monotonic()
        fault = next((f for f in self.live.faults
                      if f["device"] == name and "t_detect" not in f), None)
        if fault is None:
            fault = {"device": name, "t_kill": now}
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
            plan = self._decide(force=True)
            if plan is None or not all(self.usable()[d] for d in plan.devices):
                plan = self._fallback()
            self._switch(plan)
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
            plan = self._decide(force=True)
            if plan is None or not all(self.usable()[d] for d in plan.devices):
                plan = self._fallback()
            self._switch(plan)
            for f in self.live.faults:
                if f["device"] == self.names[device]:
                    f["plan_after"] = self.live.plan_id

    def _decide(self, force: bool = False) -> Plan | None:
        """Ask the decider on what was measured and apply its decision; the plan to switch to
        now (``force``: one is needed, the current plan lost a device)."""
        available = self.available()
        m = self.control.measurement(available, self.live.plan, self.live.since_switch,
                                     self.live.held)
        start = time.perf_counter()
        try:
            decision = self.decider.decide(m)
        except Exception:  # noqa: BLE001 - a failing controller keeps the last good plan
            decision = None
        elapsed_s = time.perf_counter() - start
        self.live.decisions_ms.append(elapsed_s * 1e3)
        if elapsed_s > self.cfg.decision_timeout_s and not force:
            decision = None  # too late: keep everything
        plan = self.control.apply(decision, self.live.plan, available)
        self._power_changed()
        if plan is not None and not all(self.usable()[d] for d in plan.devices):
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

    def _used(self) -> set[int]:
        used = set(self.live.plan.devices)
        if self.control.target is not None:
            used.update(self.control.target.devices)
        return used

    # ------------------------------------------------------------------ loops
    def _close_interval(self) -> IntervalTelemetry:
        """Measure the interval that just ended (before the links move on)."""
        with self.lock:
            records = list(self.records)
            plan_id = self.live.plan_id
            power = self.power_now
        tel = self.telemetry.close(time.monotonic(), self.usage.snapshot(), records, plan_id,
                                   self.sent, self.emulator.link_scale, power)
        if self.board is not None:
            self.board.interval(tel.to_dict())
        return tel

    def _control(self) -> None:
        while not self.done.wait(self.cfg.control_interval_s):
            tel = self._close_interval()
            with self.lock:
                assert self.world_now is not None
                broken = not all(self.usable()[d] for d in self.live.plan.devices)
                moved, self.moved_seen = (self.live.migrated_bytes - self.moved_seen,
                                          self.live.migrated_bytes)
                self.control.closed(tel, self.world_now, self.telemetry.energies, broken, moved)
            self._world(tel.device_energy_j)
            for name in self.cluster.heartbeat(max_missed=self.cfg.max_missed):
                self.cluster.workers[name].alive = True  # let on_lost record it
                self.on_lost(self.names.index(name))
            for name in self.cluster.take_revived():
                self._back(self.names.index(name), "answered again")
            self._churn(self.next_present)
            with self.lock:
                plan = self._decide()
                current = self.live.plan
            if plan is not None and plan != current:
                self._switch(plan)  # requests keep running on the current plan meanwhile
            else:
                with self.lock:
                    self.live.since_switch += 1
            with self.lock:
                self.power_now = self.control.power.interval(self.present, self._used())
            self._write_status(tel)

    def _one(self, i: int, x: Tensor, sent_t: float, target_ms: float) -> None:
        for attempt in range(MAX_ATTEMPTS):
            with self.lock:
                plan, plan_id = self.live.plan, self.live.plan_id
            try:
                y = run_plan(plan, x, self.names, self.emulator, SERVER_NAME, self.lock_dir,
                             self.cfg.rpc_timeout_s, self._probe)
            except WorkerLost as lost:
                self.on_lost(lost.device)
                continue
            except Stalled:
                continue  # every device answers: run it again
            done_t = time.monotonic()
            with self.lock:
                self.records.append(Record(i, sent_t, done_t, plan_id, attempt,
                                           (done_t - sent_t) * 1e3 / self.time_scale,
                                           target_ms))
                if self.cfg.keep_outputs:
                    self.outputs[i] = y
            return

    def _write_status(self, tel: IntervalTelemetry | None = None) -> None:
        if self.cfg.status is None:
            return
        with self.lock:
            status = {"workers": self.cluster.status(), "sent": self.sent,
                      "completed": len(self.records), "plan_id": self.live.plan_id,
                      "replans": len(self.live.switches) - 1,
                      "faults": [f["device"] for f in self.live.faults],
                      "intervals": len(self.telemetry.intervals),
                      "interval": tel.to_dict() if tel is not None else None}
        tmp = self.cfg.status.with_suffix(".tmp")
        tmp.write_text(json.dumps(status))
        os.replace(tmp, self.cfg.status)

    def run(self) -> dict[str, Any]:
        """Run to the last request; always stops the workers."""
        cfg = self.cfg
        kills = dict((i, name) for name, i in cfg.kills)
        try:
            self.lock_dir = tempfile.mkdtemp(prefix="dora_rl-media-")
            self.cluster.spawn_local()
            self.cluster.admit()
            self._world()
            self.present = list(self.next_present)
            calibrate(self.names, self.emulator,
                      sample_input(cfg.scenario, cfg.job, self.batch, cfg.seed), SERVER_NAME,
                      self.lock_dir)
            plan = self.decider.initial(self.usable())
            if not all(self.usable()[d] for d in plan.devices):
                plan = self._fallback()  # a device of the first plan is away at the start
            self.live = _Live(plan=plan)
            self.power_now = self.control.power.interval(self.present, set(plan.devices))
            self._switch(plan)
            self.live.plans, self.live.switches = self.live.plans[-1:], self.live.switches[-1:]
            self.live.plan_id = 0
            if cfg.tensorboard is not None:
                from dora_rl.runtime.figures import Board

                self.board = Board(cfg.tensorboard, cfg.scenario.jobs[cfg.job].name)
            start = self.start_t = self.telemetry.start_t = self.telemetry.last_t = \
                time.monotonic()
            self.telemetry.last = self.usage.snapshot()  # calibration calls are not the run's
            self.moved_seen = self.live.migrated_bytes  # nor is the first placement
            self._write_status()
            control = threading.Thread(target=self._control, daemon=True)
            control.start()
            with ThreadPoolExecutor(cfg.max_in_flight) as pool:
                for i in range(cfg.requests):
                    x = sample_input(cfg.scenario, cfg.job, self.batch, cfg.seed + 1 + i)
                    delay = start + i * self.period_s - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    if i in kills:
                        with self.lock:
                            self.live.faults.append({"device": kills[i],
                                                     "t_kill": time.monotonic()})
                        self.cluster.kill(kills[i])
                    pool.submit(self._one, i, x, time.monotonic(), self._target_ms())
                    self.sent += 1
            self.done.set()
            control.join(timeout=30)
            wall_s = time.monotonic() - start
            self._write_status(self._close_interval())
            result = summarise(self, wall_s)
            if self.board is not None:
                self.board.finish(result)
                self.board = None
            return result
        finally:
            self.done.set()
            if self.board is not None:
                self.board.writer.close()
            self.cluster.close()
            if self.lock_dir:
                shutil.rmtree(self.lock_dir, ignore_errors=True)


    def _target_ms(self) -> float:
        """The latency target of a request sent now: the card's, scaled by the emulated
        world's QoE scale of the job."""
        world = self.world_now
        scale = float(world.qoe_scale[self.cfg.job]) if world is not None else 1.0
        return certain_wait_s(self.job, scale) * 1e3


def serve(cfg: ServeConfig, decider: Decider) -> tuple[dict[str, Any], dict[int, Tensor]]:
    """Run one serving session; returns the result and (with ``keep_outputs``) the outputs."""
    torch.set_num_threads(1)
    runtime = Runtime(cfg, decider)
    result = runtime.run()
    return result, runtime.outputs
