"""What one simulated interval produced, and the QoE slack it measured.

The simulator reports, per interval, each job's finished units (latencies, times to first token,
gaps between output tokens, how many met their targets), its compute time per device and its
oldest unfinished unit, and per device the compute, radio and energy-above-idle time. The
environment turns them into the same figures the analytic environment reports.

Slack is measured the way the cost model defines it, ``(target - value) / target`` with the
target scaled by the job's QoE scale, on the *mean* of the interval's finished units (the cost
model's figures are means too); a unit still unfinished and already older than its target also
counts, so a stall shows in the interval it happens. A target with nothing measured in the
interval is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dora_rl.costmodel.formulas import relative_slack
from dora_rl.sim.job_spec import JobSpec


@dataclass(frozen=True)
class JobInterval:
    """One job in one interval.

    Attributes:
        arrived: Units that arrived (or iterations that started).
        latency_s: Latency of every unit finished in the interval.
        ttft_s: Time to first token of every LLM request whose first token came in it.
        tpot_s: Gap before every further output token produced in it.
        met: Finished units that met every per-unit target.
        busy_s: The job's compute seconds per device.
        outstanding: Units arrived and not finished at the interval's end.
        oldest_age_s: Age at the interval's end of the oldest unit still owing its first
            result (unfinished; for an LLM, without its first token), 0 if none.
        scored: Units scored in the interval: finished ones not scored before, and waiting
            ones that became certain misses
            (:meth:`dora_rl.sim.job_lifecycle.JobRuntime.settle_late`).
        missed: Of ``scored``, those that missed a target.
        attributed_s: The job's busy seconds per device net of the background load
            (:attr:`dora_rl.sim.device.ComputeDevice.attributed_s`).
    """

    arrived: int
    latency_s: tuple[float, ...]
    ttft_s: tuple[float, ...]
    tpot_s: tuple[float, ...]
    met: int
    busy_s: tuple[float, ...]
    outstanding: int
    oldest_age_s: float
    scored: int = 0
    missed: int = 0
    attributed_s: tuple[float, ...] = ()

    @property
    def finished(self) -> int:
        """Units finished in the interval."""
        return len(self.latency_s)

    @property
    def mean_latency_s(self) -> float:
        """Mean latency of the finished units (NaN if none)."""
        return sum(self.latency_s) / len(self.latency_s) if self.latency_s else math.nan


@dataclass(frozen=True)
class IntervalReport:
    """Everything one interval produced.

    Attributes:
        start_s, end_s: The interval.
        jobs: One entry per job (card order).
        busy_s: Compute seconds per device (all jobs).
        busy_j: Energy above idle of that compute per device (at each kernel's DVFS power).
        tx_s, rx_s: Radio seconds per device (transmit, receive).
        attributed_s: Busy seconds per device net of the background load (all jobs).
    """

    start_s: float
    end_s: float
    jobs: tuple[JobInterval, ...]
    busy_s: tuple[float, ...]
    busy_j: tuple[float, ...]
    tx_s: tuple[float, ...]
    rx_s: tuple[float, ...]
    attributed_s: tuple[float, ...] = ()


def _mean(values: tuple[float, ...]) -> float:
    return sum(values) / len(values)


def measured_slack(spec: JobSpec, iv: JobInterval, qoe_scale: float,
                   interval_s: float) -> dict[str, float]:
    """Relative slack of every target measured in the interval (see the module docstring).

    ``throughput`` is ``1 - utilisation`` of the job's busiest device (0 when saturated).

    Example:
        A 200 ms target, two requests finished in 150 and 250 ms (mean 200 ms), the busiest
        device 40 % busy: latency slack 0, throughput slack 0.6.

        >>> from dora_rl.scenarios import load
        >>> spec = JobSpec.of(load("smart_home"), 1)
        >>> iv = JobInterval(2, (0.15, 0.25), (), (), 1, (0.4, 0.0), 0, 0.0)
        >>> {k: round(v, 3) for k, v in measured_slack(spec, iv, 1.0, 1.0).items()}
        {'throughput': 0.6, 'latency_ms': 0.0}
    """
    out: dict[str, float] = {}
    t = {k: v * qoe_scale for k, v in spec.targets_ms.items()}
    age_ms = iv.oldest_age_s * 1e3
    if spec.kind != "training":
        out["throughput"] = 1.0 - min(max(iv.busy_s, default=0.0) / interval_s, 1.0)
    checks: list[tuple[str, tuple[float, ...]]] = [("latency_ms", iv.latency_s)]
    if spec.kind == "llm":
        checks = [("ttft_ms", iv.ttft_s), ("tpot_ms", iv.tpot_s)]
    elif spec.kind == "training":
        checks = [("iteration_ms", iv.latency_s)]
    for key, values in checks:
        if key not in t:
            continue
        slack = relative_slack(t[key], _mean(values) * 1e3) if values else math.inf
        if key != "tpot_ms" and age_ms > t[key]:  # an unfinished unit is already late
            slack = min(slack, relative_slack(t[key], age_ms))
        if slack < math.inf:
            out[key] = slack
    if spec.deadline_s is not None and spec.iterations and iv.latency_s:
        out["deadline_s"] = relative_slack(spec.deadline_s * qoe_scale,
                                           _mean(iv.latency_s) * spec.iterations)
    return out
