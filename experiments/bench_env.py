"""Benchmark the environment's step cost.

Run ``python experiments/bench_env.py`` (``--quick`` for a smoke run). Writes
``experiments/results/env_speed.{md,csv}``: the median wall time of one ``step`` of each
``-v1`` environment (through ``gymnasium.make``, so with Gymnasium's wrappers) under random
actions and under "keep every plan, nominal modes" actions, in interleaved rounds (the machine
is noisy: the table gives the median of the rounds' medians and their range). Target: at most
100 us on SmartHome-v1 under random actions. A fixed pure-Python loop is timed in every round
as a yardstick of the machine's state.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import dora_rl  # noqa: F401  (registers the ids)
from dora_rl.benchmark.outputs import add_output_options, output_folder
from dora_rl.registration import ENV_IDS

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_US = 100.0


def step_cost_us(env: gym.Env, steps: int, keep: bool, seed: int) -> float:  # type: ignore[type-arg]
    """Median microseconds per step after a 10 % warm-up (episodes reset as they end), from
    ``seed`` (each round its own: a round replaying another's trajectory would find every
    prediction memoised)."""
    env.reset(seed=seed)
    env.action_space.seed(seed)
    n_jobs = env.unwrapped.n_jobs  # type: ignore[attr-defined]
    hold = np.zeros(env.action_space.shape, dtype=np.int64)
    hold[:n_jobs] = 2  # keep the plan at the middle level; every device nominal
    times = []
    for _ in range(steps):
        action = hold if keep else env.action_space.sample()
        start = time.perf_counter()
        _, _, terminated, truncated, _ = env.step(action)
        times.append(time.perf_counter() - start)
        if terminated or truncated:
            env.reset()
    return statistics.median(times[steps // 10:]) * 1e6


def yardstick_ms() -> float:
    """A fixed pure-Python loop (the machine's state, for comparing runs)."""
    start = time.perf_counter()
    total = 0
    for i in range(200_000):
        total += i * i % 7
    return (time.perf_counter() - start) * 1e3


def main() -> int:
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_options(parser, RESULTS)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    args.out = output_folder(args, RESULTS)
    RESULTS = args.out
    steps, rounds = (300, 1) if args.quick else (3000, 3)
    envs = {}
    for env_id in ENV_IDS:
        kwargs = {"scenario": "tiny"} if env_id == "dora_rl/Edge-v1" else {}
        envs[env_id] = gym.make(env_id, split="test", **kwargs)
    samples: dict[tuple[str, str], list[float]] = {}
    yard = []
    for r in range(rounds):
        yard.append(yardstick_ms())
        for env_id, env in envs.items():
            for mode, keep in (("random", False), ("keep", True)):
                samples.setdefault((env_id, mode), []).append(
                    step_cost_us(env, steps, keep, seed=1000 + r))
    rows = []
    for env_id in envs:
        row: dict[str, object] = {"env": env_id}
        for mode in ("random", "keep"):
            values = samples[(env_id, mode)]
            row[f"step_{mode}_us"] = round(statistics.median(values), 1)
            row[f"step_{mode}_range_us"] = f"{min(values):.1f}-{max(values):.1f}"
        rows.append(row)
    table = ["| env | step, random actions (us) | range | step, keep plans (us) | range |",
             "|---|---|---|---|---|"]
    table += [f"| {r['env']} | {r['step_random_us']} | {r['step_random_range_us']} | "
              f"{r['step_keep_us']} | {r['step_keep_range_us']} |" for r in rows]
    home = next(r for r in rows if r["env"] == "dora_rl/SmartHome-v1")
    verdict = "met" if float(home["step_random_us"]) <= TARGET_US else "missed"  # type: ignore[arg-type]
    text = "\n".join(table) + (
        f"\n\nTarget: SmartHome-v1 at most {TARGET_US:.0f} us per step under random actions: "
        f"{home['step_random_us']} us, {verdict}. Yardstick (200,000-iteration Python loop): "
        f"{statistics.median(yard):.1f} ms (range {min(yard):.1f}-{max(yard):.1f}).")
    print(text)
    if not args.quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        with open(RESULTS / "env_speed.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        (RESULTS / "env_speed.md").write_text(
            "# Environment speed\n\nMedians of per-round medians on this 2-core machine "
            f"({rounds} interleaved rounds of {steps} steps, each round from its own seed on "
            "envs that keep their memos across rounds, as in training). Reproduce: "
            "`python experiments/bench_env.py`.\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
