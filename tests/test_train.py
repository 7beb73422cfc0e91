"""Training writes a complete run folder; loading takes weights as data and refuses bad ones."""

from __future__ import annotations

import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import dora_rl  # noqa: F401  (registers the ids)
from dora_rl.controllers import CheckpointError, load
from dora_rl.errors import ConfigError, run_cli
from dora_rl.train import main as train_main
from dora_rl.training.ppo_card import load_agent_settings

RUN_FILES = {"model.zip", "best_model.zip", "config.yaml", "command.txt", "git_commit.txt",
             "validation.json", "evaluation.json", "oracle_validation.json", "tb", "run.json"}


def _train(out: Path, run_id: str, *extra: str) -> Path:
    code = train_main(["--scenario", "tiny", "--out", str(out), "--run-id", run_id,
                       "--no-progress", "--test-episodes", "1", *extra])
    assert code == 0
    return out / "tiny" / f"ppo_{run_id}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two 2,000-step smoke runs on tiny with the same seed."""
    out = tmp_path_factory.mktemp("checkpoints")
    return _train(out, "a"), _train(out, "b")


def test_smoke_run_writes_the_whole_run_folder(runs: tuple[Path, Path]) -> None:
    run = runs[0]
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["env_id"] == "dora_rl/Tiny-v1" and config["env_version"] == 1
    assert config["scenario"]["content"] == Path("envs/tiny.yaml").read_text()
    assert config["agent"]["timesteps"] == 2000
    assert (run / "command.txt").read_text().startswith("python -m dora_rl.train --scenario tiny")
    assert list((run / "tb").rglob("events.out.tfevents.*"))
    rows = json.loads((run / "evaluation.json").read_text())
    assert [r["controller"] for r in rows] == ["ppo", "static", "throughput", "dora"]
    assert all(np.isfinite(r["energy_j"]) and 0 <= r["qoe_violation_rate"] <= 1 for r in rows)
    assert json.loads((run / "validation.json").read_text())[-1]["timesteps"] >= 2000


def test_tensorboard_holds_the_dora_scalars_and_hyperparameters(runs: tuple[Path, Path]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = next((runs[0] / "tb").rglob("events.out.tfevents.*"))
    acc = EventAccumulator(str(events.parent))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"dora/energy_j", "dora/qoe_violation_rate", "dora/latency_ms_p95", "dora/replans",
            "dora/migration_mb", "dora/classify/latency_ms_p95", "eval/mean_reward",
            "eval/regret/mean_reward", "eval/regret/jobs_energy_j",
            "eval/regret/excess_missed"} <= tags
    assert "_hparams_/session_start_info" in acc.summary_metadata


def test_validation_regret_is_the_policy_against_the_oracle_on_the_same_episodes(
        runs: tuple[Path, Path]) -> None:
    oracle = json.loads((runs[0] / "oracle_validation.json").read_text())
    last = json.loads((runs[0] / "validation.json").read_text())[-1]
    assert last["regret/jobs_energy_j"] == pytest.approx(
        last["jobs_energy_j"] - oracle["jobs_energy_j"])
    assert last["regret/mean_reward"] == pytest.approx(oracle["mean_reward"] - last["mean_reward"])
    # the oracle is the best schedule: no policy's reward beats it
    assert last["regret/mean_reward"] >= -1e-9


def test_same_seed_gives_the_same_policy(runs: tuple[Path, Path]) -> None:
    a, b = (load(r, which="final").policy.state_dict() for r in runs)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_save_then_load_gives_identical_predictions(runs: tuple[Path, Path]) -> None:
    from stable_baselines3 import PPO

    run = runs[0]
    sb3 = PPO.load(run / "model.zip", device="cpu")
    mine = load(run, which="final")
    obs = np.random.default_rng(0).uniform(-1, 1, (64, mine.config.observation_size))
    obs = obs.astype(np.float32)
    np.testing.assert_array_equal(sb3.predict(obs, deterministic=True)[0],
                                  mine.predict(obs, deterministic=True)[0])


