"""What the cost model returns: per-plan, per-stage and per-device figures of a batch of plans."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dora_rl.costmodel.formulas import relative_slack
from dora_rl.costmodel.tables import JobTables

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Metrics:
    """Figures of N plans of one job; per-plan arrays are [N], per-stage [N, S], per-device [N, D].

    Attributes:
        latency_s: Request latency (inference), request service time (LLM: TTFT plus the
            remaining tokens) or iteration time (training).
        period_s: Pipeline bottleneck: time between successive units in steady state.
        interval_s: Time one unit of work accounts for (energy is measured over it).
        throughput_per_s: Requests/s (inference), sequences/s (LLM) or samples/s (training).
        ttft_s, tpot_s: LLM time to first token and per output token (NaN otherwise).
        iteration_s: Training iteration time (NaN otherwise).
        stage_s: Compute time of each stage for one micro-batch (forward+backward in training).
        transfer_s: Time of each stage's outgoing transfer for one micro-batch.
        allreduce_s: Gradient all-reduce time of each stage.
        busy_s, tx_s, rx_s, idle_s: Per-device time in each power state over the interval.
        energy_per_device_j: Per-device energy over the interval (unused devices idle or off).
        energy_j: Energy per unit of work.
        power_w: Average power over the interval.
        memory_bytes: Per-device memory need; memory_ok: every used device fits.
        usable_ok: Every used device is present and has battery left.
        qoe_slack: Target name -> relative slack (positive = met).
        qoe_met: Every QoE target met; feasible: memory, devices and QoE all hold.
        used: [N, D] device is in the plan.
    """

    latency_s: FloatArray
    period_s: FloatArray
    interval_s: FloatArray
    throughput_per_s: FloatArray
    ttft_s: FloatArray
    tpot_s: FloatArray
    iteration_s: FloatArray
    stage_s: FloatArray
    transfer_s: FloatArray
    allreduce_s: FloatArray
    busy_s: FloatArray
    tx_s: FloatArray
    rx_s: FloatArray
    idle_s: FloatArray
    energy_per_device_j: FloatArray
    energy_j: FloatArray
    power_w: FloatArray
    memory_bytes: FloatArray
    memory_ok: NDArray[np.bool_]
    usable_ok: NDArray[np.bool_]
    qoe_slack: dict[str, FloatArray]
    qoe_met: NDArray[np.bool_]
    feasible: NDArray[np.bool_]
    used: NDArray[np.bool_]

    @classmethod
    def build(cls, t: JobTables, used: NDArray[np.bool_], *, latency_s: FloatArray,
              period_s: FloatArray, interval_s: FloatArray, throughput_per_s: FloatArray,
              stage_s: FloatArray, transfer_s: FloatArray, allreduce_s: FloatArray,
              busy_s: FloatArray, tx_s: FloatArray, rx_s: FloatArray,
              energy_per_device_j: FloatArray, energy_j: FloatArray, memory_bytes: FloatArray,
              slack: dict[str, FloatArray], ttft_s: FloatArray | None = None,
              tpot_s: FloatArray | None = None,
              iteration_s: FloatArray | None = None) -> Metrics:
        """Derive idle time, power, memory and QoE verdicts from the raw figures."""
        nan = np.full_like(latency_s, np.nan)
        if t.job.qoe.energy_j is not None:
            slack = {**slack, "energy_j": relative_slack(t.job.qoe.energy_j, energy_j)}
        with np.errstate(invalid="ignore"):
            qoe_met = np.all([np.nan_to_num(s, nan=-np.inf) >= 0 for s in slack.values()],
                             axis=0)
            memory_ok = np.all(~used | (memory_bytes <= t.memory_bytes[None, :]), axis=1)
            finite = np.isfinite(interval_s)[:, None]
            idle = np.where(used & finite, interval_s[:, None] - busy_s - tx_s - rx_s,
                            interval_s[:, None])
            power = np.where(finite[:, 0], energy_j / interval_s, np.inf)
        usable_ok = np.ones_like(qoe_met)
        return cls(latency_s=latency_s, period_s=period_s, interval_s=interval_s,
                   throughput_per_s=throughput_per_s,
                   ttft_s=nan if ttft_s is None else ttft_s,
                   tpot_s=nan if tpot_s is None else tpot_s,
                   iteration_s=nan if iteration_s is None else iteration_s,
                   stage_s=stage_s, transfer_s=transfer_s, allreduce_s=allreduce_s,
                   busy_s=busy_s, tx_s=tx_s, rx_s=rx_s, idle_s=idle,
                   energy_per_device_j=energy_per_device_j, energy_j=energy_j, power_w=power,
                   memory_bytes=memory_bytes, memory_ok=memory_ok, usable_ok=usable_ok,
                   qoe_slack=slack, qoe_met=qoe_met,
                   feasible=qoe_met & memory_ok & usable_ok, used=used)

    def __len__(self) -> int:
        return int(self.latency_s.shape[0])

    def row(self, i: int) -> dict[str, Any]:
        """Plan ``i``'s figures as plain Python values (lists for per-stage/per-device)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict):
                out[f.name] = {k: float(v[i]) for k, v in value.items()}
            elif value.ndim == 1:
                out[f.name] = value[i].item()
            else:
                out[f.name] = value[i].tolist()
        return out

    def with_usable(self, usable: NDArray[np.bool_]) -> Metrics:
        """A copy whose feasibility also requires every used device to be usable."""
        usable_ok = np.all(~self.used | usable[None, :], axis=1)
        return replace(self, usable_ok=usable_ok,
                       feasible=self.qoe_met & self.memory_ok & usable_ok)
