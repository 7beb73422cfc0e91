"""The baseline controllers' card is validated and its settings reach the controllers."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest

import dora_rl  # noqa: F401  (registers the ids)
from dora_rl.controllers import make
from dora_rl.controllers.baseline_card import DoraSettings, load_baseline_settings
from dora_rl.controllers.baselines import Dora
from dora_rl.errors import ConfigError


def test_shipped_card_loads_with_the_documented_defaults() -> None:
    settings = load_baseline_settings()
    assert settings.dora == DoraSettings()
    assert settings.greedy.max_combinations == 4096


def test_unknown_keys_and_bad_values_name_the_file_and_field(tmp_path: Path) -> None:
    card = tmp_path / "baselines.yaml"
    card.write_text("dora: {margin: 0.2}\n")
    with pytest.raises(ConfigError, match=r"baselines\.yaml: dora\.margin: unknown key"):
        load_baseline_settings(card)
    card.write_text("dora: {qoe_margin: -0.1}\n")
    with pytest.raises(ConfigError, match=r"dora\.qoe_margin: must be >= 0, got -0\.1"):
        load_baseline_settings(card)


def test_hysteresis_from_the_settings_decides_whether_dora_switches() -> None:
    """Two candidates meet QoE; the other one needs 5 % less power than the serving one: dora
    switches without hysteresis and keeps its plan with a large one."""
    env = gym.make("dora_rl/SmartHome-v1", split="test")
    obs = env.reset(seed=0)[0]
    picks = {}
    for hysteresis in (0.0, 100.0):
        dora = Dora(env, DoraSettings(hysteresis=hysteresis))
        lay = dora.spec.layout
        o = obs.copy()
        jobs = lay.job(o)
        jobs[0, 0], jobs[0, 5] = 1.0, 0.0  # active, no switch under way
        cands = lay.candidates(o)
        cands[0, :, :] = [0.0, -1.0, 1.0, 1.0, 0.0]
        cands[0, 0] = [1.0, 0.5, 0.20, 0.0, 1.0]  # serving
        cands[0, 1] = [1.0, 0.5, 0.19, 0.0, 0.0]
        picks[hysteresis] = int(dora.predict(o)[0][0]) // 4
    assert picks == {0.0: 2, 100.0: 0}
    assert make("dora", gym.make("dora_rl/Tiny-v1")).margin == 0.1


def test_dora_backs_off_a_slower_mode_that_failed_and_waits_longer_each_time() -> None:
    """A slower mode that misses at once is raised back; dora then waits 2, then 4 calm
    intervals before trying it again, and forgets the back-off at an episode's start."""
    env = gym.make("dora_rl/Tiny-v1")
    obs = env.reset(seed=0)[0]
    dora = Dora(env, DoraSettings(backoff_intervals=2, backoff_max_intervals=8))
    lay = dora.spec.layout
    fast = 2

    def observe(mode: int, missed: float) -> int:
        o = obs.copy()
        jobs, devices = lay.job(o), lay.device(o)
        jobs[0, 0], jobs[0, 2], jobs[0, 3], jobs[0, 5] = 1.0, 0.9, missed, 0.0
        devices[fast, 3], devices[fast, 6], devices[fast, 7] = float(mode), 1.0, 0.0
        action = dora.predict(o)[0]
        return int(action[dora.n_jobs + fast])

    modes, mode = [], 0
    for missed in [0.0, 0.5, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0]:
        mode = observe(mode, missed)
        modes.append(mode)
    assert modes == [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1]
    dora.predict(obs, episode_start=[True])
    assert dora.backoff == [2, 2, 2] and dora.hold == [0, 0, 0]
