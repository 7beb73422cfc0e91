"""Discrete-event runtime simulator (simpy): queueing, contention and plan switches.

- :class:`Simulator`: a scenario's devices, network and jobs, driven interval by interval;
- :class:`SimEnv` (``dora_rl/Sim-v0`` after :func:`register_sim_env`): the environment's
  Gymnasium interface with every interval simulated, so every controller runs on it;
- :func:`dora_rl.sim.run.simulate` and ``python -m dora_rl.sim``: run a controller and report
  per-job latency percentiles, attainment, energy and plan switches;
- :func:`dora_rl.sim.fidelity.isolated_unit`: one unit of work alone, for fidelity checks.
"""

from dora_rl.sim.env import ENV_ID, SimEnv, register_sim_env
from dora_rl.sim.simulator import QUEUE_CAPACITY, Simulator

__all__ = ["ENV_ID", "QUEUE_CAPACITY", "SimEnv", "Simulator", "register_sim_env"]
