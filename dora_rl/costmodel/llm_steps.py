"""The stage times of one LLM step, for a runtime that emulates them token by token.

The cost model prices an LLM request as its prefill (the prompt through every stage) and one
decode step per further token, each stage taking its compute or its memory reads, whichever is
longer (:meth:`~dora_rl.costmodel.single._Eval.stage_times`), a decode step also reading the
key/value cache of the tokens before it. :func:`llm_step_s` gives the same per-stage times for
one step with an actual number of new and cached tokens: a prefill with nothing cached sums to
the cost model's prefill seconds, and decode steps at the mean context
(``prompt + output / 2``) to its per-token seconds (``tests/test_llm_emulation.py`` checks
both). The live runtime sleeps each stage of a step to these times
(:mod:`dora_rl.runtime.llm_stage`).
"""

from __future__ import annotations

from collections.abc import Sequence

from dora_rl.costmodel.plan_spec import Plan
from dora_rl.costmodel.single import _Eval
from dora_rl.costmodel.tables import JobTables


def llm_step_s(tables: JobTables, plan: Plan, tokens: float, context: float,
               load: Sequence[float] | None = None) -> list[float]:
    """Per stage of ``plan`` (in its devices' power modes), modelled seconds of one step over
    ``tokens`` new tokens (all of a batch's) with ``context`` tokens per sequence already in
    the key/value caches, at background ``load`` per device (none by default).

    Example:
        The tiny LLM card's whole model on its ``fast`` device: a 32-token prefill, then one
        token with 32 cached.

        >>> from dora_rl.costmodel import CostModel, Plan
        >>> from dora_rl.scenarios import load
        >>> model = CostModel(load("envs/tiny_llm.yaml"))
        >>> plan = Plan(stage_end=(8,), stage_devices=((2,),), micro_batches=1)
        >>> [round(s * 1e3, 4) for s in llm_step_s(model.tables, plan, 32, 0)]
        [104.0806]
        >>> [round(s * 1e3, 4) for s in llm_step_s(model.tables, plan, 1, 32)]
        [3.2525]
    """
    ev = _Eval(tables, plan, list(load) if load is not None else [0.0] * tables.n_devices)
    lists = tables.lists
    work = tables.job.llm
    batch = work.batch if work is not None else 1
    reads = [ev.span(lists.kv, d) * context * batch * ev.frac[d] / lists.mem_bw[d]
             for d in range(ev.n_dev)] if context > 0 else None
    stage, _ = ev.stage_times(float(tokens), extra=reads)
    return list(stage[: ev.k])


__all__ = ["llm_step_s"]
