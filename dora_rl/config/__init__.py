"""Scenario cards, model profiles and the device catalog: schema and loading."""

from dora_rl.config.formats import WEIGHT_FORMATS, bytes_per_weight, weight_bytes
from dora_rl.config.loader import (
    Scenario,
    builtin_profiles,
    device_catalog,
    layer_defaults,
    load_builtin_model,
    load_model,
    load_scenario,
)
from dora_rl.config.schema import Device, Job, Layer, Model, Sleep, Storage, Thermal

__all__ = [
    "WEIGHT_FORMATS", "Device", "Job", "Layer", "Model", "Scenario", "Sleep", "Storage", "Thermal",
    "builtin_profiles", "bytes_per_weight", "device_catalog", "layer_defaults",
    "load_builtin_model", "load_model", "load_scenario", "weight_bytes",
]
