"""What one job asks of the simulator: the shape of its requests and its QoE targets.

A *unit of work* is a request (DNN inference), a request of prompt and output tokens (LLM
inference: one prefill pass, then one pass per further output token) or an iteration
(training). :class:`Request` carries a unit through the pipelines; :class:`JobSpec` says how
many items each pass moves and which targets a finished unit must meet.

Example:
    >>> from dora_rl.scenarios import load
    >>> spec = JobSpec.of(load("smart_home"), 0)
    >>> spec.kind, spec.prefill_items, spec.output_tokens, spec.targets_ms["ttft_ms"]
    ('llm', 256.0, 64, 3000.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dora_rl.config import Scenario

TIME_TARGETS = ("latency_ms", "ttft_ms", "tpot_ms", "iteration_ms")


@dataclass(frozen=True)
class JobSpec:
    """One job's work and targets.

    Attributes:
        name: The job's name.
        index: Its index in card order.
        kind: ``inference``, ``llm`` or ``training``.
        rate_per_s: Request rate (0 for training: iterations run back to back).
        items: Items per request pass (inference), per decode pass (LLM: the batch) or per
            iteration (training: the plan splits them into its micro-batches).
        prefill_items: Items of the prefill pass (LLM; prompt tokens x batch).
        batch: Requests' batch (LLM decode items; samples per inference request).
        prompt_tokens, output_tokens: LLM request shape (0 and 1 otherwise).
        iterations: Training only: iterations to finish for a deadline target.
        targets_ms: Per-unit time targets in ms (``latency_ms``, ``ttft_ms``, ``tpot_ms``,
            ``iteration_ms``) of the card, before QoE scaling.
        deadline_s: Time-to-finish target (training with ``iterations``).
        energy_j: Cap on energy per unit of work, if any.
    """

    name: str
    index: int
    kind: str
    rate_per_s: float
    items: float
    prefill_items: float
    batch: int
    prompt_tokens: int
    output_tokens: int
    iterations: int | None
    targets_ms: dict[str, float]
    deadline_s: float | None
    energy_j: float | None

    @classmethod
    def of(cls, scenario: Scenario, index: int, rate_scale: float = 1.0) -> JobSpec:
        """The spec of job ``index``; request rates are multiplied by ``rate_scale``."""
        job = scenario.jobs[index]
        model = scenario.models[job.model]
        per_sample = float(model.seq_len or 1) if model.unit == "token" else 1.0
        qoe = job.qoe
        targets = {name: float(getattr(qoe, name)) for name in TIME_TARGETS
                   if getattr(qoe, name) is not None}
        common: dict[str, Any] = {"name": job.name, "index": index, "targets_ms": targets,
                                  "deadline_s": qoe.deadline_s, "energy_j": qoe.energy_j}
        if job.llm is not None:
            llm = job.llm
            return cls(kind="llm", rate_per_s=llm.request_rate_per_s * rate_scale,
                       items=float(llm.batch), prefill_items=float(llm.batch * llm.prompt_tokens),
                       batch=llm.batch, prompt_tokens=llm.prompt_tokens,
                       output_tokens=llm.output_tokens, iterations=None, **common)
        if job.training is not None:
            tr = job.training
            return cls(kind="training", rate_per_s=0.0,
                       items=tr.global_batch * per_sample, prefill_items=0.0,
                       batch=tr.global_batch, prompt_tokens=0, output_tokens=1,
                       iterations=tr.iterations, **common)
        assert job.inference is not None
        inf = job.inference
        return cls(kind="inference", rate_per_s=inf.request_rate_per_s * rate_scale,
                   items=inf.batch * per_sample, prefill_items=0.0, batch=inf.batch,
                   prompt_tokens=0, output_tokens=1, iterations=None, **common)

    def met(self, req: Request) -> bool:
        """Whether the finished ``req`` met every per-unit time target (scaled at arrival)."""
        latency_ms = (req.done_s - req.arrival_s) * 1e3
        scale = req.scale
        t = self.targets_ms
        if self.kind == "llm":
            ok = req.ttft_s * 1e3 <= t.get("ttft_ms", math.inf) * scale
            return ok and req.tpot_s * 1e3 <= t.get("tpot_ms", math.inf) * scale
        if self.kind == "training":
            ok = latency_ms <= t.get("iteration_ms", math.inf) * scale
            if self.deadline_s is not None and self.iterations:
                ok = ok and latency_ms * 1e-3 * self.iterations <= self.deadline_s * scale
            return ok
        return latency_ms <= t.get("latency_ms", math.inf) * scale


class Request:
    """One unit of work on its way through a job's pipelines.

    Attributes:
        arrival_s: When it arrived (training: when the iteration started).
        scale: The job's QoE scale when it arrived (targets are multiplied by it).
        analytic_ms: The cost model's latency for the plan and state it arrived in (NaN if not
            asked for).
        tokens: Output tokens produced so far (LLM).
        prefilled: Whether the pipeline holding it has its KV cache (LLM).
        first_token_s, last_token_s: When its first and latest output tokens appeared.
        done_s: When it finished (NaN until then).
        restarts: How often it was re-executed after a device it was on left.
        settled: Scored as missed before it finished (its wait made the miss certain).
    """

    __slots__ = ("arrival_s", "scale", "analytic_ms", "tokens", "prefilled", "first_token_s",
                 "last_token_s", "done_s", "restarts", "settled")

    def __init__(self, arrival_s: float, scale: float, analytic_ms: float) -> None:
        self.arrival_s = arrival_s
        self.scale = scale
        self.analytic_ms = analytic_ms
        self.tokens = 0
        self.prefilled = False
        self.first_token_s = math.nan
        self.last_token_s = math.nan
        self.done_s = math.nan
        self.restarts = 0
        self.settled = False

    @property
    def ttft_s(self) -> float:
        """Time to first token (LLM)."""
        return self.first_token_s - self.arrival_s

    @property
    def tpot_s(self) -> float:
        """Mean time per output token after the first (LLM; 0 for a one-token answer)."""
        if self.tokens <= 1:
            return 0.0
        return (self.last_token_s - self.first_token_s) / (self.tokens - 1)
