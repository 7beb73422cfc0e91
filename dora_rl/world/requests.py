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
from dora_rl.costmodel import Plan
from dora_rl.costmodel.formulas import md1_wait_s
from dora_rl.world.queues import DeviceQueues, fcfs_wait_s, kernel_load
from dora_rl.world.slack import scaled_slacks

MAX_WAIT_S = 60.0
"""Requests that waited this long are counted missed even for jobs without a latency target."""
WAIT_TARGETS = ("latency_ms", "ttft_ms")
"""Targets a request's random queueing wait adds to (the ones requests meet or miss by)."""
LENGTHENED = {"latency_ms": "latency_s", "ttft_ms": "ttft_s", "tpot_ms": "tpot_s",
              "iteration_ms": "iteration_s", "deadline_s": "iteration_s"}
"""Targets mean waits lengthen, and the figure each is set on."""


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


def scaled_rate(job: Job, scale: float) -> Job:
    """``job`` with its request rate times ``scale`` (a training job is returned as is).

    Example:
        >>> from dora_rl.scenarios import load
        >>> scaled_rate(load("smart_home").jobs[1], 0.5).inference.request_rate_per_s
        2.5
    """
    for field in ("inference", "llm"):
        work = getattr(job, field)
        if work is not None:
            rate = work.request_rate_per_s * scale
            return job.model_copy(update={field: work.model_copy(
                update={"request_rate_per_s": rate})})
    return job


def iteration_target_s(job: Job, qoe_scale: float) -> float:
    """Seconds one training iteration may take: the iteration target, or the deadline's pace."""
    qoe, work = job.qoe, job.training
    options = []
    if qoe.iteration_ms is not None:
        options.append(qoe.iteration_ms / 1e3)
    if qoe.deadline_s is not None and work is not None and work.iterations:
        options.append(qoe.deadline_s / work.iterations)
    return min(options) * qoe_scale if options else math.inf


def queued(job: Job, metrics: dict[str, Any], plan: Plan | None = None,
           others: DeviceQueues | None = None,
           own: tuple[list[float], list[float]] | None = None) -> dict[str, Any]:
    """The plan's figures with the mean waits of its kernels and requests added; slack of the
    targets they lengthen follows. ``metrics`` is not changed (shared).

    - Inference: a request waits behind the job's own earlier requests (the M/D/1 wait,
      :func:`~dora_rl.costmodel.formulas.md1_wait_s`, at the job's request rate on its
      bottleneck period) or, with ``plan`` and ``others`` (the other jobs' kernel load on
      each device, :mod:`dora_rl.world.queues`), behind every job's kernels on a device of its
      plan, first come first served: the longer of the two.
    - LLM: a server interleaves the passes of the requests in flight, so each request shares
      the plan with the others (processor sharing, :func:`in_flight` of them met on arrival),
      and each pass waits behind the other jobs' kernels on each device it crosses. Time per
      token, time to first token and latency all lengthen.
    - Training: a micro-batch's forward and backward pass each wait behind the other jobs'
      kernels on the plan's worst device.

    ``own``: the job's kernel load from these figures, when the caller has it already
    (:func:`~dora_rl.world.queues.kernel_load`).

    What decides which requests meet their targets is kept for :func:`met_fraction`: the
    random wait and the utilisation of its queue (``wait_s``, ``wait_util``), or for an LLM
    job its utilisation and per target the figure alone and what each request in flight
    adds (``sharing``).

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
    full, cross = _device_waits(job, metrics, plan, others, own)
    wait, util = 0.0, rate * period
    sharing: tuple[float, dict[str, tuple[float, float]]] | None = None
    extra = {"latency_s": 0.0, "ttft_s": 0.0, "tpot_s": 0.0, "iteration_s": 0.0}
    if job.training is not None:
        util = 0.0
        extra["iteration_s"] = extra["latency_s"] = \
            2.0 * (plan.micro_batches if plan is not None else 1) * max(cross, default=0.0)
    elif job.llm is not None:
        sharing = _shared(job, metrics, util, sum(cross), extra)
    else:
        wait = md1_wait_s(rate, period) if rate > 0 and period > 0 else 0.0
        for w, u in full:
            if w > wait:
                wait, util = w, u
        extra["latency_s"] = extra["ttft_s"] = wait
    if not any(extra.values()):
        return metrics
    out = dict(metrics)
    slack = dict(metrics["qoe_slack"])
    for key, add in extra.items():
        if add:
            out[key] = metrics[key] + add
    for name, key in LENGTHENED.items():
        target = getattr(job.qoe, name)
        if target is not None and name in slack and extra[key]:
            scale = 1e3 if name.endswith("_ms") else _units(job)
            slack[name] = slack[name] - extra[key] * scale / target
    out["qoe_slack"] = slack
    out["wait_s"], out["wait_util"] = wait, util
    if sharing is not None:
        out["sharing"] = sharing
    return out


def _device_waits(job: Job, metrics: dict[str, Any], plan: Plan | None,
                  others: DeviceQueues | None,
                  own: tuple[list[float], list[float]] | None = None
                  ) -> tuple[list[tuple[float, float]], list[float]]:
    """Per device of ``plan``: (a kernel's wait behind every job's kernels, the device's
    utilisation), and the wait behind the other jobs' kernels alone. Empty without both."""
    full: list[tuple[float, float]] = []
    cross: list[float] = []
    if plan is not None and others is not None:
        own_util, own_residual = own if own is not None else \
            kernel_load(job, metrics, plan.micro_batches)
        for d in plan.devices:
            u = own_util[d] + others.utilisation[d]
            full.append((fcfs_wait_s(u, own_residual[d] + others.residual_s[d]), u))
            cross.append(fcfs_wait_s(u, others.residual_s[d]))
    return full, cross


