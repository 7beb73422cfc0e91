"""The hindsight oracle's schedule is real, and the free-switch bound is never beaten."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import dora_rl  # noqa: F401  (registers the ids)
from dora_rl.controllers import make, run_episode_infos
from dora_rl.controllers.baselines import INCUMBENTS
from dora_rl.controllers.bound import free_switch_bound
from dora_rl.controllers.hindsight import (
    TIE_DIGITS,
    best_static,
    lookahead,
    replay,
    score,
    search,
)
from dora_rl.env.edge_env import EdgeEnv

TOLERANCE = 10.0 ** -(TIE_DIGITS - 1)
"""Missed requests closer than this are equal (float noise in expected tails)."""


def _env(env_id: str, steps: int) -> EdgeEnv:
    env: EdgeEnv = gym.make(env_id, split="test", episode_steps=steps).unwrapped  # type: ignore[assignment]
    return env


def _lex_le(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a`` no worse than ``b``: fewer missed requests, or as many and no more energy."""
    if a[0] < b[0] - TOLERANCE:
        return True
    return abs(a[0] - b[0]) <= TOLERANCE and a[1] <= b[1] + 1e-6


def test_replaying_the_searched_schedule_through_the_env_scores_what_the_search_said() -> None:
    env = _env("dora_rl/SmartHome-v1", 40)
    env.reset(seed=3)
    episode = lookahead(env, 40)
    schedule = search(env.model, episode, beam=8)
    assert len(schedule.steps) == 40
    assert score(env.model, episode, schedule).missed == schedule.missed
    env.reset(seed=3)
    missed, energy = replay(env, schedule)
    assert missed == schedule.missed
    assert energy == pytest.approx(schedule.energy_j, rel=1e-12)


def test_replay_is_exact_while_the_request_rates_change() -> None:
    """Traffic's plate and pedestrian rates follow the road's volume (60 s intervals)."""
    env = _env("dora_rl/TrafficAnalytics-v1", 30)
    env.reset(seed=4)
    episode = lookahead(env, 30)
    rates = {float(w.rate_scale[2]) for w in episode.worlds}  # type: ignore[index]
    assert len(rates) > 1
    schedule = search(env.model, episode, beam=8)
    env.reset(seed=4)
    missed, energy = replay(env, schedule)
    assert missed == schedule.missed
    assert energy == pytest.approx(schedule.energy_j, rel=1e-12)


def test_the_oracle_does_at_least_as_well_as_holding_the_best_plan() -> None:
    env = _env("dora_rl/SmartHome-v1", 60)
    env.reset(seed=1)
    held = best_static(env.model, lookahead(env, 60))
    _, infos = run_episode_infos(env, make("oracle", env), seed=1)
    weights = env.job_weights
    got = (sum(sum(w * m for w, m in zip(weights, i["requests_excess"], strict=True))
               for i in infos), sum(i["jobs_energy_j"] for i in infos))
    assert _lex_le(got, (held.missed, held.energy_j))


@pytest.mark.parametrize(("env_id", "seed"), [("dora_rl/Tiny-v1", 3), ("dora_rl/SmartHome-v1", 1),
                                              ("dora_rl/SmartHome-v1", 4)])
def test_the_oracle_is_never_beaten_by_the_controllers_it_runs_ahead(env_id: str,
                                                                     seed: int) -> None:
    """On the same episode no incumbent (``static``, ``static-robust``, ``greedy``, ``dora``,
    ``mpc``, ``foresight``) has fewer weighted missed requests than the oracle, or as many and
    less energy."""
    steps = 120

    def score(name: str) -> tuple[float, float]:
        run = gym.make(env_id, split="test", episode_steps=steps)
        _, infos = run_episode_infos(run, make(name, run), seed=seed)
        weights = run.unwrapped.job_weights  # type: ignore[attr-defined]
        return (round(sum(sum(w * m for w, m in zip(weights, i["requests_excess"], strict=True))
                          for i in infos), 6), sum(i["jobs_energy_j"] for i in infos))

    oracle = score("oracle")
    for name in INCUMBENTS:
        got = score(name)
        assert oracle[0] < got[0] or (oracle[0] == got[0] and oracle[1] <= got[1] + 1e-9), \
            (name, oracle, got)


@pytest.mark.parametrize(("env_id", "seed"), [("dora_rl/Tiny-v1", 0), ("dora_rl/Tiny-v1", 5),
                                              ("dora_rl/SmartHome-v1", 0),
                                              ("dora_rl/SmartHome-v1", 7),
                                              ("dora_rl/TrafficAnalytics-v1", 2)])
