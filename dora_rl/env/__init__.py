"""The Gymnasium environment and its observation encoding."""

from dora_rl.env.edge_env import EdgeEnv
from dora_rl.env.observation import ObservationLayout, encode_observation

__all__ = ["EdgeEnv", "ObservationLayout", "encode_observation"]
