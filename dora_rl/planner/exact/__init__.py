"""The exact partitioner: the least-energy (or least-time) QoE-compliant plan, proven optimal.

:func:`~dora_rl.planner.exact.partition.solve` builds the plan space (``space``) and its stage
candidates (``candidates``), prunes them by bounds (``bounds``), searches plans against a
shortest-path bound (``search``, ``pathbound``, ``lagrange``) and hands over to the
mixed-integer program (``formulation``, ``workloads``, ``milp_model``, ``solver``) when the
search runs out of budget; ``diagnose`` names why nothing fits, ``bruteforce`` checks it all
on tiny instances.
"""
