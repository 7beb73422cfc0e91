"""A run's timeline as a PNG and as TensorBoard scalars under the ``dora/`` tags."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def timeline_png(result: dict[str, Any], path: Path) -> None:
    """Latency of every request against the SLO, plan ids, plan switches and faults."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = result["timeline"]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 5), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1]})
    ax.plot(tl["done_s"], tl["latency_ms"], ".", ms=3, label="request latency")
    if result.get("slo_ms"):
        ax.axhline(result["slo_ms"], color="k", ls="--", lw=1, label="SLO")
    for i, t in enumerate(tl["switch_s"]):
        for a in (ax, ax2):
            a.axvline(t, color="tab:green", lw=1, label="plan switch" if i == 0 and a is ax
                      else None)
    for i, t in enumerate(tl["fault_s"]):
        for a in (ax, ax2):
            a.axvline(t, color="tab:red", lw=1.5, label="worker killed" if i == 0 and a is ax
                      else None)
    ax.set_ylabel("latency (ms, card's world)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"{result['scenario']}/{result['job']}: {result['completed']}/{result['sent']}"
                 f" completed, {result['replans']} replans")
    ax2.step(tl["done_s"], tl["plan_id"], where="post", label="plan id")
    ax2.set_ylabel("plan id")
    if tl.get("link_s"):
        ax3 = ax2.twinx()
        ax3.step(tl["link_s"], tl["link_scale_mean"], where="post", color="tab:orange",
                 label="mean link scale")
        ax3.set_ylabel("link scale", color="tab:orange")
    ax2.set_xlabel("wall time (s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_tensorboard(result: dict[str, Any], directory: Path) -> None:
    """``dora/interval/<job>/latency_ms`` per request (step = request) and the run's
    ``dora/latency_ms_p95``, ``dora/qoe_violation_rate``, ``dora/energy_j``, ``dora/replans``."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(directory))
    try:
        job = result["job"]
        for step, latency in enumerate(result["timeline"]["latency_ms"]):
            writer.add_scalar(f"dora/interval/{job}/latency_ms", latency, global_step=step)
        p95 = result["latency_ms"]["p95"]
        if p95 is not None:
            writer.add_scalar("dora/latency_ms_p95", p95, global_step=0)
        if result["qoe_attainment"] is not None:
            writer.add_scalar("dora/qoe_violation_rate", 1 - result["qoe_attainment"], 0)
        writer.add_scalar("dora/energy_j", result["energy_j"], global_step=0)
        writer.add_scalar("dora/replans", result["replans"], global_step=0)
        writer.add_scalar("dora/migration_mb", result["migrated_mb"], global_step=0)
    finally:
        writer.close()
