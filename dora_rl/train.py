"""Train a PPO controller for a scenario: ``python -m dora_rl.train --scenario smart_home``.

Usage::

    python -m dora_rl.train --scenario smart_home [--agent agents/ppo.yaml] [--timesteps N]
        [--n-envs N] [--seed S] [--out checkpoints/] [--masked] [--run-id ID]

Trains stable-baselines3 PPO (``--masked``: sb3-contrib's MaskablePPO) on the card's training
traces and synthetic fades with a progress bar, validates on the validation traces every
``eval.freq_steps`` steps keeping the best model, then compares the best model with the
``static``, ``throughput`` and ``dora`` controllers on the test traces and prints the table.
Everything lands in a new run folder ``<out>/<scenario>/ppo_<run_id>/`` (see
:mod:`dora_rl.training.run_folder`); TensorBoard: ``tensorboard --logdir <out>``.
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from dora_rl.config import Scenario
from dora_rl.controllers import load, make, run_episode_infos
from dora_rl.env.edge_env import EdgeEnv
from dora_rl.env.metrics import summarise
from dora_rl.errors import run_cli
from dora_rl.scenarios import load as load_scenario
from dora_rl.training.card import load_agent_settings
from dora_rl.training.trainer import train, without_price, write_evaluation

TEST_SEED = 20_000  # test episodes use seeds 20000, 20001, ...
BASELINES = ("static", "throughput", "dora")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(prog="python -m dora_rl.train", description=__doc__.split("\n")[0])
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
    console = Console(stderr=True)
    console.print(f"training {settings.algorithm} on {scenario.name} for "
                  f"{settings.timesteps:,} steps ({settings.n_envs} envs, seed {settings.seed})")
    command = "python -m dora_rl.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    result = train(scenario, settings, Path(args.out), command, args.run_id,
                   progress=not args.no_progress)
    console.print(f"run folder: {result.run_dir} (best validation reward "
                  f"{result.best_validation_reward:.2f})")
    if args.test_episodes:
        rows = compare(result.run_dir, scenario, settings.eval.episode_steps,
                       args.test_episodes, settings.env.k)
        write_evaluation(result.run_dir, rows)
        Console().print(table(rows, scenario.name))
    return 0


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
