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

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from dora_rl.costmodel import State

LINK_MAX = 1.2
QOE_SCALE_MAX = 1.25


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


def encode_observation(layout: ObservationLayout, link_history: NDArray[np.float64],
                       state: State, battery_capacity_wh: NDArray[np.float64],
                       job_active: NDArray[np.bool_], qoe_scale: NDArray[np.float64],
                       qoe_slack: NDArray[np.float64], plan_index: NDArray[np.int64],
                       n_candidates: int, bandwidth_level: NDArray[np.int64], n_levels: int,
                       since_switch: NDArray[np.int64], horizon: int) -> NDArray[np.float32]:
    """The observation vector (float32, every entry in [-1, 1]).

    Args:
        layout: Sizes.
        link_history: [H, D] last link-rate multipliers, newest last.
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
    # plain Python over a few dozen numbers is several times faster than NumPy calls here
    hist = np.minimum(np.maximum(link_history[-layout.history:], 0.0), LINK_MAX) / LINK_MAX
    values: list[float] = hist.T.ravel().tolist()
    values += state.available.tolist()
    values += state.load.tolist()
    values += [1.0 if cap != cap else (0.0 if not charge >= 0.0 else min(charge / cap, 1.0))
               for charge, cap in zip(state.battery_wh.tolist(), battery_capacity_wh.tolist(),
                                      strict=True)]
    values += state.cross_traffic.tolist()
    values += job_active.tolist()
    values += [min(q / QOE_SCALE_MAX, 1.0) for q in qoe_scale.tolist()]
    values += [-1.0 if not v >= -1.0 else min(v, 1.0) for v in qoe_slack.tolist()]
    k, levels, span = max(n_candidates, 1), max(n_levels - 1, 1), max(horizon, 1)
    values += [p / k for p in plan_index.tolist()]
    values += [b / levels for b in bandwidth_level.tolist()]
    values += [min(t / span, 1.0) for t in since_switch.tolist()]
    return np.array(values, dtype=np.float32)
