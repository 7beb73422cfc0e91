"""Summary figures of a run from the env's per-step ``info``: one definition for training's
TensorBoard scalars, the benchmark's tables and the runtime's telemetry.

Every figure is over *job-intervals* where a job was active (a job with no work has no QoE to
miss):

=========================  ==================================================================
key                        meaning
=========================  ==================================================================
``energy_j``               mean energy of the whole site per control interval (J)
``jobs_energy_j``          mean energy the jobs caused per interval (J; ``-v1`` envs)
``request_violation_rate`` missed requests over scored requests, all jobs (``-v1`` envs:
                           the request-weighted figure; training jobs count iterations)
``excess_missed``          misses beyond the jobs' attainment allowances per interval,
                           unweighted (``-v1`` envs; what QoE as a constraint counts)
``qoe_violation_rate``     fraction of active job-intervals with any QoE target missed
``latency_ms_p95``         the worst job's 95th-percentile latency over its active intervals
``replans``                plan switches per episode (per ``episode_steps`` intervals)
``migration_mb``           weights moved per episode (MB)
``<job>/latency_ms_p95``   that job's 95th-percentile latency (``nan`` if never active)
``<job>/qoe_violation_rate``  that job's fraction of active intervals with a target missed
``<job>/request_violation_rate``  that job's missed over scored requests (``-v1`` envs)
=========================  ==================================================================

Intervals where a job had no plan at all (nothing fits) count as violations and are left out
of the latency percentiles (their latency is infinite).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SUMMARY_KEYS = ("energy_j", "qoe_violation_rate", "latency_ms_p95", "replans", "migration_mb")
REQUEST_KEYS = ("jobs_energy_j", "request_violation_rate", "excess_missed")
"""Keys added when the infos count requests (the ``-v1`` envs)."""


def summarise(infos: Sequence[Mapping[str, Any]], job_names: Sequence[str],
              episode_steps: int) -> dict[str, float]:
    """Summary figures of a sequence of step infos (see the module table).

    Args:
        infos: Per-step ``info`` dicts of one or more episodes, in any order.
        job_names: Names of the jobs, in card order.
        episode_steps: Intervals per episode (to express replans and migration per episode).

    Example:
        >>> step = {"energy_j": 10.0, "latency_ms": (100.0, 50.0), "qoe_violation": (1, 0),
        ...         "job_active": (True, False), "replans": 1, "migration_bytes": 2e6}
        >>> out = summarise([step, {**step, "qoe_violation": (0, 0)}], ["a", "b"], 10)
        >>> out["energy_j"], out["qoe_violation_rate"], out["replans"], out["migration_mb"]
        (10.0, 0.5, 10.0, 20.0)
        >>> out["a/latency_ms_p95"], math.isnan(out["b/latency_ms_p95"])
        (100.0, True)
    """
    n = len(infos)
    if n == 0:
        raise ValueError("no steps to summarise")
    energy = sum(float(i["energy_j"]) for i in infos) / n
    replans = sum(int(i["replans"]) for i in infos) / n * episode_steps
    moved_mb = sum(float(i["migration_bytes"]) for i in infos) / n * episode_steps / 1e6
    out = {"energy_j": energy, "replans": replans, "migration_mb": moved_mb}
    active_total, violated_total, worst_p95 = 0, 0, -math.inf
    for j, name in enumerate(job_names):
        rows = [i for i in infos if _active(i, j)]
        violated = sum(int(i["qoe_violation"][j]) for i in rows)
        finite = [float(i["latency_ms"][j]) for i in rows
                  if math.isfinite(float(i["latency_ms"][j]))]
        p95 = float(np.percentile(finite, 95)) if finite else math.nan
        out[f"{name}/latency_ms_p95"] = p95
        out[f"{name}/qoe_violation_rate"] = violated / len(rows) if rows else math.nan
        active_total, violated_total = active_total + len(rows), violated_total + violated
        if p95 == p95:
            worst_p95 = max(worst_p95, p95)
    out["qoe_violation_rate"] = violated_total / active_total if active_total else 0.0
    out["latency_ms_p95"] = worst_p95 if worst_p95 > -math.inf else math.nan
    if "requests" in infos[0]:
        out.update(request_figures(infos, job_names))
    return out


def request_figures(infos: Sequence[Mapping[str, Any]],
                    job_names: Sequence[str]) -> dict[str, float]:
    """The request-weighted figures of infos that count requests (see the module table).

    Example:
        >>> steps = [{"requests": (0.05, 5.0), "requests_missed": (0.05, 0.0),
        ...           "jobs_energy_j": 2.0}] * 4
        >>> out = request_figures(steps, ["assistant", "doorbell"])
        >>> round(out["request_violation_rate"], 4), out["assistant/request_violation_rate"]
        (0.0099, 1.0)
    """
    out = {"jobs_energy_j": sum(float(i["jobs_energy_j"]) for i in infos) / len(infos)}
    if all("requests_excess" in i for i in infos):
        out["excess_missed"] = sum(sum(i["requests_excess"]) for i in infos) / len(infos)
    scored_all = missed_all = 0.0
    for j, name in enumerate(job_names):
        scored = sum(float(i["requests"][j]) for i in infos)
        missed = sum(float(i["requests_missed"][j]) for i in infos)
        out[f"{name}/request_violation_rate"] = missed / scored if scored > 0 else math.nan
        scored_all, missed_all = scored_all + scored, missed_all + missed
    out["request_violation_rate"] = missed_all / scored_all if scored_all > 0 else 0.0
    return out


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float (at any depth) replaced by None, so it can be
    written as strict JSON.

    Example:
        >>> finite_or_none({"a": [1.0, float("nan")], "b": float("inf")})
        {'a': [1.0, None], 'b': None}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def _active(info: Mapping[str, Any], j: int) -> bool:
    active = info.get("job_active")
    return True if active is None else bool(active[j])


__all__ = ["REQUEST_KEYS", "SUMMARY_KEYS", "finite_or_none", "request_figures", "summarise"]
