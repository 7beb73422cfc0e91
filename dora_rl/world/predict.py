"""What a controller may predict from its measurements: a job's slack and power on a plan,
evaluated by the interval model's cost model in the job's view."""

from __future__ import annotations

import math
from collections.abc import Sequence

from dora_rl.costmodel import Plan, State
from dora_rl.dynamics import WorldState
from dora_rl.world.control_state import ControlState
from dora_rl.world.interval import IntervalModel
from dora_rl.world.queues import DeviceQueues, at_load, combine
from dora_rl.world.requests import queued
from dora_rl.world.slack import own_demand, scaled_slacks


def others_queues(model: IntervalModel, ctl: ControlState, world: WorldState,
                  j: int) -> DeviceQueues:
    """The kernel load the other active jobs' serving plans put on each device, at their
    nominal modes under the world's background load: what job ``j``'s kernels would queue
    behind (:mod:`dora_rl.world.queues`)."""
    active = world.job_active.tolist()
    rates = world.rate_scale.tolist() if world.rate_scale is not None else [1.0] * len(active)
    loads = [model.kernel_load(i, jc.plan, rates[i]) if i != j and active[i] and jc.plan is not None
             else None for i, jc in enumerate(ctl.jobs)]
    return at_load(combine(loads, model.n_devices), world.state.lists[0])


def prediction_view(model: IntervalModel, ctl: ControlState, world: WorldState,
                    j: int) -> State:
    """Job ``j``'s view of ``world`` with its bandwidth level's share of the media
    (:meth:`IntervalModel.view`): what :func:`predict` evaluates in."""
    state = world.state
    shares = model.shares([jc.level for jc in ctl.jobs], world.job_active.tolist())
    return model.view(state, shares[j], state.lists[1])


class RoundedView:
    """A view (:meth:`IntervalModel.view`) with its loads, link rates and free airtime as
    whole multiples of ``step``, and the view rounded so (built on first use): predicting in
    a rounded view lets a controller memoise predictions on the rounded figures.

    Attributes:
        view: The view itself.
        loads, links: Per device its load and link rate in steps.
        frees: Per domain its free airtime in steps.
    """

    __slots__ = ("_rounded", "frees", "links", "loads", "step", "view")

    def __init__(self, view: State, step: float) -> None:
        q = 1.0 / step
        load, _, link, free = view.lists
        self.view, self.step = view, step
        self.loads = [round(x * q) for x in load]
        self.links = [round(x * q) for x in link]
        self.frees = tuple([round(f * q) for f in free])
        self._rounded: State | None = None

    def rounded(self) -> State:
        """The view with loads, link rates and free airtime rounded to the step (free airtime
        at least 1e-3; unchecked, as the view)."""
        if self._rounded is None:
            q = 1.0 / self.step
            view = self.view
            rounded = object.__new__(State)
            rounded.__dict__.update(view.__dict__)
            rounded.__dict__["lists"] = (
                [x / q for x in self.loads], view.lists[1], [x / q for x in self.links],
                [max(f / q, 1e-3) for f in self.frees])
            self._rounded = rounded
        return self._rounded


def predict_in_view(model: IntervalModel, modes: Sequence[int], j: int, plan: Plan,
                    view: State, qoe_scale: float,
                    others: DeviceQueues | None = None,
                    rate_scale: float = 1.0) -> tuple[float, float]:
    """:func:`predict` in a given view (the devices in ``modes``) at ``rate_scale`` times the
    job's request rate, the other jobs' kernels putting ``others`` on the devices (none when
    omitted)."""
    cost = model.at_rate(j, rate_scale)
    # every device nominal (or asleep): the plan runs as it is (IntervalModel.moded)
    moded = plan if plan.dvfs_levels is None and not any(modes) else model.moded(plan, modes)
    raw = cost.evaluate(moded, view, check=False)
    metrics = queued(cost.tables.job, raw, plan,
                     others if others is not None else DeviceQueues.empty(model.n_devices))
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
    view = prediction_view(model, ctl, world, j)
    rate = float(world.rate_scale[j]) if world.rate_scale is not None else 1.0
    return predict_in_view(model, ctl.modes, j, plan, view, float(world.qoe_scale[j]),
                           others_queues(model, ctl, world, j), rate)


__all__ = ["RoundedView", "others_queues", "predict", "predict_in_view", "prediction_view"]
