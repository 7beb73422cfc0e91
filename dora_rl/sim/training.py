"""Training iterations under the 1F1B schedule, with each stage's gradient all-reduce.

An iteration splits the global batch into the plan's micro-batches. Stage k (of K) runs
``min(K - 1 - k, m)`` forward passes to fill the pipeline, then alternates one forward and one
backward pass, then drains the remaining backward passes (one-forward-one-backward: at most
K - k micro-batches in flight at stage k). A forward pass needs the previous stage's
activations, a backward pass the next stage's gradients; each boundary carries activations
forward and gradients back as two flows, one micro-batch at a time. After its last backward
pass a data-parallel stage all-reduces its gradients (or LoRA adapters) over the network; the
iteration ends when every stage has. Iterations run back to back while the job is active.

The schedule's makespan is not the cost model's closed form: with transfers comparable to the
stage times, the K - k micro-batches a stage may hold do not cover the round trip of one
micro-batch through the later stages, and stage k waits (see ``experiments/results/
sim_fidelity.md``).
"""

from __future__ import annotations

from collections import deque

from dora_rl.sim.job_lifecycle import JobRuntime, Pipeline
from dora_rl.sim.job_spec import Request
from dora_rl.sim.medium import Transfer
from dora_rl.sim.plan_work import CompiledPlan
from dora_rl.sim.stage_ops import StageOp

FORWARD, BACKWARD = 0, 1


def one_f_one_b_order(stage: int, n_stages: int, micro_batches: int) -> list[tuple[int, int]]:
    """The (pass, micro-batch) order stage ``stage`` runs in one iteration.

    Example:
        >>> one_f_one_b_order(0, 2, 3)   # F0, then F1 B0, F2 B1, then B2
        [(0, 0), (0, 1), (1, 0), (0, 2), (1, 1), (1, 2)]
    """
    warmup = min(n_stages - 1 - stage, micro_batches)
    order = [(FORWARD, i) for i in range(warmup)]
    for i in range(micro_batches - warmup):
        order += [(FORWARD, warmup + i), (BACKWARD, i)]
    order += [(BACKWARD, i) for i in range(micro_batches - warmup, micro_batches)]
    return order


class TrainingPipeline(Pipeline):
    """One plan running training iterations, one at a time (see the module docstring)."""

    def __init__(self, job: TrainingJob, work: CompiledPlan) -> None:
        super().__init__(job, work)
        k = self.n_stages
        self.m = work.plan.micro_batches
        self.items = job.spec.items / self.m
        self.orders = [one_f_one_b_order(s, k, self.m) for s in range(k)]
        self.shares = [f.share if f.share is not None else work.equal_share
                       for f in work.boundaries]
        self.req: Request | None = None
        self.ops: set[StageOp] = set()
        self.xfers: set[Transfer] = set()

    @property
    def all_ready(self) -> bool:
        """Whether every stage has its weights."""
        return all(self.ready)

    def run(self, req: Request) -> None:
        """Start one iteration (the pipeline must be idle and ready)."""
        k, m = self.n_stages, self.m
        self.req = req
        self.members[req] = None
        self.pos = [0] * k
        self.busy = [False] * k
        self.have = [[[s == 0] * m, [False] * m] for s in range(k)]  # inputs per pass
        self.queues: list[list[deque[int]]] = [[deque(), deque()] for _ in range(k - 1)]
        self.sending = [[False, False] for _ in range(k - 1)]
        self.stages_done = 0
        for s in range(k):
            self._try(s)

    def stage_ready(self, k: int) -> None:
        if self.all_ready:
            self.job.pull()

    def cancel_work(self) -> None:
        for op in list(self.ops):
            op.cancel()
        for xfer in list(self.xfers):
            self.sim.network.cancel(xfer)
        self.ops.clear()
        self.xfers.clear()
        self.req = None

    # ------------------------------------------------------------------ internals
    def _try(self, s: int) -> None:
        if self.busy[s] or self.pos[s] >= len(self.orders[s]):
            return
        kind, i = self.orders[s][self.pos[s]]
        if not self.have[s][kind][i]:
            return
        self.busy[s] = True
        op = StageOp(self.sim.env, self.sim.devices, self.job.spec.index, self.work.stages[s],
                     self.items, kind == BACKWARD, 0.0, self._done)
        op.tag = (s, kind, i)
        self.ops.add(op)

    def _done(self, op: StageOp) -> None:
        s, kind, i = op.tag
        self.ops.discard(op)
        self.busy[s] = False
        self.pos[s] += 1
        if kind == FORWARD and s == self.n_stages - 1:
            self.have[s][BACKWARD][i] = True
        elif kind == FORWARD:
            self.queues[s][FORWARD].append(i)
            self._send(s, FORWARD)
        elif s > 0:
            self.queues[s - 1][BACKWARD].append(i)
            self._send(s - 1, BACKWARD)
        if self.pos[s] == len(self.orders[s]):
            self._sync(s)
        else:
            self._try(s)

    def _send(self, b: int, kind: int) -> None:
        """Send the next waiting micro-batch over boundary ``b`` (activations or gradients)."""
        if self.sending[b][kind] or not self.queues[b][kind]:
            return
        i = self.queues[b][kind].popleft()
        self.sending[b][kind] = True
        xfer = self.sim.network.send(self.work.boundaries[b], self.items, self.job.spec.index,
                                     self.shares[b], lambda x: self._sent(b, kind, i, x))
        if xfer is None:
            self._sent(b, kind, i, None)
        else:
            self.xfers.add(xfer)

    def _sent(self, b: int, kind: int, i: int, xfer: Transfer | None) -> None:
        if xfer is not None:
            self.xfers.discard(xfer)
        self.sending[b][kind] = False
        target = b + 1 if kind == FORWARD else b
        self.have[target][kind][i] = True
        self._try(target)
        self._send(b, kind)

    def _sync(self, s: int) -> None:
        flow = self.work.allreduce[s]
        xfer = None
        if flow is not None:
            share = flow.share if flow.share is not None else self.work.equal_share
            xfer = self.sim.network.send(flow, 1.0, self.job.spec.index, share, self._synced)
        if xfer is None:
            self._synced(None)
        else:
            self.xfers.add(xfer)

    def _synced(self, xfer: Transfer | None) -> None:
        if xfer is not None:
            self.xfers.discard(xfer)
        self.stages_done += 1
        if self.stages_done == self.n_stages and self.req is not None:
            req, self.req = self.req, None
            self.job.finished(req, self)


class TrainingJob(JobRuntime):
    """Iterations back to back on the current plan while the job is active."""

    def make_pipeline(self, work: CompiledPlan) -> Pipeline:
        return TrainingPipeline(self, work)

    def start_arrivals(self, times_s: list[float] | None = None) -> None:
        """Training has no arrivals: the first iteration starts when a plan is ready."""
        self.pull()

    def finished(self, req: Request, pipe: Pipeline) -> None:
        super().finished(req, pipe)
        self.pull()

    def pull(self) -> None:
        """Start the next iteration: re-run an aborted one, or a new one while active."""
        pipe = self.current
        if not isinstance(pipe, TrainingPipeline) or not pipe.all_ready or pipe.req is not None:
            return
        if any(p.members for p in self.draining):
            return  # iterations are sequential: the previous one is finishing on an old plan
        if self.backlog:
            pipe.run(self.backlog.popleft())
        elif self.active:
            self.interval["arrived"] += 1
            pipe.run(Request(self.sim.env.now, self.scale, self.analytic_ms))
