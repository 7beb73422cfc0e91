"""Train a PPO controller for a scenario: ``python -m dora_rl.train --scenario smart_home``.

Usage::

    python -m dora_rl.train --scenario smart_home [--agent agents/ppo.yaml] [--timesteps N]
        [--n-envs N] [--seed S] [--out checkpoints/] [--masked] [--run-id ID]

Trains stable-baselines3 PPO (``--masked``: sb3-contrib's MaskablePPO) on the card's training
traces and synthetic fades with a progress bar, validates on the validation traces every
``eval.freq_steps`` steps keeping the best model, then compares the best model with the
``static``, ``throughput`` and ``dora`` controllers on the test traces and prints the table.
Everything lands in a new run folder ``<out>/<scenario>/ppo_<run_id>/`` (see
:mod:`dora_rl.training.run_folder`); TensorBoard: ``tensorboard --logdir <out>``. A card with
a job that has no plan at all fails in one line before any training. Ctrl-C (SIGINT) or SIGTERM
stops training with one line (``interrupted by SIGINT at step N; partial run folder X is marked
incomplete``) and exit status 130 (143 for SIGTERM); the loader refuses such a folder.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import shlex
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from rich.table import Table

from dora_rl.config import Scenario
from dora_rl.config.names import display_text
from dora_rl.controllers import load, make, run_episode_infos
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.env.summary import summarise
from dora_rl.errors import ArgParser, run_cli
from dora_rl.scenarios import load as load_scenario
from dora_rl.training.ppo_card import load_agent_settings
from dora_rl.training.run_folder import safe_component
from dora_rl.training.trainer import (
    Terminated,
    TrainingInterrupted,
    preflight,
    train,
    without_price,
    write_evaluation,
)

TEST_SEED = 20_000  # test episodes use seeds 20000, 20001, ...
BASELINES = ("static", "throughput", "dora")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line arguments."""
    p = ArgParser(prog="python -m dora_rl.train", description=__doc__.split("\n")[0])
    p.add_argument("--scenario", required=True, help="card name in envs/ or a path")
    p.add_argument("--agent", default=None, help="controller card (default agents/ppo.yaml)")
    p.add_argument("--timesteps", type=int, help="environment steps to train for")
    p.add_argument("--n-envs", type=int, help="training environments")
    p.add_argument("--seed", type=int, help="random seed (policy, envs, episodes)")
    p.add_argument("--out", default="checkpoints", help="folder of run folders")
    p.add_argument("--run-id", default=None, help="run folder suffix (default: UTC time)")
    p.add_argument("--masked", action="store_true", help="MaskablePPO (sb3-contrib)")
    p.add_argument("--test-episodes", type=int, default=3, help="test-trace episodes at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Train, compare on the test traces, print the table; returns the exit code."""
    args = parse(argv)
    if args.run_id is not None:
        safe_component(args.run_id, "--run-id")
    scenario = load_scenario(args.scenario)
    overrides: dict[str, Any] = {}
    for key, value in (("timesteps", args.timesteps), ("n_envs", args.n_envs),
                       ("seed", args.seed)):
        if value is not None:
            overrides[key] = value
    if args.masked:
        overrides["algorithm"] = "maskable_ppo"
    settings = load_agent_settings(scenario.name, args.agent, overrides)
    if args.test_episodes < 0:
        from dora_rl.errors import DoraError

        raise DoraError(f"--test-episodes: must be >= 0, got {args.test_episodes}")
    val_env = preflight(scenario, settings)  # a card no plan fits stops here, in one line
    console = Console(stderr=True)
    console.print(f"training {settings.algorithm} on {scenario.name} for "
                  f"{settings.timesteps:,} steps ({settings.n_envs} envs, seed {settings.seed})")
    command = "python -m dora_rl.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    run_dir: Path | None = None
    try:
        with _sigterm_stops():
            result = train(scenario, settings, Path(args.out), command, args.run_id,
                           progress=not args.no_progress, val_env=val_env)
            run_dir = result.run_dir
            console.print(f"run folder: {display_text(str(result.run_dir))} (best validation "
                          f"reward {result.best_validation_reward:.2f})")
            if args.test_episodes:
                rows = compare(result.run_dir, scenario, settings.eval.episode_steps,
                               args.test_episodes, settings.env.k)
                write_evaluation(result.run_dir, rows)
                Console().print(table(rows, scenario.name))
    except TrainingInterrupted as stop:
        print(stop, file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt as stop:
        code = 143 if isinstance(stop, Terminated) else 130
        where = ("before training; nothing written" if run_dir is None else
                 f"during the test comparison; run folder {run_dir} is complete, without "
                 "evaluation.json")
        print(f"interrupted {where}", file=sys.stderr)
        return code
    return 0


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) while training, so it
    stops cleanly like Ctrl-C; the previous handler is restored after. A no-op off the main
    thread (tests may call ``main`` from one)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def compare(run_dir: Path, scenario: Scenario, episode_steps: int, episodes: int,
            k: int) -> list[dict[str, Any]]:
    """The run's best model and the baselines on the same test-trace episodes."""
    jobs = [job.name for job in scenario.jobs]
    seeds = [TEST_SEED + i for i in range(episodes)]
    learned = load(run_dir)
    kwargs = without_price(learned.env_kwargs)  # judged by the objective, as validation is
    rows = []
    for name in ("ppo", *BASELINES):
        env = EdgeEnv(scenario=scenario, bandwidth="trace", split="test",
                      **{**kwargs, "episode_steps": episode_steps, "k": k})
        controller = learned if name == "ppo" else make(name, env)
        rewards, infos = [], []
        for seed in seeds:
            reward, episode = run_episode_infos(env, controller, seed)
            rewards.append(reward)
            infos += episode
        rows.append({"scenario": scenario.name, "controller": name, "split": "test",
                     "episodes": episodes, "episode_reward": sum(rewards) / len(rewards),
                     **summarise(infos, jobs, episode_steps)})
    return rows


def table(rows: list[dict[str, Any]], scenario: str) -> Table:
    """The comparison as a rich table."""
    t = Table(title=f"{scenario}: test traces, mean per episode")
    for col in ("controller", "missed requests", "jobs' energy J/interval", "energy J/interval",
                "p95 latency ms", "replans", "episode reward"):
        t.add_column(col, justify="left" if col == "controller" else "right")
    for r in rows:
        p95 = r["latency_ms_p95"]
        t.add_row(r["controller"], f"{100 * r['request_violation_rate']:.3f} %",
                  f"{r['jobs_energy_j']:.2f}", f"{r['energy_j']:.1f}",
                  f"{p95:.0f}" if math.isfinite(p95) else "-", f"{r['replans']:.1f}",
                  f"{r['episode_reward']:.3f}")
    return t


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
