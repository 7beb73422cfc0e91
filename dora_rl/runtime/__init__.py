"""Live runtime: partitioned inference across worker processes on torch.distributed RPC.

Modules: :mod:`~dora_rl.runtime.layers` (the job's torch layers), :mod:`~dora_rl.runtime.emulation`
(device and link speeds of the card on this host), :mod:`~dora_rl.runtime.agent` (what runs
inside a worker), :mod:`~dora_rl.runtime.cluster` (starting, watching and stopping workers),
:mod:`~dora_rl.runtime.pipeline` (one request through a plan), :mod:`~dora_rl.runtime.placement`
(moving a plan's weights), :mod:`~dora_rl.runtime.control` (controller decisions on the ``-v1``
stack), :mod:`~dora_rl.runtime.observe` (the env's observation of a measurement),
:mod:`~dora_rl.runtime.live` (the runtime's control state), :mod:`~dora_rl.runtime.power_modes`
(power modes and energy by the interval model), :mod:`~dora_rl.runtime.runner` (the serving
loop and its result), :mod:`~dora_rl.runtime.loop` (the control thread and status file),
:mod:`~dora_rl.runtime.replan` (plans through faults), :mod:`~dora_rl.runtime.health` (the
no-plan state, errors, refusals, stops), :mod:`~dora_rl.runtime.rendezvous` (the join store
bound to one address and the HMAC join). See ``docs/runtime.md``.
"""
