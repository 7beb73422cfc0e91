"""The explicit state, decision and outcome of one control interval (frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass

from dora_rl.costmodel import Plan
from dora_rl.world.devices import DeviceEnergy
from dora_rl.world.weights import Resident, Transfer


@dataclass(frozen=True)
class JobControl:
    """Where one job stands at the start of an interval.

    Attributes:
        plan: The plan serving (None: nothing runs).
        target: The plan being switched to (None: no switch under way).
        pending: Weights the target's devices still have to receive.
        break_first: The switch stopped the old plan first (the two did not fit in memory
            together), so the job serves nothing until the target cuts over.
        outage_s: Seconds the job has been unable to serve (0 while it serves).
        level: Its bandwidth level (its share of every medium it crosses).
        since: Intervals since the job last cut over to a new plan.
    """

    plan: Plan | None
    target: Plan | None = None
    pending: tuple[Transfer, ...] = ()
    break_first: bool = False
    outage_s: float = 0.0
    level: int = 1
    since: int = 0

    @property
    def pending_bytes(self) -> float:
        """Weight bytes still to arrive for the switch under way."""
        return sum(t.bytes_left for t in self.pending)


@dataclass(frozen=True)
class ControlState:
    """Everything the controller's choices carry from one interval to the next.

    Attributes:
        jobs: Per job, :class:`JobControl`.
        modes: Per device its power mode (0 nominal, ``v`` its ``v``-th slower level,
            :data:`~dora_rl.world.devices.SLEEP` asleep).
        wake_left_s: Per device, seconds until it is awake (0: awake or asleep).
        resident: Per device, weights kept but not in use (:mod:`dora_rl.world.weights`).
        step: Intervals since the start.
        temp_c: Per device its SoC temperature (0 for a device without a thermal model;
            empty when no device has one).
    """

    jobs: tuple[JobControl, ...]
    modes: tuple[int, ...]
    wake_left_s: tuple[float, ...]
    resident: Resident
    step: int = 0
    temp_c: tuple[float, ...] = ()


@dataclass(frozen=True)
class Decision:
    """A controller's choice for one interval.

    Attributes:
        plans: Per job the plan wanted (None keeps the current plan or switch).
        levels: Per job its bandwidth level (None keeps each job's level).
        modes: Per device the power mode wanted (None keeps the modes).
    """

    plans: tuple[Plan | None, ...]
    levels: tuple[int, ...] | None = None
    modes: tuple[int, ...] | None = None


@dataclass(frozen=True)
class JobInterval:
    """One job's interval.

    Attributes:
        active: The job had work.
        serving: Its plan ran (False: outage).
        arrived: Requests (training: iterations due) that arrived.
        scored: Requests scored (arrivals served now and waiting ones settled).
        missed: Scored requests that missed a target.
        latency_ms: The serving plan's latency figure (inf in an outage, nan inactive).
        slack: Smallest relative QoE slack of the serving plan against the targets in force
            (scaled by the QoE multiplier; -1 in an outage).
        switched: A switch started this interval.
        cut_over: A switch completed this interval (the new plan serves from the next).
        moved_bytes: Weight bytes that arrived this interval.
    """

    active: bool
    serving: bool
    arrived: float
    scored: float
    missed: float
    latency_ms: float
    slack: float
    switched: bool
    cut_over: bool
    moved_bytes: float


@dataclass(frozen=True)
class Outcome:
    """What happened in one interval: per job, per device, and totals.

    Attributes:
        jobs: Per job, :class:`JobInterval`.
        devices: Per device, its :class:`~dora_rl.world.devices.DeviceEnergy`.
        refused: Choices the model could not honour (a busy device asked to sleep).
        throttled: Per device, heat capped its clock this interval (empty: none was).
    """

    jobs: tuple[JobInterval, ...]
    devices: tuple[DeviceEnergy, ...]
    refused: int = 0
    throttled: tuple[bool, ...] = ()

    @property
    def energy_j(self) -> float:
        """All energy the devices drew."""
        return sum(d.total_j for d in self.devices)

    @property
    def jobs_energy_j(self) -> float:
        """The energy the jobs caused (:attr:`DeviceEnergy.jobs_j`)."""
        return sum(d.jobs_j for d in self.devices)

    @property
    def scored(self) -> float:
        """Requests scored over all jobs."""
        return sum(j.scored for j in self.jobs)

    @property
    def missed(self) -> float:
        """Requests that missed QoE over all jobs."""
        return sum(j.missed for j in self.jobs)


__all__ = ["ControlState", "Decision", "JobControl", "JobInterval", "Outcome"]