def _copy(run: Path, tmp_path: Path) -> Path:
    dest = tmp_path / run.name
    shutil.copytree(run, dest)
    return dest


def test_a_truncated_model_is_refused_in_one_line(runs: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run = _copy(runs[0], tmp_path)
    data = (run / "best_model.zip").read_bytes()
    (run / "best_model.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"best_model\.zip: not a readable checkpoint"):
        load(run)


def test_weights_that_are_not_tensors_are_refused(runs: tuple[Path, Path], tmp_path: Path) -> None:
    run = _copy(runs[0], tmp_path)
    with zipfile.ZipFile(run / "best_model.zip", "w") as archive:
        archive.writestr("policy.pth", b"\x80\x04cos\nsystem\nq\x00.")  # a pickle calling code
    with pytest.raises(CheckpointError, match="policy.pth: not readable as weights"):
        load(run)


def test_another_env_version_or_observation_size_is_refused(runs: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    run = _copy(runs[0], tmp_path)
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("dora_rl/Tiny-v1", "dora_rl/Tiny-v9"))
    with pytest.raises(CheckpointError, match="env_id: trained on dora_rl/Tiny-v9"):
        load(run)
    (run / "config.yaml").write_text(re.sub(r"observation_size: \d+", "observation_size: 31",
                                            text))
    with pytest.raises(CheckpointError, match="observation_size: trained on 31 values"):
        load(run)


def test_a_missing_run_folder_fails_with_exit_2_and_no_traceback(
        capsys: pytest.CaptureFixture[str]) -> None:
    from dora_rl.controllers import load as load_controller

    def cli(argv: object) -> int:
        load_controller("no/such/run")
        return 0

    assert run_cli(cli) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no/such/run: no such run folder" in err


def test_agent_card_rejects_unknown_keys_and_bad_values(tmp_path: Path) -> None:
    card = tmp_path / "ppo.yaml"
    card.write_text("default: {ppo: {learning_rate: 1e-3}}\nscenarios:\n  tiny: {ppo: {lr: 1}}\n")
    with pytest.raises(ConfigError, match=r"ppo\.yaml: scenarios\.tiny\.ppo\.lr: unknown key"):
        load_agent_settings("tiny", card)
    card.write_text("default: {ppo: {gamma: 1.5}}\n")
    with pytest.raises(ConfigError, match=r"default\.ppo\.gamma: must be <= 1, got 1\.5"):
        load_agent_settings("tiny", card)
    card.write_text("default: {ppo: {n_steps: 64, batch_size: 512}, n_envs: 1}\n")
    with pytest.raises(ConfigError, match=r"ppo\.batch_size: must be at most"):
        load_agent_settings("tiny", card)


def test_agent_card_merges_the_scenario_entry_over_the_default() -> None:
    tiny = load_agent_settings("tiny")
    home = load_agent_settings("smart_home")
    assert tiny.timesteps == 2000 and tiny.ppo.n_steps == 256
    assert tiny.ppo.gamma == home.ppo.gamma  # not overridden: the default's
    assert load_agent_settings("tiny", overrides={"seed": 7}).seed == 7


def test_train_cli_reports_a_bad_card_in_one_line(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    card = tmp_path / "bad.yaml"
    card.write_text("default: {timesteps: -5}\n")
    code = run_cli(train_main, ["--scenario", "tiny", "--agent", str(card), "--out",
                                str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "bad.yaml: default.timesteps: must be > 0, got -5" in err
    assert "Traceback" not in err and not (tmp_path / "tiny").exists()


def test_masked_ppo_run_loads_as_a_maskable_policy(tmp_path: Path) -> None:
    from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy

    run = _train(tmp_path, "masked", "--masked")
    controller = load(run)
    assert isinstance(controller.policy, MaskableActorCriticPolicy)
    env = controller.make_env(episode_steps=5)
    obs, _ = env.reset(seed=0)
    action, _ = controller.predict(obs)
    assert env.action_space.contains(action)
