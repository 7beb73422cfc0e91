"""A device's compute as a simpy server: one kernel at a time, first come first served.

A :class:`Kernel` is one device's share of one pipeline stage's work on one micro-batch (or
token). It takes ``max(own_s / (1 - load), floor_s)``: ``own_s`` is its compute at the plan's
DVFS speed, slowed by the background load other users put on the device, and ``floor_s`` is the
time to stream the stage's weights (and KV cache) from memory, which other users' compute does
not slow (the cost model's stage time, :func:`dora_rl.costmodel.formulas.stage_time_s`). When
the load changes while a kernel runs, the rest of the kernel runs at the new speed.

Example:
    A 10 ms kernel on a device half taken by other users, then a 5 ms one queued behind it:

    >>> import simpy
    >>> env = simpy.Environment()
    >>> dev = ComputeDevice(env, n_jobs=1)
    >>> dev.set_load(0.5)
    >>> ends = []
    >>> for own in (0.010, 0.005):
    ...     dev.submit(Kernel(own, 0.0, 0, 0.0, lambda k: ends.append(round(env.now, 6))))
    >>> env.run()
    >>> busy_s, attributed_s, busy_j = dev.take()
    >>> ends, round(busy_s[0], 6), round(attributed_s[0], 6)
    ([0.02, 0.03], 0.03, 0.015)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import simpy


class Kernel:
    """One piece of work on one device.

    Args:
        own_s: Compute seconds at the plan's DVFS speed without background load.
        floor_s: Memory-streaming seconds: the kernel never takes less.
        job: Index of the job it belongs to (busy time and energy are kept per job).
        extra_w: Power above idle while it runs (the DVFS level's busy power minus idle).
        on_done: Called with the kernel when it finishes (not when cancelled).
    """

    __slots__ = ("own_s", "floor_s", "job", "extra_w", "on_done", "left", "cancelled", "tag")

    def __init__(self, own_s: float, floor_s: float, job: int, extra_w: float,
                 on_done: Callable[[Kernel], Any]) -> None:
        self.own_s = own_s
        self.floor_s = floor_s
        self.job = job
        self.extra_w = extra_w
        self.on_done = on_done
        self.left = 1.0
        self.cancelled = False
        self.tag: Any = None


class ComputeDevice:
    """One device's compute (see the module docstring).

    Attributes:
        busy_s: Seconds spent computing per job since the last :meth:`take`.
        attributed_s: Per job, the busy seconds its kernels add to the device's: each second
            of a kernel counts ``1 - load``, since the background load would have kept the
            device busy for the rest of it anyway (the busy time the interval model charges a
            job, :func:`dora_rl.world.slack.own_demand`).
        busy_j: Joules above idle spent computing since the last :meth:`take`.
        load: Fraction of the device taken by other users, in [0, 1).
    """

    __slots__ = ("env", "queue", "running", "load", "busy_s", "attributed_s", "busy_j",
                 "_since", "_dur", "_version")

    def __init__(self, env: simpy.Environment, n_jobs: int) -> None:
        self.env = env
        self.queue: deque[Kernel] = deque()
        self.running: Kernel | None = None
        self.load = 0.0
        self.busy_s = [0.0] * n_jobs
        self.attributed_s = [0.0] * n_jobs
        self.busy_j = 0.0
        self._since = 0.0
        self._dur = 0.0
        self._version = 0

    def submit(self, kernel: Kernel) -> None:
        """Queue ``kernel``; it starts at once if the device is idle."""
        if self.running is None and not self.queue:
            self._begin(kernel)
        else:
            self.queue.append(kernel)

    def cancel(self, kernel: Kernel) -> None:
        """Drop ``kernel`` (queued or running) without calling its ``on_done``."""
        kernel.cancelled = True
        if kernel is self.running:
            self._accrue()
            self.running = None
            self._version += 1
            self._next()

    def set_load(self, load: float) -> None:
        """Change the background load; a running kernel continues at the new speed."""
        if load == self.load:
            return
        if self.running is not None:
            self._accrue()
            self.load = load
            self._dur = self._duration(self.running)
            self._arm()
        else:
            self.load = load

    def take(self) -> tuple[list[float], list[float], float]:
        """Busy and attributed seconds per job and energy above idle since the last call;
        restart all three."""
        if self.running is not None:
            self._accrue()
        out = self.busy_s, self.attributed_s, self.busy_j
        n_jobs = len(self.busy_s)
        self.busy_s = [0.0] * n_jobs
        self.attributed_s = [0.0] * n_jobs
        self.busy_j = 0.0
        return out

    # ------------------------------------------------------------------ internals
    def _duration(self, kernel: Kernel) -> float:
        own = kernel.own_s / (1.0 - self.load)
        return own if own > kernel.floor_s else kernel.floor_s

    def _accrue(self) -> None:
        """Book the running kernel's time since the last booking, and its progress."""
        kernel = self.running
        assert kernel is not None
        now = self.env.now
        dt = now - self._since
        self._since = now
        if dt > 0.0:
            self.busy_s[kernel.job] += dt
            self.attributed_s[kernel.job] += dt * (1.0 - self.load)
            self.busy_j += dt * kernel.extra_w
            if self._dur > 0.0:
                kernel.left -= dt / self._dur

    def _arm(self) -> None:
        self._version += 1
        rest = max(self.running.left, 0.0) * self._dur if self.running is not None else 0.0
        self.env.timeout(rest, self._version).callbacks.append(self._fire)

    def _begin(self, kernel: Kernel) -> None:
        self.running = kernel
        self._since = self.env.now
        own = kernel.own_s / (1.0 - self.load)
        self._dur = own if own > kernel.floor_s else kernel.floor_s
        self._version += 1
        self.env.timeout(self._dur, self._version).callbacks.append(self._fire)

    def _next(self) -> None:
        queue = self.queue
        while queue:
            kernel = queue.popleft()
            if not kernel.cancelled:
                self._begin(kernel)
                return

    def _fire(self, event: simpy.Event) -> None:
        if event.value != self._version:
            return  # the kernel was cancelled or re-timed
        kernel = self.running
        assert kernel is not None
        dt = self.env.now - self._since
        self.busy_s[kernel.job] += dt
        self.attributed_s[kernel.job] += dt * (1.0 - self.load)
        self.busy_j += dt * kernel.extra_w
        self.running = None
        if self.queue:
            self._next()
        kernel.on_done(kernel)
