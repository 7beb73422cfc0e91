"""Serving requests as they come, until stopped: the runtime behind ``serve --http``.

:class:`ServiceRuntime` is the serving run of :class:`~dora_rl.runtime.runner.Runtime`
(workers, weights placed per the decider's plan, the control thread with its heartbeats,
decisions, energy and status file, the console's progress) without the batch of requests it
sends itself: :meth:`ServiceRuntime.start` brings it up, requests come from the HTTP API, and
:meth:`ServiceRuntime.close` stops it. :class:`InferRuntime` serves an ``inference`` job one
tensor at a time (``POST /v1/infer/<job>``); the LLM service is
:class:`~dora_rl.runtime.llm_serving.LlmRuntime`.
"""

from __future__ import annotations

import itertools
import shutil
import threading
import time

import torch
from torch import Tensor

from dora_rl.runtime.control import Decider
from dora_rl.runtime.health import Refused, StopFlag
from dora_rl.runtime.layers import ModelError, input_vocabulary, sample_input
from dora_rl.runtime.loop import control_loop, write_status
from dora_rl.runtime.runner import Runtime
from dora_rl.runtime.settings import ServeConfig

MAX_ITEMS = 1024
"""Most items one inference request may carry."""


class ServiceRuntime(Runtime):
    """A runtime that serves requests as they come until :meth:`close` (see the module
    docstring).

    Args:
        cfg: The run's settings (``requests``, ``rate_per_s`` and ``kills`` are not used);
            decider: who decides plans, levels and modes; stop: set to stop serving.
    """

    def __init__(self, cfg: ServeConfig, decider: Decider, stop: StopFlag | None = None) -> None:
        super().__init__(cfg, decider, stop)
        self.slots = threading.BoundedSemaphore(cfg.max_in_flight)
        """Requests served at once; the others wait for a slot."""
        self.index = itertools.count()
        self.control_thread: threading.Thread | None = None

    def start(self) -> None:
        """Workers up, the first plan placed, the control thread running.

        Raises:
            Interrupted: stopped while starting.
        """
        torch.set_num_threads(1)
        self._start()
        self._calibrate()
        self.start_t = self.telemetry.start_t = self.telemetry.last_t = time.monotonic()
        self.telemetry.last = self.usage.snapshot()
        self.moved_seen = self.live.migrated_bytes
        write_status(self)
        self.control_thread = threading.Thread(target=control_loop, args=(self,), daemon=True)
        self.control_thread.start()
        self.monitor.start()

    def _calibrate(self) -> None:
        """Measurements a service takes once its workers are up (none by default)."""

    def close(self) -> None:
        """Stop the control thread and the workers (the status file says ``finished``, or
        ``interrupted`` after a signal)."""
        self.done.set()
        self.monitor.stop()
        if self.control_thread is not None:
            self.control_thread.join(timeout=30)
            try:
                write_status(self, self.close_interval(), final=True)
            except Exception as error:  # noqa: BLE001 - stopping must not fail on a status
                self.health.error("status", error)
        self.cluster.close()
        if self.lock_dir:
            shutil.rmtree(self.lock_dir, ignore_errors=True)


class InferRuntime(ServiceRuntime):
    """A live inference service: :meth:`infer` runs one request's items through the plan in
    force, re-planning around a lost device as the batch mode does.

    Raises:
        ModelError: the job is not an ``inference`` job.
    """

    def __init__(self, cfg: ServeConfig, decider: Decider, stop: StopFlag | None = None) -> None:
        job = cfg.scenario.jobs[cfg.job]
        if job.workload != "inference":
            raise ModelError(f"job {job.name!r}: not an inference job")
        super().__init__(cfg, decider, stop)
        self.template = sample_input(cfg.scenario, cfg.job, 1, cfg.seed)
        """One item of the model's input: its shape (past the first axis) and dtype."""
        self.vocab = input_vocabulary(cfg.scenario, cfg.job)
        """Token ids the model takes (None: its input is not token ids)."""

    def infer(self, x: Tensor) -> tuple[Tensor, float, int]:
        """Run ``x`` (``[n, *item shape]``) through the plan; returns the output, the latency
        in the card's milliseconds and the plan id it completed on.

        Raises:
            Refused: no plan within ``plan_wait_s``, the service is stopping, or the request
                failed :data:`~dora_rl.runtime.runner.MAX_ATTEMPTS` times.
        """
        index, sent_t, target_ms = next(self.index), time.monotonic(), self._target_ms()
        with self.slots:
            with self.lock:
                self.sent += 1
            try:
                y, record = self._run(index, x, sent_t, target_ms)
            except Refused as refusal:
                self.health.not_completed(index, str(refusal))
                raise
        return y, record.latency_ms, record.plan_id


__all__ = ["MAX_ITEMS", "InferRuntime", "ServiceRuntime"]