def test_the_bound_is_never_beaten(env_id: str, seed: int) -> None:
    """No controller (the oracle included) has fewer weighted missed requests than the
    free-switch bound, or as many and less energy, on the same episode."""
    steps = 40
    env = _env(env_id, steps)
    env.reset(seed=seed)
    bound = free_switch_bound(env.model, lookahead(env, steps))
    for name in ("static", "static-robust", "throughput", "dora", "greedy", "mpc", "random",
                 "foresight", "oracle"):
        run = gym.make(env_id, split="test", episode_steps=steps)
        _, infos = run_episode_infos(run, make(name, run), seed=seed)
        weights = run.unwrapped.job_weights  # type: ignore[attr-defined]
        got = (sum(sum(w * m for w, m in zip(weights, i["requests_excess"], strict=True))
                   for i in infos), sum(i["jobs_energy_j"] for i in infos))
        assert _lex_le((bound.missed, bound.energy_j), got), (name, bound, got)


def test_static_robust_holds_a_plan_that_meets_qoe_on_weak_links() -> None:
    """On the traffic cabinet it keeps every job on a plan whose figures meet the targets
    with the pole WiFi at its 10th percentile, and never switches."""
    env = gym.make("dora_rl/TrafficAnalytics-v1", split="test", episode_steps=20)
    controller = make("static-robust", env)
    _, infos = run_episode_infos(env, controller, seed=0)
    assert all(i["replans"] == 0 for i in infos)
    base: EdgeEnv = env.unwrapped  # type: ignore[assignment]
    assert [jc.plan for jc in base.ctl.jobs] == controller.plans  # type: ignore[attr-defined]


def test_mpc_forecasts_links_by_their_harmonic_mean_and_discounts_its_errors() -> None:
    """A fade in the history pulls the forecast down; a forecast that was wrong makes the
    next one more cautious."""
    from dora_rl.controllers.mpc import Mpc, harmonic_forecast

    steady = harmonic_forecast(np.array([[1.0, 1.0, 1.0, 1.0]], np.float32))
    faded = harmonic_forecast(np.array([[1.0, 1.0, 0.1, 1.0]], np.float32))
    assert steady[0] == pytest.approx(1.0) and faded[0] < 0.4
    env = gym.make("dora_rl/SmartHome-v1", split="test", episode_steps=5)
    mpc = make("mpc", env)
    assert isinstance(mpc, Mpc)
    obs, _ = env.reset(seed=0)
    action, _ = mpc.predict(obs)
    assert not mpc.errors  # nothing forecast yet
    obs, *_ = env.step(action)
    mpc.predict(obs)
    assert len(mpc.errors) == 1 and mpc.errors[0] >= 0


def test_the_search_is_exact_when_no_state_is_dropped() -> None:
    """With a beam wide enough to keep every state, the search's score equals the best of
    every sequence of its decisions, tried one by one."""
    from dora_rl.controllers.hindsight import _Interval, _options

    steps = 3
    env = _env("dora_rl/SmartHome-v1", steps)
    env.reset(seed=4)
    episode = lookahead(env, steps)
    found = search(env.model, episode, beam=100_000)
    assert found.exact
    interval = _Interval(env.model, episode.weights, episode.attainment)

    def best(ctl: object, t: int) -> tuple[float, float]:
        if t == steps:
            return 0.0, 0.0
        world, cands = episode.worlds[t], episode.candidates[t]
        out = []
        for picks in _options(ctl, cands, world):  # type: ignore[arg-type]
            nxt, (missed, energy), _ = interval.run(ctl, picks, cands, world)  # type: ignore[arg-type]
            rest = best(nxt, t + 1)
            out.append((round(missed + rest[0], TIE_DIGITS), energy + rest[1]))
        return min(out)

    brute = best(episode.start, 0)
    assert found.missed == pytest.approx(brute[0], abs=TOLERANCE)
    assert found.energy_j == pytest.approx(brute[1], rel=1e-9)


def test_evaluate_reports_the_reward_and_the_request_figures_of_its_episodes() -> None:
    """The README's loop: its reward is the episode's, and it says how many requests missed
    and how many of those went beyond the jobs' allowances."""
    from dora_rl.controllers import evaluate

    env = gym.make("dora_rl/Tiny-v1", bandwidth="synthetic", episode_steps=30)
    got = evaluate(env, make("dora", env), seeds=[0])
    reward, infos = run_episode_infos(env, make("dora", env), seed=0)
    assert got["reward"] == pytest.approx(reward) and got["steps"] == 30
    assert 0 <= got["request_violation_rate"] < 0.01
    assert got["excess_missed"] == pytest.approx(sum(sum(i["requests_excess"]) for i in infos))
    assert got["jobs_energy_j"] < got["energy_j"]
