"""The partitioner's optimum equals brute force, and its objective equals the cost model."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dora_rl.costmodel import CostModel, Plan
from dora_rl.errors import InfeasibleError
from dora_rl.planner.exact import search as search_module
from dora_rl.planner.exact.bounds import admissible
from dora_rl.planner.exact.bruteforce import all_plans, brute_force
from dora_rl.planner.exact.candidates import Candidates, build_candidates
from dora_rl.planner.exact.formulation import Limits
from dora_rl.planner.exact.lagrange import strongest
from dora_rl.planner.exact.partition import solve
from dora_rl.planner.exact.pathbound import PathBound, time_limits
from dora_rl.planner.exact.space import SearchSpace
from dora_rl.synthetic_cards import random_scenario

WORKLOADS = ("inference", "llm_inference", "training")


def _instances(seed: int, count: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    for i in range(count):
        workload = WORKLOADS[i % 3]
        scenario = random_scenario(rng, int(rng.integers(1, 5)), int(rng.integers(1, 9)),
                                   workload, unused_off=bool(rng.random() < 0.3))  # type: ignore[arg-type]
        yield i, CostModel(scenario), ("energy", "time")[int(rng.integers(0, 2))]


@pytest.mark.parametrize("seed", [101, 202, 303, 404])
def test_milp_optimum_equals_brute_force_on_random_tiny_instances(seed: int) -> None:
    checked = feasible = 0
    for i, model, mode in _instances(seed, 60):
        space = SearchSpace.build(model, max_stages=4)
        best = brute_force(model, mode, space=space)
        try:
            result = solve(model, mode, space=space)
        except InfeasibleError:
            assert best is None, f"instance {i}: MILP infeasible, brute force found {best}"
            checked += 1
            continue
        assert best is not None, f"instance {i}: brute force found nothing, MILP {result.plan}"
        expected = best[1]["energy_j"] if mode == "energy" else best[1]["latency_s"]
        assert result.objective == pytest.approx(expected, rel=1e-6), (i, best[0], result.plan)
        checked += 1
        feasible += 1
    assert checked == 60 and feasible >= 30


def test_solver_objective_equals_cost_model_of_returned_plan() -> None:
    for _, model, mode in _instances(7, 30):
        try:
            result = solve(model, mode)
        except InfeasibleError:
            continue
        again = model.evaluate(result.plan)
        value = again["energy_j"] if mode == "energy" else again["latency_s"]
        assert result.objective == pytest.approx(value, rel=1e-9)
        assert again["feasible"]


def test_milp_matches_brute_force_where_the_1f1b_round_trip_binds() -> None:
    """Training optima whose steady-state period is the round trip / (K - k) rather than the
    slowest stage (slow links, several micro-batches): the program's linearised bound must
    give brute force's optimum exactly."""
    rng = np.random.default_rng(17)
    binding = 0
    for _ in range(400):
        scenario = random_scenario(rng, int(rng.integers(2, 5)), int(rng.integers(2, 9)),
                                   "training")
        model = CostModel(scenario)
        space = SearchSpace.build(model, max_stages=4)
        for mode in ("energy", "time"):
            best = brute_force(model, mode, space=space)
            if best is None:
                continue
            m = best[1]
            finite = [s for s in m["stage_s"] if s > 0]
            if not (best[0].micro_batches > 1 and m["period_s"] > 1.01 * max(finite)):
                continue
            binding += 1
            result = solve(model, mode, space=space)
            expected = m["energy_j"] if mode == "energy" else m["latency_s"]
            assert result.objective == pytest.approx(expected, rel=1e-6), (best[0], result.plan)
        if binding >= 4:
            break
    assert binding >= 4


