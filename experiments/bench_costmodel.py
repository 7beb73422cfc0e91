"""Benchmark: how fast the cost model scores plans (targets: 100 us one plan, 20 ms 1,000 plans).

Run ``python experiments/bench_costmodel.py`` (add ``--quick`` for a short smoke run). It builds
random 48-layer models on 8 devices (WiFi and wired, with memory-bandwidth bounds) for each
workload, then times

- one plan through the single-plan fast path (``CostModel.evaluate``, checks off, as the
  planner and the env call it), median over many random plans;
- the same plan through the vectorised path with N = 1 (for comparison);
- a batch of 1,000 random plans through the vectorised path, median over repeats.

It prints a table and writes ``experiments/results/costmodel_speed.{md,csv}``.
"""

from __future__ import annotations

import argparse
import csv
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from dora_rl.benchmark.outputs import add_output_options, output_folder
from dora_rl.costmodel import CostModel
from dora_rl.synthetic_cards import random_plan, random_scenario

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_ONE_US = 100.0
TARGET_BATCH_MS = 20.0


def _median_s(fn: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(workload: str, n_layers: int, n_devices: int, singles: int, repeats: int,
          seed: int = 0) -> dict[str, object]:
    """Time one workload; returns a table row."""
    rng = np.random.default_rng(seed)
    model = CostModel(random_scenario(rng, n_devices, n_layers, workload))  # type: ignore[arg-type]
    plans = [random_plan(rng, n_devices, n_layers, shares=i % 2 == 0)
             for i in range(max(singles, 1000))]
    state = model.nominal
    for plan in plans[:50]:  # warm caches
        model.evaluate(plan, state, check=False)
    one = []
    for plan in plans[:singles]:
        start = time.perf_counter()
        model.evaluate(plan, state, check=False)
        one.append(time.perf_counter() - start)
    one_vec = _median_s(lambda: model.evaluate_many(model.batch(plans[:1], check=False), state),
                        singles // 4)
    batch = model.batch(plans[:1000], check=False)
    model.evaluate_many(batch, state)
    many = _median_s(lambda: model.evaluate_many(batch, state), repeats)
    one_us = statistics.median(one) * 1e6
    return {"workload": workload, "layers": n_layers, "devices": n_devices,
            "one_plan_us": round(one_us, 1), "one_plan_vectorised_us": round(one_vec * 1e6, 1),
            "batch_1000_ms": round(many * 1e3, 2),
            "one_ok": one_us <= TARGET_ONE_US, "batch_ok": many * 1e3 <= TARGET_BATCH_MS}


def main() -> int:
    """Run the benchmark and write the results."""
    global RESULTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_output_options(parser, RESULTS)
    parser.add_argument("--quick", action="store_true", help="few repeats (smoke run)")
    args = parser.parse_args()
    args.out = output_folder(args, RESULTS)
    RESULTS = args.out
    singles, repeats = (200, 5) if args.quick else (3000, 41)
    rows = [bench(w, 48, 8, singles, repeats) for w in ("inference", "llm_inference", "training")]
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(r[h]) for h in header) + " |" for r in rows]
    table = "\n".join(lines)
    print(table)
    if args.quick:
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / "costmodel_speed.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    note = (f"# Cost model speed\n\nMachine: {platform.machine()}, {platform.processor() or '?'}, "
            f"Python {platform.python_version()}, NumPy {np.__version__}. "
            f"Medians: {singles} single plans; {repeats} repeats of a 1,000-plan batch.\n"
            f"Targets: one plan <= {TARGET_ONE_US:g} us, 1,000 plans <= {TARGET_BATCH_MS:g} ms.\n"
            f"Reproduce: `python experiments/bench_costmodel.py`.\n\n{table}\n")
    (RESULTS / "costmodel_speed.md").write_text(note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
