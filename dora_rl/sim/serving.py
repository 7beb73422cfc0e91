"""Request streams through pipeline stages: DNN inference and LLM serving.

Requests arrive by a Poisson process at the card's rate (or at the times of a trace) while the
job is active, wait in the job's backlog, and enter the current pipeline while its first
stage's queue has room. Each stage takes the oldest request of its bounded queue when it is
free, its output buffer has room and its weights are in place, runs it on its device group
(:class:`dora_rl.sim.stage_ops.StageOp`), and hands it to the boundary flow, which sends one request
at a time to the next stage when that stage's queue has room (back-pressure). A stage starts
its next request while the previous one is still on the wire, as the cost model's pipeline
period assumes.

An LLM request makes one pass for its prefill (the first output token) and one per further
token; a pass leaving the last stage re-enters the first stage's queue. Decoding attends over
the prompt and the tokens so far, so reading the KV cache grows along the answer.
"""

from __future__ import annotations

from collections import deque

from dora_rl.sim.device import Kernel
from dora_rl.sim.job_lifecycle import JobRuntime, Pipeline
from dora_rl.sim.job_spec import Request
from dora_rl.sim.medium import Transfer
from dora_rl.sim.plan_work import CompiledPlan
from dora_rl.sim.stage_ops import StageOp

ARRIVAL_CHUNK = 512
"""Inter-arrival gaps drawn at once."""


class ServingPipeline(Pipeline):
    """One plan serving requests (see the module docstring)."""

    def __init__(self, job: ServingJob, work: CompiledPlan) -> None:
        super().__init__(job, work)
        k = self.n_stages
        self.queue: list[deque[Request]] = [deque() for _ in range(k)]
        self.out: list[deque[Request]] = [deque() for _ in range(k - 1)]
        self.ops: list[Kernel | StageOp | None] = [None] * k
        self.xfers: list[Transfer | None] = [None] * (k - 1)
        self.inbound = [0] * k
        self.capacity = job.sim.queue_capacity
        self.llm = job.spec.kind == "llm"
        self.shares = [f.share if f.share is not None else work.equal_share
                       for f in work.boundaries]

    def can_admit(self) -> bool:
        """Whether the first stage's queue has room."""
        return len(self.queue[0]) + self.inbound[0] < self.capacity

    def admit(self, req: Request) -> None:
        """Put ``req`` in the first stage's queue."""
        self.members[req] = None
        self.queue[0].append(req)
        self._try_stage(0)

    def stage_ready(self, k: int) -> None:
        self._try_stage(k)

    def cancel_work(self) -> None:
        for k, op in enumerate(self.ops):
            if isinstance(op, StageOp):
                op.cancel()
            elif op is not None:
                self.sim.devices[self.work.stages[k].devices[0]].cancel(op)
        for xfer in self.xfers:
            if xfer is not None:
                self.sim.network.cancel(xfer)

    # ------------------------------------------------------------------ internals
    def _shape(self, req: Request) -> tuple[float, float]:
        """Items of ``req``'s next pass, and the context tokens decoding attends over."""
        spec = self.job.spec
        if not self.llm:
            return spec.items, 0.0
        if not req.prefilled:  # prompt (and any tokens already produced, after a restart)
            return spec.prefill_items + spec.batch * req.tokens, 0.0
        return spec.items, float(spec.prompt_tokens + req.tokens)

    def _try_stage(self, k: int) -> None:
        if self.ops[k] is not None or not self.ready[k] or not self.queue[k]:
            return
        if k < self.n_stages - 1 and len(self.out[k]) >= self.capacity:
            return
        req = self.queue[k].popleft()
        items, context = self._shape(req)
        stage = self.work.stages[k]
        op: Kernel | StageOp
        if len(stage.devices) == 1:  # one kernel on one device: no group bookkeeping
            floor = stage.weight_read_s[0]
            if context > 0.0:
                floor += stage.kv_s[0] * context * items
            op = Kernel(items * stage.own_s[0], floor, self.job.spec.index, stage.extra_w[0],
                        self._op_done)
            op.tag = (k, req)
            self.ops[k] = op
            self.sim.devices[stage.devices[0]].submit(op)
        else:
            op = StageOp(self.sim.env, self.sim.devices, self.job.spec.index, stage, items,
                         False, context, self._op_done)
            op.tag = (k, req)
            self.ops[k] = op

    def _op_done(self, op: Kernel | StageOp) -> None:
        k, req = op.tag
        self.ops[k] = None
        if k == self.n_stages - 1:
            self._pass_done(req)
        else:
            self.out[k].append(req)
            self._try_xfer(k)
        self._try_stage(k)
        if k == 0:
            self.job.pull()
        else:
            self._try_xfer(k - 1)

    def _try_xfer(self, k: int) -> None:
        if self.xfers[k] is not None or not self.out[k]:
            return
        if len(self.queue[k + 1]) + self.inbound[k + 1] >= self.capacity:
            return
        req = self.out[k].popleft()
        items, _ = self._shape(req)
        self.inbound[k + 1] += 1
        xfer = self.sim.network.send(self.work.boundaries[k], items, self.job.spec.index,
                                     self.shares[k], lambda _x: self._delivered(k, req))
        if xfer is None:
            self._delivered(k, req)
        else:
            self.xfers[k] = xfer

    def _delivered(self, k: int, req: Request) -> None:
        self.xfers[k] = None
        self.inbound[k + 1] -= 1
        self.queue[k + 1].append(req)
        self._try_stage(k + 1)
        self._try_xfer(k)
        self._try_stage(k)

    def _pass_done(self, req: Request) -> None:
        if not self.llm:
            self.job.finished(req, self)
            return
        now = self.sim.env.now
        req.tokens += 1
        if req.tokens == 1:
            req.first_token_s = now
            self.job.interval["ttft_s"].append(now - req.arrival_s)
        else:
            self.job.interval["tpot_s"].append(now - req.last_token_s)
        req.last_token_s = now
        req.prefilled = True
        if req.tokens >= self.job.spec.output_tokens:
            self.job.finished(req, self)
        else:
            self.queue[0].append(req)
            self._try_stage(0)


