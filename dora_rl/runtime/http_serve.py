"""``serve --http``: an LLM job of the card served over HTTP until stopped.

:func:`run_http` starts an :class:`~dora_rl.runtime.llm_serving.LlmRuntime` (workers, the
first plan, the control thread), binds the HTTP socket itself (so that a busy address is one
clear error), and runs uvicorn on the app of :mod:`dora_rl.runtime.http_api` until SIGINT or
SIGTERM; then it stops the workers. :class:`RuntimeService` is the API's view of the runtime.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
from typing import Any

from dora_rl.errors import DoraError
from dora_rl.runtime.control import Decider
from dora_rl.runtime.health import StopFlag
from dora_rl.runtime.llm_metrics import render
from dora_rl.runtime.llm_serving import LlmRuntime
from dora_rl.runtime.loop import status
from dora_rl.runtime.settings import ServeConfig

log = logging.getLogger(__name__)


class RuntimeService:
    """The HTTP API's view of a running :class:`LlmRuntime` (one model id: its job)."""

    def __init__(self, rt: LlmRuntime) -> None:
        self.rt = rt
        self.context_tokens = rt.context_tokens

    def model_ids(self) -> list[str]:
        return [self.rt.job.name]

    def generate(self, model: str, prompt: list[int], max_tokens: int) -> Any:
        return self.rt.generate(prompt, max_tokens)

    def _last(self) -> Any:
        intervals = self.rt.telemetry.intervals
        return intervals[-1] if intervals else None

    def status(self) -> dict[str, Any]:
        out = status(self.rt, self._last())
        out["job"] = self.rt.job.name
        out["qoe_attainment"] = self.rt.metrics.attainment(self.rt.job.name)
        return out

    def metrics_text(self) -> str:
        rt = self.rt
        intervals = list(rt.telemetry.intervals)
        with rt.lock:
            plan_id = rt.live.plan_id
            modes = rt.power_now.modes
        return render(rt.metrics, {
            "plan_id": plan_id,
            "energy_j": sum(t.energy_j for t in intervals),
            "jobs_energy_j": sum(t.jobs_energy_j for t in intervals),
            "modes": dict(zip(rt.names, modes, strict=True))})


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one).

    Raises:
        DoraError: the address cannot be bound (one line naming it).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise DoraError(f"--http {host}:{port}: cannot listen there "
                        f"({error.strerror or error})") from None
    sock.listen(128)
    return sock


def run_http(cfg: ServeConfig, decider: Decider, host: str, port: int, token: str,
             stop: StopFlag) -> int:
    """Serve until SIGINT or SIGTERM; returns 128 + the signal that stopped it (1 if the HTTP
    server ended by itself).

    Raises:
        Interrupted: stopped while the workers were starting.
        DoraError: the HTTP address cannot be bound.
    """
    import uvicorn

    from dora_rl.runtime.http_api import create_app

    sock = bind(host, port)
    rt = LlmRuntime(cfg, decider, stop)
    try:
        rt.start()
        app = create_app(RuntimeService(rt), token)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                               timeout_graceful_shutdown=5))
        where = sock.getsockname()
        print(f"serve: {cfg.scenario.name}/{rt.job.name} on http://{host}:{where[1]}/v1 "
              f"(plan {rt.live.plan.stage_end} on "
              f"{[[rt.names[d] for d in g] for g in rt.live.plan.stage_devices]}); "
              "Ctrl-C stops", flush=True)
        server.run(sockets=[sock])
    finally:
        signum = stop.signum
        stop.set()  # requests still running are refused
        rt.close()
        sock.close()
    how = f"by {signal.Signals(signum).name}" if signum else "(the HTTP server ended)"
    print(f"serve: stopped {how}; {len(rt.records)} requests completed, "
          f"{len(rt.health.failed)} not completed", file=sys.stderr)
    return 128 + signum if signum else 1
