"""``dora-rl <command>`` runs ``python -m dora_rl.<command>``; ``dora-rl --help`` lists them."""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

import pytest

from dora_rl import cli

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = ["inspect", "profile", "plan", "train", "bench", "sim", "serve", "worker"]


def test_help_lists_every_command_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    listed = [line.split()[0] for line in out.splitlines() if line.startswith("  ")]
    assert listed == EXPECTED
    assert list(cli.COMMANDS) == EXPECTED


def test_every_command_is_a_runnable_module() -> None:
    for name in cli.COMMANDS:
        spec = importlib.util.find_spec(cli.MODULES.get(name, f"dora_rl.{name}"))
        assert spec is not None and spec.origin is not None, name
        source = spec.origin if not spec.submodule_search_locations else \
            str(Path(spec.origin).with_name("__main__.py"))
        assert 'if __name__ == "__main__":' in Path(source).read_text(), name


@pytest.mark.parametrize("argv", [["plot"], ["--scenario", "tiny"]])
def test_an_unknown_command_is_one_line_and_exit_2(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: dora-rl: unknown command {argv[0]!r} (commands: inspect,")


def test_no_command_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_command_runs_with_the_remaining_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["inspect", "tiny"]) == 0
    assert "tiny" in capsys.readouterr().out


def test_a_commands_error_keeps_its_one_line_and_exit_2(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "--scenario", "no_such_card"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no_such_card" in err and len(err.splitlines()) == 1


def test_a_commands_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train", "--help"]) == 0
    assert "--scenario" in capsys.readouterr().out


def test_pyproject_declares_the_console_script() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["dora-rl"] == "dora_rl.cli:main"