class ServingJob(JobRuntime):
    """A request stream (inference or LLM); see the module docstring.

    Call :meth:`start_arrivals` once, with the arrival times of a trace or None for Poisson
    arrivals at the spec's rate drawn from the simulator's generator.
    """

    def make_pipeline(self, work: CompiledPlan) -> Pipeline:
        return ServingPipeline(self, work)

    def start_arrivals(self, times_s: list[float] | None = None) -> None:
        """Schedule arrivals: Poisson at the job's rate, or at ``times_s`` (sorted seconds)."""
        self._trace = deque(times_s) if times_s is not None else None
        self._gaps: deque[float] = deque()
        self._schedule_next()

    def _schedule_next(self) -> None:
        env = self.sim.env
        if self._trace is not None:
            if not self._trace:
                return
            delay = max(self._trace.popleft() - env.now, 0.0)
        else:
            if self.spec.rate_per_s <= 0.0:
                return
            if not self._gaps:
                self._gaps.extend(self.sim.rng.exponential(
                    1.0 / self.spec.rate_per_s, ARRIVAL_CHUNK).tolist())
            delay = self._gaps.popleft()
        env.timeout(delay).callbacks.append(self._arrive)

    def _arrive(self, _event: object) -> None:
        # a Poisson stream thinned to the active intervals, and to the interval's share of the
        # card's rate, is still Poisson; a trace is obeyed
        kept = self.active and (self.rate_scale >= 1.0 or self.sim.rng.random() < self.rate_scale)
        if kept or self._trace is not None:
            req = Request(self.sim.env.now, self.scale, self.analytic_ms)
            self.arrived(req)
            self.backlog.append(req)
            self.pull()
        self._schedule_next()

    def pull(self) -> None:
        pipe = self.current
        if not isinstance(pipe, ServingPipeline):
            return
        backlog = self.backlog
        while backlog and pipe.can_admit():
            pipe.admit(backlog.popleft())
