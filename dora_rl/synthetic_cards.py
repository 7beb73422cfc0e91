"""Random scenarios and plans of any size, for property tests, benchmarks and cross-checks.

Devices are drawn around real catalog kinds (every figure is overridden, so the result does not
depend on catalog edits); models are chains of layers with FLOPs, weights and activations in
realistic ranges.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from dora_rl.config import Scenario
from dora_rl.config.loader import resolve, validate
from dora_rl.config.schema import ScenarioSpec
from dora_rl.costmodel.plan_spec import Plan

Workload = Literal["inference", "llm_inference", "training"]


def scenario_dict(rng: np.random.Generator, n_devices: int = 4, n_layers: int = 8,
                  workload: Workload = "inference", wifi_fraction: float = 0.7,
                  memory_bandwidth: bool = True, unused_off: bool = False) -> dict[str, Any]:
    """A random scenario card as a plain dict (what ``yaml.safe_load`` would return)."""
    devices = []
    for i in range(n_devices):
        on_wifi = rng.random() < wifi_fraction
        compute: dict[str, Any] = {"peak_flops": float(10 ** rng.uniform(10.5, 13)),
                                   "default_efficiency": float(rng.uniform(0.2, 0.6))}
        if memory_bandwidth:
            compute["memory_bandwidth_gbps"] = float(rng.uniform(8, 400))
        idle = float(rng.uniform(1, 30))
        devices.append({
            "name": f"dev{i}", "kind": "raspberry_pi_5",
            "memory_bytes": int(10 ** rng.uniform(9, 10.5)),
            "compute": compute,
            "power": {"idle_w": idle, "busy_w": idle * float(rng.uniform(1.5, 6)),
                      "tx_w": idle * float(rng.uniform(1.05, 1.6)),
                      "rx_w": idle * float(rng.uniform(1.02, 1.4))},
            "dvfs": [{"name": "low", "speed": float(rng.uniform(0.3, 0.8)),
                      "busy_w": idle * float(rng.uniform(1.2, 1.5))}],
            "thermal": False,  # made-up figures: the kind's heating would not fit them
            "battery_wh": float(rng.uniform(10, 80)) if rng.random() < 0.3 else None,
            "network": {"domain": "ap" if on_wifi else "lan",
                        "link_mbps": float(rng.uniform(50, 1000))},
        })
    for d in devices:
        if d["battery_wh"] is None:
            del d["battery_wh"]
    token = workload == "llm_inference"
    layers = [{
        "name": f"l{i}", "kind": "transformer" if token else "conv",
        "forward_flops": float(10 ** rng.uniform(7, 9.5)),
        "param_bytes": float(10 ** rng.uniform(5, 7.5)),
        "activation_bytes": float(10 ** rng.uniform(3, 5.5)),
        "lora_param_bytes": float(10 ** rng.uniform(3, 5)),
        "kv_bytes_per_token": float(10 ** rng.uniform(3, 4.5)) if token else 0.0,
    } for i in range(n_layers)]
    job: dict[str, Any] = {"name": "job", "model": "m", "workload": workload}
    if workload == "inference":
        job["inference"] = {"request_rate_per_s": float(rng.uniform(1, 30)),
                            "batch": int(rng.integers(1, 9))}
        job["qoe"] = {"latency_ms": float(rng.uniform(20, 500))}
    elif workload == "llm_inference":
        job["llm"] = {"request_rate_per_s": float(rng.uniform(0.01, 0.5)),
                      "prompt_tokens": int(rng.integers(16, 512)),
                      "output_tokens": int(rng.integers(2, 128))}
        job["qoe"] = {"ttft_ms": float(rng.uniform(200, 5000)),
                      "tpot_ms": float(rng.uniform(20, 500))}
    else:
        gb = int(rng.choice([8, 16, 32]))
        job["training"] = {"global_batch": gb, "micro_batches": int(rng.choice([1, 2, 4, 8])),
                           "method": str(rng.choice(["full", "lora"]))}
        job["qoe"] = {"iteration_ms": float(rng.uniform(100, 20000))}
    return {
        "name": "synthetic", "devices": devices,
        "network": {"domains": [{"name": "ap", "kind": "wifi",
                                 "cross_traffic": float(rng.uniform(0, 0.3))},
                                {"name": "lan", "kind": "switch"}],
                    "backbone_mbps": float(rng.uniform(100, 1000))},
        "models": [{"name": "m", "unit": "token" if token else "sample", "layers": layers}],
        "jobs": [job],
        "objective": {"unused_devices": "off" if unused_off else "idle"},
    }


def random_scenario(rng: np.random.Generator, n_devices: int = 4, n_layers: int = 8,
                    workload: Workload = "inference", **kwargs: Any) -> Scenario:
    """A validated random scenario (see :func:`scenario_dict`)."""
    data = scenario_dict(rng, n_devices, n_layers, workload, **kwargs)
    spec = validate(ScenarioSpec, data, "<synthetic>")
    return resolve(spec, "<synthetic>", Path("."))


def random_plan(rng: np.random.Generator, n_devices: int, n_layers: int,
                max_stages: int | None = None, shares: bool = False,
                dvfs: bool = False) -> Plan:
    """A random valid plan: K contiguous stages on disjoint device groups, some devices idle."""
    k_max = min(n_devices, n_layers, max_stages or n_devices)
    k = int(rng.integers(1, k_max + 1))
    cuts = sorted(rng.choice(np.arange(1, n_layers), k - 1, replace=False).tolist())
    n_used = int(rng.integers(k, n_devices + 1))
    chosen = rng.permutation(n_devices)[:n_used]
    splits = sorted(rng.choice(np.arange(1, n_used), k - 1, replace=False).tolist())
    groups = tuple(tuple(int(d) for d in g) for g in np.split(chosen, splits))
    return Plan(
        stage_end=(*[int(c) for c in cuts], n_layers), stage_devices=groups,
        micro_batches=int(rng.choice([1, 2, 4])),
        boundary_shares=tuple(float(x) for x in rng.uniform(0.1, 1.0, k - 1))
        if shares and k > 1 else None,
        allreduce_shares=tuple(float(x) for x in rng.uniform(0.1, 1.0, k)) if shares else None,
        dvfs_levels=tuple(int(x) for x in rng.integers(0, 2, n_devices)) if dvfs else None,
    )


BENCH_KINDS = ("jetson_orin_nano", "laptop_x86", "raspberry_pi_5", "macbook_m2",
               "phone_snapdragon_8gen2", "jetson_xavier_nx", "nuc_i5", "desktop_rtx3060")


def benchmark_scenario(n_layers: int, n_devices: int, workload: Workload = "inference",
                       qoe_scale: float = 1.0) -> Scenario:
    """A deterministic household/site of catalog devices running a GPT-2-XL-like decoder.

    Layers are transformer blocks of width 1600 (GPT-2 XL's), profiled in FP32 and run with FP16
    weights, the catalog's nominal precision on its accelerators; devices cycle through
    :data:`BENCH_KINDS` (so a 16-device site has pairs of identical boxes), the first half on a
    WiFi access point and the rest on a switch. QoE targets are set so that no single device
    meets them at ``qoe_scale = 1``: plans must pipeline.
    """
    d_model, seq = 2048, 128
    params = 12 * d_model * d_model * 4.0
    flops_token = 2 * 12 * d_model * d_model + 4 * seq * d_model
    token = workload == "llm_inference"
    per_item = 1 if token else seq
    layers = [{"name": f"block{i}", "kind": "transformer",
               "forward_flops": float(flops_token * per_item), "param_bytes": params,
               "activation_bytes": float(d_model * 4 * per_item),
               "lora_param_bytes": float(2 * 8 * 2 * d_model * 4),
               "kv_bytes_per_token": float(2 * d_model * 4) if token else 0.0}
              for i in range(n_layers)]
    devices = [{"name": f"{BENCH_KINDS[i % len(BENCH_KINDS)]}_{i}",
                "kind": BENCH_KINDS[i % len(BENCH_KINDS)],
                "network": {"domain": "wifi" if i < (n_devices + 1) // 2 else "lan",
                            "link_mbps": 866.7 if i < (n_devices + 1) // 2 else 1000.0}}
               for i in range(n_devices)]
    job: dict[str, Any] = {"name": "job", "model": "m", "workload": workload}
    if workload == "inference":
        job["inference"] = {"request_rate_per_s": 2.0 / qoe_scale, "batch": 1}
        job["qoe"] = {"latency_ms": 2.5 * n_layers * qoe_scale}
    elif workload == "llm_inference":
        job["llm"] = {"request_rate_per_s": 0.05, "prompt_tokens": 128, "output_tokens": 32}
        job["qoe"] = {"ttft_ms": 40.0 * n_layers * qoe_scale, "tpot_ms": 6.0 * n_layers * qoe_scale}
    else:
        job["training"] = {"global_batch": 8, "micro_batches": 4, "method": "lora"}
        job["qoe"] = {"iteration_ms": 400.0 * n_layers * qoe_scale}
    data = {"name": f"bench_{n_layers}x{n_devices}", "devices": devices,
            "network": {"domains": [{"name": "wifi", "kind": "wifi", "cross_traffic": 0.1},
                                    {"name": "lan", "kind": "switch"}]},
            "models": [{"name": "m", "unit": "token" if token else "sample",
                        "seq_len": seq, "weight_format": "fp16", "layers": layers}],
            "jobs": [job]}
    spec = validate(ScenarioSpec, data, "<benchmark>")
    return resolve(spec, "<benchmark>", Path("."))
