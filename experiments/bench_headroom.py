"""How much adapting can win on each card: every baseline against the best plan held in
hindsight, the hindsight oracle and the free-switch bound.

Run ``python experiments/bench_headroom.py`` (``--cards smart_home`` for one card, ``--seeds``,
``--steps`` (default: the card's episode), ``--beam`` for the oracle's search, ``--out`` for the
results folder). On the test traces, per card and seed, it runs ``static``, ``static-robust``,
``throughput``, ``greedy``, ``dora``, ``mpc``, ``foresight`` and ``oracle`` through the env, plays
``best-static`` (the best joint plan and power modes switched to at the start and held, chosen
in hindsight) and scores the ``bound`` (the free-switch relaxation, which no controller can
beat). Per controller: the request-weighted violation rate (missed over scored requests), the
weighted excess misses the reward counts, and the energy the jobs cause per interval, as means
over seeds with 95 % confidence intervals (Student's t).

Headroom = (E_best-static - E_oracle) / E_best-static, counted when the oracle misses no more
(weighted) requests than best-static; ``at most`` uses the bound instead of the oracle.

Writes ``headroom.{md,csv,json}`` under ``--out`` (or, with ``--update-results``,
``experiments/results``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import dora_rl  # noqa: F401  (registers the ids)
from dora_rl.benchmark.outputs import add_output_options, output_folder
from dora_rl.controllers import learned, make, run_episode_infos
from dora_rl.controllers.bound import free_switch_bound
from dora_rl.controllers.hindsight import action, best_static, lookahead
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.registration import ENV_IDS
from dora_rl.scenarios import load

ROOT = Path(__file__).resolve().parent.parent
CARDS = ("smart_home", "traffic_analytics", "edge_cluster")
CONTROLLERS = ("static", "static-robust", "throughput", "greedy", "dora", "mpc", "foresight",
               "oracle")
T_95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
        10: 2.23, 15: 2.13, 20: 2.09, 30: 2.04}
"""Student's t, two-sided 95 %, by degrees of freedom."""


def t95(df: int) -> float:
    """Student's t for a two-sided 95 % interval (the nearest tabulated df at or below)."""
    return T_95[max(k for k in T_95 if k <= df)] if df >= 1 else math.nan


def figures(infos: list[dict[str, Any]], weights: list[float]) -> dict[str, float]:
    """An episode's figures from the env's step infos."""
    steps = len(infos)
    missed = sum(sum(i["requests_missed"]) for i in infos)
    scored = sum(sum(i["requests"]) for i in infos)
    weighted = sum(sum(w * m for w, m in zip(weights, i["requests_excess"], strict=True))
                   for i in infos)
    return {"request_violation_rate": missed / scored if scored else 0.0,
            "weighted_missed": weighted,
            "jobs_energy_j": sum(i["jobs_energy_j"] for i in infos) / steps,
            "energy_j": sum(i["energy_j"] for i in infos) / steps}


def env_id(card: str) -> str:
    """The -v1 id of a shipped card."""
    for ident, kwargs in ENV_IDS.items():
        if kwargs.get("scenario") == card:
            return ident
    raise ValueError(f"--cards {card}: no registered -v1 env for this card (known: "
                     f"{', '.join(k['scenario'] for k in ENV_IDS.values() if 'scenario' in k)})")


