"""Print a readable summary of a scenario card.

Usage::

    python -m dora_rl.describe envs/smart_home.yaml
    python -m dora_rl.describe smart_home --plans      # also cost a few simple plans

Shows the devices (power modes, sleep state, storage, whether they are dedicated to the jobs),
the network, each model's weight format and weight bytes in it, total memory against what the
jobs need, and each job's QoE targets. With ``--plans`` it also evaluates, for each job, every
single-device plan and an even pipeline over all devices, so one sees at a glance what the cost
model says.
A bad card prints one line naming the file, field and problem, and exits with status 2.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from dora_rl.config import Scenario, weight_bytes
from dora_rl.config.names import display_text
from dora_rl.config.schema import Device, Job
from dora_rl.costmodel import CostModel, Plan
from dora_rl.errors import ArgParser, run_cli
from dora_rl.scenarios import load


@dataclass(frozen=True)
class Args:
    """Command-line arguments of ``python -m dora_rl.describe``."""

    scenario: str
    """Card path (``envs/tiny.yaml``) or name (``tiny``)."""
    plans: bool = False
    """Also evaluate single-device plans and an even pipeline for every job."""
    json: bool = False
    """Print the summary as JSON instead of tables."""


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def _targets(job: Job) -> str:
    q = job.qoe
    parts = [f"{name}={getattr(q, name):g}" for name in
             ("latency_ms", "ttft_ms", "tpot_ms", "iteration_ms", "deadline_s", "energy_j")
             if getattr(q, name) is not None]
    return ", ".join(parts)


def _work(job: Job) -> str:
    if job.inference is not None:
        return f"{job.inference.request_rate_per_s:g} req/s, batch {job.inference.batch}"
    if job.llm is not None:
        w = job.llm
        return (f"{w.request_rate_per_s:g} req/s, {w.prompt_tokens} prompt + "
                f"{w.output_tokens} output tokens")
    assert job.training is not None
    t = job.training
    return f"batch {t.global_batch} in {t.micro_batches} micro-batches, {t.method}"


def _device(d: Device) -> dict[str, object]:
    return {"name": d.name, "kind": d.kind, "memory_bytes": d.memory_bytes,
            "peak_flops": d.compute.peak_flops, "idle_w": d.power.idle_w,
            "busy_w": d.power.busy_w, "domain": d.network.domain,
            "link_mbps": d.network.link_mbps, "can_leave": d.can_leave,
            "battery_wh": d.battery_wh, "dedicated": d.dedicated,
            "power_modes": [{"name": v.name, "speed": v.speed, "busy_w": v.busy_w}
                            for v in d.dvfs],
            "storage": d.storage.model_dump() if d.storage is not None else None,
            "sleep": d.sleep.model_dump() if d.sleep is not None else None,
            "format_speed": dict(d.compute.format_speed)}


def summary(scenario: Scenario) -> dict[str, object]:
    """The facts the tables show, as plain data."""
    total_mem = sum(d.memory_bytes for d in scenario.devices)
    jobs = []
    for job in scenario.jobs:
        model = scenario.models[job.model]
        weights = sum(weight_bytes(layer.param_bytes, model.dtype_bytes, model.weight_format)
                      for layer in model.layers)
        flops = sum(layer.forward_flops for layer in model.layers)
        jobs.append({"name": job.name, "workload": job.workload, "model": job.model,
                     "layers": len(model.layers), "weight_format": model.weight_format,
                     "weights_bytes": weights, "forward_flops_per_item": flops,
                     "unit": model.unit, "work": _work(job), "qoe": _targets(job)})
    return {
        "scenario": scenario.name, "source": scenario.source,
        "description": scenario.description, "objective": scenario.objective.mode,
        "devices": [_device(d) for d in scenario.devices],
        "domains": [{"name": d.name, "kind": d.kind} for d in scenario.network.domains],
        "total_memory_bytes": total_mem,
        "jobs": jobs,
    }


def _simple_plans(model: CostModel) -> list[tuple[str, Plan]]:
    t = model.tables
    names = [d.name for d in model.scenario.devices]
    plans = [(f"single:{names[d]}", Plan.single(d, t.n_layers))
             for d in range(t.n_devices) if t.can_run[d]]
    runnable = [d for d in range(t.n_devices) if t.can_run[d]][: t.n_layers]
    if len(runnable) > 1:
        k = len(runnable)
        ends = tuple(round(t.n_layers * (i + 1) / k) for i in range(k))
        plans.append(("even pipeline", Plan(stage_end=ends,
                                            stage_devices=tuple((d,) for d in runnable))))
    return plans


def _print_tables(console: Console, scenario: Scenario, data: dict[str, object]) -> None:
    console.print(f"[bold]{display_text(scenario.name)}[/bold]  ({display_text(scenario.source)})"
                  f"  {display_text(scenario.description)}")
    console.print(f"objective: minimise {scenario.objective.mode} subject to QoE")
    dev = Table("device", "kind", "memory", "peak TFLOP/s", "idle/busy W", "slower modes",
                "sleep", "storage", "network", "notes", title="Devices")
    for d in scenario.devices:
        notes = ", ".join(x for x in ("dedicated" if d.dedicated else "",
                                      "can leave" if d.can_leave else "",
                                      f"battery {d.battery_wh:g} Wh" if d.battery_wh else "") if x)
        peak = f"{d.compute.peak_flops / 1e12:.2f}" if d.compute.peak_flops else "measured"
        modes = ", ".join(f"{display_text(v.name)} x{v.speed:g}" for v in d.dvfs) or "-"
        sleep = f"{d.sleep.sleep_w:g} W, wake {d.sleep.wake_s:g} s" if d.sleep else "-"
        storage = f"{d.storage.medium} {d.storage.read_mbps:g} Mbps" if d.storage else "-"
        dev.add_row(display_text(d.name), display_text(d.kind), _gb(d.memory_bytes), peak,
                    f"{d.power.idle_w:g}/{d.power.busy_w:g}", modes, sleep, storage,
                    f"{display_text(d.network.domain)} @ {d.network.link_mbps:g} Mbps", notes)
    console.print(dev)
    doms = ", ".join(f"{display_text(d.name)} ({d.kind})" for d in scenario.network.domains)
    console.print(f"network: {doms}; backbone {scenario.network.backbone_mbps:g} Mbps")
    jobs = Table("job", "workload", "model", "format", "layers", "weights", "GFLOP/item", "work",
                 "QoE", title="Jobs")
    need = 0.0
    for j in data["jobs"]:  # type: ignore[attr-defined]
        need += j["weights_bytes"]
        jobs.add_row(display_text(j["name"]), j["workload"], display_text(j["model"]),
                     j["weight_format"], str(j["layers"]),
                     _gb(j["weights_bytes"]), f"{j['forward_flops_per_item'] / 1e9:.2f}",
                     j["work"], j["qoe"])
    console.print(jobs)
    total = float(data["total_memory_bytes"])  # type: ignore[arg-type]
    console.print(f"memory: devices hold {_gb(total)} in all; the jobs' weights need "
                  f"{_gb(need)} ({100 * need / total:.0f} %)")


def _print_plans(console: Console, scenario: Scenario) -> None:
    for j, job in enumerate(scenario.jobs):
        model = CostModel(scenario, j)
        table = Table("plan", "time", "throughput/s", "energy/unit", "power", "peak memory",
                      "QoE slack", "ok", title=f"Simple plans for {display_text(job.name)}")
        for name, plan in _simple_plans(model):
            m = model.evaluate(plan)
            slack = ", ".join(f"{k} {v:+.0%}" for k, v in m["qoe_slack"].items())
            table.add_row(display_text(name), f"{m['latency_s'] * 1e3:.1f} ms",
                          f"{m['throughput_per_s']:.2f}",
                          f"{m['energy_j']:.2f} J", f"{m['power_w']:.1f} W",
                          _gb(max(m["memory_bytes"])), slack,
                          "yes" if m["feasible"] else ("no (memory)" if not m["memory_ok"]
                                                       else "no (QoE)"))
        console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = ArgParser(prog="python -m dora_rl.describe",
                                     description="Summarise a scenario card.")
    parser.add_argument("scenario", help="card path or name (e.g. envs/tiny.yaml or tiny)")
    parser.add_argument("--plans", action="store_true", help="also cost simple plans")
    parser.add_argument("--json", action="store_true", help="print JSON")
    ns = parser.parse_args(argv)
    args = Args(scenario=ns.scenario, plans=ns.plans, json=ns.json)
    scenario = load(args.scenario)
    data = summary(scenario)
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    console = Console(width=160)
    _print_tables(console, scenario, data)
    if args.plans:
        _print_plans(console, scenario)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
