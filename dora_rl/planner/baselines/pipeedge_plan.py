"""PipeEdge's own pipeline schedule, solved exactly from its profile files.

This reproduces the objective and constraints of PipeEdge's scheduler ``sched-pipeline``
(github.com/usc-isi/PipeEdge, ``src-native/schedule.cpp`` at ``b38e6888``, the newest revision
read; ``src-native/sched-pipeline.cpp`` for the defaults) and solves it with the bottleneck MILP
of :mod:`dora_rl.planner.baselines.bottleneck` instead of PipeEdge's dynamic program. What its
code does, and so what this module does:

* Device types: only types with a profile for the model at exactly this dtype and batch size
  (``load_device_types`` skips the others), each with as many hosts as ``devices.yml`` lists
  (types with no host contribute nothing). Each host runs at most one stage.
* Stage compute (``compute_time``): the sum of the type's ``time_s`` over the stage's layers,
  added from the first layer up; the profiled times are for the whole micro-batch already.
* Transfer (``comm_time``): ``dtype_size * parameters_out[last layer] * batch`` bytes over
  ``min(bw_Mbps of both types) * 1024 * 1024 / 8`` bytes/s: PipeEdge's "Mbps" is binary
  (2**20 bit/s). The last stage's output is not sent anywhere (the recursion closes with the
  last stage's compute alone) and the first stage's input arrives for free.
* Bottleneck: ``max`` over stages of ``max(compute, transfer to the next stage)``.
* Memory (``is_layers_fit``): ``sum(mem_MB) * 2**20`` of the stage's layers plus buffers, with
  ``in = dtype_size * batch * (parameters_in if the stage starts at layer 1 else
  parameters_out[first - 1])`` and ``out = dtype_size * batch * parameters_out[last]``:
  ``in * buffers_in`` (receive queue, not for the first stage) ``+ out * buffers_out`` (send
  queue, the last stage too) ``+ in + out`` (processing); the stage fits only if the device's
  ``mem_MB * 2**20`` is *strictly* larger. Older revisions (``partition/sched-pipeline.cpp``)
  used the bare ``parameters_in`` element count as the first stage's input bytes; the newest
  (``model_bytes_in``) scales it by dtype and batch, as done here.
* Hosts: the k-th stage (in pipeline order) placed on a type gets that type's k-th host.
* dtypes: ``sched-pipeline`` accepts only ``torch.float32``; other dtypes use their element
  size from :data:`dora_rl.pipeedge.DTYPE_BYTES`.

Deviation: ``schedule_device_types`` indexes its per-host list ``devices`` with the *type*
index ``u`` (``devices[u]`` in ``is_layers_fit``, ``compute_time`` and ``comm_time``), so the
shipped binary gives type ``u`` the memory, times and bandwidth of the ``u``-th host instead
(with the sample's four Minnowboards listed first, both types behave as Minnowboards). This
module follows the documented intent (each type its own figures) by default;
``emulate_index_bug=True`` reproduces the shipped behaviour.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from dora_rl.errors import ConfigError, InfeasibleError
from dora_rl.pipeedge import DTYPE_BYTES, PipeEdgeProfile, dtype_name, measured_times
from dora_rl.planner.baselines.bottleneck import BottleneckProblem, solve_bottleneck, stage_costs

log = logging.getLogger(__name__)

MIB = 1024 * 1024
"""PipeEdge's scheduler multiplies ``mem_MB`` and ``bw_Mbps`` by 2**20."""


@dataclass(frozen=True)
class PipeEdgeStage:
    """One stage of a PipeEdge schedule (layers 1-based and inclusive, as PipeEdge prints)."""

    first_layer: int
    last_layer: int
    host: str
    device_type: str
    compute_s: float
    transfer_s: float


@dataclass(frozen=True)
class PipeEdgeSchedule:
    """An optimal PipeEdge schedule.

    Attributes:
        stages: Stages in pipeline order.
        bottleneck_s: Slowest stage compute or transfer, seconds per micro-batch.
        throughput_per_s: Samples per second, ``batch / bottleneck_s``.
        solve_time_s: Wall time of building and solving.
        status: Solver status (``"optimal"`` unless a time limit was hit).
        batch: Micro-batch size the schedule is for.
    """

    stages: tuple[PipeEdgeStage, ...]
    bottleneck_s: float
    throughput_per_s: float
    solve_time_s: float
    status: str
    batch: int

    @property
    def latency_s(self) -> float:
        """One micro-batch through the pipeline: every stage's compute and transfer."""
        return sum(s.compute_s + s.transfer_s for s in self.stages)

    def to_json(self) -> dict[str, Any]:
        """The schedule in the planners' common JSON shape (one plan; no energy figure)."""
        plan = {"stages": [{"layers": [s.first_layer, s.last_layer], "devices": [s.host]}
                           for s in self.stages],
                "latency_s": self.latency_s, "throughput_per_s": self.throughput_per_s,
                "energy_j": None, "bottleneck_s": self.bottleneck_s}
        return {"solve_time_s": self.solve_time_s, "plans": [plan]}