def episode_rows(card: str, seed: int, steps: int | None, beam: int | None,
                 constant_load: bool = False, controllers: Sequence[str] = CONTROLLERS,
                 references: bool = True) -> list[dict[str, Any]]:
    """Every controller and reference on one episode (``steps`` None: the card's;
    ``constant_load``: every job at the card's rate all day; ``controllers``: names, or
    ``label=RUN_FOLDER`` for a trained controller; ``references``: best-static and the
    bound too)."""
    ident = env_id(card)
    rows = []
    extra: dict[str, Any] = {}
    if constant_load:
        scenario = load(card)
        extra["scenario"] = dataclasses.replace(scenario, jobs=tuple(
            j.model_copy(update={"rate_profile": None}) for j in scenario.jobs))
    first: EdgeEnv = gym.make(ident, split="test",  # type: ignore[assignment]
                              episode_steps=steps, **extra).unwrapped
    steps = first.episode_steps
    shape = {"interval_s": first.interval_s, "steps": steps}
    for entry in controllers:
        env = gym.make(ident, split="test", episode_steps=steps, **extra)
        name, _, folder = entry.partition("=")
        controller = learned.load(folder) if folder else make(name, env)
        if name == "oracle" and beam is not None:
            controller.beam = beam  # type: ignore[union-attr]
        start = time.perf_counter()
        _, infos = run_episode_infos(env, controller, seed=seed)
        base: EdgeEnv = env.unwrapped  # type: ignore[assignment]
        rows.append({"card": card, "seed": seed, "controller": name, **shape,
                     **figures(infos, base.job_weights),
                     "wall_s": time.perf_counter() - start})
    if not references:
        return rows
    base = gym.make(ident, split="test",  # type: ignore[assignment]
                    episode_steps=steps, **extra).unwrapped
    base.reset(seed=seed)
    episode = lookahead(base, steps)
    start = time.perf_counter()
    held = best_static(base.model, episode)
    infos = []
    base.reset(seed=seed)
    for step in held.steps:
        infos.append(dict(base.step(action(base, step))[4]))
    rows.append({"card": card, "seed": seed, "controller": "best-static", **shape,
                 **figures(infos, base.job_weights), "wall_s": time.perf_counter() - start})
    start = time.perf_counter()
    bound = free_switch_bound(base.model, episode)
    rows.append({"card": card, "seed": seed, "controller": "bound", **shape,
                 "request_violation_rate": bound.missed_requests / bound.arrived
                 if bound.arrived else 0.0,
                 "weighted_missed": bound.missed, "jobs_energy_j": bound.energy_j / steps,
                 "energy_j": math.nan, "wall_s": time.perf_counter() - start})
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per card and controller: means over seeds with 95 % half-widths."""
    out = []
    for card in dict.fromkeys(r["card"] for r in rows):
        for name in dict.fromkeys(r["controller"] for r in rows if r["card"] == card):
            mine = [r for r in rows if r["card"] == card and r["controller"] == name]
            row: dict[str, Any] = {"card": card, "controller": name, "seeds": len(mine),
                                   "interval_s": mine[0]["interval_s"],
                                   "steps": mine[0]["steps"]}
            for key in ("request_violation_rate", "weighted_missed", "jobs_energy_j"):
                values = [float(r[key]) for r in mine]
                row[key] = statistics.fmean(values)
                row[key + "_ci"] = t95(len(values) - 1) * statistics.stdev(values) \
                    / math.sqrt(len(values)) if len(values) > 1 else math.nan
            out.append(row)
    return out


def headroom(means: list[dict[str, Any]], card: str) -> dict[str, Any]:
    """The card's headroom (achievable, against the oracle; at most, against the bound)."""
    by = {r["controller"]: r for r in means if r["card"] == card}
    if not {"best-static", "oracle", "bound"} <= set(by):
        return {"card": card, "best_static_j": math.nan, "oracle_j": math.nan,
                "bound_j": math.nan, "headroom": math.nan, "headroom_at_most": math.nan}
    held, oracle, bound = by["best-static"], by["oracle"], by["bound"]
    e = held["jobs_energy_j"]
    ok = oracle["weighted_missed"] <= held["weighted_missed"] + 1e-5
    return {"card": card, "best_static_j": e, "oracle_j": oracle["jobs_energy_j"],
            "bound_j": bound["jobs_energy_j"],
            "headroom": (e - oracle["jobs_energy_j"]) / e if ok and e > 0 else math.nan,
            "headroom_at_most": (e - bound["jobs_energy_j"]) / e if e > 0 else math.nan}


def write(out: Path, rows: list[dict[str, Any]], means: list[dict[str, Any]],
          rooms: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """The md, csv and json results."""
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Headroom: what adapting can win on each card", "",
             f"Test traces (and test days of load profiles), seeds 0-{args.seeds - 1}, "
             "episodes of " + "; ".join(
                 f"{r['card']} {r['steps']} intervals of {r['interval_s']:g} s"
                 for r in means if r["controller"] == "bound") + "; "
             "means over seeds with 95 % confidence half-widths (Student's t). "
             f"Reproduce: `python experiments/bench_headroom.py --seeds {args.seeds}"
             + (f" --steps {args.steps}" if args.steps is not None else "")
             + (" --constant-load" if args.constant_load else "")
             + "` (or cards apart, each with its own `--out`, joined by `--combine`).", "",
             *(["Ablation: every job at its card's rate all day (`--constant-load`).", ""]
               if args.constant_load else []),
             "- `request_violation_rate`: missed over scored requests (training: iterations)",
             "- `weighted_missed`: misses beyond each job's attainment allowance (p99 unless "
             "the card says otherwise), weighted by job, per episode (the reward's violation "
             "term)",
             "- `jobs_energy_j`: energy the jobs cause, per interval",
             "- `best-static`: the best joint plan and power modes switched to at the start "
             "and held, chosen in hindsight; `oracle`: the hindsight search's schedule (or "
             "best-static when that scores better); `bound`: the free-switch relaxation, "
             "which no controller can beat (`dora_rl/controllers/bound.py`)", "",
             "| card | controller | violation rate | weighted missed | jobs' energy J/interval |",
             "|---|---|---|---|---|"]
    for r in means:
        lines.append(f"| {r['card']} | {r['controller']} | "
                     f"{100 * r['request_violation_rate']:.3f} % "
                     f"± {100 * r['request_violation_rate_ci']:.3f} | "
                     f"{r['weighted_missed']:.3f} ± {r['weighted_missed_ci']:.3f} | "
                     f"{r['jobs_energy_j']:.2f} ± {r['jobs_energy_j_ci']:.2f} |")
    lines += ["", "## Headroom", "",
              "Headroom = (E_best-static - E_oracle) / E_best-static when the oracle misses "
              "no more weighted requests; `at most` puts the bound in place of the oracle.", "",
              "| card | best-static J | oracle J | bound J | headroom | at most |",
              "|---|---|---|---|---|---|"]
    for h in rooms:
        lines.append(f"| {h['card']} | {h['best_static_j']:.2f} | {h['oracle_j']:.2f} | "
                     f"{h['bound_j']:.2f} | {100 * h['headroom']:.1f} % | "
                     f"{100 * h['headroom_at_most']:.1f} % |")
    (out / "headroom.md").write_text("\n".join(lines) + "\n")
    with (out / "headroom.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "headroom.json").write_text(json.dumps(
        {"episodes": rows, "means": means, "headroom": rooms}, indent=1, default=float) + "\n")


