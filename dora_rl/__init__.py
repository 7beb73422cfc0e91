"""dora_rl: QoE-aware hybrid parallelism for heterogeneous edge devices.

Scenario cards describe devices, network, models, jobs and QoE targets; the analytic cost model
(:mod:`dora_rl.costmodel`) evaluates partition plans of those jobs in a run-time state.
"""

__version__ = "0.1.0"

from dora_rl.registration import register_envs

register_envs()
