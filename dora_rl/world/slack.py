"""QoE slack under a changed target, and a job's own compute demand: shared by the interval
model and the controllers that predict with it."""

from __future__ import annotations

import math
from typing import Any

from dora_rl.costmodel import State

TIME_TARGETS = frozenset(("latency_ms", "ttft_ms", "tpot_ms", "iteration_ms", "deadline_s"))


def scaled_slacks(metrics: dict[str, Any], qoe_scale: float) -> list[float]:
    """Relative slack of each target once time targets are multiplied by ``qoe_scale``.

    NaN (a figure that could not be computed) counts as a shortfall of 5.

    Example:
        A 100 ms target met in 90 ms has 10 % slack; tightened to 80 ms it is missed by 12.5 %.

        >>> [round(s, 3) for s in scaled_slacks({"qoe_slack": {"latency_ms": 0.1}}, 0.8)]
        [-0.125]
    """
    out = []
    for name, slack in metrics["qoe_slack"].items():
        if name in TIME_TARGETS and qoe_scale != 1.0:
            slack = 1.0 - (1.0 - slack) / qoe_scale
        out.append(slack if slack == slack and slack != -math.inf else -5.0)
    return out


def own_demand(metrics: dict[str, Any], view: State) -> list[float]:
    """A job's own compute demand per device (fraction of the interval): its busy time under
    the view's background load, deflated by that load, so other jobs' load does not feed back.

    Example:
        Busy 0.4 s of a 1 s interval on a device half loaded by others: its demand is 0.2.

        >>> from types import SimpleNamespace
        >>> own_demand({"busy_s": [0.4], "interval_s": 1.0}, SimpleNamespace(lists=([0.5],)))
        [0.2]
    """
    interval = metrics["interval_s"]
    if not (math.isfinite(interval) and interval > 0):
        return [0.0] * len(metrics["busy_s"])
    out = []
    for b, ld in zip(metrics["busy_s"], view.lists[0], strict=True):
        x = b * (1.0 - ld) / interval
        out.append(1.0 if x > 1.0 else x)
    return out


__all__ = ["TIME_TARGETS", "own_demand", "scaled_slacks"]
