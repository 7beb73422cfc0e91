"""The step's shortcuts give the figures of the long way round.

The env, the interval model and the single-plan evaluator keep many things between calls
(memos keyed on what a figure reads, the last result while its inputs are the very same
objects, load-only figures per evaluator). These tests run the long way next to the short one
and ask for bit-identical results: an env whose every memo is emptied before each step, the
all-reduce-aware network figures next to the inference/LLM one-pass ones, a plan's figures
with other devices' power levels next to its own levels alone, and the observation's finite
fast path next to the NaN- and infinity-handling one.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import dora_rl  # noqa: F401  (registers the ids)
from dora_rl.costmodel import CostModel
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.env.observation import LINK_MAX, DecisionLayout, encode
from dora_rl.synthetic_cards import random_plan, random_scenario

evaluate_one = importlib.import_module("dora_rl.costmodel.evaluate_one")
single = importlib.import_module("dora_rl.costmodel.single")


def _forget(env: EdgeEnv) -> None:
    """Empty every memo the env, its interval model and their cost models keep between
    steps (the model's cost models at other request rates go with them)."""
    for owner in (env, env.model, *(cost.tables for cost in env.model.models)):
        for name, value in list(vars(owner).items()):
            if name.startswith("_") and isinstance(value, dict):
                value.clear()
    for cost in env.model.models:
        for memo in cost.tables.memo:
            memo.clear()
    for name in ("_weights_held", "_device_fixed"):
        env.__dict__.pop(name, None)
    evaluate_one._OWN_LEVELS.clear()


def _same(a: Any, b: Any) -> bool:
    """Equal to the bit (NaN equal to NaN, 0.0 not equal to -0.0)."""
    if isinstance(a, float) and isinstance(b, float):
        return a.hex() == b.hex()
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


@pytest.mark.parametrize("env_id", ["dora_rl/SmartHome-v1", "dora_rl/TrafficAnalytics-v1"])
def test_an_env_that_forgets_every_memo_steps_alike(env_id: str) -> None:
    """Random actions (switches, levels and power modes every step) through an env that keeps
    its memos and one that forgets them all before each step: the same observations,
    rewards and infos, to the bit."""
    kept, cold = gym.make(env_id, split="test"), gym.make(env_id, split="test")
    obs_a, _ = kept.reset(seed=11)
    obs_b, _ = cold.reset(seed=11)
    assert _same(obs_a, obs_b)
    kept.action_space.seed(11)
    for i in range(150):
        action = kept.action_space.sample()
        if i % 3 == 0:  # hold every plan now and then, so memos are hit as well as missed
            action[: kept.unwrapped.n_jobs] %= 4  # type: ignore[attr-defined]
        _forget(cold.unwrapped)  # type: ignore[arg-type]
        a, b = kept.step(action), cold.step(action)
        assert _same(a, b), f"step {i}"


def test_one_pass_network_figures_match_the_general_ones() -> None:
    """Eval.network_plain (inference and LLM plans) gives Eval.network's figures with no
    all-reduce, on random plans and link states."""
    rng = np.random.default_rng(7)
    for workload in ("inference", "llm_inference"):
        for _ in range(4):
            n_dev, n_layers = int(rng.integers(2, 6)), int(rng.integers(2, 10))
            model = CostModel(random_scenario(rng, n_dev, n_layers, workload))  # type: ignore[arg-type]
            for _ in range(8):
                plan = random_plan(rng, n_dev, n_layers, shares=bool(rng.random() < 0.5))
                state = model.nominal.replace(
                    link_scale=rng.uniform(0.0, 1.5, n_dev) * (rng.random(n_dev) > 0.2),
                    cross_traffic=rng.uniform(0.0, 0.6, len(model.nominal.cross_traffic)))
                ev = single._Eval(model.tables, plan, state.lists[0]).bind(state)
                general = ev.network([0.0] * plan.n_stages)
                boundary, cap, tx, rx = ev.network_plain()
                assert _same([boundary, cap, tx, rx],
                             [general["boundary"], general["cap"], general["tx"], general["rx"]])
                assert not any(general["allreduce"]) and not any(general["ar_tx"])


@pytest.mark.parametrize("workload", ["inference", "llm_inference", "training"])
def test_other_devices_power_levels_do_not_change_a_plans_figures(workload: str) -> None:
    """A plan with power levels set on devices it does not use is memoised as its own levels
    alone; a cold evaluator of the plan as given (memo off) agrees to the bit."""
    rng = np.random.default_rng(3)
    scenario = random_scenario(rng, 5, 8, workload)  # type: ignore[arg-type]
    model = CostModel(scenario)
    levels = model.tables.dvfs_speed.shape[1]
    usable = ~np.isnan(model.tables.dvfs_speed)
    for _ in range(12):
        plan = random_plan(rng, 5, 8, shares=bool(rng.random() < 0.5))
        dvfs = tuple(int(rng.choice(np.flatnonzero(usable[d]))) if levels > 1 else 0
                     for d in range(5))
        moded = replace(plan, dvfs_levels=dvfs)
        state = model.nominal.replace(load=rng.uniform(0.0, 0.6, 5),
                                      link_scale=rng.uniform(0.2, 1.2, 5))
        got = model.evaluate(moded, state)
        # the plan as given, every device's level read, no memo: the long way round
        ev = single._Eval(CostModel(scenario).tables, moded, state.lists[0]).bind(state)
        assert _same(got, evaluate_one._figures(ev))
        own = tuple(lv if d in plan.devices else 0 for d, lv in enumerate(dvfs))
        assert _same(got, CostModel(scenario).evaluate(
            replace(plan, dvfs_levels=own if any(own) else None), state, memo=False))


def _encode_reference(layout: DecisionLayout, rows: list[list[float]],
                      rest: list[float]) -> np.ndarray:
    """The observation's arithmetic the long way: clip and scale the links, NaN to 0 there
    and -1 elsewhere, clip to [-1, 1], cast."""
    links = np.clip(np.array(rows, dtype=np.float64).T.ravel(), 0.0, LINK_MAX) / LINK_MAX
    links[links != links] = 0.0
    other = np.array(rest, dtype=np.float64)
    other[other != other] = -1.0
    return np.concatenate([links, np.clip(other, -1.0, 1.0)]).astype(np.float32)


def test_the_finite_fast_path_of_encode_matches_the_general_one() -> None:
    """Observations with and without NaN or infinite candidate figures, values on and past
    the bounds, signed zeros: encode gives the reference arithmetic to the bit."""
    lay = DecisionLayout(n_devices=2, n_domains=1, n_jobs=1, k=2, history=3)
    rng = np.random.default_rng(5)
    pool = [-0.0, 0.0, -1.0, 1.0, 1.2, -1.5, 2.0, 0.3, -0.7, np.nextafter(1.0, 2.0)]
    for trial in range(200):
        def draw(n: int) -> list[float]:
            return [float(rng.choice(pool)) if rng.random() < 0.5 else float(rng.normal(0, 1))
                    for _ in range(n)]
        rows = [[abs(x) for x in draw(2)] for _ in range(3)]
        devices = [draw(8), draw(8)]
        residency, cross, jobs = [draw(1), draw(1)], draw(1), [draw(10)]
        cands = [[draw(5), draw(5)]]
        if trial % 3 == 1:
            cands[0][0][1] = -np.inf  # a dead link's slack
        if trial % 3 == 2:
            jobs[0][2] = np.nan  # unknown
            rows[1][0] = np.nan
        rest = [x for r in devices + residency for x in r] + cross + jobs[0] \
            + [x for r in cands[0] for x in r]
        got = encode(lay, rows, devices, residency, cross, jobs, cands)
        assert _same(got, _encode_reference(lay, rows, rest)), trial
