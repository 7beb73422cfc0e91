"""Compare controllers on the same held-out episodes: energy, QoE, latency, plan switches.

Usage::

    python -m dora_rl.bench --scenario smart_home \
        --controllers ppo=RUN_DIR,static,throughput,dora,greedy,oracle
    python -m dora_rl.bench --scenario tiny --controllers static,dora --episodes 2 --seeds 0,1

Every controller runs in its own environment on the test split of the bandwidth traces
(``--traces`` for your own), the same episodes for all: episode ``e`` of seed ``s`` resets with
seed ``s * 1000 + e``. Written under ``--out`` (default ``experiments``):

- ``runs/bench/<scenario>/<controller>_seed<s>/``: TensorBoard events (see
  :mod:`dora_rl.benchmark.tblog`); ``tensorboard --logdir experiments/runs``;
- ``results/bench_<scenario>.{md,csv}``: the table (mean ± std over seeds) and the per-seed rows;
- ``results/bench_<scenario>_tradeoff.png`` and ``_episode.png`` (unless ``--no-plots``);
- ``--json F``: a JSON list, one row per (scenario, controller, seed).

The Markdown table is printed to stdout, a progress bar to stderr. Bad input prints one line
``error: ...`` naming the argument and exits with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress

from dora_rl.benchmark import bench_plots, bench_tables, tblog
from dora_rl.benchmark.controllers import (
    ControllerSpec,
    EnvSettings,
    UsageError,
    build_all,
    parse_controllers,
)
from dora_rl.benchmark.episodes import EPISODES_PER_SEED_MAX, run_all
from dora_rl.config import Scenario
from dora_rl.errors import ArgParser, ConfigError, run_cli
from dora_rl.scenarios import TRACE_UNITS_HELP, load, with_trace_units

DEFAULT_CONTROLLERS = "static,throughput,dora,greedy,oracle"


@dataclass(frozen=True)
class Args:
    """Command-line arguments of ``python -m dora_rl.bench``, checked."""

    scenario: Scenario
    controllers: tuple[ControllerSpec, ...]
    seeds: tuple[int, ...]
    episodes: int
    episode_steps: int | None
    traces: Path | None
    json: Path | None
    out: Path
    plots: bool
    argv: tuple[str, ...]
    backend: str = "analytic"

    @property
    def stem(self) -> str:
        """Results file stem: ``bench_<scenario>``, with ``_sim`` on the simulator."""
        return f"bench_{self.scenario.name}" + ("_sim" if self.backend == "sim" else "")



def parse_seeds(text: str) -> tuple[int, ...]:
    """``--seeds``: distinct non-negative integers separated by commas.

    Example:
        >>> parse_seeds("0, 1,2")
        (0, 1, 2)
    """
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--seeds {text!r}: expected comma-separated integers such as "
                         "0,1,2") from None
    if any(s < 0 for s in seeds):
        raise UsageError(f"--seeds {text!r}: seeds must be >= 0")
    if len(set(seeds)) != len(seeds):
        raise UsageError(f"--seeds {text!r}: a seed is repeated")
    return seeds


def _traces(text: str | None) -> Path | None:
    if text is None:
        return None
    path = Path(text)
    if not path.is_dir():
        raise UsageError(f"--traces {text}: no such directory")
    if not any(p.is_file() for p in path.iterdir()):
        raise UsageError(f"--traces {text}: the directory has no trace files")
    return path


def _scenario(text: str) -> Scenario:
    try:
        return load(text)
    except ConfigError as error:
        raise UsageError(f"--scenario: {error}") from None


def parse(argv: Sequence[str] | None) -> Args:
    """Parse and check the command line (raises :class:`UsageError` naming the argument)."""
    p = ArgParser(prog="python -m dora_rl.bench",
                description="Compare controllers on the same held-out episodes.")
    p.add_argument("--scenario", required=True, help="card name (smart_home) or path")
    p.add_argument("--controllers", default=DEFAULT_CONTROLLERS,
                   help="comma-separated: static, throughput, dora, greedy, oracle, random, "
                        f"label=RUN_DIR of a trained controller (default {DEFAULT_CONTROLLERS})")
    p.add_argument("--traces", metavar="DIR", help="bandwidth traces (default: the card's)")
    p.add_argument("--trace-units", choices=("relative", "absolute"), help=TRACE_UNITS_HELP)
    p.add_argument("--episodes", type=int, default=3, help="episodes per seed (default 3)")
    p.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated (default 0,1,2,3,4)")
    p.add_argument("--episode-steps", type=int, metavar="N",
                   help="intervals per episode (default: the env's, 300)")
    p.add_argument("--json", metavar="F", help="also write the per-seed rows as JSON to F")
    p.add_argument("--out", default="experiments",
                   help="root of runs/ and results/ (default experiments)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--backend", choices=("analytic", "sim"), default="analytic",
                   help="evaluate intervals with the cost model (analytic, default) or the "
                        "discrete-event simulator (sim; results in bench_<scenario>_sim.*)")
    argv = list(sys.argv[1:] if argv is None else argv)
    ns = p.parse_args(argv)
    if not 1 <= ns.episodes <= EPISODES_PER_SEED_MAX:
        raise UsageError(f"--episodes {ns.episodes}: must be between 1 and "
                         f"{EPISODES_PER_SEED_MAX}")
    if ns.episode_steps is not None and ns.episode_steps < 1:
        raise UsageError(f"--episode-steps {ns.episode_steps}: must be at least 1")
    seeds = parse_seeds(ns.seeds)
    traces = _traces(ns.traces)
    controllers = tuple(parse_controllers(ns.controllers))
    scenario = with_trace_units(_scenario(ns.scenario), ns.trace_units)
    return Args(scenario=scenario, controllers=controllers, seeds=seeds,
                episodes=ns.episodes, episode_steps=ns.episode_steps, traces=traces,
                json=Path(ns.json) if ns.json else None, out=Path(ns.out),
                plots=not ns.no_plots, argv=tuple(argv), backend=ns.backend)


def _notes(args: Args, steps: int, wall: dict[str, float]) -> list[str]:
    seeds = ",".join(map(str, args.seeds))
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in wall.items())
    absolute = args.scenario.dynamics.trace_units == "absolute"
    return [f"scenario `{args.scenario.name}` ({args.backend} backend), test split of the "
            "bandwidth traces"
            f"{f' in `{args.traces}`' if args.traces else ''}"
            f"{' at their absolute rates' if absolute else ''}; seeds {seeds}, "
            f"{args.episodes} episode(s) per seed of {steps} intervals; episode e of seed s "
            "resets with seed s * 1000 + e, the same for every controller",
            "cells: mean ± sample std over seeds of each seed's figure "
            "(`dora_rl.env.summary.summarise` over all its intervals): energy_j per interval "
            "(J), qoe_violation_rate over active job-intervals, latency_ms_p95 of the worst "
            "job, replans and migration_mb per episode, episode_reward per episode",
            f"wall time (decisions and env steps): {timing}",
            "reproduce: `python -m dora_rl.bench " + " ".join(args.argv) + "`"]


def _write(what: str, fn: Any, *fn_args: Any) -> None:
    try:
        fn(*fn_args)
    except OSError as error:
        raise UsageError(f"{what}: cannot write ({error.strerror or error})") from None


def run(args: Args) -> str:
    """Run the benchmark, write every output and return the Markdown table."""
    settings = EnvSettings(scenario=args.scenario, split="test", traces_dir=args.traces,
                           episode_steps=args.episode_steps, backend=args.backend)
    contenders = build_all(list(args.controllers), settings)
    total = len(contenders) * len(args.seeds) * args.episodes
    with Progress(*Progress.get_default_columns(), MofNCompleteColumn(),
                  console=Console(stderr=True)) as bar:
        task = bar.add_task("episodes", total=total)

        def step(label: str) -> None:
            bar.update(task, advance=1, description=f"episodes ({label})")

        runs = run_all(contenders, args.seeds, args.episodes, step)
    scenario = args.scenario.name
    job_names = [job.name for job in args.scenario.jobs]
    dynamics = contenders[0].env.unwrapped.dynamics  # type: ignore[attr-defined]
    traces = [t.name for t in dynamics.traces]
    if dynamics.profiles is not None:  # the load profile's days of the split
        traces.append(f"{Path(dynamics.profiles.source).name}: {len(dynamics.profile_days)} days")
    rows = bench_tables.rows_of(scenario, runs, job_names, traces)
    table = bench_tables.markdown_table(rows, job_names)
    results = args.out / "results"
    steps = rows[0]["episode_steps"]
    notes = _notes(args, steps, {r.label: r.wall_s for r in runs})
    _write("--out", bench_tables.write_markdown, results / f"{args.stem}.md", table,
           f"Controllers on {scenario}", notes)
    _write("--out", bench_tables.write_csv, results / f"{args.stem}.csv", rows)
    if args.json is not None:
        _write("--json", bench_tables.write_json, args.json, rows)
    _write("--out", tblog.write_runs, args.out, args.stem.removeprefix("bench_"), runs,
           job_names)
    if args.plots:
        interval_s = float(contenders[0].env.unwrapped.interval_s)  # type: ignore[attr-defined]
        _write("--out", bench_plots.save, bench_plots.tradeoff_figure(rows, scenario),
               results / f"{args.stem}_tradeoff.png")
        _write("--out", bench_plots.save,
               bench_plots.episode_figure(runs, args.scenario, interval_s),
               results / f"{args.stem}_episode.png")
    for contender in contenders:
        contender.env.close()
    return table


def _main(argv: Sequence[str] | None) -> int:
    args = parse(argv)
    table = run(args)
    print(table)
    print(f"wrote {args.out / 'results'}/{args.stem}.* and "
          f"{args.out / 'runs' / 'bench' / args.stem.removeprefix('bench_')}/", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 with one line on stderr for bad input)."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    raise SystemExit(main())
