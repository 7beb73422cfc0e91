"""Live runtime: partitioned inference across worker processes on torch.distributed RPC.

Modules: :mod:`~dora_rl.runtime.layers` (the job's torch layers), :mod:`~dora_rl.runtime.emulation`
(device and link speeds of the card on this host), :mod:`~dora_rl.runtime.agent` (what runs
inside a worker), :mod:`~dora_rl.runtime.cluster` (starting, watching and stopping workers),
:mod:`~dora_rl.runtime.pipeline` (one request through a plan), :mod:`~dora_rl.runtime.control`
(controller decisions), :mod:`~dora_rl.runtime.runner` (the serving loop and its result).
"""
