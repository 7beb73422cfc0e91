"""What a plan switch costs, and QoE slack under a changed target."""

from __future__ import annotations

import math
from typing import Any

from dora_rl.costmodel import CostModel, Plan, State
from dora_rl.costmodel.tables import JobTables

MAX_STALL_S = 60.0
TIME_TARGETS = frozenset(("latency_ms", "ttft_ms", "tpot_ms", "iteration_ms", "deadline_s"))


def weight_bytes(t: JobTables, old: Plan | None, new: Plan) -> dict[int, float]:
    """Bytes of weights each device of ``new`` must receive: the layers it gains over ``old``.

    :func:`migration` sums these; the simulator sends them over its network.

    Example:
        >>> from dora_rl.costmodel import CostModel
        >>> from dora_rl.scenarios import load
        >>> t = CostModel(load("tiny")).tables
        >>> weight_bytes(t, Plan.single(0, 8), Plan(stage_end=(4, 8), stage_devices=((0,), (2,))))
        {2: 20010000.0}
    """
    prefix = t.lists.params
    held: dict[int, tuple[int, int]] = {}
    if old is not None:
        for k, group in enumerate(old.stage_devices):
            for d in group:
                held[d] = old.stage_layers(k)
    out: dict[int, float] = {}
    for k, group in enumerate(new.stage_devices):
        first, end = new.stage_layers(k)
        for d in group:
            nbytes = prefix[end] - prefix[first]
            if d in held:
                a, b = max(first, held[d][0]), min(end, held[d][1])
                if b > a:
                    nbytes -= prefix[b] - prefix[a]
            if nbytes > 0:
                out[d] = nbytes
    return out


def migration(model: CostModel, old: Plan | None, new: Plan | None,
              state: State) -> tuple[float, float]:
    """Bytes of weights that must move, and the stall while they do.

    Every device receives the weights of the layers it gains; devices receive in parallel over
    their current links, so the stall is the slowest receiver's transfer (at most
    ``MAX_STALL_S``; a device without a link stalls that long).

    Example:
        >>> from dora_rl.scenarios import load
        >>> m = CostModel(load("tiny"))
        >>> a, b = Plan.single(0, 8), Plan(stage_end=(4, 8), stage_devices=((0,), (2,)))
        >>> nbytes, stall = migration(m, a, b, m.nominal)
        >>> nbytes == sum(layer.param_bytes for layer in m.tables.model.layers[4:])
        True
    """
    if new is None:
        return 0.0, 0.0
    pending = weight_bytes(model.tables, old, new)
    return sum(pending.values()), receive(pending, model, state, MAX_STALL_S)[0]


def receive(pending: dict[int, float], model: CostModel, state: State,
            interval_s: float) -> tuple[float, dict[int, float]]:
    """One interval of weight transfers after a switch: each device receives its ``pending``
    bytes at ``state``'s link rate. Returns how long the job stays stalled in this interval
    (the slowest receiver's time, at most ``interval_s``; a device without a link stalls it
    all) and the bytes still to come.

    Example:
        >>> from dora_rl.scenarios import load
        >>> m = CostModel(load("tiny"))
        >>> rate = m.tables.lists.link[2]  # bytes/s at the nominal link
        >>> down, left = receive({2: 1.5 * rate}, m, m.nominal, 1.0)
        >>> down, round(left[2] / rate, 6)
        (1.0, 0.5)
        >>> receive(left, m, m.nominal, 1.0)[0], receive(left, m, m.nominal, 1.0)[1]
        (0.5, {})
    """
    link, scale = model.tables.lists.link, state.lists[2]
    down, left = 0.0, {}
    for d, nbytes in pending.items():
        rate = link[d] * scale[d]
        # min/max as conditional expressions (same results): builtin calls cost ~0.3 us
        spent = interval_s if not rate > 0 or (t := nbytes / rate) > interval_s else t
        down = spent if spent > down else down
        rest = nbytes - rate * spent
        if rest > 1e-9 * nbytes:
            left[d] = rest
    return down, left


