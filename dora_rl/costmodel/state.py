"""The run-time state a plan is evaluated in: links, availability, load and battery."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dora_rl.config import Scenario
from dora_rl.errors import DoraError


@dataclass(frozen=True)
class State:
    """What changes at run time, one entry per device (card order) or per domain.

    Attributes:
        link_scale: Multiplier of each device's nominal link rate (1 = nominal, 0 = no link).
        available: Whether each device is present.
        load: Fraction of each device's compute taken by other users, in [0, 1).
        battery_wh: Remaining battery energy per device; NaN for mains-powered devices.
        cross_traffic: Fraction of airtime other traffic takes on each domain, in [0, 1).
        medium_share: Fraction of each domain's free airtime this job's flows may use.
    """

    link_scale: NDArray[np.float64]
    available: NDArray[np.bool_]
    load: NDArray[np.float64]
    battery_wh: NDArray[np.float64]
    cross_traffic: NDArray[np.float64]
    medium_share: NDArray[np.float64] = field(default_factory=lambda: np.ones(0))

    def __post_init__(self) -> None:
        checks = (
            ("link_scale", self.link_scale, lambda a: np.all(np.isfinite(a) & (a >= 0)),
             "must be finite and >= 0"),
            ("load", self.load, lambda a: np.all((a >= 0) & (a < 1)), "must be in [0, 1)"),
            ("cross_traffic", self.cross_traffic, lambda a: np.all((a >= 0) & (a < 1)),
             "must be in [0, 1)"),
            ("battery_wh", self.battery_wh, lambda a: np.all(np.isnan(a) | (a >= 0)),
             "must be >= 0 or NaN"),
            ("medium_share", self.medium_share, lambda a: np.all((a > 0) & (a <= 1)),
             "must be in (0, 1]"),
        )
        for name, arr, ok, problem in checks:
            if not ok(np.asarray(arr)):
                raise DoraError(f"state.{name}: {problem}, got {np.asarray(arr).tolist()}")

    @classmethod
    def unchecked(cls, **values: NDArray[Any]) -> State:
        """A state built without range checks, for hot loops whose inputs are valid by
        construction (the environment's per-step views). Prefer the constructor elsewhere."""
        obj = object.__new__(cls)
        obj.__dict__.update({name: values[name] for name in cls.__dataclass_fields__})
        return obj

    @classmethod
    def nominal(cls, scenario: Scenario) -> State:
        """Every device present, links at nominal rate, no load, batteries full."""
        n = len(scenario.devices)
        battery = np.array([d.battery_wh if d.battery_wh is not None else np.nan
                            for d in scenario.devices], dtype=np.float64)
        cross = np.array([d.cross_traffic for d in scenario.network.domains], dtype=np.float64)
        return cls(link_scale=np.ones(n), available=np.ones(n, dtype=bool), load=np.zeros(n),
                   battery_wh=battery, cross_traffic=cross,
                   medium_share=np.ones(len(scenario.network.domains)))

    def replace(self, **changes: object) -> State:
        """A copy with some fields changed (arrays are copied as float or bool)."""
        values = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for key, val in changes.items():
            if key not in values:
                raise DoraError(f"state: unknown field {key!r}")
            values[key] = np.asarray(val, dtype=bool if key == "available" else np.float64)
        return State(**values)

    @cached_property
    def lists(self) -> tuple[list[float], list[bool], list[float], list[float]]:
        """Load, usability, link scale and free airtime per domain as lists (fast path)."""
        free = (1.0 - self.cross_traffic) * self.medium_share
        return (self.load.tolist(), self.usable.tolist(), self.link_scale.tolist(),
                free.tolist())

    @cached_property
    def usable(self) -> NDArray[np.bool_]:
        """Present and not on an empty battery (a device without a link can still compute)."""
        battery_ok = np.isnan(self.battery_wh) | (self.battery_wh > 0)
        return self.available & battery_ok