def _shared(job: Job, metrics: dict[str, Any], utilisation: float, per_pass_s: float,
            extra: dict[str, float]) -> tuple[float, dict[str, tuple[float, float]]]:
    """An LLM job's lengthened figures (into ``extra``) and its ``sharing`` entry: each of
    the requests in flight ahead holds one pass of every pass a request makes."""
    assert job.llm is not None
    tokens = job.llm.output_tokens
    service, tpot = metrics["period_s"], metrics["tpot_s"]
    ahead = in_flight(utilisation)
    extra["latency_s"] = ahead * service + tokens * per_pass_s
    extra["ttft_s"] = ahead * tpot + per_pass_s
    extra["tpot_s"] = ahead * tpot + per_pass_s
    return utilisation, {"latency_ms": (service + tokens * per_pass_s, service),
                         "ttft_ms": (metrics["ttft_s"] + per_pass_s, tpot),
                         "tpot_ms": (tpot + per_pass_s, tpot)}


def in_flight(utilisation: float) -> float:
    """Mean number of other requests in flight met by an arrival at a server shared by
    every request in flight (M/G/1 processor sharing): ``rho / (1 - rho)``.

    Example:
        >>> in_flight(0.5), in_flight(1.0)
        (1.0, inf)
    """
    return utilisation / (1.0 - utilisation) if utilisation < 1.0 else math.inf


def _units(job: Job) -> float:
    """Units of work a deadline counts (a training job's iterations)."""
    work = job.training
    return float(work.iterations) if work is not None and work.iterations else 1.0


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


def wait_met_fraction(utilisation: float, wait_s: float, headroom_s: float) -> float:
    """Share of Poisson arrivals whose queueing wait fits within ``headroom_s``, the wait
    having mean ``wait_s`` in a queue that is busy ``utilisation`` of the time: its tail taken
    as exponential with the right atom and mean, ``P(W > t) = rho * exp(-rho t / W)``, a
    standard approximation for M/G/1 waits.

    Example:
        Half loaded on a 0.1 s service (mean wait 50 ms): with 0.1 s of headroom,
        1 - 0.5 * exp(-1) = 81.6 % meet; none with an unbounded wait.

        >>> round(wait_met_fraction(0.5, 0.05, 0.1), 3), wait_met_fraction(1.0, math.inf, 1.0)
        (0.816, 0.0)
    """
    if headroom_s < 0:
        return 0.0
    if utilisation <= 0 or wait_s <= 0:
        return 1.0
    if not math.isfinite(wait_s):
        return 0.0
    return 1.0 - utilisation * math.exp(-utilisation * headroom_s / wait_s)


