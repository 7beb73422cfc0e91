"""A run's timeline as a PNG and as TensorBoard scalars under the ``dora/`` tags.

TensorBoard tags (the benchmark's, :mod:`dora_rl.benchmark.tblog`, plus the runtime's own):

====================================  ==========================================================
tag                                   step and value
====================================  ==========================================================
``dora/interval/energy_j``            per control interval: energy of all devices
``dora/interval/jobs_energy_j``       per interval: the part the job caused
``dora/interval/bandwidth_scale``     per interval: mean link-rate multiplier
``dora/interval/<job>/latency_ms``    per interval with completions: their mean latency
``dora/interval/<job>/latency_ms_p95``  and their p95
``dora/interval/<job>/request_violation_rate``  share of them over their target
``dora/interval/queue_depth_max``     per interval: most stage calls waiting at one device
``dora/interval/in_flight``           requests sent and not completed at the interval's end
``dora/interval/transfer_mb``         activation megabytes moved in the interval
``dora/interval/measured_mbps``       mean goodput of the devices that moved data
``dora/request/<job>/latency_ms``     per request (step = completion order)
``dora/<figure>``                     once: ``latency_ms_p95``, ``request_violation_rate``
                                      (requests sent that missed their target or were
                                      lost), ``qoe_violation_rate`` (intervals with a missed
                                      request), ``energy_j``, ``jobs_energy_j``, ``replans``,
                                      ``migration_mb``, as the benchmark's summaries
====================================  ==========================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def timeline_png(result: dict[str, Any], path: Path) -> None:
    """Latency of every request against the SLO; plan ids with the links' rate (reported and
    measured); power and queue depth per control interval; plan switches and faults."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl = result["timeline"]
    intervals = result.get("intervals") or []
    rows = 3 if intervals else 2
    fig, axes = plt.subplots(rows, 1, figsize=(8, 2.2 + 1.6 * rows), sharex=True,
                             gridspec_kw={"height_ratios": [3, 1, 1][:rows]})
    ax, ax2 = axes[0], axes[1]
    ax.plot(tl["done_s"], tl["latency_ms"], ".", ms=3, label="request latency")
    if result.get("slo_ms"):
        ax.axhline(result["slo_ms"], color="k", ls="--", lw=1, label="SLO")
    for i, t in enumerate(tl["switch_s"]):
        for a in axes:
            a.axvline(t, color="tab:green", lw=1, label="plan switch" if i == 0 and a is ax
                      else None)
    for i, t in enumerate(tl["fault_s"]):
        for a in axes:
            a.axvline(t, color="tab:red", lw=1.5, label="worker killed" if i == 0 and a is ax
                      else None)
    for i, (t, what) in enumerate(zip(tl.get("presence_s", []), tl.get("presence_event", []),
                                      strict=True)):
        for a in axes:
            a.axvline(t, color="tab:cyan", ls=":", lw=1.2,
                      label="device left / back" if i == 0 and a is ax else None)
        ax.annotate(what, (t, 1.0), xycoords=("data", "axes fraction"), fontsize=6,
                    rotation=90, va="top", ha="right", color="tab:cyan")
    ax.set_ylabel("latency (ms, card's world)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(f"{result['scenario']}/{result['job']}: {result['completed']}/{result['sent']}"
                 f" completed, {result['replans']} replans")
    ax2.step(tl["done_s"], tl["plan_id"], where="post", label="plan id")
    ax2.set_ylabel("plan id")
    if tl.get("link_s"):
        ax3 = ax2.twinx()
        ax3.step(tl["link_s"], tl["link_scale_mean"], where="post", color="tab:orange",
                 label="link scale (reported)")
        if intervals and tl.get("interval_s"):
            nominal = result.get("nominal_mbps") or []
            measured = [_measured_scale(tel["measured_mbps"], nominal) for tel in intervals]
            ax3.plot(tl["interval_s"], measured, "x", ms=4, color="tab:brown",
                     label="goodput / nominal (measured)")
        ax3.set_ylabel("link scale", color="tab:orange")
        ax3.legend(loc="lower right", fontsize=7)
    if intervals:
        ax4 = axes[2]
        power = [tel["energy_j"] / tel["duration_s"] if tel["duration_s"] > 0 else float("nan")
                 for tel in intervals]
        ax4.step(tl["interval_s"], power, where="post", color="tab:purple", label="power")
        ax4.set_ylabel("power (W)", color="tab:purple")
        ax5 = ax4.twinx()
        ax5.step(tl["interval_s"], [max(tel["queue_depth_max"], default=0) for tel in intervals],
                 where="post", color="tab:gray", label="max queue depth")
        ax5.set_ylabel("queue depth", color="tab:gray")
        ax5.set_ylim(bottom=0)
        ax5.yaxis.get_major_locator().set_params(integer=True)
    axes[-1].set_xlabel("wall time (s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _measured_scale(measured_mbps: list[float | None], nominal_mbps: list[float]) -> float:
    """Mean of goodput over nominal rate across the devices that moved data (NaN if none)."""
    ratios = [m / n for m, n in zip(measured_mbps, nominal_mbps, strict=False)
              if m is not None and n > 0]
    return sum(ratios) / len(ratios) if ratios else float("nan")


class Board:
    """A TensorBoard run written while serving: one call per interval, one at the end.

    Args:
        directory: The run directory (created).
        job: The job's name (in the per-job tags).
    """

    def __init__(self, directory: Path, job: str) -> None:
        from torch.utils.tensorboard import SummaryWriter

        directory.mkdir(parents=True, exist_ok=True)
        self.writer = SummaryWriter(log_dir=str(directory))
        self.job = job

    def interval(self, tel: dict[str, Any]) -> None:
        """One interval's telemetry (:meth:`IntervalTelemetry.to_dict`)."""
        step, job, add = tel["index"], self.job, self.writer.add_scalar
        add("dora/interval/energy_j", tel["energy_j"], global_step=step)
        add("dora/interval/jobs_energy_j", tel["jobs_energy_j"], global_step=step)
        scales = tel["link_scale"]
        if scales:
            add("dora/interval/bandwidth_scale", sum(scales) / len(scales), global_step=step)
        for key in ("latency_ms", "latency_ms_p95", "request_violation_rate"):
            value = tel["latency_ms_mean" if key == "latency_ms" else key]
            if value is not None:
                add(f"dora/interval/{job}/{key}", value, global_step=step)
        add("dora/interval/queue_depth_max", max(tel["queue_depth_max"], default=0),
            global_step=step)
        add("dora/interval/in_flight", tel["in_flight"], global_step=step)
        add("dora/interval/transfer_mb", tel["transfer_mb"], global_step=step)
        measured = [v for v in tel["measured_mbps"] if v is not None]
        if measured:
            add("dora/interval/measured_mbps", sum(measured) / len(measured), global_step=step)
        self.writer.flush()

    def finish(self, result: dict[str, Any]) -> None:
        """Per-request latencies and the run's figures; closes the run."""
        try:
            add = self.writer.add_scalar
            for step, latency in enumerate(result["timeline"]["latency_ms"]):
                add(f"dora/request/{self.job}/latency_ms", latency, global_step=step)
            p95 = result["latency_ms"]["p95"]
            if p95 is not None:
                add("dora/latency_ms_p95", p95, global_step=0)
            for key in ("request_violation_rate", "qoe_violation_rate"):
                if result.get(key) is not None:
                    add(f"dora/{key}", result[key], global_step=0)
            add("dora/energy_j", result["energy_j"], global_step=0)
            add("dora/jobs_energy_j", result["jobs_energy_j"], global_step=0)
            add("dora/replans", result["replans"], global_step=0)
            add("dora/migration_mb", result["migrated_mb"], global_step=0)
        finally:
            self.writer.close()


def write_tensorboard(result: dict[str, Any], directory: Path) -> None:
    """A whole run's scalars from its result (``--json``), as :class:`Board` writes them live."""
    board = Board(directory, result["job"])
    for tel in result.get("intervals", []):
        board.interval(tel)
    board.finish(result)
