"""Scenario cards, model profiles and the device catalog: schema and loading."""

from dora_rl.config.loader import (
    Scenario,
    builtin_profiles,
    device_catalog,
    layer_defaults,
    load_builtin_model,
    load_model,
    load_scenario,
)
from dora_rl.config.schema import Device, Job, Layer, Model

__all__ = [
    "Device", "Job", "Layer", "Model", "Scenario", "builtin_profiles", "device_catalog",
    "layer_defaults", "load_builtin_model", "load_model", "load_scenario",
]