def main() -> int:
    """Run every card and write the headroom tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", default=",".join(CARDS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=None,
                        help="intervals per episode (default: the card's episode)")
    parser.add_argument("--beam", type=int, default=None,
                        help="states the oracle's search keeps (default: the baselines card's)")
    add_output_options(parser, ROOT / "experiments" / "results")
    parser.add_argument("--controllers", default=",".join(CONTROLLERS),
                        help="comma-separated names, or label=RUN_FOLDER for a trained one")
    parser.add_argument("--no-references", action="store_true",
                        help="skip best-static and the bound (join with a run that has them)")
    parser.add_argument("--constant-load", action="store_true",
                        help="ablation: every job at its card's rate all day")
    parser.add_argument("--combine", type=Path, nargs="+", default=None, metavar="JSON",
                        help="write the tables from the episodes of earlier runs' "
                             "headroom.json (cards run apart, in parallel) instead of running; "
                             "a later file's episode replaces an earlier one of the same card, "
                             "seed and controller (a controller re-run alone)")
    args = parser.parse_args()
    args.out = output_folder(args, ROOT / "experiments" / "results")
    if args.combine is not None:
        return combine(args)
    cards = args.cards.split(",")
    try:
        if args.seeds < 1 or (args.steps is not None and args.steps < 1):
            raise ValueError(f"--seeds {args.seeds} / --steps {args.steps}: both must be >= 1")
        if args.beam is not None and args.beam < 1:
            raise ValueError(f"--beam {args.beam}: must be >= 1")
        if args.out.exists() and not args.out.is_dir():
            raise ValueError(f"--out {args.out}: exists and is not a folder")
        for card in cards:
            env_id(card)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows: list[dict[str, Any]] = []
    with Progress(console=Console(stderr=True)) as progress:
        task = progress.add_task("episodes", total=len(cards) * args.seeds)
        for card in cards:
            for seed in range(args.seeds):
                progress.update(task, description=f"{card} seed {seed}")
                rows += episode_rows(card, seed, args.steps, args.beam, args.constant_load,
                                     args.controllers.split(","), not args.no_references)
                progress.advance(task)
    report(rows, cards, args)
    return 0


def combine(args: argparse.Namespace) -> int:
    """The tables from earlier runs' episodes (``--combine``)."""
    kept: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    for path in args.combine:
        try:
            episodes = json.loads(path.read_text())["episodes"]
            for r in episodes:
                kept[(r["card"], r["seed"], r["controller"])] = r
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"error: {path}: not a headroom.json with episodes ({err})", file=sys.stderr)
            return 2
    rows = list(kept.values())
    cards = list(dict.fromkeys(r["card"] for r in rows))
    args.seeds = len({r["seed"] for r in rows})
    report(rows, cards, args)
    return 0


def report(rows: list[dict[str, Any]], cards: list[str], args: argparse.Namespace) -> None:
    """Print the tables and write them under ``--out``."""
    means = summary(rows)
    rooms = [headroom(means, card) for card in cards]
    table = Table(title="Headroom (means over seeds, 95 % CI)")
    for col in ("card", "controller", "violation rate", "weighted missed", "jobs' J/interval"):
        table.add_column(col)
    for r in means:
        table.add_row(r["card"], r["controller"],
                      f"{100 * r['request_violation_rate']:.3f} % ± "
                      f"{100 * r['request_violation_rate_ci']:.3f}",
                      f"{r['weighted_missed']:.3f} ± {r['weighted_missed_ci']:.3f}",
                      f"{r['jobs_energy_j']:.2f} ± {r['jobs_energy_j_ci']:.2f}")
    console = Console()
    console.print(table)
    for h in rooms:
        console.print(f"{h['card']}: headroom {100 * h['headroom']:.1f} % "
                      f"(at most {100 * h['headroom_at_most']:.1f} %)")
    write(args.out, rows, means, rooms, args)


if __name__ == "__main__":
    raise SystemExit(main())
