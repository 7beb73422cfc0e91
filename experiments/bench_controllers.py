"""Judge the shipped learned controllers against their targets, card by card.

Run ``python experiments/bench_controllers.py`` after the headroom benchmark holds ``ppo`` rows
(``python experiments/bench_headroom.py --cards CARD --controllers
ppo=checkpoints/CARD/RUN --no-references --out DIR``, joined into
``experiments/results/headroom.json`` with ``--combine``). It reads the episodes of that file
(``--headroom`` for another), the same test-trace episodes for every controller, and checks on
the means over seeds:

On a card whose headroom is at least 5 % (achievable, against the oracle):

1. request-weighted violation rate at most the oracle's + 0.5 points;
2. the jobs' energy at most 1.10 x the oracle's;
3. at least 70 % of the headroom captured: (E_best-static - E_ppo) / (E_best-static - E_oracle);
4. less energy than ``mpc`` and than ``dora``, at a violation rate no higher than each;
5. a higher mean episode reward than ``mpc`` and than ``dora``.

On a card without headroom: an episode reward at least ``static-robust``'s.

The episode reward is the env's (the lexicographic price, :class:`~dora_rl.env.EdgeEnv`),
computed from each episode's weighted excess misses and the jobs' energy.

Writes ``controllers_vs_targets.{md,json}`` under ``--out`` (or, with ``--update-results``,
``experiments/results``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
from rich.console import Console
from rich.table import Table

import dora_rl  # noqa: F401  (registers the ids)
from dora_rl.benchmark.outputs import add_output_options, output_folder
from dora_rl.env.edge_env import EdgeEnv

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_headroom import env_id  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
MIN_HEADROOM = 0.05
"""Below this headroom a card's target is only: no worse than static-robust."""


def episode_reward(row: dict[str, Any], env: EdgeEnv) -> float:
    """The env's undiscounted episode reward of a headroom row (no invalid choices)."""
    price, per = env.violation_price_j, env.requests_per_interval
    return -(price * row["weighted_missed"] + row["jobs_energy_j"] * row["steps"]) / (price * per)


def means(rows: list[dict[str, Any]], card: str) -> dict[str, dict[str, float]]:
    """Per controller, the means over the seeds every controller ran."""
    mine = [r for r in rows if r["card"] == card]
    names = list(dict.fromkeys(r["controller"] for r in mine))
    seeds = set.intersection(*({r["seed"] for r in mine if r["controller"] == n} for n in names))
    env: EdgeEnv = gym.make(env_id(card), split="test",  # type: ignore[assignment]
                            episode_steps=mine[0]["steps"]).unwrapped
    out = {}
    for name in names:
        picked = [r for r in mine if r["controller"] == name and r["seed"] in seeds]
        out[name] = {"seeds": float(len(picked)),
                     **{k: statistics.fmean(float(r[k]) for r in picked)
                        for k in ("request_violation_rate", "weighted_missed", "jobs_energy_j")}}
        if name != "bound":
            out[name]["episode_reward"] = statistics.fmean(episode_reward(r, env)
                                                           for r in picked)
    return out


