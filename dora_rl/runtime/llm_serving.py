"""Serving an LLM job until stopped: prefill and greedy decode pipelined across the plan.

:class:`LlmRuntime` is a :class:`~dora_rl.runtime.service.ServiceRuntime` (workers, weights
placed per the decider's plan, the control thread with its heartbeats, decisions, energy and
status file, until stopped): :meth:`LlmRuntime.generate` serves one request when it comes (from
the HTTP API, :mod:`dora_rl.runtime.http_api`). A request runs on the plan in force when it
starts: its prompt's prefill and then each decode token travel the plan's stages (the first
device of each stage) device to device (:func:`dora_rl.runtime.llm_stage.step`), each stage
keeping its own KV cache for the request. Plans switch between requests: a switch the controller
decides never moves a running request. When a device of the plan fails mid-request, the device
is removed and the job re-planned as for inference, and the request goes on on the new plan: its
KV caches are rebuilt by a prefill over the prompt and the tokens generated so far, so no token
is lost or repeated.

The card's world is emulated as on the inference path: each stage of a step stays busy for
the cost model's time of that step (:func:`dora_rl.costmodel.llm_steps.llm_step_s`: its
layers over the step's new tokens, reading the cached ones) in the devices' power modes, times
the time scale, and the hidden states cross the emulated links. Figures divide the times
measured on this host by the time scale, as the inference path does.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch
from torch.distributed import rpc

from dora_rl.costmodel import Plan
from dora_rl.costmodel.llm_steps import llm_step_s
from dora_rl.runtime.cluster import SERVER_NAME
from dora_rl.runtime.control import Decider
from dora_rl.runtime.health import Refused, StopFlag, describe
from dora_rl.runtime.layers import ModelError
from dora_rl.runtime.llm_metrics import LlmMetrics
from dora_rl.runtime.llm_stage import StageHop, release, step
from dora_rl.runtime.result import Record
from dora_rl.runtime.runner import MAX_ATTEMPTS
from dora_rl.runtime.service import ServiceRuntime
from dora_rl.runtime.settings import ServeConfig
from dora_rl.runtime.tiny_lm import CONFIG, EOS

STEP_MEMO = 4096
"""Most step times :meth:`LlmRuntime.emulated` keeps."""
_REQUESTS = itertools.count(1)
"""Ids of attempts (the workers' cache keys)."""


@dataclass
class Progress:
    """One request so far: tokens out, when each came, and the attempt producing them."""

    out: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    plan_id: int = 0
    attempt: int = 0


class LlmRuntime(ServiceRuntime):
    """A live LLM service on the card's devices (see the module docstring).

    Args:
        cfg: The run's settings (``requests``, ``rate_per_s`` and ``kills`` are not used);
            decider: who decides plans, levels and modes; stop: set to stop serving.

    Raises:
        ModelError: the job is not an ``llm_inference`` job on the built-in ``tiny_lm``.
    """

    def __init__(self, cfg: ServeConfig, decider: Decider, stop: StopFlag | None = None) -> None:
        job = cfg.scenario.jobs[cfg.job]
        if job.workload != "llm_inference":
            raise ModelError(f"job {job.name!r}: not an llm_inference job")
        super().__init__(cfg, decider, stop)
        if self.specs[0].family != "tiny_lm":
            raise ModelError(f"job {job.name!r}: model {job.model!r} cannot decode here; only "
                             "the built-in tiny_lm (envs/tiny_llm.yaml) can")
        self.context_tokens = CONFIG.context_tokens
        self.metrics = LlmMetrics([job.name])
        self.step_overhead_s = [0.0] * len(self.names)
        """Per device, the measured overhead of a step through it (:meth:`_calibrate_steps`)."""
        self._step_s: dict[tuple[Plan, int, int], list[float]] = {}
        """Emulated stage seconds of a step by (plan in its modes, new tokens, cached)."""

    # ------------------------------------------------------------------ lifecycle
    def _calibrate(self) -> None:
        self._calibrate_steps()

    def _calibrate_steps(self, calls: int = 15) -> None:
        """Measure, per device, the overhead of a step through it: a call of
        :func:`~dora_rl.runtime.llm_stage.step` over no layers (the RPC round trip, the
        worker's bookkeeping), median of ``calls``. A stage then sleeps its emulated time less
        this (:meth:`emulated`)."""
        x = torch.zeros(1, 1, 4)
        for d, name in enumerate(self.names):
            if not self.present[d]:
                continue
            chain, times = (StageHop(name, d, 0, 0),), []
            for _ in range(calls):
                request = next(_REQUESTS)
                start = time.perf_counter()
                rpc.rpc_sync(name, step, args=(chain, SERVER_NAME, request, x, 0, 5.0),
                             timeout=5.0)
                times.append(time.perf_counter() - start)
                self._release(chain, request)
            self.step_overhead_s[d] = sorted(times)[len(times) // 2]

    # ------------------------------------------------------------------ one request
    def _chain(self, plan: Plan) -> tuple[StageHop, ...]:
        """The devices a token step travels: the first device of each stage."""
        return tuple(StageHop(self.names[group[0]], group[0], first, end)
                     for first, end, group in zip((0, *plan.stage_end[:-1]), plan.stage_end,
                                                  plan.stage_devices, strict=True))

    def emulated(self, plan: Plan, tokens: int, start: int
                 ) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
        """A step over ``tokens`` new tokens with ``start`` cached, in the devices' power
        modes now: per stage its emulated compute seconds (times the time scale) and the
        part of them its device sleeps (less the measured overhead of a call to it, so that
        the step as the server sees it lasts the emulated time), and per boundary the bytes
        it moves."""
        with self.lock:
            modes = self.power_now.modes
        levels = tuple(m if m > 0 else 0 for m in modes)
        moded = replace(plan, dvfs_levels=levels) if any(levels) else plan
        tables = self.model.tables
        key = (moded, tokens, start)
        compute = self._step_s.get(key)
        if compute is None:
            if len(self._step_s) >= STEP_MEMO:
                self._step_s.clear()
            compute = self._step_s[key] = [s * self.time_scale
                                           for s in llm_step_s(tables, moded, tokens, start)]
        overhead = self.step_overhead_s
        sleep = [max(c - overhead[group[0]], 0.0)
                 for c, group in zip(compute, plan.stage_devices, strict=True)]
        act = tables.lists.act
        return (tuple(compute), tuple(sleep),
                tuple(act[end - 1] * tokens for end in plan.stage_end[:-1]))

    def _step(self, chain: tuple[StageHop, ...], plan: Plan, request: int, tokens: list[int],
              start: int) -> int:
        x = torch.tensor([tokens], dtype=torch.long)
        compute_s, sleep_s, send = self.emulated(plan, len(tokens), start)
        timeout = self.cfg.rpc_timeout_s + sum(compute_s)
        return int(rpc.rpc_sync(chain[0].name, step,
                                args=(chain, SERVER_NAME, request, x, start, timeout,
                                      compute_s, sleep_s, send, self.lock_dir),
                                timeout=timeout * len(chain)))

    def _release(self, chain: tuple[StageHop, ...], request: int) -> None:
        for hop in chain:
            try:
                rpc.rpc_async(hop.name, release, args=(request,), timeout=1.0)
            except Exception:  # noqa: BLE001, S110 - a lost worker's caches are gone anyway
                pass

    def _failed(self, chain: tuple[StageHop, ...], error: Exception) -> str:
        """After a failed step: remove a dead device of the chain (and re-plan); returns
        the reason."""
        dead = self._probe(frozenset(hop.device for hop in chain))
        if dead is None:
            return f"a stage failed though every device answers ({describe(error)})"
        self.on_lost(dead)
        return f"device {self.names[dead]} lost"

    def generate(self, prompt: list[int], max_tokens: int) -> Iterator[int]:
        """Serve one request: yield its greedy output tokens as they come (at most
        ``max_tokens``, ending after :data:`~dora_rl.runtime.tiny_lm.EOS`).

        Raises:
            Refused: no plan within ``plan_wait_s``, the service is stopping, or the
                request failed :data:`~dora_rl.runtime.runner.MAX_ATTEMPTS` times.
        """
        index, sent_t, target_ms = next(self.index), time.monotonic(), self._target_ms()
        with self.slots:
            self.sent += 1
            progress = Progress()
            try:
                yield from self._attempts(prompt, max_tokens, progress)
            except Refused as refusal:
                self.health.not_completed(index, str(refusal))
                self.metrics.refused(self.job.name)
                raise
            except GeneratorExit:  # the client went away: nothing more to send
                self.metrics.refused(self.job.name)
                raise
            self._record(index, sent_t, progress, target_ms)

    def _attempts(self, prompt: list[int], max_tokens: int, p: Progress) -> Iterator[int]:
        why = "no attempt"
        out = p.out
        for attempt in range(MAX_ATTEMPTS):
            plan, p.plan_id = self._serving_plan(time.monotonic())
            chain, request = self._chain(plan), next(_REQUESTS)
            p.attempt = attempt
            try:
                tokens, start = prompt + out, 0  # after a failure: rebuild the caches
                while len(out) < max_tokens and (not out or out[-1] != EOS):
                    if self.stop.is_set():
                        raise Refused("serve was stopped")
                    token = self._step(chain, plan, request, tokens, start)
                    start += len(tokens)
                    tokens = [token]
                    out.append(token)
                    p.times.append(time.monotonic())
                    yield token
                return
            except Refused:
                raise
            except Exception as error:  # noqa: BLE001 - RPC reports a failure many ways
                why = self._failed(chain, error)
            finally:
                self._release(chain, request)
        raise Refused(f"gave up after {MAX_ATTEMPTS} attempts ({why})")

    def _record(self, index: int, sent_t: float, p: Progress, target_ms: float) -> None:
        """Telemetry and metrics of a completed request (times in the card's world)."""
        times = p.times
        done_t = times[-1] if times else time.monotonic()
        scale = self.time_scale
        latency_s = (done_t - sent_t) / scale
        ttft_s = ((times[0] if times else done_t) - sent_t) / scale
        tpot_s = (times[-1] - times[0]) / (len(times) - 1) / scale if len(times) > 1 else None
        qoe = self.job.qoe
        met = ((qoe.ttft_ms is None or ttft_s * 1e3 <= qoe.ttft_ms)
               and (qoe.tpot_ms is None or tpot_s is None or tpot_s * 1e3 <= qoe.tpot_ms)
               and (qoe.latency_ms is None or latency_s * 1e3 <= qoe.latency_ms))
        with self.lock:
            # the runtime's QoE accounting holds a request to its first token (TTFT target)
            self.records.append(Record(index, sent_t, times[0] if times else done_t,
                                       p.plan_id, p.attempt, ttft_s * 1e3,
                                       target_ms, sent_t))
        self.metrics.completed(self.job.name, latency_s, ttft_s, tpot_s, len(p.out), met)
