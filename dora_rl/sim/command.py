"""Simulate a scenario under a controller, event by event.

Usage::

    python -m dora_rl.sim --scenario envs/smart_home.yaml --controller dora --duration 600
    python -m dora_rl.sim --scenario smart_home --controller checkpoints/smart_home/ppo_X \
        --compare-analytic --json out/sim.json
    python -m dora_rl.sim --scenario tiny --controller static --arrivals arrivals.csv

Runs ``dora_rl/Sim-v1`` (the interval model's control with every interval simulated). Prints
one row per job (latency mean / p50 / p95 / p99, throughput, QoE attainment of the finished
units, the share of scored requests that missed QoE, units finished, in flight and lost; with
``--compare-analytic`` the interval model's latency for the intervals the units arrived in next
to the simulated mean) and the run's energy (all, and the part the jobs caused), request
violation rate, plan switches and migrated bytes; ``--json F`` writes the same figures (see
:class:`dora_rl.sim.run.SimRun`). The world replays the test split of the card's bandwidth
traces (``--split`` for another). Bad input prints one line ``error: <file or argument>:
<problem>`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

from rich import box
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from dora_rl.config import Scenario
from dora_rl.errors import ArgParser, ConfigError, run_cli
from dora_rl.scenarios import TRACE_UNITS_HELP, load, with_trace_units
from dora_rl.sim.run import SimRun, SimUsageError, simulate
from dora_rl.sim.simulator import QUEUE_CAPACITY


def read_arrivals(path: str, scenario: Scenario) -> dict[str, Sequence[float]]:
    """Arrival times from a CSV file with a header ``job,time_s`` (seconds from the start).

    Raises:
        SimUsageError: the file is missing or a row names an unknown job or a bad time.
    """
    names = {job.name for job in scenario.jobs}
    out: dict[str, list[float]] = {name: [] for name in names}
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise SimUsageError(f"{path}: cannot read ({error.strerror or error})") from None
    for line, row in enumerate(rows, start=2):
        job, text = (row.get("job") or "").strip(), (row.get("time_s") or "").strip()
        if job not in names:
            raise SimUsageError(f"{path}: line {line}: job: unknown job {job!r} (the card "
                                f"has {', '.join(sorted(names))}; the header is job,time_s)")
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise SimUsageError(f"{path}: line {line}: time_s: must be seconds >= 0, "
                                f"got {text!r}")
        out[job].append(value)
    return dict(out)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse the command line (raises :class:`SimUsageError` naming the argument)."""
    p = ArgParser(prog="python -m dora_rl.sim",
                description="Simulate a scenario under a controller, event by event.")
    p.add_argument("--scenario", required=True, help="card path or name (smart_home)")
    p.add_argument("--controller", required=True,
                   help="static | throughput | dora | greedy | oracle | random | RUN_DIR of a "
                        "trained one")
    p.add_argument("--duration", type=float, default=600.0, metavar="S",
                   help="simulated seconds (default 600)")
    p.add_argument("--seed", type=int, default=0, help="world and arrival seed (default 0)")
    p.add_argument("--json", metavar="F", help="also write the figures as JSON to F")
    p.add_argument("--compare-analytic", action="store_true",
                   help="add the interval model's latency for the same intervals")
    p.add_argument("--split", default="test", choices=("train", "validation", "test"),
                   help="bandwidth traces to replay (default test)")
    p.add_argument("--bandwidth", choices=("trace", "synthetic", "static"),
                   help="bandwidth model (default: the card's)")
    p.add_argument("--trace-units", choices=("relative", "absolute"), help=TRACE_UNITS_HELP)
    p.add_argument("--rate-scale", type=float, default=1.0, metavar="X",
                   help="multiply every request rate by X (default 1)")
    p.add_argument("--queue", type=int, default=QUEUE_CAPACITY, metavar="N",
                   help=f"bound of each stage's queue in requests (default {QUEUE_CAPACITY})")
    p.add_argument("--arrivals", metavar="CSV",
                   help="arrival times (header job,time_s) instead of Poisson arrivals")
    ns = p.parse_args(argv)
    if ns.seed < 0:
        raise SimUsageError(f"--seed: must be >= 0, got {ns.seed}")
    if not (math.isfinite(ns.rate_scale) and ns.rate_scale > 0):
        raise SimUsageError(f"--rate-scale: must be > 0, got {ns.rate_scale}")
    if ns.queue < 1:
        raise SimUsageError(f"--queue: must be at least 1, got {ns.queue}")
    return ns


def _fmt(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def table(run: SimRun, compare: bool) -> Table:
    """The per-job table, with the run's totals as its caption."""
    out = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, caption_justify="left",
                caption=(f"{run.scenario} under {run.controller}, {run.duration_s:g} s simulated "
                         f"(seed {run.seed}): energy {run.energy_j:.1f} J (jobs "
                         f"{_fmt(run.jobs_energy_j)} J), "
                         f"{_fmt(run.request_violation_rate * 100, 2)} % of requests missed, "
                         f"{run.replans} plan switches, {run.migrated_bytes / 1e6:.1f} MB "
                         f"migrated, {run.requests_completed} units done, {run.requests_lost} "
                         f"lost, {run.wall_s:.2f} s wall"))
    out.add_column("job")
    for name in ["mean ms", "p50 ms", "p95 ms", "p99 ms", "per s", "QoE met", "missed", "done",
                 "in flight", "lost"] + (["analytic ms"] if compare else []):
        out.add_column(name, justify="right")
    for job in run.jobs:
        lat = job.latency_ms
        out.add_row(job.name, _fmt(lat["mean"]), _fmt(lat["p50"]), _fmt(lat["p95"]),
                    _fmt(lat["p99"]), _fmt(job.throughput_per_s, 3),
                    _fmt(job.qoe_attainment * 100) + " %",
                    _fmt(job.request_violation_rate * 100) + " %", str(job.completed),
                    str(job.in_flight), str(job.lost),
                    *([_fmt(job.analytic_latency_ms)] if compare else []))
    return out


def _scenario(text: str) -> Scenario:
    try:
        return load(text)
    except ConfigError as error:
        raise SimUsageError(f"--scenario: {error}") from None


def _main(argv: Sequence[str] | None) -> int:
    ns = parse(argv)
    scenario = with_trace_units(_scenario(ns.scenario), ns.trace_units)
    arrivals = read_arrivals(ns.arrivals, scenario) if ns.arrivals else None
    err = Console(stderr=True)
    with Progress(TextColumn("simulating {task.fields[what]}"), BarColumn(),
                  MofNCompleteColumn(), TextColumn("intervals"), TimeRemainingColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        task = bar.add_task("sim", total=None, what=f"{scenario.name} under {ns.controller}")

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        run = simulate(scenario, ns.controller, duration_s=ns.duration, seed=ns.seed,
                       split=ns.split, bandwidth=ns.bandwidth,
                       compare_analytic=ns.compare_analytic, rate_scale=ns.rate_scale,
                       queue_capacity=ns.queue, arrivals=arrivals, progress=advance)
    Console(width=max(Console().width, 120)).print(table(run, ns.compare_analytic))
    if ns.json:
        try:
            Path(ns.json).parent.mkdir(parents=True, exist_ok=True)
            Path(ns.json).write_text(json.dumps(run.to_json(), indent=2) + "\n")
        except OSError as error:
            raise SimUsageError(f"--json: {ns.json}: cannot write "
                                f"({error.strerror or error})") from None
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 with one line on stderr for bad input)."""
    return run_cli(_main, argv)
