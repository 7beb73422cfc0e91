"""Register the environments with Gymnasium (namespaced, versioned ids).

Imported by ``dora_rl/__init__.py``; it imports only Gymnasium, and the environment module is
loaded by Gymnasium when an id is first made.
"""

from __future__ import annotations

import gymnasium as gym

ENV_IDS: dict[str, dict[str, str]] = {
    "dora_rl/SmartHome-v1": {"scenario": "smart_home"},
    "dora_rl/TrafficAnalytics-v1": {"scenario": "traffic_analytics"},
    "dora_rl/EdgeCluster-v1": {"scenario": "edge_cluster"},
    "dora_rl/Tiny-v1": {"scenario": "tiny"},
    "dora_rl/Edge-v1": {},
}
"""The interval-model environments (``dora_rl.env.edge_env.EdgeEnv``): make-before-break
switches, power modes and sleep as actions, QoE per request. (``-v0``, with break-before-make
switches and QoE per job-interval, is retired.)"""

SIM_ENV_ID = "dora_rl/Sim-v1"
"""The same interface with every interval simulated event by event
(``dora_rl.sim.env.SimEnv``)."""


def register_envs() -> None:
    """Register every id once (idempotent)."""
    for env_id, kwargs in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="dora_rl.env.edge_env:EdgeEnv",
                         kwargs=dict(kwargs))
    if SIM_ENV_ID not in gym.registry:
        gym.register(id=SIM_ENV_ID, entry_point="dora_rl.sim.env:SimEnv")
