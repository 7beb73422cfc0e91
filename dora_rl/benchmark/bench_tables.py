"""Benchmark figures: one row per (scenario, controller, seed), and the tables and files of them.

Every figure comes from :func:`dora_rl.env.summary.summarise` over all intervals of a seed's
episodes (see its table for the definitions); ``episode_reward`` is the mean over those
episodes of each episode's total reward. Across seeds the Markdown table shows the mean and
the sample standard deviation.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dora_rl.benchmark.episodes import ControllerRun, SeedRun
from dora_rl.env.summary import REQUEST_KEYS, SUMMARY_KEYS, finite_or_none, summarise

FIGURES = (*SUMMARY_KEYS, *REQUEST_KEYS, "episode_reward")
"""Site-wide figures of every row, in table order."""
JOB_FIGURES = ("latency_ms_p95", "request_violation_rate", "qoe_violation_rate")
"""Per-job figures of every row (under ``row["jobs"][name]``)."""
TABLE_FIGURES = ("request_violation_rate", "jobs_energy_j", "energy_j", "latency_ms_p95",
                 "replans", "migration_mb", "episode_reward")


def seed_row(scenario: str, label: str, unit: SeedRun, job_names: Sequence[str],
             traces_used: Sequence[str] = ()) -> dict[str, Any]:
    """The figures of one controller's episodes of one seed (``traces_used``: the names of
    the traces the episodes replayed).

    Example:
        >>> step = {"energy_j": 4.0, "latency_ms": (10.0,), "qoe_violation": (0,),
        ...         "job_active": (True,), "replans": 0, "migration_bytes": 0.0,
        ...         "requests": (5.0,), "requests_missed": (1.0,), "jobs_energy_j": 1.0}
        >>> row = seed_row("tiny", "static", SeedRun(0, [[step, step]], [-1.5]), ["a"])
        >>> row["energy_j"], row["jobs_energy_j"], row["request_violation_rate"]
        (4.0, 1.0, 0.2)
        >>> row["episode_reward"], row["jobs"]["a"]["latency_ms_p95"]
        (-1.5, 10.0)
    """
    steps = [info for episode in unit.infos for info in episode]
    summary = summarise(steps, job_names, len(unit.infos[0]))
    row: dict[str, Any] = {"scenario": scenario, "controller": label, "seed": unit.seed,
                           "episodes": len(unit.infos), "episode_steps": len(unit.infos[0]),
                           "traces_used": list(traces_used)}
    row.update({k: float(summary.get(k, math.nan)) for k in (*SUMMARY_KEYS, *REQUEST_KEYS)})
    row["episode_reward"] = float(np.mean(unit.rewards))
    row["jobs"] = {name: {k: float(summary[f"{name}/{k}"]) for k in JOB_FIGURES}
                   for name in job_names}
    return row


def rows_of(scenario: str, runs: Sequence[ControllerRun], job_names: Sequence[str],
            traces_used: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Every (controller, seed) row, controllers in the order run."""
    return [seed_row(scenario, run.label, unit, job_names, traces_used)
            for run in runs for unit in run.seeds]


def write_json(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """The rows as a JSON list (NaN and infinity written as null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(finite_or_none(list(rows)), indent=2, allow_nan=False) + "\n")


def flat(row: dict[str, Any]) -> dict[str, Any]:
    """A row with its per-job figures as ``<job>/<figure>`` columns."""
    out = {k: v for k, v in row.items() if k not in ("jobs", "traces_used")}
    out["traces_used"] = " ".join(row.get("traces_used", []))
    for name, figures in row["jobs"].items():
        out.update({f"{name}/{k}": v for k, v in figures.items()})
    return out


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """One line per (controller, seed); per-job figures as ``<job>/<figure>`` columns; an empty
    cell where a figure is undefined (a job never active)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flats = [finite_or_none(flat(r)) for r in rows]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(flats[0]))
        writer.writeheader()
        writer.writerows([{k: "" if v is None else v for k, v in r.items()} for r in flats])


def _number(x: float) -> str:
    """A figure with sensible digits.

    Example:
        >>> [_number(v) for v in (1234.5, 12.345, 0.01234, 0.0)]
        ['1234.5', '12.35', '0.0123', '0']
    """
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:.1f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def mean_std(values: Sequence[float]) -> str:
    """``mean ± std`` over seeds (sample std; the mean alone for one value; NaNs skipped).

    Example:
        >>> mean_std([1.0, 3.0]), mean_std([2.0]), mean_std([float("nan")])
        ('2.00 ± 1.41', '2.00', '–')
    """
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "–"
    if len(finite) == 1:
        return _number(finite[0])
    return f"{_number(float(np.mean(finite)))} ± {_number(float(np.std(finite, ddof=1)))}"


def markdown_table(rows: Sequence[dict[str, Any]], job_names: Sequence[str]) -> str:
    """One line per controller: every figure as mean ± std over its seeds."""
    header = ["controller", *TABLE_FIGURES,
              *[f"{name}/{k}" for name in job_names for k in JOB_FIGURES]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    labels = list(dict.fromkeys(r["controller"] for r in rows))
    for label in labels:
        mine = [r for r in rows if r["controller"] == label]
        cells = [label] + [mean_std([r[k] for r in mine]) for k in TABLE_FIGURES]
        cells += [mean_std([r["jobs"][name][k] for r in mine])
                  for name in job_names for k in JOB_FIGURES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_markdown(path: Path, table: str, heading: str, notes: Sequence[str]) -> None:
    """The table under a heading and notes (setup, definitions, the command to reproduce)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "\n".join(f"- {n}" for n in notes)
    path.write_text(f"# {heading}\n\n{body}\n\n{table}\n")


__all__ = ["FIGURES", "JOB_FIGURES", "TABLE_FIGURES", "finite_or_none", "flat", "markdown_table",
           "mean_std", "rows_of", "seed_row", "write_csv", "write_json", "write_markdown"]
