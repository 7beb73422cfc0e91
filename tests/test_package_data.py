"""A built wheel holds every file the package reads at run time, and finds it from any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dora_rl import paths
from dora_rl.benchmark.controllers import parse_controllers
from dora_rl.scenarios import load
from dora_rl.training import run_folder
from dora_rl.training.ppo_card import load_agent_settings
from dora_rl.training.run_folder import scenario_record

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ("envs", "agents", "checkpoints")


def _source_files(*folders: str) -> list[str]:
    """Files under ``folders`` (relative to the repository), without byte code; under
    ``checkpoints/`` only the shipped ``<card>/ppo_v<N>`` run folders."""
    out = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*")):
            rel = path.relative_to(ROOT)
            if path.is_dir() or "__pycache__" in rel.parts or path.suffix == ".pyc":
                continue
            if rel.parts[0] == "checkpoints" and not (len(rel.parts) > 3
                                                      and rel.parts[2].startswith("ppo_v")):
                continue
            if rel.parts[:2] == ("dora_rl", "shipped"):
                continue  # links to the folders listed themselves
            out.append(rel.as_posix())
    return out


def _needed() -> set[str]:
    """Wheel paths of everything read at run time: the code, the catalog and built-in
    profiles, and every shipped card, trace, controller card and run folder (not the run
    folders' TensorBoard logs, nor placeholder dotfiles)."""
    needed = set()
    for name in _source_files("dora_rl", *SHIPPED):
        parts = Path(name).parts
        if parts[-1].startswith(".") or "tb" in parts[:-1]:
            continue
        needed.add(f"dora_rl/shipped/{name}" if parts[0] in SHIPPED else name)
    return needed


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """A wheel built from a copy of the source tree."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "dora_rl", src / "dora_rl", symlinks=True, ignore=skip)
    for name in SHIPPED:
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "--wheel-dir", str(tmp / "dist"), str(src)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    (built,) = (tmp / "dist").glob("dora_rl-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_holds_every_file_read_at_run_time(wheel: zipfile.ZipFile) -> None:
    missing = sorted(_needed() - set(wheel.namelist()))
    assert not missing, f"not in the wheel (add them to package-data): {missing[:10]}"


def test_the_wheel_leaves_out_training_logs_and_declares_the_command(
        wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert not [n for n in names if "/tb/" in n or "events.out.tfevents" in n]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "dora-rl = dora_rl.cli:main" in wheel.read(entry_points).decode()


def test_the_shipped_folders_are_the_repositorys_folders() -> None:
    for name in SHIPPED:
        assert paths.shipped(name).resolve() == (ROOT / name).resolve()


def test_shipped_paths_are_found_from_any_folder(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load("envs/tiny.yaml").name == "tiny"
    assert load("tiny").name == "tiny"
    assert load_agent_settings("tiny", "agents/ppo.yaml").n_envs >= 1
    (spec,) = parse_controllers("ppo=checkpoints/smart_home/ppo_v1")
    assert spec.run_dir is not None and (spec.run_dir / "config.yaml").is_file()


def test_a_file_in_the_working_folder_wins_over_the_shipped_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "envs").mkdir()
    text = (paths.shipped("envs") / "tiny.yaml").read_text()
    (tmp_path / "envs" / "tiny.yaml").write_text(text.replace("name: tiny", "name: my_tiny", 1))
    assert load("envs/tiny.yaml").name == "my_tiny"
    assert load("tiny").name == "tiny"  # a name is always the shipped card


def test_a_run_records_a_shipped_card_by_its_shipped_path() -> None:
    record = scenario_record(load("tiny"))
    assert (record["path"], record["base_dir"]) == ("envs/tiny.yaml", "envs")
    assert paths.from_portable(record["base_dir"]) == paths.shipped("envs")


def test_an_installed_package_records_no_foreign_git_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_folder, "REPO_DIR", tmp_path / "site-packages")
    assert run_folder.git_commit() == "unknown"
