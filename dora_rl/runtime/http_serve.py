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
from typing import Any, cast

from dora_rl.errors import DoraError
from dora_rl.runtime.control import Decider
from dora_rl.runtime.health import Refused, StopFlag
from dora_rl.runtime.llm_metrics import LlmMetrics, render
from dora_rl.runtime.llm_serving import LlmRuntime
from dora_rl.runtime.loop import status
from dora_rl.runtime.service import InferRuntime, ServiceRuntime
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

    def infer_jobs(self) -> dict[str, tuple[Any, int | None]]:
        return {}

    def infer(self, job: str, x: Any) -> tuple[Any, float, int]:
        raise Refused(f"job {job!r} is not served here")

    def status(self) -> dict[str, Any]:
        return _status(self.rt, self.rt.metrics)

    def metrics_text(self) -> str:
        return _metrics_text(self.rt, self.rt.metrics, "dora_llm", tokens=True)


class InferService:
    """The HTTP API's view of a running :class:`InferRuntime` (``/v1/infer/<its job>``)."""

    context_tokens = 0

    def __init__(self, rt: InferRuntime) -> None:
        self.rt = rt
        self.metrics = LlmMetrics([rt.job.name])

    def model_ids(self) -> list[str]:
        return []

    def generate(self, model: str, prompt: list[int], max_tokens: int) -> Any:
        raise Refused(f"model {model!r} is not served here")

    def infer_jobs(self) -> dict[str, tuple[Any, int | None]]:
        return {self.rt.job.name: (self.rt.template, self.rt.vocab)}

    def infer(self, job: str, x: Any) -> tuple[Any, float, int]:
        try:
            y, latency_ms, plan_id = self.rt.infer(x)
        except Refused:
            self.metrics.refused(job)
            raise
        target = self.rt.job.qoe.latency_ms
        self.metrics.completed(job, latency_ms / 1e3, latency_ms / 1e3, None, 0,
                               target is None or latency_ms <= target)
        return y, latency_ms, plan_id

    def status(self) -> dict[str, Any]:
        return _status(self.rt, self.metrics)

    def metrics_text(self) -> str:
        return _metrics_text(self.rt, self.metrics, "dora_infer", tokens=False)


def _status(rt: ServiceRuntime, metrics: LlmMetrics) -> dict[str, Any]:
    intervals = rt.telemetry.intervals
    out = status(rt, intervals[-1] if intervals else None)
    out["job"] = rt.job.name
    out["qoe_attainment"] = metrics.attainment(rt.job.name)
    return out


def _metrics_text(rt: ServiceRuntime, metrics: LlmMetrics, prefix: str, tokens: bool) -> str:
    intervals = list(rt.telemetry.intervals)
    with rt.lock:
        plan_id = rt.live.plan_id
        modes = rt.power_now.modes
    return render(metrics, {
        "plan_id": plan_id,
        "energy_j": sum(t.energy_j for t in intervals),
        "jobs_energy_j": sum(t.jobs_energy_j for t in intervals),
        "modes": dict(zip(rt.names, modes, strict=True))}, prefix, tokens)


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
    llm = cfg.scenario.jobs[cfg.job].workload == "llm_inference"
    rt: ServiceRuntime = LlmRuntime(cfg, decider, stop) if llm else InferRuntime(cfg, decider,
                                                                                 stop)
    try:
        rt.start()
        service: RuntimeService | InferService = RuntimeService(rt) \
            if isinstance(rt, LlmRuntime) else InferService(cast(InferRuntime, rt))
        app = create_app(service, token)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                               timeout_graceful_shutdown=5))
        where = sock.getsockname()
        route = "/v1" if llm else f"/v1/infer/{rt.job.name}"
        print(f"serve: {cfg.scenario.name}/{rt.job.name} on http://{host}:{where[1]}{route} "
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
