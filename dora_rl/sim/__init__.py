"""Discrete-event runtime simulator (simpy): queueing, contention and plan switches.

- :class:`Simulator`: a scenario's devices, network and jobs, driven interval by interval;
- :class:`SimulatedModel`: the interval model (:mod:`dora_rl.world`) with each interval's
  timing measured by the simulator, its control-state bookkeeping kept;
- :class:`SimEnv` (``dora_rl/Sim-v1``): the ``-v1`` environment on a :class:`SimulatedModel`,
  so every controller runs on it;
- :func:`dora_rl.sim.run.simulate` and ``python -m dora_rl.sim``: run a controller and report
  per-job latency percentiles, attainment, request violations, energy and plan switches;
- :func:`dora_rl.sim.fidelity.isolated_unit`: one unit of work alone, for fidelity checks.

See ``docs/simulator.md``.
"""

from dora_rl.sim.env import ENV_ID, SimEnv, register_sim_env
from dora_rl.sim.simulated_model import SimulatedModel
from dora_rl.sim.simulator import QUEUE_CAPACITY, Simulator

__all__ = ["ENV_ID", "QUEUE_CAPACITY", "SimEnv", "SimulatedModel", "Simulator",
           "register_sim_env"]