def _types(profile: PipeEdgeProfile, model_name: str, dtype: str,
           batch: int) -> list[tuple[str, list[float]]]:
    """Device types (sorted by name, as PipeEdge's ``std::map``) with a matching profile."""
    out = []
    for name in sorted(profile.device_types):
        try:
            out.append((name, measured_times(profile, model_name, name, dtype, batch)))
        except ConfigError:  # no profile at this dtype and batch: PipeEdge skips the type
            log.info("device type %s has no %s profile at %s/%d: skipped", name, model_name,
                     dtype, batch)
    return out


def pipeedge_problem(profile: PipeEdgeProfile, model_name: str, batch: int = 8,
                     dtype: str = "torch.float32", buffers: int = 2,
                     emulate_index_bug: bool = False) -> tuple[BottleneckProblem, list[str]]:
    """The :class:`BottleneckProblem` PipeEdge solves, and the type names in its order."""
    if model_name not in profile.models:
        raise ConfigError(f"{profile.directory}/models.yml", model_name, "no such model "
                          f"(known: {', '.join(sorted(profile.models))})")
    if dtype_name(dtype) not in DTYPE_BYTES:
        raise ConfigError("<argument>", "dtype", f"unknown dtype {dtype!r}")
    model, size = profile.models[model_name], DTYPE_BYTES[dtype_name(dtype)]
    found = _types(profile, model_name, dtype, batch)
    names = [name for name, _ in found]
    counts = [len(profile.hosts.get(name, ())) for name in names]
    times = np.array([t for _, t in found], dtype=np.float64).reshape(len(found), model.layers)
    memory = np.array([profile.device_types[n].mem_MB * MIB for n in names])
    bandwidth = np.array([profile.device_types[n].bw_Mbps * MIB / 8 for n in names])
    if emulate_index_bug:
        per_host = [i for i, c in enumerate(counts) for _ in range(c)]
        src = [per_host[u] if u < len(per_host) else u for u in range(len(names))]
        times, memory, bandwidth = times[src], memory[src], bandwidth[src]
    out_bytes = np.array(model.parameters_out, dtype=np.float64) * size * batch
    in_bytes = np.concatenate([[model.parameters_in * size * batch], out_bytes[:-1]])
    buf = np.zeros((model.layers + 1, model.layers + 1))
    for a in range(model.layers):
        recv = in_bytes[a] * buffers if a > 0 else 0.0
        buf[a, a + 1:] = recv + out_bytes[a:] * buffers + in_bytes[a] + out_bytes[a:]
    with np.errstate(divide="ignore"):
        rate = np.minimum(bandwidth[:, None], bandwidth[None, :])
        transfer = out_bytes[:, None, None] / rate[None, :, :]
    problem = BottleneckProblem(
        layer_time_s=times, counts=tuple(counts), memory_bytes=memory,
        layer_memory_bytes=np.array(model.mem_MB) * MIB, transfer_s=transfer,
        stage_buffer_bytes=buf, strict_memory=True, type_names=tuple(names),
        layer_names=tuple(str(i + 1) for i in range(model.layers)))
    return problem, names


def solve_pipeedge(profile: PipeEdgeProfile, model_name: str, batch: int = 8,
                   dtype: str = "torch.float32", buffers: int = 2, *,
                   emulate_index_bug: bool = False,
                   time_limit_s: float = 60.0) -> PipeEdgeSchedule:
    """Solve PipeEdge's scheduling problem for ``model_name`` exactly.

    Args:
        profile: The profile files (:func:`dora_rl.pipeedge.load_pipeedge`).
        model_name: Model in ``models.yml``.
        batch: Micro-batch size (a profile at this size must exist per usable type).
        dtype: Data type of the profiles and the transferred tensors.
        buffers: Data buffers each way (``sched-pipeline -i/-o``, default 2).
        emulate_index_bug: Reproduce the shipped binary's type/host index mix-up.
        time_limit_s: Solver time limit.

    Raises:
        InfeasibleError: if no host can be used or no split fits memory.
        ConfigError: if the model or the dtype is unknown.
    """
    problem, names = pipeedge_problem(profile, model_name, batch, dtype, buffers,
                                      emulate_index_bug)
    if not names or sum(problem.counts) == 0:
        raise InfeasibleError(f"no host in devices.yml has a device type with a {model_name} "
                              f"profile at {dtype}, batch {batch}")
    sol = solve_bottleneck(problem, time_limit_s=time_limit_s)
    spans = [(s.first_layer, s.end_layer, s.device_type) for s in sol.stages]
    compute, transfer = stage_costs(problem, spans)
    stages = tuple(
        PipeEdgeStage(first_layer=s.first_layer + 1, last_layer=s.end_layer,
                      host=profile.hosts[names[s.device_type]][s.host],
                      device_type=names[s.device_type], compute_s=c, transfer_s=x)
        for s, c, x in zip(sol.stages, compute, transfer, strict=True))
    return PipeEdgeSchedule(stages=stages, bottleneck_s=sol.bottleneck_s,
                            throughput_per_s=batch / sol.bottleneck_s,
                            solve_time_s=sol.solve_time_s, status=sol.status, batch=batch)
