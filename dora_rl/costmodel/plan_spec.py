"""Partition plans: contiguous pipeline stages, each on a data-parallel device group.

A :class:`Plan` is the readable, hashable form; a :class:`PlanBatch` packs many plans into
fixed-shape arrays so the evaluator can score thousands at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from dora_rl.costmodel.tables import JobTables
from dora_rl.errors import DoraError

if TYPE_CHECKING:
    from dora_rl.config.loader import Scenario


class PlanError(DoraError):
    """A plan is malformed for its job (layers missing, devices reused, bad shares)."""


@dataclass(frozen=True)
class Plan:
    """Hybrid-parallel plan of one job.

    Attributes:
        stage_end: Exclusive end layer (0-based) of each stage; the last equals L.
        stage_devices: Device indices (card order) of each stage's data-parallel group.
        micro_batches: Micro-batches per training iteration (1 for inference).
        boundary_shares: Airtime share of each stage-to-stage flow (K-1 values in (0, 1]) on the
            WiFi media it crosses; ``None`` shares the medium equally between the job's flows.
        allreduce_shares: Airtime share of each stage's gradient all-reduce (K values).
        dvfs_levels: DVFS level per device (0 = nominal); ``None`` runs all at nominal.

    Example:
        >>> p = Plan(stage_end=(3, 8), stage_devices=((0,), (1, 2)))
        >>> p.n_stages, p.stage_layers(1)
        (2, (3, 8))
    """

    stage_end: tuple[int, ...]
    stage_devices: tuple[tuple[int, ...], ...]
    micro_batches: int = 1
    boundary_shares: tuple[float, ...] | None = None
    allreduce_shares: tuple[float, ...] | None = None
    dvfs_levels: tuple[int, ...] | None = None

    def __hash__(self) -> int:  # cached: plans key the evaluator's and the env's memos
        try:  # the instance dict's "_hash", set below (no field: not compared, not shown)
            return self._hash  # type: ignore[attr-defined]
        except AttributeError:
            cached = hash((self.stage_end, self.stage_devices, self.micro_batches,
                           self.boundary_shares, self.allreduce_shares, self.dvfs_levels))
            self.__dict__["_hash"] = cached
            return cached

    @property
    def n_stages(self) -> int:
        """Number of pipeline stages K."""
        return len(self.stage_end)

    def stage_layers(self, k: int) -> tuple[int, int]:
        """First (inclusive) and end (exclusive) layer of stage ``k``."""
        return (self.stage_end[k - 1] if k else 0, self.stage_end[k])

    @cached_property
    def devices(self) -> tuple[int, ...]:
        """All devices the plan uses, sorted."""
        return tuple(sorted(d for group in self.stage_devices for d in group))

    @cached_property
    def at_devices(self) -> Callable[[Sequence[Any]], Any]:
        """A function giving a per-device sequence's entries at :attr:`devices`: a tuple, or
        the one entry of a one-device plan (a memo key of what the plan reads, built in C).

        Example:
            >>> Plan(stage_end=(3, 8), stage_devices=((0,), (2, 1))).at_devices("abcd")
            ('a', 'b', 'c')
        """
        return itemgetter(*self.devices)

    @classmethod
    def named(cls, scenario: Scenario, stage_end: Sequence[int],
              stage_devices: Sequence[str | Sequence[str]], micro_batches: int = 1) -> Plan:
        """A plan whose stage groups are given by device name (one name or a list each).

        Example:
            >>> from dora_rl.scenarios import load
            >>> Plan.named(load("tiny"), (3, 8), ["slow", ["mid", "fast"]]).stage_devices
            ((0,), (1, 2))

        Raises:
            ConfigError: a name is no device of the scenario (the message lists them).
        """
        return cls(stage_end=tuple(int(e) for e in stage_end),
                   stage_devices=scenario.device_groups(*stage_devices),
                   micro_batches=micro_batches)

    @classmethod
    def single(cls, device: int, n_layers: int) -> Plan:
        """The whole model on one device."""
        return cls(stage_end=(n_layers,), stage_devices=((device,),))


def check_plan(plan: Plan, tables: JobTables) -> None:
    """Raise :class:`PlanError` unless every layer is placed exactly once on usable devices."""
    n_layers, n_dev = tables.n_layers, tables.n_devices
    ends = plan.stage_end
    if not ends or len(ends) != len(plan.stage_devices):
        raise PlanError(f"plan has {len(ends)} stage ends but {len(plan.stage_devices)} groups")
    if any(b <= a for a, b in zip((0, *ends[:-1]), ends, strict=True)) or ends[-1] != n_layers:
        raise PlanError(f"stage_end {ends} must rise strictly and end at {n_layers} so that "
                        "each layer is in exactly one stage")
    _check_groups(plan, tables)
    if plan.micro_batches < 1:
        raise PlanError(f"micro_batches must be >= 1, got {plan.micro_batches}")
    for name, shares, n in (("boundary_shares", plan.boundary_shares, len(ends) - 1),
                            ("allreduce_shares", plan.allreduce_shares, len(ends))):
        if shares is not None and (len(shares) != n or not all(0 < s <= 1 for s in shares)):
            raise PlanError(f"{name} needs {n} values in (0, 1], got {shares}")
    if plan.dvfs_levels is not None:
        levels = plan.dvfs_levels
        if len(levels) != n_dev or any(
                lv < 0 or lv >= tables.dvfs_speed.shape[1] or np.isnan(tables.dvfs_speed[d, lv])
                for d, lv in enumerate(levels)):
            raise PlanError(f"dvfs_levels {levels} must give an existing level per device")


def _check_groups(plan: Plan, tables: JobTables) -> None:
    seen: set[int] = set()
    names = [d.name for d in tables.scenario.devices]
    for k, group in enumerate(plan.stage_devices):
        if not group:
            raise PlanError(f"stage {k} has no device")
        for d in group:
            if not 0 <= d < tables.n_devices:
                raise PlanError(f"stage {k}: device index {d} out of range "
                                f"0..{tables.n_devices - 1}")
            if d in seen:
                raise PlanError(f"device {names[d]!r} is in two stages")
            if not tables.can_run[d]:
                raise PlanError(f"device {names[d]!r} cannot run job {tables.job.name!r} "
                                "(not allowed or no speed figure)")
            seen.add(d)


@dataclass(frozen=True)
class PlanBatch:
    """N plans of one job as arrays (S = D stage slots; unused slots are empty).

    Attributes:
        dev_stage: [N, D] stage of each device, -1 when unused.
        stage_end: [N, S] exclusive end layer of each stage; padded with L.
        n_stages: [N] number of stages.
        micro_batches: [N] micro-batches per iteration.
        boundary_shares: [N, S] share of flow k -> k+1; NaN means equal sharing.
        allreduce_shares: [N, S] share of stage k's all-reduce; NaN means equal sharing.
        dvfs_levels: [N, D] DVFS level per device.
    """

    dev_stage: NDArray[np.int64]
    stage_end: NDArray[np.int64]
    n_stages: NDArray[np.int64]
    micro_batches: NDArray[np.float64]
    boundary_shares: NDArray[np.float64]
    allreduce_shares: NDArray[np.float64]
    dvfs_levels: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.dev_stage.shape[0])

    @classmethod
    def from_plans(cls, plans: Sequence[Plan], n_devices: int, n_layers: int) -> PlanBatch:
        """Pack plans (already checked) into arrays."""
        n = len(plans)
        dev_stage = np.full((n, n_devices), -1, dtype=np.int64)
        stage_end = np.full((n, n_devices), n_layers, dtype=np.int64)
        b_sh = np.full((n, n_devices), np.nan)
        a_sh = np.full((n, n_devices), np.nan)
        dvfs = np.zeros((n, n_devices), dtype=np.int64)
        for i, plan in enumerate(plans):
            stage_end[i, : plan.n_stages] = plan.stage_end
            for k, group in enumerate(plan.stage_devices):
                dev_stage[i, list(group)] = k
            if plan.boundary_shares is not None:
                b_sh[i, : plan.n_stages - 1] = plan.boundary_shares
            if plan.allreduce_shares is not None:
                a_sh[i, : plan.n_stages] = plan.allreduce_shares
            if plan.dvfs_levels is not None:
                dvfs[i] = plan.dvfs_levels
        return cls(
            dev_stage=dev_stage, stage_end=stage_end,
            n_stages=np.array([p.n_stages for p in plans], dtype=np.int64),
            micro_batches=np.array([p.micro_batches for p in plans], dtype=np.float64),
            boundary_shares=b_sh, allreduce_shares=a_sh, dvfs_levels=dvfs,
        )