def met_fraction(job: Job, metrics: dict[str, Any], qoe_scale: float) -> float:
    """Share of a served interval's arrivals that meet every target, from the plan's figures
    with their waits (:func:`queued`). Nothing when the plan does not fit or run, or misses a
    target no queue decides (throughput, energy). Training jobs: 1 or 0 on the iteration
    targets. An LLM job's requests meet when few enough others are in flight
    (:func:`shared_met_fraction`); other requests when their wait
    (:func:`wait_met_fraction`) fits in what latency and TTFT leave without it."""
    if not (metrics["memory_ok"] and metrics["usable_ok"]):
        return 0.0
    names = list(metrics["qoe_slack"])
    values = scaled_slacks(metrics, qoe_scale)
    sharing = metrics.get("sharing")
    decided = WAIT_TARGETS if sharing is None else sharing[1]
    if any(v < 0 for n, v in zip(names, values, strict=True) if n not in decided):
        return 0.0
    if job.training is not None:
        return 1.0 if all(v >= 0 for v in values) else 0.0
    if sharing is not None:
        return shared_met_fraction(job, sharing[0], sharing[1], qoe_scale)
    wait = metrics.get("wait_s", 0.0)
    return wait_met_fraction(metrics.get("wait_util", 0.0), wait,
                             wait_headroom_s(job, metrics, qoe_scale) + wait)


def shared_met_fraction(job: Job, utilisation: float,
                        figures: dict[str, tuple[float, float]], qoe_scale: float) -> float:
    """Share of requests meeting their targets on a server their passes share (LLM servers
    interleave the passes of the requests in flight): a request meets a target when the
    requests in flight it meets, ``n``, leave room, ``base + n * per_request <= target``
    (``figures``: per target, the figure alone and what each request in flight adds, in
    seconds). Under processor sharing ``P(n >= x) = rho ** x`` (geometric), taken
    continuous in ``x``.

    Example:
        A 50 ms per-token target, 6.25 ms alone, each request in flight adding 6.25 ms: up to
        7 others leave room, so at 91 % utilisation 1 - 0.91 ** 8 = 53 % meet.

        >>> from dora_rl.scenarios import load
        >>> chat = load("edge_cluster").jobs[1]
        >>> round(shared_met_fraction(chat, 0.91, {"tpot_ms": (0.00625, 0.00625)}, 1.0), 3)
        0.53
    """
    room = math.inf
    for name, (base, per_request) in figures.items():
        target = getattr(job.qoe, name)
        if target is None:
            continue
        left = (target / 1e3 * qoe_scale - base) / per_request if per_request > 0 else \
            (math.inf if base <= target / 1e3 * qoe_scale else -math.inf)
        room = min(room, left)
    if not room >= 0:
        return 0.0
    if utilisation <= 0 or room == math.inf:
        return 1.0
    if not utilisation < 1.0:
        return 0.0
    return 1.0 - utilisation ** (room + 1.0)


def excess_missed(missed: float, arrived: float, attainment: float) -> float:
    """Missed requests beyond what a job's attainment target allows in an interval: ``max(0,
    missed - (1 - attainment) x arrived)``. The allowance follows the arrivals, which no
    controller changes, so fewer misses never mean more excess.

    Example:
        A p99 target, 200 arrivals: 2 misses are allowed, the third is excess.

        >>> round(excess_missed(3.0, 200.0, 0.99), 9), excess_missed(1.5, 200.0, 0.99)
        (1.0, 0.0)
    """
    over = missed - (1.0 - attainment) * arrived
    return over if over > 1e-12 else 0.0


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


__all__ = ["MAX_WAIT_S", "WAIT_TARGETS", "Scored", "arrivals", "certain_wait_s", "excess_missed",
           "iteration_target_s", "met_fraction", "queued", "score_outage",
           "score_serving", "shared_met_fraction", "wait_headroom_s", "wait_met_fraction",
           "in_flight"]
