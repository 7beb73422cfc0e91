"""Figures of a job's plans: the (time, energy) plan set beside a timeline of the chosen plan.

Drawn with matplotlib's Agg canvas (no display, no ``pyplot`` state). :func:`job_figure` gathers
what one job's row of panels needs from the cost model; :func:`save_figure` draws one row per job
into one PNG:

* left, every plan of the set as a point (time against energy per unit of work), the Pareto
  frontier of the set as a step line, the optimum as a star, each baseline as a labelled marker
  (hollow when the cost model finds it infeasible) and the time target as a vertical line where
  the job's time figure has one (request latency, iteration time);
* right, one request (inference), the prefill of one request (LLM) or the forward and backward
  pass of the first micro-batch (training) of the chosen plan, one lane per device, laid out
  from the cost model's ``stage_s`` and ``transfer_s``; transfers are hatched on the sender's lane.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from dora_rl.costmodel import CostModel, Plan
from dora_rl.planner.planset import PlanSet

ROLE_STYLE = {"optimum": ("*", 260), "pareto": ("o", 60), "robust": ("D", 50)}
BASELINE_MARKERS = {"throughput": "s", "even": "^", "memory": "v", "single": "P"}
UNIT = {"inference": "request", "llm_inference": "request", "training": "iteration"}
TIME_LABEL = {"inference": "request latency", "llm_inference": "request time (TTFT + decode)",
              "training": "iteration time"}


@dataclass(frozen=True)
class Point:
    """One plan in the (time, energy) panel."""

    label: str
    time_s: float
    energy_j: float
    feasible: bool


@dataclass(frozen=True)
class Bar:
    """One bar of the timeline: compute (``forward``/``backward``) or a ``transfer``."""

    lane: str
    start_s: float
    duration_s: float
    label: str
    kind: str
    stage: int


@dataclass(frozen=True)
class JobFigure:
    """Everything one job's row of panels shows."""

    job: str
    workload: str
    mode: str
    plans: tuple[Point, ...]
    baselines: tuple[Point, ...]
    missing: tuple[str, ...]
    time_target_s: float | None
    targets: str
    lanes: tuple[str, ...]
    bars: tuple[Bar, ...]
    timeline_title: str


def _time_target_s(model: CostModel) -> float | None:
    job = model.tables.job
    q = job.qoe
    if job.training is not None:
        if q.iteration_ms is not None:
            return q.iteration_ms / 1e3
        if q.deadline_s is not None and job.training.iterations:
            return q.deadline_s / job.training.iterations
        return None
    return q.latency_ms / 1e3 if job.inference is not None and q.latency_ms else None


def _targets(model: CostModel) -> str:
    q = model.tables.job.qoe
    labels = {"latency_ms": ("latency", "ms"), "ttft_ms": ("TTFT", "ms"),
              "tpot_ms": ("TPOT", "ms"), "iteration_ms": ("iteration", "ms"),
              "deadline_s": ("deadline", "s"), "energy_j": ("energy", "J")}
    parts = [f"{label} {getattr(q, name):g} {unit}"
             for name, (label, unit) in labels.items() if getattr(q, name) is not None]
    return ", ".join(parts)


def _forward_fraction(model: CostModel, plan: Plan, k: int) -> float:
    """Share of stage ``k``'s forward+backward time that is forward (from the profile)."""
    t, d = model.tables, plan.stage_devices[k][0]
    a, b = plan.stage_layers(k)
    fwd = float(t.fwd_prefix_s[d, b] - t.fwd_prefix_s[d, a])
    bwd = float(t.bwd_prefix_s[d, b] - t.bwd_prefix_s[d, a])
    return fwd / (fwd + bwd) if fwd + bwd > 0 else 0.5


