"""PipeEdge's schedule on its sample profiles: exact, within memory, as PipeEdge computes it."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from dora_rl.errors import InfeasibleError
from dora_rl.pipeedge import PipeEdgeProfile, load_pipeedge
from dora_rl.planner.baselines.bottleneck import brute_force_bottleneck, stage_costs
from dora_rl.planner.baselines.pipeedge_plan import (
    PipeEdgeSchedule,
    pipeedge_problem,
    solve_pipeedge,
)

SAMPLE = Path(__file__).resolve().parents[1] / "envs" / "pipeedge_sample"
MODELS = ["google/vit-base-patch16-224", "google/vit-large-patch16-224"]
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def profile() -> PipeEdgeProfile:
    return load_pipeedge(SAMPLE)


def reference(profile: PipeEdgeProfile, model_name: str, batch: int = 8,
              buffers: int = 2) -> tuple[float, list[tuple[int, int, str]]]:
    """PipeEdge's recurrence (``schedule_device_types``, each type with its own figures) from
    the raw YAML values: h[(i, used, u)] = best bottleneck of layers 1..i, next stage on type u.
    Returns the optimum and the stages as (first, last, type), 1-based inclusive."""
    model = profile.models[model_name]
    names = [n for n in sorted(profile.device_types) if profile.hosts.get(n)
             and model_name in profile.device_types[n].model_profiles]
    dev = {n: profile.device_types[n] for n in names}
    times = {n: dev[n].model_profiles[model_name][0].time_s for n in names}
    out = [4 * batch * p for p in model.parameters_out]

    def fits(n: str, first: int, last: int) -> bool:
        weights = 0.0
        for i in range(first - 1, last):
            weights += model.mem_MB[i] * 1024 * 1024
        data_in = 4 * batch * model.parameters_in if first == 1 else out[first - 2]
        buf = (data_in * buffers if first > 1 else 0) + out[last - 1] * buffers
        return dev[n].mem_MB * MIB > weights + buf + data_in + out[last - 1]

    n_l = model.layers
    h: dict[tuple[int, tuple[int, ...], str], tuple[float, list[tuple[int, int, str]]]] = {
        (0, (0,) * len(names), u): (0.0, []) for u in names}
    best: tuple[float, list[tuple[int, int, str]]] = (math.inf, [])
    for i in range(n_l):
        for (start, used, u), (cost, stages) in list(h.items()):
            k = names.index(u)
            if start != i or used[k] == len(profile.hosts[u]):
                continue
            now = tuple(c + (j == k) for j, c in enumerate(used))
            comp = 0.0
            for j in range(i + 1, n_l + 1):
                comp += times[u][j - 1]
                if not fits(u, i + 1, j):
                    continue
                path = [*stages, (i + 1, j, u)]
                if j == n_l:
                    best = min(best, (max(cost, comp), path), key=lambda v: v[0])
                    continue
                for v in names:
                    rate = min(dev[u].bw_Mbps, dev[v].bw_Mbps) * MIB / 8
                    key, value = (j, now, v), max(cost, comp, out[j - 1] / rate)
                    if value < h.get(key, (math.inf, []))[0]:
                        h[key] = (value, path)
    return best


def check_schedule(profile: PipeEdgeProfile, model_name: str, sched: PipeEdgeSchedule) -> None:
    """Layers 1..L once, in order; each host once, of its type; memory as PipeEdge checks."""
    model = profile.models[model_name]
    firsts = [s.first_layer for s in sched.stages]
    lasts = [s.last_layer for s in sched.stages]
    assert firsts == [1, *[x + 1 for x in lasts[:-1]]] and lasts[-1] == model.layers
    hosts = [s.host for s in sched.stages]
    assert len(set(hosts)) == len(hosts)
    out = [4 * 8 * p for p in model.parameters_out]
    for s in sched.stages:
        assert s.host in profile.hosts[s.device_type]
        weights = sum(model.mem_MB[s.first_layer - 1:s.last_layer]) * MIB
        data_in = 4 * 8 * model.parameters_in if s.first_layer == 1 else out[s.first_layer - 2]
        buf = (2 * data_in if s.first_layer > 1 else 0) + 3 * out[s.last_layer - 1] + data_in
        assert weights + buf < profile.device_types[s.device_type].mem_MB * MIB
    assert sched.stages[-1].transfer_s == 0.0
    assert sched.bottleneck_s == max(max(s.compute_s, s.transfer_s) for s in sched.stages)
    assert sched.throughput_per_s == pytest.approx(8 / sched.bottleneck_s)


@pytest.mark.parametrize("model_name", MODELS)
def test_sample_schedule_is_pipeedge_optimal(profile: PipeEdgeProfile, model_name: str) -> None:
    sched = solve_pipeedge(profile, model_name)
    assert sched.status == "optimal"
    check_schedule(profile, model_name, sched)
    expected, _ = reference(profile, model_name)
    assert sched.bottleneck_s == pytest.approx(expected, rel=1e-12)
    types = {s.device_type for s in sched.stages}
    assert types == {"Minnowboard-E3845", "RCC-VE-C2558"}  # both boards pull their weight


@pytest.mark.parametrize("model_name", MODELS)
def test_schedule_equals_brute_force_on_three_hosts(profile: PipeEdgeProfile,
                                                    model_name: str) -> None:
    small = dataclasses.replace(profile, hosts={"Minnowboard-E3845": ("mb-0",),
                                                "RCC-VE-C2558": ("rcc-0", "rcc-1")})
    sched = solve_pipeedge(small, model_name)
    check_schedule(small, model_name, sched)
    problem, _ = pipeedge_problem(small, model_name)
    assert sched.bottleneck_s == pytest.approx(
        brute_force_bottleneck(problem).bottleneck_s, rel=1e-12)
    assert sched.bottleneck_s == pytest.approx(reference(small, model_name)[0], rel=1e-12)


def test_json_shape_and_latency(profile: PipeEdgeProfile) -> None:
    sched = solve_pipeedge(profile, MODELS[0])
    data = json.loads(json.dumps(sched.to_json()))
    assert set(data) == {"solve_time_s", "plans"} and len(data["plans"]) == 1
    plan = data["plans"][0]
    assert plan["energy_j"] is None
    assert plan["bottleneck_s"] == sched.bottleneck_s
    assert plan["latency_s"] == pytest.approx(
        sum(s.compute_s + s.transfer_s for s in sched.stages))
    assert plan["stages"][0] == {"layers": [1, sched.stages[0].last_layer],
                                 "devices": [sched.stages[0].host]}


def test_hostless_types_contribute_nothing(profile: PipeEdgeProfile) -> None:
    only_mb = dataclasses.replace(profile, hosts={**profile.hosts, "RCC-VE-C2558": ()})
    sched = solve_pipeedge(only_mb, MODELS[0])
    assert {s.device_type for s in sched.stages} == {"Minnowboard-E3845"}
    assert sched.bottleneck_s == pytest.approx(reference(only_mb, MODELS[0])[0], rel=1e-12)


def test_memory_shapes_the_split(profile: PipeEdgeProfile) -> None:
    mb = profile.device_types["Minnowboard-E3845"]
    tight = dataclasses.replace(profile, device_types={
        **profile.device_types, "Minnowboard-E3845": dataclasses.replace(mb, mem_MB=300.0)},
        hosts={"Minnowboard-E3845": ("mb-0", "mb-1", "mb-2", "mb-3", "mb-4", "mb-5")})
    sched = solve_pipeedge(tight, MODELS[0])
    check_schedule(tight, MODELS[0], sched)
    assert len(sched.stages) >= 5  # ~1.2 GB of weights in 300 MiB devices
    tiny = dataclasses.replace(tight, device_types={
        **profile.device_types, "Minnowboard-E3845": dataclasses.replace(mb, mem_MB=50.0)})
    with pytest.raises(InfeasibleError, match="layer 1 needs .* the largest device holds"):
        solve_pipeedge(tiny, MODELS[0])


def test_emulated_index_bug_gives_readme_split(profile: PipeEdgeProfile) -> None:
    """The shipped binary's type/host index mix-up makes both types Minnowboards; its optimum
    then matches the README's example schedule (six layers per host)."""
    sched = solve_pipeedge(profile, MODELS[0], emulate_index_bug=True)
    problem, names = pipeedge_problem(profile, MODELS[0], emulate_index_bug=True)
    readme = [(6 * k, 6 * k + 6, names.index("Minnowboard-E3845" if k < 4 else "RCC-VE-C2558"))
              for k in range(8)]
    compute, transfer = stage_costs(problem, readme)
    assert sched.bottleneck_s == pytest.approx(max(compute + transfer), rel=1e-12)
    assert sched.bottleneck_s > solve_pipeedge(profile, MODELS[0]).bottleneck_s
