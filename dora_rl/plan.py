"""Plan a scenario's jobs: Dora's plan set, the network schedule and the baselines, side by side.

Usage::

    python -m dora_rl.plan --scenario envs/smart_home.yaml --json plans.json --png plans.png
    python -m dora_rl.plan --scenario tiny --job classify --mode time --k 4
    python -m dora_rl.plan --pipeedge envs/pipeedge_sample --model google/vit-base-patch16-224

For each job it computes the plan set (the optimum of the mode first), schedules every plan's
flows on the shared WiFi (unless ``--no-schedule``), costs each baseline planner and prints one
table per job and a line comparing the optimum's energy (and in time mode its speed) with each
baseline. ``--json`` writes ``{"solve_time_s", "plans": [...]}`` with ``plans[0]`` the chosen
plan, stages as 1-based inclusive layer ranges; ``--png`` draws the figures of
:mod:`dora_rl.planner.plan_plots`. ``--pipeedge`` solves PipeEdge's own objective from its profile
files instead. Bad input prints one line and exits with status 2.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from dora_rl.config import Scenario
from dora_rl.config.names import display_text
from dora_rl.costmodel import CostModel, Plan
from dora_rl.errors import ArgParser, InfeasibleError, UsageError, run_cli
from dora_rl.pipeedge import load_pipeedge
from dora_rl.planner import disk, plan_plots
from dora_rl.planner.baselines.baseline_planners import BASELINES
from dora_rl.planner.baselines.pipeedge_plan import PipeEdgeSchedule, solve_pipeedge
from dora_rl.planner.exact.diagnose import describe
from dora_rl.planner.exact.partition import Mode
from dora_rl.planner.planset import PlanSet, plan_set
from dora_rl.planner.scheduler import Schedule, schedule
from dora_rl.scenarios import load
from dora_rl.synthetic_cards import benchmark_scenario


@dataclass(frozen=True)
class Args:
    """Command-line arguments of ``python -m dora_rl.plan``."""

    scenario: str | None = None
    """Card path (``envs/tiny.yaml``) or name (``tiny``)."""
    job: str | None = None
    """Plan only this job (default: every job of the card)."""
    mode: str | None = None
    """``energy`` or ``time`` (default: the card's ``objective.mode``); ``throughput`` with
    ``--pipeedge``."""
    k: int = 8
    """Largest number of plans in each job's plan set."""
    json: str | None = None
    """Write the plans as JSON to this file."""
    png: str | None = None
    """Draw the plan set and the chosen plan's timeline into this PNG (a row per job)."""
    no_schedule: bool = False
    """Skip the network scheduler (equal airtime sharing only)."""
    pipeedge: str | None = None
    """Directory with PipeEdge's ``models.yml``, ``device_types.yml`` and ``devices.yml``."""
    model: str | None = None
    """Model name in ``models.yml`` (with ``--pipeedge``)."""
    batch: int = 8
    """Micro-batch size of the PipeEdge profiles to use (with ``--pipeedge``)."""
    clear_cache: bool = False
    """Delete every plan set cached on disk (:mod:`dora_rl.planner.disk`) and exit."""
    time_limit: float = 60.0
    """Seconds each solve may take; a solve that stops there without a proven optimum is an
    error (no result silently depends on the limit)."""


@dataclass(frozen=True)
class JobReport:
    """Everything planned for one job.

    Attributes:
        model: The job's cost model.
        plans: The plan set (``entries[0]`` is the optimum of the mode).
        schedules: The network schedule of each plan (``None`` with ``--no-schedule``).
        baselines: Baseline name -> (plan, cost-model figures), or the reason it does not fit.
    """

    model: CostModel
    plans: PlanSet
    schedules: tuple[Schedule | None, ...]
    baselines: dict[str, tuple[Plan, dict[str, Any]] | str]



def parse(argv: Sequence[str] | None) -> Args:
    """Parse and check the command line."""
    p = ArgParser(prog="python -m dora_rl.plan", description="Plan a scenario's jobs.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--scenario", help="card path or name (e.g. envs/tiny.yaml or tiny), or "
                     "synthetic:LxD[:llm|:train] for the synthetic benchmark instance")
    src.add_argument("--pipeedge", metavar="DIR", help="PipeEdge profile directory")
    src.add_argument("--clear-cache", action="store_true",
                     help="delete the plan sets cached on disk ($DORA_RL_CACHE) and exit")
    p.add_argument("--job", help="plan only this job (default: all)")
    p.add_argument("--mode", help="energy | time (default: the card's); throughput (PipeEdge)")
    p.add_argument("--k", type=int, default=8, help="plans per plan set (default 8)")
    p.add_argument("--json", metavar="F", help="write the plans as JSON to F")
    p.add_argument("--png", metavar="F", help="draw the figures into F: one PNG, a row of "
                   "panels per job (plan set | timeline of the chosen plan)")
    p.add_argument("--no-schedule", action="store_true", help="skip the network scheduler")
    p.add_argument("--model", help="model name in models.yml (with --pipeedge)")
    p.add_argument("--batch", type=int, default=8, help="PipeEdge micro-batch size (default 8)")
    p.add_argument("--time-limit", type=float, default=60.0, metavar="S",
                   help="seconds each solve may take (default 60); hitting it is an error")
    ns = p.parse_args(argv)
    args = Args(**vars(ns))
    if args.pipeedge is not None:
        if (args.mode or "throughput") != "throughput":
            raise UsageError(f"--mode {args.mode}: PipeEdge's objective is throughput only")
        if args.model is None:
            raise UsageError("--pipeedge needs --model NAME (a model in models.yml)")
        if args.job is not None or args.png is not None:
            raise UsageError("--job and --png apply to --scenario, not to --pipeedge")
    elif args.mode not in (None, "energy", "time"):
        raise UsageError(f"--mode {args.mode!r}: unknown mode (energy or time)")
    if args.k < 1 or args.batch < 1:
        raise UsageError("--k and --batch must be at least 1")
    if not (math.isfinite(args.time_limit) and 0 < args.time_limit <= MAX_TIME_LIMIT_S):
        raise UsageError(f"--time-limit {args.time_limit}: must be above 0 and at most "
                         f"{MAX_TIME_LIMIT_S:g} s")
    return args


SYNTHETIC = re.compile(r"synthetic:(\d{1,5})x(\d{1,4})(?::(llm|train))?")
"""``synthetic:LxD[:llm|:train]``: the benchmark instance of L layers on D devices."""
MAX_TIME_LIMIT_S = 86_400.0


def load_card(text: str) -> Scenario:
    """The scenario ``--scenario`` names: a card (path or name), or the synthetic benchmark
    instance (:func:`~dora_rl.synthetic_cards.benchmark_scenario`).

    Example:
        >>> s = load_card("synthetic:48x8:llm")
        >>> s.name, len(s.devices), s.jobs[0].workload
        ('bench_48x8', 8, 'llm_inference')
    """
    match = SYNTHETIC.fullmatch(text)
    if match is None:
        if text.startswith("synthetic:"):
            raise UsageError(f"--scenario {text}: expected synthetic:LxD[:llm|:train], e.g. "
                             "synthetic:48x8 or synthetic:96x16:llm")
        return load(text)
    layers, devices = int(match[1]), int(match[2])
    if not (1 <= layers <= 4096 and 2 <= devices <= 256):
        raise UsageError(f"--scenario {text}: layers must be 1-4096 and devices 2-256")
    workload = {"llm": "llm_inference", "train": "training"}.get(match[3] or "", "inference")
    return benchmark_scenario(layers, devices, workload)  # type: ignore[arg-type]


def _finite(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _verdict(m: dict[str, Any]) -> str:
    if m["feasible"]:
        return "yes"
    return "no (memory)" if not m["memory_ok"] else ("no (QoE)" if m["usable_ok"]
                                                     else "no (device absent)")


def plan_json(model: CostModel, plan: Plan, m: dict[str, Any]) -> dict[str, Any]:
    """One plan in the JSON shape: 1-based inclusive layers, device names, figures."""
    names = [d.name for d in model.scenario.devices]
    stages = [{"layers": [plan.stage_layers(k)[0] + 1, plan.stage_layers(k)[1]],
               "devices": [names[d] for d in g]} for k, g in enumerate(plan.stage_devices)]
    return {"stages": stages, "latency_s": _finite(m["latency_s"]),
            "throughput_per_s": _finite(m["throughput_per_s"]),
            "energy_j": _finite(m["energy_j"]), "bottleneck_s": _finite(m["period_s"]),
            "power_w": _finite(m["power_w"]), "micro_batches": plan.micro_batches,
            "feasible": bool(m["feasible"]),
            "qoe_slack": {k: _finite(v) for k, v in m["qoe_slack"].items()},
            "memory_bytes": {names[d]: m["memory_bytes"][d] for d in plan.devices}}


def report_json(r: JobReport) -> dict[str, Any]:
    """A job's plans (optimum first) and baselines as plain data."""
    plans = []
    for e, s in zip(r.plans.entries, r.schedules, strict=True):
        row = {"role": e.role, "robustness": e.robustness,
               **plan_json(r.model, e.plan, e.metrics)}
        if s is not None:
            sm = r.model.evaluate(s.plan)
            row["schedule"] = {**{k: v for k, v in plan_json(r.model, s.plan, sm).items()
                                  if k in ("latency_s", "throughput_per_s", "energy_j",
                                           "bottleneck_s", "feasible")},
                               "speedup": s.speedup, "priority": list(s.priority),
                               "boundary_shares": s.plan.boundary_shares,
                               "allreduce_shares": s.plan.allreduce_shares}
        plans.append(row)
    base = {n: {"error": v} if isinstance(v, str) else plan_json(r.model, *v)
            for n, v in r.baselines.items()}
    return {"job": r.plans.job, "mode": r.plans.mode, "solve_time_s": r.plans.solve_time_s,
            "proven_optimal": True, "plans": plans, "baselines": base}


def solve_job(model: CostModel, mode: Mode | None, k: int, scheduled: bool,
              time_limit_s: float = 60.0) -> JobReport:
    """Plan set, schedules and baselines of one job.

    Raises:
        InfeasibleError: no plan of the job meets memory and QoE.
    """
    try:
        plans = plan_set(model, mode, k=k, time_limit_s=time_limit_s)
    except InfeasibleError as error:
        raise InfeasibleError(f"{model.scenario.source}: {error}") from None
    schedules = tuple(schedule(model, e.plan) if scheduled else None for e in plans.entries)
    baselines: dict[str, tuple[Plan, dict[str, Any]] | str] = {}
    for name, planner in BASELINES.items():
        try:
            plan = planner(model, None)
            baselines[name] = (plan, model.evaluate(plan))
        except InfeasibleError as error:
            baselines[name] = str(error)
    return JobReport(model, plans, schedules, baselines)


def _cells(model: CostModel, m: dict[str, Any], s: Schedule | None) -> list[str]:
    """Table cells of a plan; with a schedule that helps, the scheduled plan's figures."""
    t = model.tables
    time = f"{m['latency_s'] * 1e3:,.1f}"
    if s is not None and s.time_s < s.time_equal_s * (1 - 1e-9):
        m = model.evaluate(s.plan)
        time = f"{s.time_s * 1e3:,.1f} (equal {s.time_equal_s * 1e3:,.1f})"
    used = [d for d, u in enumerate(m["used"]) if u]
    peak = max(m["memory_bytes"][d] / t.memory_bytes[d] for d in used)
    name, slack = min(m["qoe_slack"].items(), key=lambda kv: kv[1])
    return [time, f"{m['throughput_per_s']:.3g}", f"{m['energy_j']:.3g}", f"{m['power_w']:.3g}",
            f"{100 * peak:.0f} %", f"{100 * slack:+.0f} % {name}", _verdict(m)]


def _stages(model: CostModel, plan: Plan) -> str:
    """``describe()`` text with one stage per line."""
    return describe(model, plan).replace(" | ", "\n")


def job_table(r: JobReport) -> Table:
    """The rich table of one job: the plan set, then the baselines."""
    job = r.model.tables.job
    what = {"inference": "latency", "llm_inference": "request time", "training": "iteration"}
    unit = "iteration" if job.training is not None else "request"
    table = Table("plan", "stages", "dev", f"{what[job.workload]} (ms)", "throughput (/s)",
                  f"energy/{unit} (J)", "power (W)", "peak mem", "min QoE slack", "feasible",
                  title=f"{job.name}: {job.workload} of {job.model}, {r.plans.mode} mode "
                        f"({r.plans.solve_time_s:.2f} s)")
    for e, s in zip(r.plans.entries, r.schedules, strict=True):
        table.add_row(e.role, _stages(r.model, e.plan), str(len(e.plan.devices)),
                      *_cells(r.model, e.metrics, s))
    table.add_section()
    for name, v in r.baselines.items():
        if isinstance(v, str):
            table.add_row(f"[dim]{name}[/dim]", "does not fit", *[""] * 7, "no")
        else:
            table.add_row(name, _stages(r.model, v[0]), str(len(v[0].devices)),
                          *_cells(r.model, v[1], None))
    return table


def summary_line(r: JobReport) -> str:
    """The optimum's energy (and in time mode speed) against each baseline, in one line."""
    best = r.plans.entries[0]
    parts = []
    for name, v in r.baselines.items():
        if isinstance(v, str):
            parts.append(f"{name} does not fit ({v})")
            continue
        text = f"{100 * (best.energy_j / v[1]['energy_j'] - 1):+.0f} % energy"
        if r.plans.mode == "time":
            text += f", {v[1]['latency_s'] / best.time_s:.2f}x faster"
        text += f" vs {name}" + (" (same plan)" if v[0] == best.plan else "")
        parts.append(text + ("" if v[1]["feasible"] else " (misses QoE)"))
    line = f"{r.plans.job} optimum: " + "; ".join(parts)
    if r.schedules[0] is not None:
        line += f"; network schedule {r.schedules[0].speedup:.2f}x over equal sharing"
    return line


def _progress(console: Console) -> Progress:
    return Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def _write(path: str, text: str | None = None, draw: Any = None) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if draw is not None:
            draw(path)
        else:
            Path(path).write_text(text or "")
    except OSError as error:
        raise UsageError(f"{path}: cannot write ({error.strerror or error})") from None


def _jobs(scenario: Scenario, job: str | None) -> list[str]:
    names = [j.name for j in scenario.jobs]
    if job is not None and job not in names:
        raise UsageError(f"{scenario.source}: no job {job!r} (jobs: {', '.join(names)})")
    return [job] if job is not None else names


def run_scenario(args: Args, out: Console, err: Console) -> None:
    """Plan every requested job, print the tables and write the files."""
    assert args.scenario is not None
    scenario = load_card(args.scenario)
    names = _jobs(scenario, args.job)
    reports = []
    with _progress(err) as bar:
        task = bar.add_task("loading", total=None)
        for i, name in enumerate(names):
            bar.update(task, description=f"planning job {name} ({i + 1}/{len(names)})")
            reports.append(solve_job(CostModel(scenario, name), cast(Mode | None, args.mode),
                                     args.k, not args.no_schedule, args.time_limit))
    for r in reports:
        out.print(job_table(r))
        out.print(summary_line(r), markup=False, highlight=False)
    if args.json is not None:
        jobs = [report_json(r) for r in reports]
        data = {"scenario": scenario.name, "solve_time_s": sum(j["solve_time_s"] for j in jobs),
                **{k: jobs[0][k] for k in ("job", "mode", "proven_optimal", "plans",
                                           "baselines")},
                "jobs": {j["job"]: j for j in jobs}}
        _write(args.json, json.dumps(data, indent=2))
    if args.png is not None:
        figs = [plan_plots.job_figure(r.model, r.plans, r.baselines) for r in reports]
        _write(args.png, draw=lambda p: plan_plots.save_figure(p, figs))


def pipeedge_table(sched: PipeEdgeSchedule, model: str) -> Table:
    """The PipeEdge schedule, one row per stage."""
    table = Table("stage", "layers", "host", "device type", "compute (s)", "transfer (s)",
                  title=f"PipeEdge schedule of {display_text(model)}, batch {sched.batch} "
                        f"({sched.status}, {sched.solve_time_s:.2f} s)")
    for k, s in enumerate(sched.stages):
        table.add_row(str(k + 1), f"{s.first_layer}-{s.last_layer}", s.host,
                      display_text(s.device_type), f"{s.compute_s:.3f}", f"{s.transfer_s:.3f}")
    return table


def run_pipeedge(args: Args, out: Console, err: Console) -> None:
    """Solve PipeEdge's objective exactly, print the schedule and write its JSON."""
    assert args.pipeedge is not None and args.model is not None
    profile = load_pipeedge(args.pipeedge)
    with _progress(err) as bar:
        bar.add_task(f"solving PipeEdge's schedule of {args.model}", total=None)
        sched = solve_pipeedge(profile, args.model, batch=args.batch)
    out.print(pipeedge_table(sched, args.model))
    out.print(f"bottleneck {sched.bottleneck_s:.3f} s per micro-batch, throughput "
              f"{sched.throughput_per_s:.3f} samples/s, latency {sched.latency_s:.3f} s")
    if args.json is not None:
        _write(args.json, json.dumps(sched.to_json(), indent=2))


def _main(argv: Sequence[str] | None) -> int:
    args = parse(argv)
    out, err = Console(width=160), Console(stderr=True)
    if args.clear_cache:
        folder = disk.cache_dir()
        removed = disk.clear()
        where = display_text(str(folder)) if folder is not None else "(the cache is off)"
        out.print(f"removed {removed} cached plan set{'s' if removed != 1 else ''} from {where}")
        return 0
    if args.pipeedge is not None:
        run_pipeedge(args, out, err)
    else:
        run_scenario(args, out, err)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 with one line on stderr for bad input)."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
