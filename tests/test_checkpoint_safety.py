"""Run folders the loader can trust: complete, bounded, finite; names that stay in place.

Issue 17 items 4 and 8: a small zip that unpacks to gigabytes, NaN weights, a run folder left
by an interrupted training, a card named ``..``, and Ctrl-C during ``train``.
"""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dora_rl  # noqa: F401  (registers the ids)
from dora_rl.bench import main as bench_main
from dora_rl.controllers import CheckpointError, load
from dora_rl.controllers.checkpoint import MAX_CHECKPOINT_BYTES, require_complete
from dora_rl.errors import DoraError, run_cli
from dora_rl.train import main as train_main
from dora_rl.training import trainer
from dora_rl.training.run_folder import new_run_dir

AGENT = """default:
  timesteps: 64
  n_envs: 1
  env: {episode_steps: 16}
  ppo: {n_steps: 32, batch_size: 32, n_epochs: 1}
  eval: {freq_steps: 32, episodes: 1, episode_steps: 5, oracle_regret: false}
"""
REPO = Path(__file__).resolve().parent.parent


def _train(tmp: Path, run_id: str, timesteps: int = 64) -> tuple[int, Path]:
    card = tmp / "agent.yaml"
    card.write_text(AGENT.replace("timesteps: 64", f"timesteps: {timesteps}"))
    code = train_main(["--scenario", "tiny", "--agent", str(card), "--out", str(tmp / "ck"),
                       "--run-id", run_id, "--no-progress", "--test-episodes", "0"])
    return code, tmp / "ck" / "tiny" / f"ppo_{run_id}"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete 64-step run folder of tiny."""
    code, path = _train(tmp_path_factory.mktemp("runs"), "ok")
    assert code == 0
    return path


def _copy(run: Path, tmp: Path) -> Path:
    dest = tmp / run.name
    shutil.copytree(run, dest)
    return dest


def _one_line(err: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_finished_run_is_marked_complete_and_loads(run: Path) -> None:
    assert json.loads((run / "run.json").read_text())["complete"] is True
    assert load(run).policy is not None


def test_shipped_run_folders_count_as_complete() -> None:
    shipped = sorted((REPO / "checkpoints").glob("*/*/config.yaml"))
    assert shipped
    for config in shipped:
        require_complete(config.parent)  # written before run.json: model.zip qualifies


def _interrupt_after_first_best(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stop(trainer.ValidationCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps >= 40 and self.best_path.exists():
                raise KeyboardInterrupt
            return super()._on_step()

    monkeypatch.setattr(trainer, "ValidationCallback", Stop)


def test_ctrl_c_in_train_is_one_line_exit_130_and_an_incomplete_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _interrupt_after_first_best(monkeypatch)
    code, path = _train(tmp_path, "cut", timesteps=10_000)
    err = capsys.readouterr().err.splitlines()
    assert code == 130
    assert err[-1] == f"interrupted by SIGINT at step 40; partial run folder {path} is marked " \
                      "incomplete"
    assert not any("Traceback" in line for line in err)
    record = json.loads((path / "run.json").read_text())
    assert record["complete"] is False and record["interrupted_at_step"] == 40
    assert (path / "best_model.zip").exists() and not (path / "model.zip").exists()
    with pytest.raises(CheckpointError, match=f"run folder {path} is incomplete: training was "
                                              "interrupted at step 40"):
        load(path)
    code = run_cli(bench_main, ["--scenario", "tiny", "--controllers", f"ppo={path},static",
                                "--episodes", "1", "--seeds", "0", "--episode-steps", "3",
                                "--out", str(tmp_path / "bench"), "--no-plots"])
    err_bench = capsys.readouterr().err
    assert code == 2 and "is incomplete: training was interrupted" in err_bench
    _one_line(err_bench)


def test_an_old_style_folder_without_model_zip_is_refused(run: Path, tmp_path: Path) -> None:
    old = _copy(run, tmp_path)
    (old / "run.json").unlink()
    load(old)  # model.zip present: complete
    (old / "model.zip").unlink()
    with pytest.raises(CheckpointError, match="is incomplete: training was interrupted"):
        load(old)


def _rezip(path: Path, policy: bytes, compression: int = zipfile.ZIP_DEFLATED) -> None:
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("policy.pth", policy)


def test_a_zip_bomb_is_refused_before_it_is_unpacked(run: Path, tmp_path: Path) -> None:
    bomb = _copy(run, tmp_path)
    with zipfile.ZipFile(bomb / "best_model.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("policy.pth", "w", force_zip64=True) as member:
            chunk = bytes(2**24)
            for _ in range(MAX_CHECKPOINT_BYTES // len(chunk) + 1):
                member.write(chunk)
    assert (bomb / "best_model.zip").stat().st_size < 2**20
    with pytest.raises(CheckpointError, match=r"best_model\.zip: policy\.pth: unpacks to 272 "
                                              r"MiB, above the limit of 256 MiB"):
        load(bomb)


def test_a_highly_compressed_policy_is_refused(run: Path, tmp_path: Path) -> None:
    squashed = _copy(run, tmp_path)
    _rezip(squashed / "best_model.zip", bytes(8 * 2**20))
    with pytest.raises(CheckpointError, match=r"policy\.pth: compressed \d+ to 1, above the "
                                              "limit of 100 to 1"):
        load(squashed)


def test_nan_weights_are_refused_naming_the_tensor(run: Path, tmp_path: Path) -> None:
    bad = _copy(run, tmp_path)
    with zipfile.ZipFile(bad / "best_model.zip") as archive:
        state = torch.load(io.BytesIO(archive.read("policy.pth")), weights_only=True)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = state[name].clone().fill_(float("nan"))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _rezip(bad / "best_model.zip", buffer.getvalue())
    with pytest.raises(CheckpointError, match=rf"best_model\.zip: policy\.pth: tensor "
                                              rf"'{name}' holds NaN or infinite values"):
        load(bad)


@pytest.mark.parametrize(("scenario", "run_id"), [("..", None), (".", None), ("a/b", None),
                                                  ("tiny", ".."), ("tiny", "../up")])
def test_run_folder_names_stay_inside_the_out_folder(tmp_path: Path, scenario: str,
                                                     run_id: str | None) -> None:
    out = tmp_path / "out"
    with pytest.raises(DoraError, match="must be a safe name"):
        new_run_dir(out, scenario, run_id)
    assert not any(tmp_path.rglob("ppo_*"))


def test_a_card_named_dot_dot_trains_nowhere(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    card = tmp_path / "cards" / "up.yaml"
    card.parent.mkdir()
    text = (REPO / "envs" / "tiny.yaml").read_text().replace("name: tiny\n", 'name: ".."\n')
    card.write_text(text)
    (tmp_path / "agent.yaml").write_text(AGENT)
    out = tmp_path / "a" / "ck"
    code = run_cli(train_main, ["--scenario", str(card), "--agent", str(tmp_path / "agent.yaml"),
                                "--out", str(out), "--no-progress", "--test-episodes", "0"])
    err = capsys.readouterr().err
    assert code == 2
    _one_line(err)
    assert not list((tmp_path / "a").rglob("ppo_*"))


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.sampled_from(["best_model.zip", "model.zip", "run.json", "config.yaml"]),
       cut=st.floats(0.0, 1.0), noise=st.binary(min_size=1, max_size=64),
       at=st.floats(0.0, 1.0))
def test_mutated_run_folders_load_or_give_one_clear_error(
        run: Path, tmp_path_factory: pytest.TempPathFactory, target: str, cut: float,
        noise: bytes, at: float) -> None:
    """A run folder with one file truncated and overwritten in part either loads or is
    refused with a :class:`DoraError`, never another exception; what loads acts finitely."""
    folder = _copy(run, tmp_path_factory.mktemp("fuzz"))
    path = folder / target
    data = path.read_bytes()
    data = data[: max(1, int(len(data) * cut))] if cut < 1.0 else data
    spot = int(len(data) * at)
    path.write_bytes(data[:spot] + noise + data[spot + len(noise):])
    try:
        controller = load(folder)
    except DoraError as error:
        assert "\n" not in str(error)
        return
    obs = np.zeros(controller.policy.observation_space.shape, dtype=np.float32)
    action, _ = controller.predict(obs, deterministic=True)
    assert np.all(np.isfinite(np.asarray(action, dtype=float)))
