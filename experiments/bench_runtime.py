"""Benchmark the live runtime against its targets on ``tiny`` (3 worker processes, loopback).

Run ``python experiments/bench_runtime.py`` (about 10 minutes; ``--quick`` for fewer runs).
Writes ``experiments/results/runtime_bench.{md,json}`` and ``runtime_kill.png``:

- **decision**: wall time of one decision on a live measurement (the ``-v1`` observation with
  every candidate scored by the interval model, the controller's ``predict``, the env's
  decoding) of the ``dora`` controller and of every shipped run folder trained on a ``-v1``
  env (others are listed as skipped), p50 over 1,000 decisions on random measurements;
  target: at most 1 ms; and the same inside a live run of smart_home's doorbell job
  (``decision_ms_p50`` of the run, every control step; :data:`LIVE_CARDS`);
- **latency**: for several fixed plans of ``tiny`` at a low request rate (no queueing), the
  median measured latency in the card's world against the cost model's prediction, at time
  scale 1 (five plans) and 4 (three plans); target: median error over plans within 15 %;
- **throughput**: plans driven at 1.5x the rate the cost model says they sustain; measured
  completions per second (card's world) against the cost model's ``throughput_per_s``;
  target: at least 90 %;
- **kill -9**: the ``dora`` controller with the worker of the device serving the job killed
  mid-stream; every request must complete and recovery (kill to the first request completed on
  the new plan) must take at most 3 s.

Every serving run is ``python -m dora_rl.serve`` in its own process group, killed on timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from dora_rl.benchmark.outputs import add_output_options, output_folder
from dora_rl.errors import DoraError
from dora_rl.runtime.control import make_decider
from dora_rl.runtime.live import LiveControl
from dora_rl.scenarios import load

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"
CHECKPOINTS = ("smart_home", "traffic_analytics", "edge_cluster")
PLANS = ("8:fast", "8:mid", "4:mid,8:fast", "2:fast,8:mid", "4:slow+mid,8:fast")
RUN_TIMEOUT_S = 120
LIVE_CARDS = ("smart_home",)
"""Cards whose PPO controller is timed inside a live run. edge_cluster has no plain inference
job; traffic_analytics' ResNet-50 needs a time scale in the hundreds on this CPU, so 20
requests take over 15 minutes."""


def serve(args: list[str], scenario: str = "tiny",
          timeout_s: float = RUN_TIMEOUT_S) -> dict[str, Any]:
    """One ``python -m dora_rl.serve`` run; its JSON result."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        proc = subprocess.Popen([sys.executable, "-m", "dora_rl.serve", "--scenario", scenario,
                                 *args, "--json", str(out)], cwd=ROOT, start_new_session=True,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            stdout, _ = proc.communicate(timeout=timeout_s)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"serve {args} failed ({proc.returncode})")
        print(stdout.decode().strip(), flush=True)
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def controllers(card: str) -> list[str]:
    """``dora`` and the card's shipped run folders."""
    return ["dora", *(str(run) for run in sorted((ROOT / "checkpoints" / card).glob("ppo_*")))]


def decision_times(repeats: int) -> list[dict[str, Any]]:
    rows = []
    for card in CHECKPOINTS:
        for spec in controllers(card):
            rows.append(_decisions(card, spec, repeats))
    return rows


def _job(card: str) -> int:
    jobs = load(card).jobs
    return next((i for i, j in enumerate(jobs) if j.workload == "inference"), 0)


def _decisions(card: str, spec: str, repeats: int) -> dict[str, Any]:
    """Decision times of one controller on random live measurements (links, slack)."""
    scenario, name = load(card), f"{card}/{Path(spec).name}"
    job = _job(card)
    try:
        decider = make_decider(spec, scenario, job)
    except DoraError as error:
        return {"controller": name, "skipped": str(error)}
    usable = tuple([True] * len(scenario.devices))
    plan = decider.initial(usable)
    control = LiveControl(decider.env.model, job)
    rng = np.random.default_rng(0)
    control.world = decider.env.dynamics.reset(rng)
    held = {d: set(range(a, b)) for k, g in enumerate(plan.stage_devices) for d in g
            for a, b in [plan.stage_layers(k)]}
    times = []
    for _ in range(repeats):
        control.link_scale = [float(v) for v in rng.uniform(0.2, 1.2, len(usable))]
        control.slack = float(rng.uniform(-0.5, 0.5))
        control.step += 1
        start = time.perf_counter()
        decider.decide(control.measurement(usable, plan, control.step % 10, held))
        times.append((time.perf_counter() - start) * 1e3)
    return {"controller": name, "decision_ms_p50": statistics.median(times),
            "decision_ms_p95": float(np.percentile(times, 95))}


def live_decisions(requests: int) -> list[dict[str, Any]]:
    """Decision times inside a live run: ``dora`` and each shipped ``-v1`` run folder serving
    its own card's first inference job (real ViT-B/16 or ResNet-50 layers on worker processes,
    time scale auto, the card's link rates), every control step timed by the runtime. (With
    the test traces a deep fade, dilated by the time scale of 50-250, stretches a run to many
    minutes.)"""
    rows: list[dict[str, Any]] = []
    for card in LIVE_CARDS:
        for spec in controllers(card):
            try:
                make_decider(spec, load(card), _job(card))
            except DoraError as error:
                rows.append({"controller": f"{card}/{Path(spec).name}", "skipped": str(error)})
                continue
            r = serve(["--controller", spec, "--requests", str(requests), "--rate", "20",
                       "--time-scale", "auto"], scenario=card, timeout_s=900)
            rows.append({"controller": f"{card}/{Path(spec).name}", "job": r["job"],
                         "decisions": len(r["intervals"]) - 1,
                         "decision_ms_p50": r["decision_ms_p50"],
                         "time_scale": r["time_scale"], "completed": r["completed"],
                         "sent": r["sent"]})
    return rows


