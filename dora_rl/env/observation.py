"""The controller's observation: one function, used by the env, the simulator and the runtime.

Everything is scaled inside this function to [-1, 1], so a trained controller needs no
separate normalisation file. Layout (D devices, W domains, J jobs, H history):

========================  =====================================  ==========
block                     per item                               range
========================  =====================================  ==========
link history              D x H last link-rate multipliers / 1.2  [0, 1]
availability              D                                      {0, 1}
background load           D                                      [0, 1)
battery                   D (charge / capacity, 1 on mains)      [0, 1]
cross traffic             W                                      [0, 1)
job active                J                                      {0, 1}
QoE scale                 J (target multiplier / 1.25)           (0, 1]
QoE slack                 J (smallest relative slack, clipped)   [-1, 1]
current plan              J (candidate index / K, 0 = none)      [0, 1]
bandwidth level           J (level / (levels - 1))               [0, 1]
time since switch         J (intervals / horizon, clipped)       [0, 1]
========================  =====================================  ==========
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dora_rl.costmodel import State

LINK_MAX = 1.2
QOE_SCALE_MAX = 1.25
Values = NDArray[Any] | list[Any]
"""Per-device or per-job values: an array or a plain list."""


@dataclass(frozen=True)
class ObservationLayout:
    """Sizes that fix the observation vector's length."""

    n_devices: int
    n_domains: int
    n_jobs: int
    history: int = 4

    @property
    def size(self) -> int:
        """Length of the observation vector."""
        return self.n_devices * (self.history + 3) + self.n_domains + 6 * self.n_jobs


def scaled_links(link_scale: Sequence[float]) -> list[float]:
    """One interval's link-rate multipliers as the observation encodes them: clipped to
    [0, LINK_MAX] and divided by it.

    Example:
        >>> scaled_links([0.6, 1.5, -0.1])
        [0.5, 1.0, 0.0]
    """
    # conditional expressions give min/max's results (NaN included) without builtin calls
    return [(0.0 if x < 0.0 else LINK_MAX if x > LINK_MAX else x) / LINK_MAX
            for x in link_scale]


def encode_observation(layout: ObservationLayout,
                       link_history: NDArray[np.float64] | Sequence[Sequence[float]],
                       state: State, battery_capacity_wh: Values, job_active: Values,
                       qoe_scale: Values, qoe_slack: Values, plan_index: Values,
                       n_candidates: int, bandwidth_level: Values, n_levels: int,
                       since_switch: Values, horizon: int,
                       links_scaled: bool = False) -> NDArray[np.float32]:
    """The observation vector (float32, every entry in [-1, 1]).

    Per-device and per-job arguments may be arrays or plain lists (the env keeps lists: cheaper
    per step), and the link history an array or a sequence of per-interval rows; the result is
    the same.

    Args:
        layout: Sizes.
        link_history: [H, D] last link-rate multipliers, newest last (at least H rows); with
            ``links_scaled``, rows already passed through :func:`scaled_links` (the env keeps
            them so, scaling each interval's row once).
        state: The state measured over the last interval.
        battery_capacity_wh: [D] capacity (NaN on mains).
        job_active, qoe_scale, qoe_slack: [J] per job.
        plan_index: [J] current candidate index + 1 (0 = no plan).
        n_candidates: Candidate slots per job (K).
        bandwidth_level: [J] chosen level; n_levels: number of levels.
        since_switch: [J] intervals since the job's last switch; horizon: episode length.

    Example:
        >>> import numpy as np
        >>> lay = ObservationLayout(n_devices=1, n_domains=1, n_jobs=1, history=2)
        >>> st = State(link_scale=np.ones(1), available=np.ones(1, bool), load=np.zeros(1),
        ...            battery_wh=np.full(1, np.nan), cross_traffic=np.zeros(1),
        ...            medium_share=np.ones(1))
        >>> obs = encode_observation(lay, np.ones((2, 1)), st, np.full(1, np.nan),
        ...     np.ones(1, bool), np.ones(1), np.array([0.5]), np.array([1]), 4,
        ...     np.array([3]), 4, np.array([10]), 100)
        >>> obs.shape, obs.dtype, float(obs.min()) >= -1, float(obs.max()) <= 1
        ((12,), dtype('float32'), True, True)
    """
    # plain Python over a few dozen numbers is several times faster than NumPy calls here, and
    # conditional expressions than the builtin min/max (~0.3 us a call on Python 3.11); each
    # ``b if b < a else a`` is exactly ``min(a, b)`` (NaN included), ``b if b > a else a`` max
    if isinstance(link_history, np.ndarray):
        hist = np.minimum(np.maximum(link_history[-layout.history:], 0.0), LINK_MAX) / LINK_MAX
        values: list[float] = hist.T.ravel().tolist()
    else:  # the same clipping in Python floats (identical results), device by device
        rows = list(link_history)[-layout.history:]
        if not links_scaled:
            rows = [scaled_links(row) for row in rows]
        values = list(chain.from_iterable(zip(*rows, strict=True)))
    values += state.available.tolist()
    values += state.load.tolist()
    values += [1.0 if cap != cap else (0.0 if not charge >= 0.0 else
                                       1.0 if (r := charge / cap) > 1.0 else r)
               for charge, cap in zip(state.battery_wh.tolist(), _listed(battery_capacity_wh),
                                      strict=True)]
    values += state.cross_traffic.tolist()
    values += _listed(job_active)
    values += [1.0 if (q := s / QOE_SCALE_MAX) > 1.0 else q for s in _listed(qoe_scale)]
    values += [-1.0 if not v >= -1.0 else (1.0 if v > 1.0 else v) for v in _listed(qoe_slack)]
    k, levels, span = max(n_candidates, 1), max(n_levels - 1, 1), max(horizon, 1)
    values += [p / k for p in _listed(plan_index)]
    values += [b / levels for b in _listed(bandwidth_level)]
    values += [1.0 if (f := t / span) > 1.0 else f for t in _listed(since_switch)]
    return np.array(values, dtype=np.float32)


def _listed(values: Values) -> list[Any]:
    return values if isinstance(values, list) else values.tolist()