def timeline(model: CostModel, plan: Plan, metrics: Mapping[str, Any]) -> tuple[
        tuple[str, ...], tuple[Bar, ...], str]:
    """Lanes (device names in pipeline order), bars and a title for ``plan``'s timeline.

    Training stages report forward+backward together; they are split in the ratio of the
    profile's forward and backward times on the stage's first device.
    """
    names = [d.name for d in model.scenario.devices]
    stage_s, transfer_s = metrics["stage_s"], metrics["transfer_s"]
    n = plan.n_stages
    training = model.tables.job.training is not None
    bars: list[Bar] = []
    clock = 0.0

    def run(k: int, duration: float, kind: str, label: str) -> None:
        nonlocal clock
        bars.extend(Bar(names[d], clock, duration, label, kind, k)
                    for d in plan.stage_devices[k])
        clock += duration

    spans = [plan.stage_layers(k) for k in range(n)]
    frac = [_forward_fraction(model, plan, k) if training else 1.0 for k in range(n)]
    hop = [x / 2 if training else x for x in transfer_s[: n - 1]]
    for k, (a, b) in enumerate(spans):
        run(k, stage_s[k] * frac[k], "forward", f"L{a + 1}-{b}")
        if k < n - 1:
            run(k, hop[k], "transfer", "")
    if training:
        for k in reversed(range(n)):
            a, b = spans[k]
            run(k, stage_s[k] * (1 - frac[k]), "backward", f"L{a + 1}-{b}")
            if k > 0:
                run(k, hop[k - 1], "transfer", "")
    lanes = tuple(names[d] for group in plan.stage_devices for d in group)
    job = model.tables.job
    if job.llm is not None:
        title = (f"prefill of one request: TTFT {metrics['ttft_s'] * 1e3:.0f} ms, then "
                 f"{job.llm.output_tokens - 1} tokens at TPOT {metrics['tpot_s'] * 1e3:.0f} ms")
    elif training:
        title = (f"first micro-batch, forward + backward: {clock * 1e3:.0f} ms\niteration "
                 f"{metrics['latency_s'] * 1e3:.0f} ms (1F1B: this fill + "
                 f"{plan.micro_batches - 1} more micro-batches at the "
                 f"{metrics['period_s'] * 1e3:.1f} ms bottleneck)")
    else:
        title = f"one request: latency {metrics['latency_s'] * 1e3:.1f} ms"
    return lanes, tuple(bars), title


def job_figure(model: CostModel, plans: PlanSet,
               baselines: Mapping[str, tuple[Plan, Mapping[str, Any]] | str]) -> JobFigure:
    """The panels' data for one job; a baseline given as a string did not fit (not drawn)."""
    points = tuple(Point(e.role, e.time_s, e.energy_j, bool(e.metrics["feasible"]))
                   for e in plans.entries)
    marks = tuple(Point(name, float(v[1]["latency_s"]), float(v[1]["energy_j"]),
                        bool(v[1]["feasible"])) for name, v in baselines.items()
                  if not isinstance(v, str))
    missing = tuple(name for name, v in baselines.items() if isinstance(v, str))
    best = plans.entries[0]
    lanes, bars, title = timeline(model, best.plan, best.metrics)
    return JobFigure(job=plans.job, workload=model.tables.job.workload, mode=plans.mode,
                     plans=points, baselines=marks, missing=missing,
                     time_target_s=_time_target_s(model), targets=_targets(model),
                     lanes=lanes, bars=bars, timeline_title=title)


def _frontier(points: Sequence[Point]) -> list[Point]:
    """Points no other point beats in both time and energy, by rising time."""
    out: list[Point] = []
    for p in sorted(points, key=lambda p: (p.time_s, p.energy_j)):
        if not out or p.energy_j < out[-1].energy_j:
            out.append(p)
    return out


def _log_if_wide(ax: Axes, values: Sequence[float], axis: str) -> None:
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    if not vals or max(vals) / min(vals) <= 8:
        return
    scale_axis = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    scale_axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    scale_axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    scale_axis.set_minor_formatter(NullFormatter())