def latency_rows(plans: tuple[str, ...], scales: tuple[float, ...]) -> list[dict[str, Any]]:
    rows = []
    for scale in scales:
        for plan in plans:
            if scale > 1 and plan not in plans[:3]:
                continue
            r = serve(["--plan", plan, "--requests", "20", "--rate", "8",
                       "--time-scale", str(scale)])
            pred, meas = r["predicted_latency_ms"][0], r["measured_latency_ms"][0]
            rows.append({"plan": plan, "time_scale": scale, "predicted_ms": pred,
                         "measured_ms": meas, "error_pct": 100 * (meas - pred) / pred})
    return rows


def throughput_rows(plans: tuple[str, ...]) -> list[dict[str, Any]]:
    from dora_rl.costmodel import CostModel
    from dora_rl.runtime.control import parse_plan

    scenario = load("tiny")
    model = CostModel(scenario)
    names = [d.name for d in scenario.devices]
    rows = []
    for plan in plans:
        predicted = model.evaluate(parse_plan(plan, names, 8))["throughput_per_s"]
        r = serve(["--plan", plan, "--requests", "150", "--rate", str(1.5 * predicted)])
        rows.append({"plan": plan, "predicted_per_s": predicted,
                     "measured_per_s": r["throughput_per_s"],
                     "ratio": r["throughput_per_s"] / predicted})
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = ["# Live runtime (tiny on 3 loopback workers; live decisions on the "
             "controllers' own cards)", "",
             "Reproduce: `python experiments/bench_runtime.py`. Targets in the issue: decision "
             "p50 <= 1 ms, latency within 15 % of the cost model (median over plans), "
             "throughput >= 90 % of the emulated limit, kill -9 recovery <= 3 s with no loss.",
             "", "## Decision time (1,000 decisions on random live measurements)", "",
             "| controller | p50 ms | p95 ms |", "|---|---|---|"]
    lines += [f"| {r['controller']} | {r['decision_ms_p50']:.3f} | {r['decision_ms_p95']:.3f} |"
              for r in result["decision"] if "skipped" not in r]
    lines += ["", "## Decision time inside live runs (the card's own job, time scale auto)", "",
              "| controller | job | decisions | p50 ms | time scale | completed/sent |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['controller']} | {r['job']} | {r['decisions']} | "
              f"{r['decision_ms_p50']:.3f} | {r['time_scale']:.1f} | "
              f"{r['completed']}/{r['sent']} |" for r in result["decision_live"]
              if "skipped" not in r]
    skipped = [r for r in result["decision"] + result["decision_live"] if "skipped" in r]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(sorted({f"{r['controller']} ({r['skipped']})"
                                                       for r in skipped}))]
    lines += ["", "## Latency against the cost model (20 requests each at 8 per card-second)",
              "",
              "| plan | time scale | predicted ms | measured ms (median) | error |",
              "|---|---|---|---|---|"]
    lines += [f"| `{r['plan']}` | {r['time_scale']:g} | {r['predicted_ms']:.1f} | "
              f"{r['measured_ms']:.1f} | {r['error_pct']:+.1f} % |" for r in result["latency"]]
    for scale, med in result["latency_median_abs_error_pct"].items():
        lines.append(f"\nMedian absolute error over plans at time scale {scale}: {med:.1f} %")
    lines += ["", "## Throughput at 1.5x the predicted capacity (150 requests)", "",
              "| plan | predicted /s | measured /s | ratio |", "|---|---|---|---|"]
    lines += [f"| `{r['plan']}` | {r['predicted_per_s']:.1f} | {r['measured_per_s']:.1f} | "
              f"{r['ratio']:.2f} |" for r in result["throughput"]]
    k = result["kill"]
    lines += ["", "## Kill -9 of the serving device (dora controller)", "",
              f"sent {k['sent']}, completed {k['completed']}, lost {k['lost']}, re-executed "
              f"{k['re_executed']}, recovery {', '.join(f'{v:.3f} s' for v in k['recovery_s'])}, "
              f"replans {k['replans']}, requests missed {k['requests_missed']}, energy "
              f"{k['energy_j']:.1f} J (jobs {k['jobs_energy_j']:.1f} J)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    global RESULTS
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_output_options(p, RESULTS)
    p.add_argument("--quick", action="store_true")
    ns = p.parse_args()
    ns.out = output_folder(ns, RESULTS)
    RESULTS = ns.out
    plans = PLANS[:2] if ns.quick else PLANS
    result: dict[str, Any] = {"decision": decision_times(200 if ns.quick else 1000)}
    result["decision_live"] = live_decisions(5 if ns.quick else 20)
    result["latency"] = latency_rows(plans, (1.0,) if ns.quick else (1.0, 4.0))
    result["latency_median_abs_error_pct"] = {
        str(s): statistics.median(abs(r["error_pct"]) for r in result["latency"]
                                  if r["time_scale"] == s)
        for s in sorted({r["time_scale"] for r in result["latency"]})}
    result["throughput"] = throughput_rows(plans[:1] if ns.quick else ("8:fast", "4:mid,8:fast"))
    with tempfile.TemporaryDirectory() as tmp:
        png = Path(tmp) / "k.png"
        kill = serve(["--controller", "dora", "--requests", "100", "--rate", "20",
                      "--kill", "fast@50", "--png", str(png)])
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "runtime_kill.png").write_bytes(png.read_bytes())
    kill.pop("timeline", None)
    kill.pop("intervals", None)
    result["kill"] = kill
    (RESULTS / "runtime_bench.json").write_text(json.dumps(result, indent=1))
    (RESULTS / "runtime_bench.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
