"""Figures of a benchmark: the energy/QoE trade-off and one episode's time series.

- :func:`tradeoff_figure`: mean energy per interval against the QoE violation rate, one marker
  per controller with error bars (sample std over seeds).
- :func:`episode_figure`: the first episode of the first seed: bandwidth scale, energy per
  interval, each job's latency against its target, and when each controller switched plans.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from dora_rl.benchmark.episodes import ControllerRun  # noqa: E402
from dora_rl.config import Scenario  # noqa: E402
from dora_rl.config.schema import Job  # noqa: E402


def slo_ms(job: Job) -> tuple[float, str] | None:
    """The card's bound on the figure the env reports as a job's ``latency_ms``.

    Inference: ``latency_ms``; training: ``iteration_ms`` (or ``deadline_s`` over the
    iterations); LLM inference, whose reported latency is the whole request
    (TTFT + (output tokens - 1) x TPOT): the request time both targets allow together.
    None when the card sets no such target.
    """
    q = job.qoe
    if job.training is not None:
        if q.iteration_ms is not None:
            return q.iteration_ms, "iteration target"
        if q.deadline_s is not None and job.training.iterations:
            return q.deadline_s / job.training.iterations * 1e3, "deadline / iterations"
        return None
    if job.llm is not None:
        if q.ttft_ms is not None and q.tpot_ms is not None:
            return (q.ttft_ms + (job.llm.output_tokens - 1) * q.tpot_ms,
                    "TTFT + (tokens-1) x TPOT targets")
        return None
    return (q.latency_ms, "latency target") if q.latency_ms is not None else None


def colours(labels: Sequence[str]) -> dict[str, Any]:
    """One colour per controller, the same in every figure."""
    cmap = plt.get_cmap("tab10")
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def tradeoff_figure(rows: Sequence[dict[str, Any]], scenario: str) -> Figure:
    """Energy per interval against QoE violation rate, one marker per controller."""
    labels = list(dict.fromkeys(r["controller"] for r in rows))
    colour = colours(labels)
    fig, ax = plt.subplots(figsize=(7.0, 5.0), layout="constrained")
    for label in labels:
        mine = [r for r in rows if r["controller"] == label]
        x = np.array([r["energy_j"] for r in mine], dtype=float)
        y = 100.0 * np.array([r["qoe_violation_rate"] for r in mine], dtype=float)
        xe = float(np.std(x, ddof=1)) if len(x) > 1 else 0.0
        ye = float(np.std(y, ddof=1)) if len(y) > 1 else 0.0
        ax.errorbar(x.mean(), y.mean(), xerr=xe, yerr=ye, fmt="o", ms=8, capsize=4,
                    color=colour[label], label=label)
        ax.annotate(label, (x.mean(), y.mean()), xytext=(7, 7), textcoords="offset points",
                    fontsize=10, color=colour[label])
    n_seeds = len({r["seed"] for r in rows})
    ax.set_xlabel("energy per interval (J), lower is better")
    ax.set_ylabel("QoE violation rate (% of active job-intervals)")
    ax.set_title(f"{scenario}: energy against QoE ({n_seeds} seed"
                 f"{'s' if n_seeds != 1 else ''}, error bars: std over seeds)")
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    ax.margins(x=0.15, y=0.1)
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    return fig


def _headroom(ax: Any, fraction: float) -> None:
    """Raise the top of ``ax`` so the data fill the lower ``fraction`` of its height."""
    lo, hi = ax.get_ylim()
    if ax.get_yscale() == "log":
        ax.set_ylim(lo, lo * (hi / lo) ** (1.0 / fraction))
    else:
        ax.set_ylim(lo, lo + (hi - lo) / fraction)


def _latency_panel(ax: Any, runs: Sequence[ControllerRun], j: int, job: Job,
                   colour: dict[str, Any]) -> None:
    """One job's latency per controller: dots where QoE was missed, a row of crosses per
    controller at the top where the latency was infinite (a link down or no plan), the card's
    target and the target in force."""
    first = runs[0].seeds[0].trace
    steps = np.arange(len(first.energy_j))
    spread: list[float] = []
    stuck_rows: list[tuple[int, Any, Any]] = []
    for i, run in enumerate(runs):
        trace = run.seeds[0].trace
        lat = np.array([row[j] for row in trace.latency_ms], dtype=float)
        shown = np.where(np.isfinite(lat), lat, np.nan)
        spread += shown[np.isfinite(shown)].tolist()
        ax.plot(steps, shown, lw=1.1, color=colour[run.label])
        missed = np.array([row[j] for row in trace.violated], dtype=bool) & np.isfinite(lat)
        ax.plot(steps[missed], lat[missed], "o", ms=2.5, color=colour[run.label], zorder=3)
        if np.isinf(lat).any():
            stuck_rows.append((i, steps[np.isinf(lat)], colour[run.label]))
    target = slo_ms(job)
    if target is not None:
        value, what = target
        ax.axhline(value, color="black", ls="--", lw=1.0)
        ax.annotate(f"{what}: {value:g} ms", (0.005, value), xycoords=("axes fraction", "data"),
                    xytext=(0, 3), textcoords="offset points", fontsize=7, va="bottom",
                    bbox={"boxstyle": "square,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.7})
        scaled = value * np.array([row[j] for row in first.qoe_scale])
        if not np.allclose(scaled, value):
            ax.step(steps, scaled, where="mid", color="0.45", ls=":", lw=1.3)
        spread.append(value)
    if spread and max(spread) / max(min(spread), 1e-9) > 30:
        ax.set_yscale("log")
    if stuck_rows:
        step_h = 0.05
        band = 1.0 - step_h * (len(runs) + 0.2)
        _headroom(ax, band)
        ax.add_patch(Rectangle((0.0, band), 1.0, 1.0 - band, transform=ax.transAxes,
                               facecolor="0.94", edgecolor="none", zorder=0))
        for i, at, c in stuck_rows:
            ax.plot(at, np.full(len(at), 1.0 - step_h * (i + 0.7)), "x", ms=3.5, mew=1.0,
                    color=c, transform=ax.get_xaxis_transform(), zorder=3)
    what = "request time" if job.llm else "iteration" if job.training else "latency"
    ax.set_ylabel(f"{job.name}\n{what} (ms)")
    ax.grid(alpha=0.3)


def _key(fig: Figure, labels: Sequence[str], colour: dict[str, Any]) -> None:
    """One legend for the whole figure: controllers, target lines and marker meanings."""
    handles = [Line2D([], [], color=colour[label], lw=2, label=label) for label in labels]
    handles += [Line2D([], [], color="black", ls="--", lw=1, label="card's target"),
                Line2D([], [], color="0.45", ls=":", lw=1.3, label="target in force"),
                Line2D([], [], color="0.3", marker="o", ms=4, ls="", label="QoE missed"),
                Line2D([], [], color="0.3", marker="x", ms=5, ls="",
                       label="latency infinite (link down or no plan)")]
    fig.legend(handles=handles, loc="outside upper center", ncol=min(len(handles), 5),
               fontsize=8, frameon=False)


def episode_figure(runs: Sequence[ControllerRun], scenario: Scenario,
                   interval_s: float = 1.0) -> Figure:
    """The first episode of each controller's first seed, one line per controller."""
    jobs = list(scenario.jobs)
    labels = [r.label for r in runs]
    colour = colours(labels)
    n_rows = 3 + len(jobs)
    heights = [1.1, 1.5, *[2.0] * len(jobs), 0.35 + 0.3 * len(runs)]
    fig, axes = plt.subplots(n_rows, 1, figsize=(11.0, sum(heights) + 1.3), sharex=True,
                             gridspec_kw={"height_ratios": heights}, layout="constrained")
    _key(fig, labels, colour)
    first = runs[0].seeds[0].trace
    steps = np.arange(len(first.energy_j))
    ax = axes[0]
    ax.plot(steps, first.bandwidth_scale, color="0.25", lw=1.1)
    ax.fill_between(steps, 0, first.bandwidth_scale, color="0.85")
    ax.set_title(f"{scenario.name}: episode 0 of seed {runs[0].seeds[0].seed}", fontsize=12)
    ax.set_ylabel("bandwidth\nscale")
    ax.set_ylim(bottom=0)
    ax.text(0.005, 0.95, "mean link-rate multiplier of the devices present (same for every "
            "controller)", transform=ax.transAxes, fontsize=7, va="top")
    ax.grid(alpha=0.3)
    ax = axes[1]
    energy = []
    for run in runs:
        energy += run.seeds[0].trace.energy_j
        ax.plot(steps, run.seeds[0].trace.energy_j, lw=1.1, color=colour[run.label])
    positive = [e for e in energy if e > 0]
    if positive and max(positive) / min(positive) > 30:
        ax.set_yscale("log")
    ax.set_ylabel("energy per\ninterval (J)")
    ax.grid(alpha=0.3)
    for j, job in enumerate(jobs):
        _latency_panel(axes[2 + j], runs, j, job, colour)
    ax = axes[-1]
    for i, run in enumerate(runs):
        switched = np.flatnonzero(np.array(run.seeds[0].trace.replans) > 0)
        ax.plot(switched, np.full(len(switched), i), "|", ms=10, mew=1.5,
                color=colour[run.label])
    ax.set_yticks(range(len(runs)), labels, fontsize=8)
    ax.set_ylim(-0.7, len(runs) - 0.3)
    ax.set_ylabel("plan\nswitches")
    ax.grid(axis="x", alpha=0.3)
    ax.set_xlabel(f"interval ({interval_s:g} s each)")
    return fig


def save(fig: Figure, path: Path) -> None:
    """Write a figure as PNG and free it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["colours", "episode_figure", "save", "slo_ms", "tradeoff_figure"]