def demand(metrics: dict[str, Any], view: State) -> list[float]:
    """A job's own compute demand per device (fraction of the interval): its busy time under
    the view's background load, deflated by that load, so other jobs' load does not feed back.

    Example:
        Busy 0.4 s of a 1 s interval on a device half loaded by others: its demand is 0.2.

        >>> from types import SimpleNamespace
        >>> demand({"busy_s": [0.4], "interval_s": 1.0}, SimpleNamespace(lists=([0.5],)))
        [0.2]
    """
    interval = metrics["interval_s"]
    if not (math.isfinite(interval) and interval > 0):
        return [0.0] * len(metrics["busy_s"])
    return [1.0 if (x := b * (1.0 - ld) / interval) > 1.0 else x  # min(x, 1.0), no call
            for b, ld in zip(metrics["busy_s"], view.lists[0], strict=True)]


def violation(metrics: dict[str, Any], qoe_scale: float) -> list[float]:
    """Relative slack of each target once time targets are multiplied by ``qoe_scale``.

    NaN (a figure that could not be computed) counts as a shortfall of 5.

    Example:
        A 100 ms target met in 90 ms has 10 % slack; tightened to 80 ms it is missed by 12.5 %.

        >>> [round(s, 3) for s in violation({"qoe_slack": {"latency_ms": 0.1}}, 0.8)]
        [-0.125]
    """
    out = []
    for name, slack in metrics["qoe_slack"].items():
        if name in TIME_TARGETS:
            slack = 1.0 - (1.0 - slack) / qoe_scale
        out.append(slack if slack == slack and slack != -math.inf else -5.0)
    return out


WAIT_TARGETS = ("latency_ms", "ttft_ms")  # a request's own wait behind a stall adds to these
STRETCH_TARGETS = ("throughput", "iteration_ms", "deadline_s")  # rates the stall thins out


def stall_wait_s(down_s: float, interval_s: float) -> float:
    """Mean extra wait of the requests arriving (uniformly) during an interval whose first
    ``down_s`` seconds the job cannot serve: ``down^2 / 2I`` while the stall fits in the
    interval, ``down - I / 2`` when it spans it.

    Example:
        A 0.5 s stall in a 1 s interval: half the requests wait 0.25 s on average, 0.125 s
        over all; a 3 s stall makes every request of the interval wait 2.5 s on average.

        >>> stall_wait_s(0.5, 1.0), stall_wait_s(3.0, 1.0)
        (0.125, 2.5)
    """
    if down_s <= 0:
        return 0.0
    return down_s * down_s / (2.0 * interval_s) if down_s <= interval_s else \
        down_s - interval_s / 2.0


def stalled(slack: dict[str, float], down_s: float, interval_s: float,
            targets_s: dict[str, float]) -> dict[str, float]:
    """QoE slack of a job that serves nothing for ``down_s`` of the interval (its stages wait
    for the weights a plan switch moves): per-request targets (``WAIT_TARGETS``) add the mean
    wait (:func:`stall_wait_s`) to the figure, rate targets (``STRETCH_TARGETS``) stretch it by
    ``I / (I - down)`` (missed outright when the stall spans the interval); TPOT and energy are
    unchanged. ``targets_s`` holds the unscaled per-request targets in seconds.

    Example:
        A 100 ms latency target met with 40 % slack (60 ms), stalled 0.5 s of a 1 s interval:
        60 + 125 ms = 185 ms, slack -85 %; a throughput slack of 20 % becomes -60 %.

        >>> out = stalled({"latency_ms": 0.4, "throughput": 0.2}, 0.5, 1.0, {"latency_ms": 0.1})
        >>> round(out["latency_ms"], 3), round(out["throughput"], 3)
        (-0.85, -0.6)
    """
    if down_s <= 0:
        return slack
    wait = stall_wait_s(down_s, interval_s)
    out = dict(slack)
    for name, value in slack.items():
        if name in WAIT_TARGETS and name in targets_s:
            out[name] = value - wait / targets_s[name]
        elif name in STRETCH_TARGETS:
            out[name] = 1.0 - (1.0 - value) * interval_s / (interval_s - down_s) \
                if down_s < interval_s else -math.inf
    return out


def wait_targets_s(model: CostModel) -> dict[str, float]:
    """A job's per-request targets in seconds (the ones a stall's wait adds to)."""
    qoe = model.tables.job.qoe
    return {name: getattr(qoe, name) / 1e3 for name in WAIT_TARGETS
            if getattr(qoe, name, None) is not None}


__all__ = ["STRETCH_TARGETS", "WAIT_TARGETS", "demand", "migration", "receive", "stall_wait_s",
           "stalled", "violation", "wait_targets_s", "weight_bytes"]
