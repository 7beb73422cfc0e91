"""The Gymnasium environment (a thin shell over :mod:`dora_rl.world`) and its observation."""

from dora_rl.env.edge_env import EdgeEnv, WorldHandle
from dora_rl.env.observation import DecisionLayout, encode

__all__ = ["DecisionLayout", "EdgeEnv", "WorldHandle", "encode"]
