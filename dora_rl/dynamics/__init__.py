"""Run-time dynamics: bandwidth traces, synthetic generators and the world process.

NumPy only; every random draw comes from the ``np.random.Generator`` passed in.

Example:
    >>> import numpy as np
    >>> from dora_rl.scenarios import load
    >>> dyn = RuntimeDynamics(load("smart_home"), bandwidth="synthetic")
    >>> world = dyn.reset(np.random.default_rng(0))
    >>> world.step, dyn.step(np.random.default_rng(1)).step
    (0, 1)
"""

from __future__ import annotations

from dora_rl.dynamics.process import RuntimeDynamics, WorldState
from dora_rl.dynamics.synthetic import contention_bursts, synthetic_bandwidth
from dora_rl.dynamics.traces import (
    Trace,
    default_traces_dir,
    load_trace,
    load_traces,
    split_traces,
)

__all__ = [
    "RuntimeDynamics",
    "Trace",
    "WorldState",
    "contention_bursts",
    "default_traces_dir",
    "load_trace",
    "load_traces",
    "split_traces",
    "synthetic_bandwidth",
]
