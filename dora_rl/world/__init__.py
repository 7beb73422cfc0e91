"""The world of a control interval: one model (pure functions over explicit state) that the
env, the simulator's accounting and the live runtime all call. Imports no gymnasium, torch or
solver."""

from dora_rl.world.control_state import ControlState, Decision, JobControl, JobInterval, Outcome
from dora_rl.world.devices import SLEEP, DeviceEnergy, DeviceFacts, device_facts, interval_energy
from dora_rl.world.interval import LEVELS, IntervalModel
from dora_rl.world.predict import predict
from dora_rl.world.weights import ORIGIN, STORAGE, Transfer

__all__ = ["LEVELS", "ORIGIN", "SLEEP", "STORAGE", "ControlState", "Decision", "DeviceEnergy",
           "DeviceFacts", "IntervalModel", "JobControl", "JobInterval", "Outcome", "Transfer",
           "device_facts", "interval_energy", "predict"]
