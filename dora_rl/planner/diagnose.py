"""Name the binding constraint, in words, when no plan meets memory and QoE."""

from __future__ import annotations

from typing import Any

import numpy as np

from dora_rl.costmodel import CostModel, State
from dora_rl.errors import InfeasibleError
from dora_rl.planner.formulation import Limits
from dora_rl.planner.space import SearchSpace

GB = 1e9


def _gb(n: float) -> str:
    """Bytes in the largest unit that keeps a readable number.

    Example:
        >>> _gb(1.7e9), _gb(2.5e6), _gb(1000)
        ('1.70 GB', '2.50 MB', '1000 B')
    """
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size * 0.995 and not (unit == "kB" and n < 1e4):
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f} B"


def _memory_problem(model: CostModel, state: State, space: SearchSpace) -> str | None:
    t, job = model.tables, model.tables.job
    usable = [d for cls in space.classes for d in cls]
    names = [d.name for d in model.scenario.devices]
    if not usable:
        return f"no device is both present and able to run model {job.model!r}"
    roomiest = max(usable, key=lambda d: t.memory_bytes[d])
    largest = t.memory_bytes[roomiest]
    sizes = np.diff(t.param_prefix_bytes)  # weight bytes per layer in the model's format
    biggest = int(np.argmax(sizes))
    if sizes[biggest] > largest:
        return (f"not enough memory: {job.model} layer {t.model.layers[biggest].name!r} needs "
                f"{_gb(float(sizes[biggest]))} of weights; the largest usable device "
                f"({names[roomiest]}) holds {_gb(largest)}")
    weights = float(t.param_prefix_bytes[-1])
    total = sum(sorted((t.memory_bytes[d] for d in usable), reverse=True)[: space.max_stages])
    if weights > total:
        n = min(len(usable), space.max_stages)
        return (f"not enough memory: {job.model} needs {_gb(weights)} of weights; the {n} "
                f"largest usable devices together hold {_gb(total)}")
    return None


def _qoe_problem(model: CostModel, state: State, space: SearchSpace, limits: Limits) -> str:
    from dora_rl.planner.partition import solve

    job = model.tables.job
    try:
        fastest = solve(model, "time", state, space, Limits(ignore_qoe=True), time_limit_s=60.0)
    except InfeasibleError:  # memory itself is the problem then
        return (f"not enough memory: {job.model} fits on no chain of at most "
                f"{space.max_stages} stages once activations, optimizer state or KV cache are "
                "counted")
    missed = _missed(fastest.metrics, job)
    if limits.max_time_s is not None and fastest.time_s > limits.max_time_s:
        missed.append(f"time {fastest.time_s * 1e3:.1f} ms above the limit "
                      f"{limits.max_time_s * 1e3:.1f} ms")
    detail = "; ".join(missed) or "its energy exceeds the energy cap or budget"
    return (f"no plan meets QoE; the fastest plan "
            f"{describe(model, fastest.plan)} misses: {detail}")


def _missed(metrics: dict[str, Any], job: Any) -> list[str]:
    out = []
    for target, slack in metrics["qoe_slack"].items():
        if slack >= 0:
            continue
        if target == "throughput":
            out.append(f"throughput (needs {job_rate(job):g} per s)")
        else:
            value = getattr(job.qoe, target)
            out.append(f"{target} {value * (1 - slack):.1f} against the target {value:g}")
    return out


def job_rate(job: Any) -> float:
    """The request rate a job must sustain."""
    work = job.inference or job.llm
    return float(work.request_rate_per_s) if work is not None else 0.0


def describe(model: CostModel, plan: Any) -> str:
    """``[1-6] orin_nano | [7-14] laptop+macbook``: a plan in one line (layers 1-based)."""
    names = [d.name for d in model.scenario.devices]
    parts = []
    for k, group in enumerate(plan.stage_devices):
        first, end = plan.stage_layers(k)
        parts.append(f"[{first + 1}-{end}] {'+'.join(names[d] for d in group)}")
    return " | ".join(parts)


def explain_infeasible(model: CostModel, state: State, space: SearchSpace, limits: Limits,
                       mode: str) -> str:
    """One sentence naming why no plan exists."""
    reason = _memory_problem(model, state, space) or _qoe_problem(model, state, space, limits)
    return f"job {model.tables.job.name!r}: {reason}"
