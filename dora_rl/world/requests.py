"""QoE counted per request (per iteration for training), with requests waiting through outages.

A job *serves* an interval when its plan runs: every request arriving then gets the cost
model's figures, and meets QoE when every target holds. A job is in *outage* when it cannot
serve (no plan, a plan device gone, asleep or waking, a faded link its plan crosses, a
break-before-make switch): requests arriving then wait. Once the job serves again the waiting
requests are scored with their wait added to the latency and time-to-first-token figures;
requests that have waited longer than a target allows are counted missed as soon as that is
certain (and at :data:`MAX_WAIT_S` at the latest), so a job that never comes back still pays.

Requests are counted in expectation: ``rate * interval`` arrive per interval, spread evenly
over it (a job with one request per 20 s contributes 0.05 requests a second, not one
job-interval), which keeps the model deterministic given the world.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dora_rl.config import Job
from dora_rl.costmodel.formulas import md1_wait_s
from dora_rl.world.slack import scaled_slacks

MAX_WAIT_S = 60.0
"""Requests that waited this long are counted missed even for jobs without a latency target."""
WAIT_TARGETS = ("latency_ms", "ttft_ms")
"""Targets a request's wait adds to (per-token time and rates are not lengthened by it)."""


@dataclass(frozen=True)
class Scored:
    """Requests (or training iterations) scored in one interval."""

    arrived: float
    """Work that arrived (requests; for training, iterations due at the target pace)."""
    scored: float
    """Requests scored this interval (arrivals served now, plus waiting ones settled)."""
    missed: float
    """Of ``scored``, those that missed a target."""


def arrivals(job: Job, interval_s: float, qoe_scale: float) -> float:
    """Requests arriving in an interval; for training, the iterations the target pace asks
    for (``interval / iteration target``).

    Example:
        >>> from dora_rl.scenarios import load
        >>> home = load("smart_home")
        >>> arrivals(home.jobs[0], 1.0, 1.0), arrivals(home.jobs[1], 1.0, 1.0)
        (0.05, 5.0)
    """
    if job.inference is not None:
        return job.inference.request_rate_per_s * interval_s
    if job.llm is not None:
        return job.llm.request_rate_per_s * interval_s
    return interval_s / iteration_target_s(job, qoe_scale)


def iteration_target_s(job: Job, qoe_scale: float) -> float:
    """Seconds one training iteration may take: the iteration target, or the deadline's pace."""
    qoe, work = job.qoe, job.training
    options = []
    if qoe.iteration_ms is not None:
        options.append(qoe.iteration_ms / 1e3)
    if qoe.deadline_s is not None and work is not None and work.iterations:
        options.append(qoe.deadline_s / work.iterations)
    return min(options) * qoe_scale if options else math.inf


def queued(job: Job, metrics: dict[str, Any]) -> dict[str, Any]:
    """The plan's figures with the mean wait of requests queueing for it added to latency and
    time to first token (:func:`~dora_rl.costmodel.formulas.md1_wait_s` at the job's request
    rate on its bottleneck period, or on a whole LLM request's service time); slack of those
    targets follows. Training jobs do not queue. ``metrics`` is not changed (shared).

    Example:
        5 requests a second on a 0.1 s period: 50 ms of queueing on top of 150 ms.

        >>> from dora_rl.scenarios import load
        >>> job = load("smart_home").jobs[1]
        >>> m = {"latency_s": 0.15, "ttft_s": float("nan"), "period_s": 0.1,
        ...      "qoe_slack": {"latency_ms": 0.25, "throughput": 0.5}}
        >>> out = queued(job, m)
        >>> round(out["latency_s"], 6), round(out["qoe_slack"]["latency_ms"], 6)
        (0.2, 0.0)
    """
    rate = job.inference.request_rate_per_s if job.inference is not None else \
        job.llm.request_rate_per_s if job.llm is not None else 0.0
    period = metrics["period_s"]
    if rate <= 0 or not period > 0:
        return metrics
    wait = md1_wait_s(rate, period)
    if wait <= 0:
        return metrics
    out = dict(metrics)
    out["latency_s"] = metrics["latency_s"] + wait
    out["ttft_s"] = metrics["ttft_s"] + wait
    slack = dict(metrics["qoe_slack"])
    for name in WAIT_TARGETS:
        target = getattr(job.qoe, name)
        if target is not None and name in slack:
            slack[name] = slack[name] - wait / (target / 1e3)
    out["qoe_slack"] = slack
    return out


def wait_headroom_s(job: Job, metrics: dict[str, float], qoe_scale: float) -> float:
    """How long a request may wait before serving and still meet its wait targets (latency,
    TTFT), given the plan's figures; ``MAX_WAIT_S`` when the job has no such target.

    Example:
        A 200 ms target met in 150 ms leaves 50 ms of wait.

        >>> from dora_rl.scenarios import load
        >>> job = load("smart_home").jobs[1]
        >>> round(wait_headroom_s(job, {"latency_s": 0.15}, 1.0), 6)
        0.05
    """
    out = MAX_WAIT_S
    for name in WAIT_TARGETS:
        target = getattr(job.qoe, name)
        if target is not None:
            figure = metrics["latency_s"] if name == "latency_ms" else metrics["ttft_s"]
            out = min(out, target / 1e3 * qoe_scale - figure)
    return out


