"""The bottleneck MILP against exhaustive enumeration, and its infeasibility messages."""

from __future__ import annotations

import numpy as np
import pytest

from dora_rl.errors import InfeasibleError
from dora_rl.planner.baselines.bottleneck import (
    BottleneckProblem,
    BottleneckSolution,
    brute_force_bottleneck,
    solve_bottleneck,
    stage_costs,
)


def random_problem(rng: np.random.Generator, n_hosts: int, n_layers: int) -> BottleneckProblem:
    """Hosts grouped into 1..n_hosts types; memory from roomy to tight; some dead links."""
    n_types = int(rng.integers(1, n_hosts + 1))
    counts = np.ones(n_types, dtype=int)
    for _ in range(n_hosts - n_types):
        counts[rng.integers(n_types)] += 1
    speed = 10 ** rng.uniform(-0.7, 0.7, n_types)
    times = rng.uniform(0.05, 1.0, n_layers)[None, :] / speed[:, None]
    times = times * rng.uniform(0.7, 1.3, (n_types, n_layers))
    layer_mem = rng.uniform(1.0, 10.0, n_layers)
    memory = rng.uniform(0.3, 1.5, n_types) * layer_mem.sum()
    bandwidth = rng.uniform(0.5, 10.0, n_types)
    if rng.random() < 0.1:
        bandwidth[rng.integers(n_types)] = 0.0
    with np.errstate(divide="ignore"):
        transfer = rng.uniform(0.05, 2.0, n_layers)[:, None, None] / np.minimum(
            bandwidth[:, None], bandwidth[None, :])[None]
    buffers = None
    if rng.random() < 0.5:
        edge = rng.uniform(0.0, 3.0, n_layers + 1)
        buffers = edge[:, None] + edge[None, :]
    return BottleneckProblem(layer_time_s=times, counts=tuple(int(c) for c in counts),
                             memory_bytes=memory, layer_memory_bytes=layer_mem,
                             transfer_s=transfer, stage_buffer_bytes=buffers,
                             strict_memory=bool(rng.random() < 0.5))


def check_solution(problem: BottleneckProblem, sol: BottleneckSolution) -> None:
    """Contiguous stages, distinct hosts, memory respected, bottleneck recomputed."""
    ends = [s.end_layer for s in sol.stages]
    assert [s.first_layer for s in sol.stages] == [0, *ends[:-1]]
    assert ends[-1] == problem.n_layers
    hosts = [(s.device_type, s.host) for s in sol.stages]
    assert len(set(hosts)) == len(hosts)
    assert all(0 <= h < problem.counts[t] for t, h in hosts)
    for s in sol.stages:
        need = float(np.sum(problem.layer_memory_bytes[s.first_layer:s.end_layer]))
        if problem.stage_buffer_bytes is not None:
            need += float(problem.stage_buffer_bytes[s.first_layer, s.end_layer])
        cap = float(problem.memory_bytes[s.device_type])
        assert need < cap * (1 + 1e-12) if problem.strict_memory else need <= cap * (1 + 1e-12)
    compute, transfer = stage_costs(
        problem, [(s.first_layer, s.end_layer, s.device_type) for s in sol.stages])
    assert sol.bottleneck_s == max(max(compute), max(transfer))


def test_milp_equals_brute_force_on_random_tiny_instances() -> None:
    rng = np.random.default_rng(20240611)
    solved = infeasible = 0
    for _ in range(330):
        problem = random_problem(rng, int(rng.integers(1, 5)), int(rng.integers(1, 9)))
        try:
            expected = brute_force_bottleneck(problem)
        except InfeasibleError:
            with pytest.raises(InfeasibleError):
                solve_bottleneck(problem)
            infeasible += 1
            continue
        sol = solve_bottleneck(problem)
        assert sol.status == "optimal"
        check_solution(problem, sol)
        assert sol.bottleneck_s == pytest.approx(expected.bottleneck_s, rel=1e-9)
        solved += 1
    assert solved >= 200 and infeasible >= 20


def test_identical_hosts_split_evenly() -> None:
    problem = BottleneckProblem(layer_time_s=np.ones((1, 6)), counts=(3,),
                                memory_bytes=np.array([100.0]), layer_memory_bytes=np.ones(6),
                                transfer_s=np.full((6, 1, 1), 0.1))
    sol = solve_bottleneck(problem)
    assert sol.bottleneck_s == 2.0
    assert [(s.first_layer, s.end_layer, s.host) for s in sol.stages] == [
        (0, 2, 0), (2, 4, 1), (4, 6, 2)]


def test_slow_link_keeps_the_model_on_one_host() -> None:
    problem = BottleneckProblem(layer_time_s=np.ones((1, 4)), counts=(2,),
                                memory_bytes=np.array([100.0]), layer_memory_bytes=np.ones(4),
                                transfer_s=np.full((4, 1, 1), 10.0))
    sol = solve_bottleneck(problem)
    assert sol.bottleneck_s == 4.0 and len(sol.stages) == 1


def test_a_layer_too_big_for_every_device_is_named() -> None:
    problem = BottleneckProblem(
        layer_time_s=np.ones((2, 4)), counts=(1, 2), memory_bytes=np.array([2.0e9, 1.5e9]),
        layer_memory_bytes=np.array([0.5e9, 2.1e9, 0.5e9, 0.5e9]),
        transfer_s=np.zeros((4, 2, 2)), layer_names=("a", "b", "c", "d"))
    with pytest.raises(InfeasibleError, match=r"layer b needs 2\.1 GB; the largest device holds 2"):
        solve_bottleneck(problem)


def test_too_few_hosts_is_named() -> None:
    problem = BottleneckProblem(
        layer_time_s=np.ones((1, 6)), counts=(2,), memory_bytes=np.array([2.0]),
        layer_memory_bytes=np.ones(6), transfer_s=np.zeros((6, 1, 1)))
    with pytest.raises(InfeasibleError, match="needs at least 3 stages .* only 2 devices"):
        solve_bottleneck(problem)
    with pytest.raises(InfeasibleError, match="at least 3 stages"):
        brute_force_bottleneck(problem)


def test_no_host_at_all_is_named() -> None:
    problem = BottleneckProblem(
        layer_time_s=np.ones((1, 2)), counts=(0,), memory_bytes=np.array([2.0]),
        layer_memory_bytes=np.ones(2), transfer_s=np.zeros((2, 1, 1)))
    with pytest.raises(InfeasibleError, match="no device is available"):
        solve_bottleneck(problem)