def _draw_scatter(ax: Axes, fig: JobFigure) -> None:
    ok = [p for p in fig.plans if math.isfinite(p.time_s) and math.isfinite(p.energy_j)]
    front = _frontier(ok)
    ax.plot([p.time_s * 1e3 for p in front], [p.energy_j for p in front], drawstyle="steps-post",
            color="tab:blue", lw=1.5, alpha=0.7, label="Pareto frontier of the set")
    for role, (marker, size) in ROLE_STYLE.items():
        pts = [p for p in ok[1:] if p.label == role] if role != "optimum" else ok[:1]
        if pts:
            ax.scatter([p.time_s * 1e3 for p in pts], [p.energy_j for p in pts], marker=marker,
                       s=size, zorder=4, label=f"{fig.mode} optimum" if role == "optimum"
                       else f"{role} plan", color="gold" if role == "optimum" else "tab:blue",
                       edgecolors="black" if role == "optimum" else "none")
    marks = [p for p in fig.baselines if math.isfinite(p.time_s) and math.isfinite(p.energy_j)]
    for i, p in enumerate(marks):
        ax.scatter([p.time_s * 1e3], [p.energy_j], marker=BASELINE_MARKERS.get(p.label, "X"), s=70,
                   facecolors="tab:gray" if p.feasible else "none", edgecolors="black", zorder=3,
                   label=f"baseline {p.label}" + ("" if p.feasible else " (infeasible)"))
        same = any(math.isclose(p.time_s, q.time_s) and math.isclose(p.energy_j, q.energy_j)
                   for q in ok[:1])
        ax.annotate(p.label + (" (= optimum)" if same else ""), (p.time_s * 1e3, p.energy_j),
                    textcoords="offset points", xytext=(7, 6 - 12 * (i % 2)), fontsize=8)
    if fig.time_target_s is not None:
        ax.axvline(fig.time_target_s * 1e3, color="tab:red", ls="--", lw=1.2,
                   label=f"time target {fig.time_target_s * 1e3:g} ms")
    all_pts = ok + marks
    _log_if_wide(ax, [p.time_s * 1e3 for p in all_pts]
                 + ([fig.time_target_s * 1e3] if fig.time_target_s else []), "x")
    _log_if_wide(ax, [p.energy_j for p in all_pts], "y")
    ax.set_xlabel(f"{TIME_LABEL[fig.workload]} (ms)")
    ax.set_ylabel(f"energy per {UNIT[fig.workload]} (J)")
    note = f"; did not fit: {', '.join(fig.missing)}" if fig.missing else ""
    n = len(fig.plans)
    ax.set_title(f"{fig.job}: {n} plan{'s' * (n != 1)} in the {fig.mode}-mode set "
                 f"(QoE: {fig.targets}){note}", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7.5, loc="best", framealpha=0.85)


def _draw_timeline(ax: Axes, fig: JobFigure) -> None:
    colors = [f"C{i % 10}" for i in range(10)]
    end = max((b.start_s + b.duration_s for b in fig.bars), default=0.0)
    scale, unit = (1e3, "ms") if end < 5.0 else (1.0, "s")
    row = {lane: i for i, lane in enumerate(fig.lanes)}
    for b in fig.bars:
        y = row[b.lane]
        style: dict[str, Any] = {"color": colors[b.stage % 10], "edgecolor": "black", "lw": 0.6}
        if b.kind == "transfer":
            style.update(hatch="////", alpha=0.45)
        elif b.kind == "backward":
            style.update(alpha=0.55, hatch="..")
        ax.barh(y, b.duration_s * scale, left=b.start_s * scale, height=0.55, **style)
        if b.label and b.duration_s > 0.07 * end:
            ax.text((b.start_s + b.duration_s / 2) * scale, y, b.label, ha="center",
                    va="center", fontsize=8, color="black")
        elif b.label:
            ax.text((b.start_s + b.duration_s / 2) * scale, y + 0.34, b.label, ha="center",
                    va="bottom", fontsize=7)
    ax.set_yticks(range(len(fig.lanes)), list(fig.lanes))
    ax.set_ylim(len(fig.lanes) - 0.4, -0.6)
    ax.set_xlim(0, end * scale * 1.02 if end > 0 else 1)
    ax.set_xlabel(f"time ({unit})")
    ax.set_title(f"{fig.job}, chosen plan ({fig.mode} optimum)\n{fig.timeline_title}",
                 fontsize=10)
    ax.grid(True, axis="x", alpha=0.25)
    stages = sorted({(b.stage, b.label) for b in fig.bars if b.kind == "forward"})
    handles = [Patch(facecolor=colors[k % 10], edgecolor="black", label=f"stage {k + 1} ({lab})")
               for k, lab in stages]
    if any(b.kind == "backward" for b in fig.bars):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="..",
                             label="backward pass"))
    if any(b.kind == "transfer" for b in fig.bars):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="////",
                             label="transfer (on the sender's lane)"))
    ax.legend(handles=handles, fontsize=7.5, loc="lower right", framealpha=0.85)


def save_figure(path: str | Path, figures: Sequence[JobFigure], dpi: int = 150) -> None:
    """Draw one row of two panels per job into the PNG ``path``."""
    rows = max(1, len(figures))
    fig = Figure(figsize=(15, 5.2 * rows), layout="constrained")
    axes = fig.subplots(rows, 2, squeeze=False, width_ratios=(1, 1.25))
    for (left, right), job in zip(axes, figures, strict=False):
        _draw_scatter(left, job)
        _draw_timeline(right, job)
    fig.savefig(path, dpi=dpi, format="png")
