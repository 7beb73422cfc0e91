"""What a controller may predict from its measurements: a job's slack and power on a plan,
evaluated by the interval model's cost model in the job's view."""

from __future__ import annotations

import math
from collections.abc import Sequence

from dora_rl.costmodel import Plan, State
from dora_rl.dynamics import WorldState
from dora_rl.world.interval import IntervalModel
from dora_rl.world.requests import queued
from dora_rl.world.slack import own_demand, scaled_slacks
from dora_rl.world.state import ControlState


def prediction_view(model: IntervalModel, ctl: ControlState, world: WorldState, j: int,
                    plan: Plan) -> State:
    """Job ``j``'s view of ``world`` if it ran ``plan`` while the other active jobs serve
    their plans (:meth:`IntervalModel.view`): what :func:`predict` evaluates in."""
    state = world.state
    active = world.job_active.tolist()
    shares = model.shares([jc.level for jc in ctl.jobs], active)
    mine = model.demand(j, plan)
    total = list(mine)
    for i, jc in enumerate(ctl.jobs):
        if i != j and active[i] and jc.plan is not None:
            for d, x in enumerate(model.demand(i, jc.plan)):
                total[d] += x
    return model.view(j, state, shares[j], total, mine, state.lists[1])


def predict_in_view(model: IntervalModel, modes: Sequence[int], j: int, plan: Plan,
                    view: State, qoe_scale: float) -> tuple[float, float]:
    """:func:`predict` in a given view (the devices in ``modes``)."""
    metrics = queued(model.models[j].tables.job,
                     model.models[j].evaluate(model.moded(plan, modes), view, check=False))
    slacks = scaled_slacks(metrics, qoe_scale)
    ok = metrics["memory_ok"] and metrics["usable_ok"]
    slack = (min(slacks) if slacks else 1.0) if ok else -1.0
    interval = metrics["interval_s"]
    if not (math.isfinite(interval) and interval > 0):
        return slack, math.inf
    own = own_demand(metrics, view)
    power = 0.0
    for d in plan.devices:
        f = model.devices[d]
        mode = modes[d] if modes[d] >= 0 else 0
        power += own[d] * (f.busy_w[mode] - f.idle_w)
        power += (metrics["tx_s"][d] * (f.tx_w - f.idle_w)
                  + metrics["rx_s"][d] * (f.rx_w - f.idle_w)) / interval
        if f.dedicated:
            power += f.idle_w
    return slack, power


def predict(model: IntervalModel, ctl: ControlState, world: WorldState, j: int,
            plan: Plan) -> tuple[float, float]:
    """Job ``j``'s smallest relative QoE slack and power (W) running ``plan`` in ``world``
    with the devices' current modes, the other jobs serving their plans: what a controller
    may predict from its measurements (the env scores candidates with it).

    The power is what the job would cause: work and radio above idle on the plan's devices,
    plus the idle power of the dedicated ones.

    Example:
        >>> import numpy as np
        >>> from dora_rl.scenarios import load
        >>> model = IntervalModel(load("tiny"))
        >>> plan = Plan.single(2, 8)
        >>> world = WorldState(model.models[0].nominal, np.ones(1, bool), np.ones(1), 0)
        >>> slack, power_w = predict(model, model.initial([plan]), world, 0, plan)
        >>> round(slack, 3), round(power_w, 3)  # 8.35 ms (0.35 queueing) of 50; 10 x 8 ms at 10 W
        (0.833, 0.8)
    """
    view = prediction_view(model, ctl, world, j, plan)
    return predict_in_view(model, ctl.modes, j, plan, view, float(world.qoe_scale[j]))


__all__ = ["predict", "predict_in_view", "prediction_view"]
