"""Name the binding constraint, in words, when no plan meets memory and QoE."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dora_rl.costmodel import CostModel, State
from dora_rl.errors import InfeasibleError
from dora_rl.planner.exact.candidates import MAX_FIGURE
from dora_rl.planner.exact.formulation import Limits
from dora_rl.planner.exact.space import SearchSpace

Solver = Callable[..., Any]
"""``solve(model, mode, state, space, limits, time_limit_s=...)`` returning a result with
``plan``, ``metrics`` and ``time_s`` (:func:`dora_rl.planner.exact.partition.solve`)."""

GB = 1e9


def _gb(n: float) -> str:
    """Bytes in the largest unit that keeps a readable number.

    Example:
        >>> _gb(1.7e9), _gb(2.5e6), _gb(1000), _gb(1e308)
        ('1.70 GB', '2.50 MB', '1000 B', '1e+299 GB')
    """
    if n >= 1e15:
        return f"{n / 1e9:.3g} GB"
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


def _fit_problem(model: CostModel, space: SearchSpace) -> str:
    """Why no plan fits even with every QoE target dropped; never solves (no recursion).

    Names what makes every chain infeasible: an activation or KV cache larger than any usable
    device, transfers too slow to count, or (by elimination) memory once activations, optimizer
    state or KV cache are counted.
    """
    t, job = model.tables, model.tables.job
    usable = [d for cls in space.classes for d in cls]
    names = [d.name for d in model.scenario.devices]
    roomiest = max(usable, key=lambda d: t.memory_bytes[d])
    room = float(t.memory_bytes[roomiest])
    acts = t.activation_bytes
    biggest = int(np.argmax(acts)) if len(acts) else 0
    if len(acts) and not acts[biggest] <= room:
        return (f"not enough memory: {job.model} layer {t.model.layers[biggest].name!r} outputs "
                f"{_gb(float(acts[biggest]))} of activations per item; the largest usable device "
                f"({names[roomiest]}) holds {_gb(room)}")
    if job.llm is not None:
        tokens = job.llm.prompt_tokens + job.llm.output_tokens
        kv = float(t.kv_prefix_bytes[-1]) * tokens * job.llm.batch
        total = sum(float(t.memory_bytes[d]) for d in usable)
        if not kv <= total:
            return (f"not enough memory: the KV cache of {tokens:,} tokens needs {_gb(kv)}; "
                    f"every usable device together holds {_gb(total)}")
    slowest = min(usable, key=lambda d: t.link_bytes_per_s[d])
    with np.errstate(divide="ignore", invalid="ignore"):
        slow_s = float(np.float64(np.max(acts, initial=0.0)) / t.link_bytes_per_s[slowest])
    if len(space.groups) > 1 and not slow_s <= MAX_FIGURE:
        return (f"links too slow: sending one item over the link of {names[slowest]} "
                f"({t.link_bytes_per_s[slowest] * 8 / 1e6:.3g} Mbps) takes {slow_s:.3g} s, and "
                "no plan avoiding such links fits in memory")
    return (f"not enough memory: {job.model} fits on no chain of at most "
            f"{space.max_stages} stages once activations, optimizer state or KV cache are "
            "counted")


def _qoe_problem(model: CostModel, state: State, space: SearchSpace, limits: Limits,
                 solve: Solver) -> str:
    job = model.tables.job
    try:
        fastest = solve(model, "time", state, space, Limits(ignore_qoe=True), time_limit_s=60.0)
    except InfeasibleError as error:  # nothing fits at all: that solve named why
        return str(error).removeprefix(f"job {job.name!r}: ")
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
                       mode: str, solve: Solver) -> str:
    """One sentence naming why no plan exists; ``solve`` (the partitioner's
    :func:`~dora_rl.planner.exact.partition.solve`, passed in so that this module does not import
    it) finds the fastest plan ignoring QoE, to name the targets it misses.

    With ``limits.ignore_qoe`` (the solve a diagnosis makes itself) it never solves again, so a
    diagnosis cannot recurse.
    """
    reason = _memory_problem(model, state, space)
    if reason is None:
        reason = (_fit_problem(model, space) if limits.ignore_qoe
                  else _qoe_problem(model, state, space, limits, solve))
    return f"job {model.tables.job.name!r}: {reason}"
