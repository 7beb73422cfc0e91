"""The baseline controllers' card is validated and its settings reach the controllers."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest

import dora_rl  # noqa: F401  (registers the ids)
from dora_rl.controllers import evaluate, make
from dora_rl.controllers.baselines import Dora
from dora_rl.controllers.card import DoraSettings, load_baseline_settings
from dora_rl.errors import ConfigError


def test_shipped_card_loads_with_the_documented_defaults() -> None:
    settings = load_baseline_settings()
    assert settings.dora == DoraSettings()
    assert settings.oracle.max_combinations == 4096


def test_unknown_keys_and_bad_values_name_the_file_and_field(tmp_path: Path) -> None:
    card = tmp_path / "baselines.yaml"
    card.write_text("dora: {margin: 0.2}\n")
    with pytest.raises(ConfigError, match=r"baselines\.yaml: dora\.margin: unknown key"):
        load_baseline_settings(card)
    card.write_text("dora: {qoe_margin: -0.1}\n")
    with pytest.raises(ConfigError, match=r"dora\.qoe_margin: must be >= 0, got -0\.1"):
        load_baseline_settings(card)


def test_hysteresis_from_the_settings_changes_how_often_dora_switches() -> None:
    replans = {}
    # on edge_cluster dora trades plans on energy alone (in smart_home its switches are forced
    # by devices leaving or QoE, where hysteresis does not apply)
    for hysteresis in (0.0, 100.0):
        env = gym.make("dora_rl/EdgeCluster-v0", split="test", episode_steps=100)
        dora = Dora(env, DoraSettings(hysteresis=hysteresis))
        replans[hysteresis] = evaluate(env, dora, [0, 1])["replans"]
    assert replans[100.0] < replans[0.0]
    assert make("dora", gym.make("dora_rl/Tiny-v0")).margin == 0.1
