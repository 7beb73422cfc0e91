"""Jobs sharing a device: their kernels queue first come, first served.

A device runs one kernel at a time (a request's stage, an LLM's prefill or one decode pass, a
training micro-batch's forward or backward pass), and kernels of every job wait in one queue,
as the simulator runs them. Each job's kernels on a device put a load on it: the share of
time they keep it busy (``utilisation``) and their mean residual work met by an arrival
(``residual_s``, half the sum over kernels of rate times squared kernel time). By the
Pollaczek-Khinchine formula a kernel arriving at the device waits ``residual / (1 -
utilisation)`` in the mean, the sums taken over every job on the device: the wait behind the
job's own earlier kernels and behind the other jobs' ones. A job whose short kernels share a
device with another job's long ones waits behind them, which a fluid share of the device's
speed would never show.

Kernel sizes are taken as each job's mean kernel on the device (an LLM's prefill counts as
one of its passes), so the residual of a job mixing long and short kernels is somewhat
understated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dora_rl.config import Job


@dataclass(frozen=True)
class DeviceQueues:
    """Per device, the kernel load of some jobs (all of them, or all but one).

    Attributes:
        utilisation: Share of time their kernels keep each device busy.
        residual_s: Their mean residual kernel work met by an arrival at each device.
    """

    utilisation: tuple[float, ...]
    residual_s: tuple[float, ...]

    def __init__(self, utilisation: tuple[float, ...], residual_s: tuple[float, ...]) -> None:
        # as the generated frozen __init__, in one update of the instance dict (hot)
        self.__dict__.update(utilisation=utilisation, residual_s=residual_s)

    @classmethod
    def empty(cls, n_devices: int) -> DeviceQueues:
        """No kernels anywhere."""
        zero = (0.0,) * n_devices
        return cls(zero, zero)


def kernels_per_unit(job: Job, micro_batches: int = 1) -> float:
    """Kernels one unit of work runs on each device of its plan: one per request, one per
    pass of an LLM request (prefill and each further token), a forward and a backward pass
    per micro-batch of a training iteration.

    Example:
        >>> from dora_rl.scenarios import load
        >>> home = load("smart_home")
        >>> kernels_per_unit(home.jobs[1]), kernels_per_unit(home.jobs[0]) > 1
        (1.0, True)
    """
    if job.llm is not None:
        return float(job.llm.output_tokens)
    if job.training is not None:
        return 2.0 * micro_batches
    return 1.0


def kernel_load(job: Job, metrics: dict[str, Any],
                micro_batches: int = 1) -> tuple[list[float], list[float]]:
    """A job's (utilisation, residual seconds) per device from its plan's figures: busy
    seconds per unit over the time between units, and utilisation times the mean kernel
    over two.

    Example:
        A 22 ms inference 15 times a second: a third of the device, 3.7 ms of residual.

        >>> from dora_rl.scenarios import load
        >>> job = load("smart_home").jobs[1]
        >>> u, r = kernel_load(job, {"busy_s": [0.0, 0.022], "interval_s": 1 / 15})
        >>> [round(x, 4) for x in u], [round(x * 1e3, 2) for x in r]
        ([0.0, 0.33], [0.0, 3.63])
    """
    interval = metrics["interval_s"]
    busy = metrics["busy_s"]
    if not (math.isfinite(interval) and interval > 0):
        return [0.0] * len(busy), [0.0] * len(busy)
    per = kernels_per_unit(job, micro_batches)
    util, residual = [], []
    for b in busy:
        u = b / interval
        util.append(u)
        residual.append(u * b / per / 2.0)
    return util, residual


def combine(loads: Sequence[tuple[Sequence[float], Sequence[float]] | None],
            n_devices: int, skip: int = -1) -> DeviceQueues:
    """The device queues of the jobs' kernel loads summed (``None``: a job not running;
    ``skip``: a job left out, to see what the others put on it).

    Example:
        >>> q = combine([([0.3, 0.0], [0.003, 0.0]), None, ([0.1, 0.2], [0.001, 0.002])], 2)
        >>> [round(x, 6) for x in q.utilisation], [round(x, 6) for x in q.residual_s]
        ([0.4, 0.2], [0.004, 0.002])
    """
    util = [0.0] * n_devices
    residual = [0.0] * n_devices
    for i, load in enumerate(loads):
        if load is None or i == skip:
            continue
        for d, (u, r) in enumerate(zip(load[0], load[1], strict=True)):
            util[d] += u
            residual[d] += r
    return DeviceQueues(tuple(util), tuple(residual))


def at_load(queues: DeviceQueues, load: Sequence[float]) -> DeviceQueues:
    """The queues when each device's background load slows every kernel by ``1 / (1 -
    load)``: utilisation grows by that factor, residual work by its square.

    Example:
        >>> q = at_load(DeviceQueues((0.2,), (0.001,)), [0.5])
        >>> q.utilisation, round(q.residual_s[0], 6)
        ((0.4,), 0.004)
    """
    util, residual = [], []
    for u, r, x in zip(queues.utilisation, queues.residual_s, load, strict=True):
        slow = 1.0 / (1.0 - x)
        util.append(u * slow)
        residual.append(r * slow * slow)
    return DeviceQueues(tuple(util), tuple(residual))


def fcfs_wait_s(utilisation: float, residual_s: float) -> float:
    """Mean wait of a kernel arriving at a device (Pollaczek-Khinchine): ``residual / (1 -
    utilisation)``; infinite once the device is fully used.

    Example:
        A device half used with 4 ms of residual work: 8 ms.

        >>> fcfs_wait_s(0.5, 0.004), fcfs_wait_s(1.0, 0.004)
        (0.008, inf)
    """
    if not utilisation < 1.0:
        return math.inf
    return residual_s / (1.0 - utilisation)


__all__ = ["DeviceQueues", "at_load", "combine", "fcfs_wait_s", "kernel_load",
           "kernels_per_unit"]
