"""A serving run's settings (:class:`ServeConfig`) and its plan state (:class:`LiveState`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dora_rl.config import Scenario
from dora_rl.costmodel import Plan


@dataclass(frozen=True)
class ServeConfig:
    """Settings of one run.

    Attributes:
        scenario: The card; job: index of the job to serve.
        requests: Micro-batches to send; rate_per_s: their rate in the card's world.
        batch: Items per micro-batch (default: the job's inference batch).
        time_scale: Emulated seconds per modelled second; ``None`` picks it so that the card's
            fastest device runs at this host's speed (:func:`emulation.auto_time_scale`).
        control_interval_s: Wall seconds between control steps.
        kills: ``(device name, request index)``: SIGKILL the device's worker when that request
            is sent.
        status: Status file, rewritten every control step (workers, counts and the last
            interval's telemetry).
        tensorboard: Directory for TensorBoard scalars, written every control step.
        seed: Seed of the weights and inputs.
        rpc_timeout_s: Timeout of each stage call.
        max_in_flight: Micro-batches in the pipeline at once.
        keep_outputs: Keep every output tensor in the result (for checks).
        bandwidth: Link dynamics the emulated links follow, one step per control interval:
            ``static`` (the card's rates), ``trace`` (the card's test-split traces) or
            ``synthetic`` (:class:`dora_rl.dynamics.RuntimeDynamics`).
        decision_timeout_s: A decision that takes longer is discarded (the plan is kept).
        max_missed: Consecutive unanswered heartbeats (one per control step) before a worker
            whose process this machine cannot see is removed; a local worker that exited is
            removed at the next heartbeat.
        plan_wait_s: While no plan fits the devices left, a request waits this long (wall
            seconds from its sending) for one, then is refused with the reason.
        host: Address the join store and RPC listen on (loopback by default, never a
            wildcard); token: join token (required beyond loopback); port: the join store's
            port (0: a free one).
        remote: Devices whose worker joins from elsewhere (``python -m dora_rl.worker``);
            the others are spawned on this machine.
        progress: How progress is shown on standard error while running
            (:data:`dora_rl.runtime.console.Progress`; the command line's default is
            ``auto``).
    """

    scenario: Scenario
    job: int = 0
    requests: int = 100
    rate_per_s: float | None = None
    batch: int | None = None
    time_scale: float | None = 1.0
    control_interval_s: float = 0.5
    kills: tuple[tuple[str, int], ...] = ()
    status: Path | None = None
    tensorboard: Path | None = None
    seed: int = 0
    rpc_timeout_s: float = 5.0
    max_in_flight: int = 8
    keep_outputs: bool = False
    bandwidth: str = "static"
    decision_timeout_s: float = 0.1
    max_missed: int = 3
    plan_wait_s: float = 10.0
    host: str = "127.0.0.1"
    token: str = field(default="", repr=False)
    port: int = 0
    remote: tuple[str, ...] = ()
    progress: str = "off"


@dataclass
class LiveState:
    """The plans served so far, weights held per device, switches and faults."""

    plan: Plan
    plan_id: int = 0
    plans: list[Plan] = field(default_factory=list)
    held: dict[int, set[int]] = field(default_factory=dict)
    switches: list[tuple[float, int]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    decisions_ms: list[float] = field(default_factory=list)
    since_switch: int = 0
    migrated_bytes: float = 0.0
    migrated_peer_bytes: float = 0.0
