"""TensorBoard runs of a benchmark: one per (scenario, controller, seed), so policies overlay.

Run directory: ``<out>/runs/bench/<scenario>/<controller>_seed<seed>/``. Tags:

==================================  ==============================================================
tag                                 step and value
==================================  ==============================================================
``dora/<figure>``                   per episode (step = episode index): ``energy_j``,
                                    ``qoe_violation_rate``, ``latency_ms_p95``, ``replans``,
                                    ``migration_mb`` (:func:`dora_rl.env.summary.summarise` of the
                                    episode) and ``episode_reward``
``dora/<job>/<figure>``             per episode: ``latency_ms_p95``, ``qoe_violation_rate``
``dora/interval/energy_j``          per interval of the seed's first episode (step = interval)
``dora/interval/<job>/latency_ms``  per interval while the job is active and has a plan
``dora/interval/bandwidth_scale``   per interval: mean link-rate multiplier of present devices
==================================  ==============================================================

A re-run replaces the events of the same run directory. View with
``tensorboard --logdir experiments/runs``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from dora_rl.benchmark.episodes import ControllerRun, SeedRun
from dora_rl.env.summary import SUMMARY_KEYS, summarise

EVENTS_GLOB = "events.out.tfevents.*"


def run_dir(out: Path, scenario: str, label: str, seed: int) -> Path:
    """The TensorBoard run directory of one (scenario, controller, seed).

    Example:
        >>> run_dir(Path("experiments"), "tiny", "dora", 3).as_posix()
        'experiments/runs/bench/tiny/dora_seed3'
    """
    return out / "runs" / "bench" / scenario / f"{label}_seed{seed}"


def write_seed(directory: Path, unit: SeedRun, job_names: Sequence[str]) -> None:
    """Write one seed's per-episode summaries and first-episode series."""
    from torch.utils.tensorboard import SummaryWriter

    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob(EVENTS_GLOB):
        old.unlink()
    writer = SummaryWriter(log_dir=str(directory))
    try:
        for e, (infos, reward) in enumerate(zip(unit.infos, unit.rewards, strict=True)):
            summary = summarise(infos, job_names, len(infos))
            scalars = {f"dora/{k}": summary[k] for k in SUMMARY_KEYS}
            scalars["dora/episode_reward"] = reward
            for name in job_names:
                for k in ("latency_ms_p95", "qoe_violation_rate"):
                    scalars[f"dora/{name}/{k}"] = summary[f"{name}/{k}"]
            for tag, value in scalars.items():
                if math.isfinite(value):
                    writer.add_scalar(tag, value, global_step=e)
        trace = unit.trace
        for t, energy in enumerate(trace.energy_j):
            writer.add_scalar("dora/interval/energy_j", energy, global_step=t)
            scale = trace.bandwidth_scale[t]
            if math.isfinite(scale):
                writer.add_scalar("dora/interval/bandwidth_scale", scale, global_step=t)
            for name, latency in zip(job_names, trace.latency_ms[t], strict=True):
                if math.isfinite(latency):
                    writer.add_scalar(f"dora/interval/{name}/latency_ms", latency, global_step=t)
    finally:
        writer.close()


def write_runs(out: Path, scenario: str, runs: Sequence[ControllerRun],
               job_names: Sequence[str]) -> list[Path]:
    """Write every (controller, seed) run; returns their directories."""
    dirs = []
    for run in runs:
        for unit in run.seeds:
            directory = run_dir(out, scenario, run.label, unit.seed)
            write_seed(directory, unit, job_names)
            dirs.append(directory)
    return dirs


__all__ = ["run_dir", "write_runs", "write_seed"]
