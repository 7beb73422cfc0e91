"""One stage's work on one micro-batch: a kernel on every device of its data-parallel group.

The micro-batch is split over the group in proportion to each device's planned speed, so with
no load all kernels end together. The op is done when the slowest kernel is, and never before
one item on the fastest replica (:func:`dora_rl.costmodel.formulas.stage_time_s`): in isolation
it takes exactly the cost model's stage time.

Example:
    Two devices at 10 and 30 ms per item share a 4-item micro-batch in proportion to their
    speed, as 3 and 1 items: both kernels take 30 ms.

    >>> import simpy
    >>> from dora_rl.sim.device import ComputeDevice
    >>> from dora_rl.sim.plan_work import StageWork
    >>> env = simpy.Environment()
    >>> devices = [ComputeDevice(env, n_jobs=1) for _ in range(2)]
    >>> stage = StageWork(devices=(0, 1), frac=(0.75, 0.25), item_s=(0.01, 0.03),
    ...     item_b_s=(0.02, 0.06), weight_read_s=(0.0, 0.0), kv_bytes_per_token=(0.0, 0.0),
    ...     memory_bw=(1e9, 1e9), extra_w=(5.0, 5.0), sync_bytes=0.0,
    ...     own_s=(0.0075, 0.0075), own_b_s=(0.015, 0.015), kv_s=(0.0, 0.0))
    >>> ends = []
    >>> _ = StageOp(env, devices, 0, stage, 4.0, False, 0.0, lambda op: ends.append(env.now))
    >>> env.run()
    >>> [round(t, 6) for t in ends]
    [0.03]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import simpy

from dora_rl.sim.device import ComputeDevice, Kernel
from dora_rl.sim.plan_work import StageWork


class StageOp:
    """A running stage op (see the module docstring).

    Args:
        env: The simpy environment.
        devices: Every device of the scenario.
        job: The job's index.
        stage: The stage to run.
        items: Items in the micro-batch.
        backward: Run the backward pass (training: backward seconds, weights read twice).
        context_tokens: Tokens of KV cache each item attends over (LLM decoding; 0 otherwise).
        on_done: Called with the op when it is done.
    """

    __slots__ = ("env", "devices", "group", "kernels", "pending", "start_s", "min_s",
                 "on_done", "tag", "cancelled")

    def __init__(self, env: simpy.Environment, devices: list[ComputeDevice], job: int,
                 stage: StageWork, items: float, backward: bool, context_tokens: float,
                 on_done: Callable[[StageOp], Any]) -> None:
        self.env = env
        self.devices = devices
        self.on_done = on_done
        self.tag: Any = None
        self.cancelled = False
        self.start_s = env.now
        group = self.group = stage.devices
        own = stage.own_b_s if backward else stage.own_s
        reads = stage.weight_read_s
        if len(group) == 1:  # the common case, kept short
            floor = reads[0] * 2.0 if backward else reads[0]
            if context_tokens > 0.0:
                floor += stage.kv_s[0] * context_tokens * items
            kernel = Kernel(items * own[0], floor, job, stage.extra_w[0], self._kernel_done)
            self.kernels: tuple[Kernel, ...] = (kernel,)
            self.pending = 1
            self.min_s = 0.0
            devices[group[0]].submit(kernel)
            return
        kernels = []
        for i in range(len(group)):
            floor = reads[i] * 2.0 if backward else reads[i]
            if context_tokens > 0.0:
                floor += stage.kv_s[i] * context_tokens * items
            kernels.append(Kernel(items * own[i], floor, job, stage.extra_w[i],
                                  self._kernel_done))
        self.kernels = tuple(kernels)
        self.pending = len(group)
        # one item on the fastest replica bounds a data-parallel stage from below
        item_s = stage.item_b_s if backward else stage.item_s
        self.min_s = min(item_s[i] / (1.0 - devices[d].load) for i, d in enumerate(group))
        for d, kernel in zip(group, kernels, strict=True):
            devices[d].submit(kernel)

    def cancel(self) -> None:
        """Drop the op's kernels (a device of the group left)."""
        self.cancelled = True
        for kernel, d in zip(self.kernels, self.group, strict=True):
            self.devices[d].cancel(kernel)

    def _kernel_done(self, kernel: Kernel) -> None:
        self.pending -= 1
        if self.pending or self.cancelled:
            return
        rest = self.start_s + self.min_s - self.env.now
        if rest > 1e-15:
            self.env.timeout(rest).callbacks.append(self._finish)
        else:
            self.on_done(self)

    def _finish(self, _event: simpy.Event) -> None:
        if not self.cancelled:
            self.on_done(self)