def certain_wait_s(job: Job, qoe_scale: float) -> float:
    """The wait after which a request misses whatever the plan: its tightest wait target."""
    out = MAX_WAIT_S
    for name in WAIT_TARGETS:
        target = getattr(job.qoe, name)
        if target is not None:
            out = min(out, target / 1e3 * qoe_scale)
    return out


def score_serving(arrived: float, met: float, outage_s: float, rate_per_s: float,
                  headroom_s: float, certain_s: float) -> Scored:
    """Score an interval the job serves, after ``outage_s`` of outage (0: it served before).

    A fraction ``met`` of the interval's own arrivals meets QoE (:func:`met_fraction`).
    Requests that waited through the outage, spread evenly over its last ``min(outage,
    certain)`` seconds (older ones were already counted missed), meet when their wait fits
    within ``headroom_s`` (and nothing else fails: ``met > 0``).

    Example:
        5 requests a second, back after a 1 s outage with 0.4 s of headroom: of the 5 waiting
        requests, the 2 that waited at most 0.4 s meet, 3 miss; the interval's own 5 meet.

        >>> s = score_serving(5.0, 1.0, 1.0, 5.0, 0.4, 1.5)
        >>> s.scored, round(s.missed, 6)
        (10.0, 3.0)
    """
    waiting_s = outage_s if outage_s < certain_s else certain_s
    backlog = rate_per_s * waiting_s
    if not met > 0 or headroom_s <= 0:
        ok = 0.0
    else:
        ok = rate_per_s * (headroom_s if headroom_s < waiting_s else waiting_s)
    missed = (backlog - ok) + arrived * (1.0 - met)
    return Scored(arrived=arrived, scored=arrived + backlog, missed=missed)


def queue_met_fraction(rate_per_s: float, service_s: float, headroom_s: float) -> float:
    """Share of Poisson arrivals whose queueing wait fits within ``headroom_s``, in a queue
    served one at a time in ``service_s``: the wait's tail taken as exponential with the right
    atom and mean, ``P(W > t) = rho * exp(-rho t / W)`` (``rho`` the utilisation, ``W`` the
    M/D/1 mean wait), a standard approximation for M/G/1 waits.

    Example:
        Half loaded on a 0.1 s service (mean wait 50 ms): with 0.1 s of headroom,
        1 - 0.5 * exp(-1) = 81.6 % meet; none at or over full load.

        >>> round(queue_met_fraction(5.0, 0.1, 0.1), 3), queue_met_fraction(10.0, 0.1, 1.0)
        (0.816, 0.0)
    """
    if headroom_s < 0:
        return 0.0
    rho = rate_per_s * service_s
    if rho <= 0:
        return 1.0
    wait = md1_wait_s(rate_per_s, service_s)
    if not math.isfinite(wait):
        return 0.0
    return 1.0 - rho * math.exp(-rho * headroom_s / wait)


def met_fraction(job: Job, metrics: dict[str, Any], qoe_scale: float,
                 slacks: list[float] | None = None) -> float:
    """Share of a served interval's arrivals that meet every target, from the plan's figures
    before queueing (``metrics``): nothing when the plan does not fit or run, or misses a
    target a wait does not add to (per-token time, throughput, energy); else the share whose
    queueing wait (:func:`queue_met_fraction`) fits in what latency and TTFT leave. Training
    jobs: 1 or 0 on the iteration targets. ``slacks``: the scaled slacks, when known."""
    if not (metrics["memory_ok"] and metrics["usable_ok"]):
        return 0.0
    names = list(metrics["qoe_slack"])
    values = slacks if slacks is not None else scaled_slacks(metrics, qoe_scale)
    if any(v < 0 for n, v in zip(names, values, strict=True) if n not in WAIT_TARGETS):
        return 0.0
    if job.training is not None:
        return 1.0 if all(v >= 0 for v in values) else 0.0
    rate = job.inference.request_rate_per_s if job.inference is not None else \
        job.llm.request_rate_per_s if job.llm is not None else 0.0
    return queue_met_fraction(rate, metrics["period_s"], wait_headroom_s(job, metrics,
                                                                       qoe_scale))


def score_outage(arrived: float, outage_s: float, interval_s: float, rate_per_s: float,
                 certain_s: float) -> Scored:
    """Score an interval of outage that began ``outage_s`` before it: nothing is served;
    requests whose wait passes ``certain_s`` during the interval are counted missed.

    Example:
        5 requests a second, a 0.2 s target, the second second of an outage: the requests of
        [0.8, 1.8) s of waiting become certain misses (5 of them).

        >>> s = score_outage(5.0, 1.0, 1.0, 5.0, 0.2)
        >>> s.scored, round(s.missed, 6)
        (5.0, 5.0)
    """
    before = outage_s - certain_s if outage_s > certain_s else 0.0
    end = outage_s + interval_s
    after = end - certain_s if end > certain_s else 0.0
    lost = rate_per_s * (after - before)
    return Scored(arrived=arrived, scored=lost, missed=lost)


__all__ = ["MAX_WAIT_S", "WAIT_TARGETS", "Scored", "arrivals", "certain_wait_s",
           "iteration_target_s", "met_fraction", "queue_met_fraction", "queued", "score_outage",
           "score_serving", "wait_headroom_s"]
