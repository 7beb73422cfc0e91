"""Check the shipped PPO controllers against their targets on every deployment card.

Run ``python experiments/bench_controllers.py`` (``--cards smart_home`` for one card,
``--episodes`` per seed). For each card it benchmarks the newest run folder under
``checkpoints/<card>/`` with ``python -m dora_rl.bench`` against ``static``, ``throughput``,
``dora`` and ``oracle`` on the test traces (seeds 0-4), then checks, on the means over seeds:

1. request-weighted QoE violation rate at most 1 %, or at most the oracle's + 0.5 points;
2. the jobs' energy at most 1.10 x the oracle's;
3. at least 21 % less of the jobs' energy than ``throughput``, with no more violations;
4. a higher mean episode reward than the rule-based ``dora`` adapter.

Writes ``experiments/results/controllers_vs_targets.{md,json}`` (and the bench's own tables,
plots and TensorBoard runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from dora_rl.bench import main as bench_main

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
CARDS = ("smart_home", "traffic_analytics", "edge_cluster")


def newest_run(card: str) -> Path:
    """The newest run folder of a card's shipped controllers."""
    runs = sorted((ROOT / "checkpoints" / card).glob("ppo_*"))
    if not runs:
        raise SystemExit(f"error: checkpoints/{card}: no run folder (train one first)")
    return runs[-1]


def means(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per controller, the mean over seeds of each figure."""
    out: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r["controller"] for r in rows):
        mine = [r for r in rows if r["controller"] == name]
        out[name] = {k: statistics.fmean(float(r[k]) for r in mine)
                     for k in ("jobs_energy_j", "request_violation_rate", "episode_reward")}
    return out


def checks(m: dict[str, dict[str, float]]) -> list[tuple[str, bool, str]]:
    """The four targets: (name, met, the figures behind it)."""
    ppo, oracle, thr, dora = m["ppo"], m["oracle"], m["throughput"], m["dora"]
    v, e = ppo["request_violation_rate"], ppo["jobs_energy_j"]
    saved = 1 - e / thr["jobs_energy_j"]
    return [
        ("violations <= 1 % or oracle + 0.5 pt",
         v <= 0.01 or v <= oracle["request_violation_rate"] + 0.005,
         f"{100 * v:.2f} % (oracle {100 * oracle['request_violation_rate']:.2f} %)"),
        ("jobs' energy <= 1.10 x oracle", e <= 1.10 * oracle["jobs_energy_j"],
         f"{e / oracle['jobs_energy_j']:.2f} x"),
        (">= 21 % less jobs' energy than throughput, no more violations",
         saved >= 0.21 and v <= thr["request_violation_rate"],
         f"{100 * saved:.1f} % less; violations {100 * v:.2f} % vs "
         f"{100 * thr['request_violation_rate']:.2f} %"),
        ("reward > dora", ppo["episode_reward"] > dora["episode_reward"],
         f"{ppo['episode_reward']:.1f} vs {dora['episode_reward']:.1f}"),
    ]


def main() -> int:
    """Benchmark every card and write the target table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", default=",".join(CARDS))
    parser.add_argument("--episodes", type=int, default=2)
    args = parser.parse_args()
    lines = ["| card | run | target | met | figures |", "|---|---|---|---|---|"]
    record = []
    for card in args.cards.split(","):
        run = newest_run(card)
        out = RESULTS / f"bench_{card}.json"
        code = bench_main(["--scenario", card, "--controllers",
                           f"ppo={run.relative_to(ROOT)},static,throughput,dora,oracle",
                           "--seeds", "0,1,2,3,4", "--episodes", str(args.episodes),
                           "--json", str(out), "--out", str(ROOT / "experiments")])
        if code:
            return code
        m = means(json.loads(out.read_text()))
        for name, met, figures in checks(m):
            lines.append(f"| {card} | `{run.name}` | {name} | {'yes' if met else '**no**'} | "
                         f"{figures} |")
            record.append({"card": card, "run": str(run.relative_to(ROOT)), "target": name,
                           "met": met, "figures": figures})
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "controllers_vs_targets.md").write_text(
        "# Shipped PPO controllers against their targets\n\nTest traces, seeds 0-4, "
        f"{args.episodes} episode(s) per seed of 300 intervals, means over seeds. Reproduce: "
        "`python experiments/bench_controllers.py`.\n\n" + text + "\n")
    (RESULTS / "controllers_vs_targets.json").write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
