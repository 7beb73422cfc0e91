"""The serving loop: start the workers, stream requests through the current plan, stop.

:func:`serve` starts one worker per device, places the first plan's weights, and streams
``requests`` micro-batches at the card's rate (time-dilated by ``time_scale``) through the
pipeline, at most ``max_in_flight`` at once. The control thread
(:mod:`~dora_rl.runtime.loop`) closes a control interval every ``control_interval_s``,
watches the workers and asks the decider; :class:`~dora_rl.runtime.replan.PlanKeeper`
switches plans and handles faults (a lost worker's micro-batches run again on the re-plan).
When no plan fits, requests wait for one up to ``plan_wait_s`` or are refused with the reason
(:mod:`~dora_rl.runtime.health`): every request sent either completes or has a reason. A
:class:`~dora_rl.runtime.health.StopFlag` set by a signal handler stops sending, wakes the
requests in flight and returns the partial result; the workers are always stopped and the
media folder removed.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.distributed import rpc

from dora_rl.costmodel import CostModel, Plan
from dora_rl.dynamics import RuntimeDynamics, WorldState
from dora_rl.runtime import agent, inbox
from dora_rl.runtime.cluster import SERVER_NAME, Cluster
from dora_rl.runtime.console import Monitor
from dora_rl.runtime.control import Decider
from dora_rl.runtime.emulation import Emulator, auto_time_scale, host_seconds
from dora_rl.runtime.health import STOPPED, Health, Interrupted, Refused, StopFlag, describe
from dora_rl.runtime.layers import build_layers, layer_specs, run_layers, sample_input
from dora_rl.runtime.live import LiveControl
from dora_rl.runtime.loop import control_loop, write_status
from dora_rl.runtime.pipeline import Aborted, Stalled, WorkerLost, calibrate, run_plan
from dora_rl.runtime.power_modes import PowerInterval
from dora_rl.runtime.replan import PlanKeeper
from dora_rl.runtime.result import Record, summarise
from dora_rl.runtime.settings import LiveState, ServeConfig
from dora_rl.runtime.telemetry import IntervalTelemetry, TelemetryLog
from dora_rl.runtime.usage import Usage
from dora_rl.world import IntervalModel
from dora_rl.world.requests import certain_wait_s

MAX_ATTEMPTS = 5
_Live = LiveState  # the name tests knew
__all__ = ["Interrupted", "Runtime", "ServeConfig", "StopFlag", "serve"]


class Runtime(PlanKeeper):
    """One serving run (see :func:`serve`).

    Args:
        cfg: The run's settings; decider: who decides plans, levels and modes.
        stop: Set (by a signal handler) to stop the run early: no more requests are sent,
            those not completed are refused, the partial result is returned.
    """

    def __init__(self, cfg: ServeConfig, decider: Decider, stop: StopFlag | None = None) -> None:
        self.cfg, self.decider = cfg, decider
        self.stop = stop if stop is not None else StopFlag()
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
        self.monitor = Monitor(self, cfg.progress)
        self.outputs: dict[int, Tensor] = {}
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.placing = threading.Lock()
        """Held while weights move to a plan's devices (one placement at a time)."""
        self.done = threading.Event()
        self.cluster = Cluster(self.names, host=cfg.host, token=cfg.token,
                               rpc_timeout_s=cfg.rpc_timeout_s, port=cfg.port)
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
        self.health = Health()

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


    # ------------------------------------------------------------------ requests
    def close_interval(self) -> IntervalTelemetry:
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

    def _serving_plan(self, sent_t: float) -> tuple[Plan, int]:
        """The plan to run a request on now; while there is none, wait for one up to
        ``plan_wait_s`` after the request was sent.

        Raises:
            Refused: the run is stopping, or no plan came in time (the reason says why).
        """
        with self.changed:
            while True:
                if self.stop.is_set():
                    raise Refused(STOPPED)
                if self.health.blocked is None:
                    return self.live.plan, self.live.plan_id
                if self.health.for_good:
                    raise Refused(f"no feasible plan ({self.health.blocked}; the devices "
                                  "missing are gone for good)")
                left_s = sent_t + self.cfg.plan_wait_s - time.monotonic()
                if left_s <= 0:
                    raise Refused(f"no feasible plan within {self.cfg.plan_wait_s:g} s "
                                  f"({self.health.blocked})")
                self.changed.wait(min(left_s, 0.1))

    def _one(self, i: int, x: Tensor, sent_t: float, target_ms: float) -> None:
        """Run request ``i`` to completion, or record why it was not completed."""
        try:
            _, _ = self._run(i, x, sent_t, target_ms)
        except Refused as refusal:
            self.health.not_completed(i, str(refusal))
        except Exception as error:  # noqa: BLE001 - a request never vanishes without a reason
            self.health.not_completed(i, describe(error))

    def _run(self, i: int, x: Tensor, sent_t: float, target_ms: float) -> tuple[Tensor, Record]:
        """Run request ``i`` through the plan in force, again on a new plan after a lost
        device (at most :data:`MAX_ATTEMPTS` times); records and returns its output.

        Raises:
            Refused: it could not be completed (the reason says why).
        """
        why = "no attempt"
        for attempt in range(MAX_ATTEMPTS):
            plan, plan_id = self._serving_plan(sent_t)
            started_t = time.monotonic()
            try:
                y = run_plan(plan, x, self.names, self.emulator, SERVER_NAME,
                             self.lock_dir, self.cfg.rpc_timeout_s, self._probe)
            except WorkerLost as lost:
                why = f"device {self.names[lost.device]} lost"
                self.on_lost(lost.device)
                continue
            except Stalled as stalled:
                why = str(stalled)
                continue  # every device answers: run it again
            except Aborted:
                raise Refused(STOPPED) from None
            done_t = time.monotonic()
            record = Record(i, sent_t, done_t, plan_id, attempt,
                            (done_t - sent_t) * 1e3 / self.time_scale, target_ms, started_t)
            with self.lock:
                self.records.append(record)
                if self.cfg.keep_outputs:
                    self.outputs[i] = y
            return y, record
        raise Refused(f"gave up after {MAX_ATTEMPTS} attempts ({why})")

    # ------------------------------------------------------------------ run
    def _check_stop(self) -> None:
        if self.stop.is_set():
            raise Interrupted(self.stop.signum)

    def _start(self) -> None:
        """Workers up and admitted, links calibrated, the first plan placed."""
        cfg = self.cfg
        self.lock_dir = tempfile.mkdtemp(prefix="dora_rl-media-")
        self.cluster.spawn_local(skip=cfg.remote)
        self.cluster.admit(stop=self._check_stop)
        self._check_stop()
        self._world()
        self.present = list(self.next_present)
        calibrate(self.names, self.emulator,
                  sample_input(cfg.scenario, cfg.job, self.batch, cfg.seed), SERVER_NAME,
                  self.lock_dir)
        self._check_stop()
        plan = self.decider.initial(self.usable())
        if not self.plan_usable(plan):
            plan = self._fallback()  # a device of the first plan is away at the start
        self.live = LiveState(plan=plan)
        self.power_now = self.control.power.interval(self.present, set(plan.devices))
        self._switch(plan)
        self.live.plans, self.live.switches = self.live.plans[-1:], self.live.switches[-1:]
        self.live.plan_id = 0

    def _send_all(self, pool: ThreadPoolExecutor, start: float) -> dict[Future[None], int]:
        """Submit the requests at the rate (stops early when asked to); returns them."""
        cfg = self.cfg
        kills: dict[int, list[str]] = {}
        for name, at in cfg.kills:
            kills.setdefault(at, []).append(name)
        futures: dict[Future[None], int] = {}
        for i in range(cfg.requests):
            x = sample_input(cfg.scenario, cfg.job, self.batch, cfg.seed + 1 + i)
            while not self.stop.is_set() and time.monotonic() < start + i * self.period_s:
                time.sleep(min(0.05, start + i * self.period_s - time.monotonic()))
            if self.stop.is_set():
                break
            for name in kills.get(i, []):
                with self.lock:
                    self.live.faults.append({"device": name, "t_kill": time.monotonic()})
                self.cluster.kill(name)
            futures[pool.submit(self._one, i, x, time.monotonic(), self._target_ms())] = i
            self.sent += 1
        return futures

    def _drain(self, pool: ThreadPoolExecutor, futures: dict[Future[None], int]) -> None:
        """Wait for the requests; when stopping, wake and refuse those left."""
        pending = set(futures)
        while pending and not self.stop.is_set():
            pending = wait(pending, timeout=0.05).not_done
        if self.stop.is_set():
            inbox.abort_all()
            with self.changed:
                self.changed.notify_all()
        pool.shutdown(wait=True, cancel_futures=True)
        for future, i in futures.items():
            if future.cancelled():
                self.health.not_completed(i, STOPPED)

    def run(self) -> dict[str, Any]:
        """Run to the last request (or a stop); always stops the workers.

        Raises:
            Interrupted: stopped before the first request was sent.
        """
        cfg = self.cfg
        try:
            self._start()
            if cfg.tensorboard is not None:
                from dora_rl.runtime.timeline import Board

                self.board = Board(cfg.tensorboard, cfg.scenario.jobs[cfg.job].name)
            start = self.start_t = self.telemetry.start_t = self.telemetry.last_t = \
                time.monotonic()
            self.telemetry.last = self.usage.snapshot()  # calibration calls are not the run's
            self.moved_seen = self.live.migrated_bytes  # nor is the first placement
            write_status(self)
            control = threading.Thread(target=control_loop, args=(self,), daemon=True)
            control.start()
            self.monitor.start()
            pool = ThreadPoolExecutor(cfg.max_in_flight)
            self._drain(pool, self._send_all(pool, start))
            self.done.set()
            control.join(timeout=30)
            self.monitor.stop()
            wall_s = time.monotonic() - start
            write_status(self, self.close_interval(), final=True)
            result = summarise(self, wall_s)
            if self.board is not None:
                self.board.finish(result)
                self.board = None
            return result
        finally:
            self.done.set()
            self.monitor.stop()
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


def serve(cfg: ServeConfig, decider: Decider,
          stop: StopFlag | None = None) -> tuple[dict[str, Any], dict[int, Tensor]]:
    """Run one serving session; returns the result and (with ``keep_outputs``) the outputs.

    Args:
        stop: Set it (from a signal handler) to stop early with a partial result.

    Raises:
        Interrupted: stopped before the first request was sent.
    """
    torch.set_num_threads(1)
    runtime = Runtime(cfg, decider, stop)
    result = runtime.run()
    return result, runtime.outputs