def checks(m: dict[str, dict[str, float]]) -> tuple[float, list[tuple[str, bool, str]]]:
    """The card's headroom and its targets: (name, met, the figures behind it)."""
    ppo, oracle, held = m["ppo"], m["oracle"], m["best-static"]
    e_held, e_oracle = held["jobs_energy_j"], oracle["jobs_energy_j"]
    room = (e_held - e_oracle) / e_held \
        if oracle["weighted_missed"] <= held["weighted_missed"] + 1e-5 else 0.0
    v, e, r = ppo["request_violation_rate"], ppo["jobs_energy_j"], ppo["episode_reward"]
    if room < MIN_HEADROOM:
        robust = m["static-robust"]
        return room, [("episode reward >= static-robust's", r >= robust["episode_reward"] - 1e-9,
                       f"{r:.4f} vs {robust['episode_reward']:.4f}; violations "
                       f"{100 * v:.3f} % vs {100 * robust['request_violation_rate']:.3f} %, "
                       f"{e:.2f} J vs {robust['jobs_energy_j']:.2f} J")]
    captured = (e_held - e) / (e_held - e_oracle)
    out = [
        ("violation rate <= oracle + 0.5 pt", v <= oracle["request_violation_rate"] + 0.005,
         f"{100 * v:.3f} % (oracle {100 * oracle['request_violation_rate']:.3f} %)"),
        ("jobs' energy <= 1.10 x oracle", e <= 1.10 * e_oracle,
         f"{e:.2f} J = {e / e_oracle:.3f} x oracle ({e_oracle:.2f} J)"),
        (">= 70 % of the headroom captured", captured >= 0.70,
         f"{100 * captured:.1f} % (best-static {e_held:.2f} J)")]
    for name in ("mpc", "dora"):
        o = m[name]
        out.append((f"less energy than {name}, violation rate no higher",
                    e < o["jobs_energy_j"] and v <= o["request_violation_rate"] + 1e-12,
                    f"{e:.2f} J vs {o['jobs_energy_j']:.2f} J; {100 * v:.3f} % vs "
                    f"{100 * o['request_violation_rate']:.3f} %"))
        out.append((f"episode reward > {name}", r > o["episode_reward"],
                    f"{r:.4f} vs {o['episode_reward']:.4f}"))
    return room, out


def main() -> int:
    """Judge every card of the headroom file that has ``ppo`` rows; write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headroom", type=Path, default=RESULTS / "headroom.json")
    add_output_options(parser, RESULTS)
    args = parser.parse_args()
    args.out = output_folder(args, RESULTS)
    try:
        rows = json.loads(args.headroom.read_text())["episodes"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: {args.headroom}: episodes: cannot read ({exc})", file=sys.stderr)
        return 2
    cards = list(dict.fromkeys(r["card"] for r in rows if r["controller"] == "ppo"))
    without = [c for c in dict.fromkeys(r["card"] for r in rows) if c not in cards]
    if not cards:
        print(f"error: {args.headroom}: episodes: no ppo rows (run bench_headroom.py with "
              "--controllers ppo=RUN_FOLDER first)", file=sys.stderr)
        return 2
    table = Table(title="Learned controllers against their targets (test traces)")
    for col in ("card", "headroom", "target", "met", "figures"):
        table.add_column(col)
    record, lines = [], ["| card | headroom | target | met | figures |", "|---|---|---|---|---|"]
    for card in cards:
        m = means(rows, card)
        missing = {"ppo", "oracle", "best-static", "mpc", "dora", "static-robust"} - set(m)
        if missing:
            print(f"error: {args.headroom}: {card}: no rows of {', '.join(sorted(missing))}",
                  file=sys.stderr)
            return 2
        room, targets = checks(m)
        for name, met, figures in targets:
            lines.append(f"| {card} | {100 * room:.1f} % | {name} | "
                         f"{'yes' if met else '**no**'} | {figures} |")
            table.add_row(card, f"{100 * room:.1f} %", name, "yes" if met else "NO", figures)
            record.append({"card": card, "headroom": room, "target": name, "met": met,
                           "figures": figures, "seeds": m["ppo"]["seeds"]})
    for card in without:  # a card with no shipped controller misses every target
        figures = "no ppo rows: no learned controller ships for this card"
        lines.append(f"| {card} | | a shipped controller | **no** | {figures} |")
        table.add_row(card, "", "a shipped controller", "NO", figures)
        record.append({"card": card, "headroom": None, "target": "a shipped controller",
                       "met": False, "figures": figures, "seeds": 0})
    Console().print(table)
    seeds = sorted({r["seed"] for r in rows if r["controller"] == "ppo"})
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "controllers_vs_targets.md").write_text(
        "# Learned controllers against their targets\n\n"
        f"Test traces, seeds {', '.join(map(str, seeds))}, each card's whole episode, means "
        f"over seeds, from the episodes of `{args.headroom.name}` (the `ppo` rows are the "
        "shipped run folders named in `docs/training.md`). Headroom: (E_best-static - "
        "E_oracle) / E_best-static; at least 5 % sets the full targets, below it the target is "
        "static-robust's reward. Reproduce: `python experiments/bench_controllers.py`.\n\n"
        + "\n".join(lines) + "\n")
    (args.out / "controllers_vs_targets.json").write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
