"""Per-job figures of an LLM service, and their Prometheus text exposition.

:class:`LlmMetrics` counts the requests of each job (completed or refused), the tokens
generated, and keeps histograms of the request latency, the time to first token (TTFT) and the
time per output token after the first (TPOT), all in the card's world (wall seconds divided by
the time scale), and how many completed requests met every QoE target of the job
(``ttft_ms``, ``tpot_ms``, ``latency_ms`` as the card sets them). :func:`render` writes them,
with the run's energy, plan id and power modes, in the Prometheus text format (version 0.0.4).

Example:
    >>> m = LlmMetrics(["chat"])
    >>> m.completed("chat", latency_s=0.5, ttft_s=0.1, tpot_s=0.02, tokens=21, met=True)
    >>> "dora_llm_requests_total" in render(m, {"plan_id": 0})
    True
"""

from __future__ import annotations

import bisect
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

RECENT = 2048
"""Completed requests whose TTFT and TPOT are kept for percentiles (the latest ones)."""
BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Histogram bucket bounds (seconds)."""


@dataclass
class Histogram:
    """A cumulative histogram over :data:`BUCKETS_S`."""

    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS_S))
    total: int = 0
    sum_s: float = 0.0

    def observe(self, seconds: float) -> None:
        """Add one observation."""
        i = bisect.bisect_left(BUCKETS_S, seconds)
        if i < len(BUCKETS_S):
            self.counts[i] += 1
        self.total += 1
        self.sum_s += seconds


@dataclass
class JobFigures:
    """One job's counters and histograms."""

    completed: int = 0
    refused: int = 0
    met: int = 0
    tokens: int = 0
    latency: Histogram = field(default_factory=Histogram)
    ttft: Histogram = field(default_factory=Histogram)
    tpot: Histogram = field(default_factory=Histogram)
    recent: deque[tuple[float, float | None]] = field(
        default_factory=lambda: deque(maxlen=RECENT))
    """(TTFT, TPOT) of the latest completed requests (seconds)."""


class LlmMetrics:
    """Thread-safe figures per job.

    Args:
        jobs: The job names served (model ids of the API).
    """

    def __init__(self, jobs: Sequence[str]) -> None:
        self.jobs = {name: JobFigures() for name in jobs}
        self.lock = threading.Lock()

    def completed(self, job: str, latency_s: float, ttft_s: float, tpot_s: float | None,
                  tokens: int, met: bool) -> None:
        """A request completed with these times (card seconds) and ``tokens`` generated."""
        with self.lock:
            fig = self.jobs[job]
            fig.completed += 1
            fig.met += int(met)
            fig.tokens += tokens
            fig.latency.observe(latency_s)
            fig.ttft.observe(ttft_s)
            if tpot_s is not None:
                fig.tpot.observe(tpot_s)
            fig.recent.append((ttft_s, tpot_s))

    def recent(self, job: str) -> tuple[list[float], list[float]]:
        """TTFT and TPOT (seconds) of the job's latest :data:`RECENT` completed requests
        (TPOT of those with more than one token)."""
        with self.lock:
            pairs = list(self.jobs[job].recent)
        return [t for t, _ in pairs], [p for _, p in pairs if p is not None]

    def refused(self, job: str) -> None:
        """A request was not completed (refused, or its devices failed too often)."""
        with self.lock:
            self.jobs[job].refused += 1

    def attainment(self, job: str) -> float | None:
        """Share of the job's requests that completed and met QoE (``None``: none yet)."""
        with self.lock:
            fig = self.jobs[job]
            n = fig.completed + fig.refused
            return fig.met / n if n else None


def _histogram(name: str, job: str, h: Histogram) -> list[str]:
    lines, running = [], 0
    for bound, count in zip(BUCKETS_S, h.counts, strict=True):
        running += count
        lines.append(f'{name}_bucket{{job="{job}",le="{bound:g}"}} {running}')
    lines.append(f'{name}_bucket{{job="{job}",le="+Inf"}} {h.total}')
    lines.append(f'{name}_sum{{job="{job}"}} {h.sum_s:.6f}')
    lines.append(f'{name}_count{{job="{job}"}} {h.total}')
    return lines


def render(metrics: LlmMetrics, run: Mapping[str, object], prefix: str = "dora_llm",
           tokens: bool = True) -> str:
    """The Prometheus text exposition of ``metrics`` and the run's figures.

    Args:
        run: ``plan_id`` (int), and optionally ``energy_j`` and ``jobs_energy_j`` (floats,
            summed over the closed control intervals) and ``modes`` (device name to power
            mode index).
        prefix: Of the per-job metrics (``dora_infer`` for an inference service).
        tokens: Whether the jobs generate tokens (the token counter, TTFT and TPOT).
    """
    out = [f"# HELP {prefix}_requests_total Requests by job and outcome.",
           f"# TYPE {prefix}_requests_total counter"]
    with metrics.lock:
        jobs = {name: (fig.completed, fig.refused, fig.met, fig.tokens, fig.latency, fig.ttft,
                       fig.tpot) for name, fig in metrics.jobs.items()}
    for name, (done, refused, _, _, *_) in jobs.items():
        out.append(f'{prefix}_requests_total{{job="{name}",outcome="completed"}} {done}')
        out.append(f'{prefix}_requests_total{{job="{name}",outcome="refused"}} {refused}')
    if tokens:
        out += [f"# HELP {prefix}_tokens_total Output tokens generated by job.",
                f"# TYPE {prefix}_tokens_total counter"]
        out += [f'{prefix}_tokens_total{{job="{name}"}} {v[3]}' for name, v in jobs.items()]
    out += [f"# HELP {prefix}_qoe_attainment Share of requests completed within every QoE "
            "target.", f"# TYPE {prefix}_qoe_attainment gauge"]
    for name, (done, refused, met, *_) in jobs.items():
        value = met / (done + refused) if done + refused else float("nan")
        out.append(f'{prefix}_qoe_attainment{{job="{name}"}} {value:.6f}'.replace("nan", "NaN"))
    figures = (("latency", "Request latency", 4), ("ttft", "Time to first token", 5),
               ("tpot", "Time per output token after the first", 6))
    for metric, what, pos in figures if tokens else figures[:1]:
        full = f"{prefix}_{metric}_seconds"
        out += [f"# HELP {full} {what} in the card's world (seconds).",
                f"# TYPE {full} histogram"]
        for name, values in jobs.items():
            hist = values[pos]
            assert isinstance(hist, Histogram)
            out += _histogram(full, name, hist)
    out += ["# HELP dora_plan_id Plan in force (index of the plans served).",
            "# TYPE dora_plan_id gauge", f"dora_plan_id {int(str(run.get('plan_id', 0)))}"]
    for key, what in (("energy_j", "Energy all devices drew"),
                      ("jobs_energy_j", "Energy the served jobs caused")):
        joules = run.get(key)
        if isinstance(joules, int | float):
            out += [f"# HELP dora_{key}_total {what} (joules, closed control intervals).",
                    f"# TYPE dora_{key}_total counter", f"dora_{key}_total {joules:.6f}"]
    modes = run.get("modes")
    if isinstance(modes, Mapping):
        out += ["# HELP dora_power_mode Power mode of each device (0 nominal, i the card's "
                "i-th dvfs level).", "# TYPE dora_power_mode gauge"]
        out += [f'dora_power_mode{{device="{d}"}} {int(m)}' for d, m in modes.items()]
    return "\n".join(out) + "\n"
