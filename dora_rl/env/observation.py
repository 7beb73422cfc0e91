"""The observation of the ``-v1`` environments: the world, the controller's own state, and a
scored list of the candidate plans, so a policy sees what it decides on.

One function builds it for the env, the simulator and the runtime. Layout (D devices, W
domains, J jobs, K candidates, H history), every entry in [-1, 1]:

=====================  ==========================================================  ========
block                  per item                                                    values
=====================  ==========================================================  ========
link history           D x H last link-rate multipliers / 1.2                       [0, 1]
device                 D x 8: present, load, battery, power mode / modes, asleep,   [0, 1]
                       waking, used by a plan, may sleep; and on cards with a
                       device that heats (``thermal``) a 9th, its heat: 0 at its
                       idle temperature, 1 at its throttle point or above
residency              D x J: fraction of the job's weights the device holds        [0, 1]
cross traffic          W                                                            [0, 1)
job                    J x 10: active, QoE scale / 1.25, last slack, last missed     [-1, 1]
                       share, current candidate / K, switching, pending weights
                       share, time to finish / 60 s, outage / 10 s, level / 3; and
                       on cards with a load profile (``rates``) an 11th, the request
                       rate / the card's (busiest hour's)
candidates             J x K x 5: present, predicted slack, predicted jobs' power   [-1, 1]
                       / the card's busy power, weights to move / the model's,
                       is the serving plan
=====================  ==========================================================  ========
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dora_rl.errors import DoraError

LINK_MAX = 1.2
QOE_SCALE_MAX = 1.25
DEVICE_FIELDS = 8
"""Device fields of every card (one more, the heat, on cards with a thermal model)."""
JOB_FIELDS = 10
"""Job fields of every card (one more, the request rate, on cards whose load varies)."""
CANDIDATE_FIELDS = 5
FINISH_SCALE_S = 60.0
OUTAGE_SCALE_S = 10.0


@dataclass(frozen=True)
class DecisionLayout:
    """Sizes of the observation, and where each block starts (a controller that reads the
    observation decodes it with :meth:`candidates` and :meth:`job`)."""

    n_devices: int
    n_domains: int
    n_jobs: int
    k: int
    history: int = 4
    rates: bool = False
    """The job block carries each job's request rate (cards with a load profile)."""
    thermal: bool = False
    """The device block carries each device's heat (cards with a device that throttles)."""

    @property
    def job_fields(self) -> int:
        """Values per job."""
        return JOB_FIELDS + int(self.rates)

    @property
    def device_fields(self) -> int:
        """Values per device."""
        return DEVICE_FIELDS + int(self.thermal)

    @property
    def device_start(self) -> int:
        return self.n_devices * self.history

    @property
    def residency_start(self) -> int:
        return self.device_start + self.n_devices * self.device_fields

    @property
    def job_start(self) -> int:
        return self.residency_start + self.n_devices * self.n_jobs + self.n_domains

    @property
    def candidate_start(self) -> int:
        return self.job_start + self.n_jobs * self.job_fields

    @property
    def size(self) -> int:
        """Length of the observation vector."""
        return self.candidate_start + self.n_jobs * self.k * CANDIDATE_FIELDS

    def links(self, obs: NDArray[np.float32]) -> NDArray[np.float32]:
        """[D, H] link-rate multipliers of ``obs`` per device, oldest first."""
        return obs[: self.device_start].reshape(self.n_devices, self.history) * LINK_MAX

    def cross_traffic(self, obs: NDArray[np.float32]) -> NDArray[np.float32]:
        """[W] cross traffic per domain."""
        a = self.job_start - self.n_domains
        return obs[a: self.job_start]

    def device(self, obs: NDArray[np.float32]) -> NDArray[np.float32]:
        """[D, 8 or 9] device block of ``obs``."""
        a = self.device_start
        n = self.device_fields
        return obs[a: a + self.n_devices * n].reshape(self.n_devices, n)

    def job(self, obs: NDArray[np.float32]) -> NDArray[np.float32]:
        """[J, 10 or 11] job block of ``obs``."""
        a = self.job_start
        return obs[a: a + self.n_jobs * self.job_fields].reshape(self.n_jobs, self.job_fields)

    def candidates(self, obs: NDArray[np.float32]) -> NDArray[np.float32]:
        """[J, K, 5] candidate block of ``obs``."""
        a = self.candidate_start
        return obs[a:].reshape(self.n_jobs, self.k, CANDIDATE_FIELDS)