def test_milp_fallback_optimum_equals_brute_force(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the plan search given no budget, every solve goes to the mixed-integer program
    over the candidates the path bound keeps; its optimum is still brute force's."""
    monkeypatch.setattr(search_module, "MAX_PLANS", 0)
    feasible = 0
    for i, model, mode in _instances(505, 45):
        space = SearchSpace.build(model, max_stages=4)
        best = brute_force(model, mode, space=space)
        try:
            result = solve(model, mode, space=space)
        except InfeasibleError:
            assert best is None, f"instance {i}: program infeasible, brute force found {best}"
            continue
        assert best is not None, f"instance {i}: brute force found nothing, got {result.plan}"
        expected = best[1]["energy_j"] if mode == "energy" else best[1]["latency_s"]
        assert result.objective == pytest.approx(expected, rel=1e-6), (i, best[0], result.plan)
        feasible += 1
    assert feasible >= 20


def _chain_of(space: SearchSpace, cands: Candidates, plan: Plan) -> list[int] | None:
    """Candidate indices of ``plan``'s stages (None when a stage is not a candidate)."""
    cls_of = {d: ci for ci, members in enumerate(space.classes) for d in members}
    chain = []
    for k, devices in enumerate(plan.stage_devices):
        counts = tuple(sorted(Counter(cls_of[d] for d in devices).items()))
        first, end = plan.stage_layers(k)
        hit = [i for i in np.flatnonzero((cands.first == first) & (cands.end == end))
               if tuple(sorted(space.groups[cands.group[i]].class_counts)) == counts]
        if not hit:
            return None
        chain.append(int(hit[0]))
    return chain


@pytest.mark.parametrize("seed", [11, 12])
def test_path_bound_never_exceeds_a_plans_objective(seed: int) -> None:
    """The shortest-path bound the plan search cuts with is a lower bound on every plan of
    the space: energy and time, every workload, dedicated and switch-off devices."""
    checked = 0
    for _, model, mode in _instances(seed, 45):
        space = SearchSpace.build(model, max_stages=4)
        for m in space.micro_batches:
            cands = build_candidates(model, space, model.nominal, m)
            bound = PathBound.build(model, space, cands, model.nominal, m, mode)
            if bound is None:
                continue
            plans = [p for p in all_plans(model, space) if p.micro_batches == m]
            metrics = model.evaluate_many(model.batch(plans, check=False))
            value = metrics.energy_j if mode == "energy" else metrics.latency_s
            per_candidate = bound.through(cands)
            lowest = bound.global_bound()
            t = bound.terms
            # every capped time figure, and the Lagrangian bound over the plans that meet them
            limits = Limits(max_time_s=1e9)
            timed = time_limits(model, cands, model.nominal, m, limits)
            figures = [metrics.latency_s] + [
                getattr(metrics, f) for f, ms in (("ttft_s", model.tables.job.qoe.ttft_ms),
                                                  ("tpot_s", model.tables.job.qoe.tpot_ms))
                if model.tables.job.llm is not None and ms is not None]
            assert len(figures) == len(timed)
            strong = strongest(model, space, cands, model.nominal, m, mode, Limits())
            ok = admissible(model, metrics, mode, Limits())
            for p, (plan, v) in enumerate(zip(plans, value, strict=True)):
                chain = _chain_of(space, cands, plan)
                if chain is None:
                    continue
                lb = t.weight[chain].sum() + t.slope * t.floor[chain].max() + t.offset
                assert lb <= v * (1 + 1e-9) + 1e-12, (plan, lb, v)
                assert per_candidate[chain].max() <= v * (1 + 1e-9) + 1e-12, (plan, v)
                assert lowest <= v * (1 + 1e-9) + 1e-12
                for (tt, _), figure in zip(timed, figures, strict=True):
                    t_lb = tt.weight[chain].sum() + tt.slope * tt.floor[chain].max()
                    assert t_lb <= figure[p] * (1 + 1e-9) + 1e-12, (plan, t_lb, figure[p])
                if ok[p] and strong is not None:
                    assert strong.global_bound() <= v * (1 + 1e-9) + 1e-12, (plan, v)
                checked += 1
    assert checked >= 500


def test_plan_search_hands_over_when_a_level_admits_too_many_plans() -> None:
    model = CostModel(random_scenario(np.random.default_rng(3), 4, 8, "inference"))
    space = SearchSpace.build(model, max_stages=4)
    cands = build_candidates(model, space, model.nominal, 1)
    many = search_module.search(model, space, cands, model.nominal, 1, "energy", Limits(),
                                max_plans=0)
    assert many.status == "budget"
    full = search_module.search(model, space, cands, model.nominal, 1, "energy", Limits())
    assert full.status in ("optimal", "none") and full.plans_scored >= 1


def test_lagrangian_bound_is_tighter_where_the_time_cap_binds_and_stays_below_the_optimum(
) -> None:
    """Where the cheapest chain misses its latency cap, pricing time lifts the bound above
    the plain one, and never above the best plan that meets the cap."""
    lifted = 0
    rng = np.random.default_rng(23)
    for _ in range(1000):
        workload = ("inference", "llm_inference")[int(rng.integers(0, 2))]
        model = CostModel(random_scenario(rng, int(rng.integers(2, 5)), int(rng.integers(2, 9)),
                                          workload))  # type: ignore[arg-type]
        space = SearchSpace.build(model, max_stages=4)
        cands = build_candidates(model, space, model.nominal, 1)
        plain = PathBound.build(model, space, cands, model.nominal, 1, "energy")
        strong = strongest(model, space, cands, model.nominal, 1, "energy", Limits())
        if plain is None or strong is None:
            continue
        assert strong.global_bound() >= plain.global_bound() - 1e-12
        best = brute_force(model, "energy", space=space)
        if best is None or strong.global_bound() <= plain.global_bound() * (1 + 1e-6):
            continue
        assert strong.global_bound() <= best[1]["energy_j"] * (1 + 1e-9), best[0]
        lifted += 1
        if lifted >= 5:
            break
    assert lifted >= 5


@pytest.mark.parametrize("seed", [21, 22])
def test_the_compiled_path_program_equals_the_numpy_one_to_the_bit(seed: int) -> None:
    """The bound's dynamic program, compiled over every band at once, gives exactly what the
    numpy version gives band by band (tracked and untracked device classes alike)."""
    from dora_rl.planner.exact.path_kernel import to_end_bands
    from dora_rl.planner.exact.pathbound import Usage, _bands, _to_end, objective_terms

    checked = 0
    for _, model, mode in _instances(seed, 20):
        space = SearchSpace.build(model, max_stages=4)
        m = max(space.micro_batches)
        cands = build_candidates(model, space, model.nominal, m)
        if not len(cands):
            continue
        terms = objective_terms(model, cands, model.nominal, m, mode)
        n_layers = model.tables.n_layers
        for tracked in (list(range(len(space.classes))), []):
            usage = Usage.build(space, tracked)
            _, hi = _bands(terms, 8)
            compiled = to_end_bands(cands.first, cands.end, cands.group, terms.weight,
                                    terms.floor, hi, usage.fits, usage.code, n_layers)
            reference = np.stack([_to_end(cands, usage, terms.weight, terms.floor <= h,
                                          n_layers) for h in hi])
            assert np.array_equal(compiled, reference)
            checked += 1
    assert checked >= 20
