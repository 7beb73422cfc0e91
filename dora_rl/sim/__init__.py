"""Discrete-event runtime simulator (simpy): queueing, contention and plan switches.

:class:`Simulator` runs a scenario event by event; :class:`dora_rl.sim.env.SimEnv` wraps it in
the environment's Gymnasium interface (``dora_rl/Sim-v0``) so every controller runs on it.
"""

from dora_rl.sim.simulator import QUEUE_CAPACITY, Simulator

__all__ = ["QUEUE_CAPACITY", "Simulator"]