class ObservationError(DoraError, ValueError):
    """An observation input is infinite where only finite figures (or NaN for "unknown") can
    come from validated inputs, or the encoded observation is not finite: fail loudly rather
    than hand a policy a NaN or a silently clipped infinity."""


_FINITE_BLOCKS = ("link_history", "devices", "residency", "cross_traffic")
"""Blocks whose entries are finite or NaN (unknown); candidates may carry -inf slack."""


def _check_finite(name: str, block: Sequence[object]) -> None:
    for i, row in enumerate(block):
        items = row if isinstance(row, Sequence | np.ndarray) else (row,)
        for j, value in enumerate(items):
            if math.isinf(value):
                index = f"[{i}][{j}]" if items is row else f"[{i}]"
                raise ObservationError(f"observation field {name}{index} is {value} (an input "
                                       "such as a trace or a card value out of range)")


def clip(x: float, low: float = -1.0, high: float = 1.0) -> float:
    """``x`` within [low, high]; NaN becomes ``low``.

    Example:
        >>> clip(2.0), clip(-3.0), clip(float("nan")), clip(0.25)
        (1.0, -1.0, -1.0, 0.25)
    """
    return high if x > high else (x if x >= low else low)


def encode(layout: DecisionLayout, link_history: Sequence[Sequence[float]],
           devices: Sequence[Sequence[float]], residency: Sequence[Sequence[float]],
           cross_traffic: Sequence[float], jobs: Sequence[Sequence[float]],
           candidates: Sequence[Sequence[Sequence[float]]]) -> NDArray[np.float32]:
    """The observation vector from its blocks (rows already scaled by the caller except the
    links, which are clipped and divided by ``LINK_MAX`` here); every value is clipped. NaN
    means "unknown" (0 for a link, -1 elsewhere).

    Raises:
        ObservationError: an entry of the link history, device, residency or cross-traffic
            block is infinite (validated inputs cannot produce one), naming the entry.

    Example:
        >>> lay = DecisionLayout(n_devices=1, n_domains=1, n_jobs=1, k=1, history=2)
        >>> obs = encode(lay, [[1.0], [0.6]], [[1, 0, 1, 0, 0, 0, 1, 0]], [[1.0]], [0.2],
        ...              [[1, 0.8, 0.1, 0, 1, 0, 0, 0, 0, 0.5]], [[[1, 0.3, 0.2, 0, 1]]])
        >>> obs.shape == (lay.size,), float(obs[1])
        (True, 0.5)
    """
    rows = list(link_history)[-layout.history:]
    # one flat list, link history first (device-major, as the layout orders it), so that one
    # array conversion and one vectorised test cover everything
    values: list[float] = [r[d] for d in range(len(rows[0])) for r in rows] if rows else []
    n_links = len(values)
    for block in (devices, residency):
        for row in block:
            values += row
    values += cross_traffic
    checked = len(values)  # the link, device, residency and cross-traffic entries: finite
    for row in jobs:
        values += row
    for job in candidates:
        for row in job:
            values += row
    flat = np.array(values, dtype=np.float64)
    if np.isfinite(flat).all():  # the common case: nothing unknown, nothing infinite
        # computed in float64 and rounded to float32 on the way out (as astype would);
        # clipping to +-1 is minimum(maximum(.)) (a tie is the bound itself)
        obs = np.empty(len(values), dtype=np.float32)
        np.divide(flat[:n_links].clip(0.0, LINK_MAX), LINK_MAX, out=obs[:n_links])
        np.minimum(np.maximum(flat[n_links:], -1.0), 1.0, out=obs[n_links:])
        return obs
    if np.isinf(flat[:checked]).any():  # name the first infinite entry, block by block
        for name, entries in zip(_FINITE_BLOCKS, (rows, devices, residency, cross_traffic),
                                 strict=True):
            if len(entries):
                _check_finite(name, entries)
    links = np.clip(flat[:n_links], 0.0, LINK_MAX) / LINK_MAX
    links[links != links] = 0.0  # NaN: no rate known
    rest = flat[n_links:]
    rest[rest != rest] = -1.0  # NaN: a figure that could not be computed
    obs = np.concatenate([links, np.clip(rest, -1.0, 1.0)]).astype(np.float32)
    if not np.isfinite(obs).all():  # impossible by construction; a guard, not a repair
        raise ObservationError(f"observation entry {int(np.flatnonzero(~np.isfinite(obs))[0])} "
                               "is not finite")
    return obs


__all__ = ["CANDIDATE_FIELDS", "DEVICE_FIELDS", "JOB_FIELDS", "DecisionLayout",
           "ObservationError", "clip", "encode"]
