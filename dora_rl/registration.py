"""Register the environments with Gymnasium (namespaced, versioned ids).

Imported by ``dora_rl/__init__.py``; it imports only Gymnasium, and the environment module is
loaded by Gymnasium when an id is first made.
"""

from __future__ import annotations

import gymnasium as gym

ENV_IDS: dict[str, dict[str, str]] = {
    "dora_rl/SmartHome-v0": {"scenario": "smart_home"},
    "dora_rl/TrafficAnalytics-v0": {"scenario": "traffic_analytics"},
    "dora_rl/EdgeCluster-v0": {"scenario": "edge_cluster"},
    "dora_rl/Tiny-v0": {"scenario": "tiny"},
    "dora_rl/Edge-v0": {},
}

CONTROL_ENV_IDS: dict[str, dict[str, str]] = {
    "dora_rl/SmartHome-v1": {"scenario": "smart_home"},
    "dora_rl/TrafficAnalytics-v1": {"scenario": "traffic_analytics"},
    "dora_rl/EdgeCluster-v1": {"scenario": "edge_cluster"},
    "dora_rl/Tiny-v1": {"scenario": "tiny"},
    "dora_rl/Edge-v1": {},
}
"""The interval-model environments (``dora_rl.env.control_env.ControlEnv``): make-before-break
switches, power modes and sleep as actions, QoE per request."""

SIM_ENV_ID = "dora_rl/Sim-v0"
"""The same interface driven by the discrete-event simulator (``dora_rl.sim.env.SimEnv``)."""

SIM_CONTROL_ENV_ID = "dora_rl/Sim-v1"
"""The ``-v1`` interface with every interval simulated (``dora_rl.sim.control_env.SimEnv``)."""


def register_envs() -> None:
    """Register every id once (idempotent)."""
    for env_id, kwargs in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="dora_rl.env.edge_env:EdgeEnv",
                         kwargs=dict(kwargs))
    for env_id, kwargs in CONTROL_ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="dora_rl.env.control_env:ControlEnv",
                         kwargs=dict(kwargs))
    if SIM_ENV_ID not in gym.registry:
        gym.register(id=SIM_ENV_ID, entry_point="dora_rl.sim.env:SimEnv")
    if SIM_CONTROL_ENV_ID not in gym.registry:
        gym.register(id=SIM_CONTROL_ENV_ID, entry_point="dora_rl.sim.control_env:SimEnv")
