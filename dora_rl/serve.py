"""Serve a card's job live: real partitioned inference across worker processes.

Usage::

    python -m dora_rl.serve --scenario envs/tiny.yaml --controller static \
        [--job NAME] [--requests N] [--rate R] [--batch B] [--time-scale S] \
        [--kill DEVICE@REQUEST] [--status F] [--json F] [--png F] [--tb DIR] \
        [--host H --token T] [--port P] [--remote DEVICE] [--plan-wait S] \
        [--progress auto|live|lines|off]
    python -m dora_rl.serve --scenario envs/tiny_llm.yaml --http 127.0.0.1:8000 [--token T]

One worker process per device of the card is spawned on this machine and joined over
``torch.distributed`` RPC; the job's model is built in torch with random weights, placed per
the controller's plan and fed random inputs at the card's rate (``--rate`` overrides it), in
the card's world emulated by time dilation (``--time-scale``; ``auto`` maps the card's fastest
device to this host) and link shaping (``--bandwidth``). ``--controller`` is a controller of
the ``-v1`` envs (``static``, ``dora``, ...) or a run folder trained on one; it decides every
control interval on what the runtime measured (plans, the job's bandwidth level, each device's
power mode; see ``docs/runtime.md``). ``--kill mid@50`` SIGKILLs device ``mid``'s worker when
request 50 is sent. ``--plan 4:slow+mid,8:fast`` serves a fixed plan (the controller then only
re-plans after a fault). The summary is printed; ``--json`` writes the full result,
``--status`` a JSON status file kept current while running, ``--png`` a timeline, ``--tb``
TensorBoard scalars under ``dora/``. While it runs, progress goes to standard error
(:mod:`dora_rl.runtime.console`): a table redrawn in place on a terminal, a line every 30 s
otherwise (``--progress`` chooses).

The join store and RPC listen on ``--host`` only (127.0.0.1 by default); any other address
needs ``--token`` (or ``DORA_JOIN_TOKEN``), which workers prove by HMAC without sending it.
``--remote mid`` does not spawn ``mid``'s worker: it joins from elsewhere with ``python -m
dora_rl.worker --connect H:P --device mid`` (``--port P`` fixes the port). torch.distributed
RPC is neither authenticated nor encrypted beyond the join: use it on a network you trust.

``--http HOST:PORT`` serves the job instead, until stopped, over HTTP
(:mod:`dora_rl.runtime.http_api`): an ``llm_inference`` job (the card's first, by default) over
an OpenAI-compatible API (``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``), an
``inference`` job as ``POST /v1/infer/<job>`` (tensor in, tensor out, JSON or raw bytes); both
with ``/status`` and ``/metrics``. An address beyond loopback needs
``--token``, which clients then send as ``Authorization: Bearer <token>``.

Exit status: 0 when every request sent completed; 1 when some did not (the summary, then one
line on stderr with the reasons); 2 with one line ``error: ...`` for bad input; 130 after
SIGINT (Ctrl-C) and 143 after SIGTERM: the workers are stopped, the partial result written
(``--json``, ``--status``) and one line printed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dora_rl.errors import run_cli
from dora_rl.serve_args import UsageError, parse


def _write(what: str, path: str, text: str) -> None:
    try:
        Path(path).write_text(text)
    except OSError as error:
        raise UsageError(f"{what} {path}: cannot write ({error.strerror or error})") from None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def summary_line(result: dict[str, Any]) -> str:
    """The printed one-paragraph summary."""
    lat = result["latency_ms"]
    rate = result["request_violation_rate"]
    attained = result["qoe_attainment"]
    return (f"{result['scenario']}/{result['job']}: sent {result['sent']}, completed "
            f"{result['completed']}, lost {result['lost']}; latency ms mean {_fmt(lat['mean'])} "
            f"p50 {_fmt(lat['p50'])} p95 {_fmt(lat['p95'])} p99 {_fmt(lat['p99'])}; requests "
            f"missed {result['requests_missed']} ({_fmt(None if rate is None else 100 * rate)} "
            f"%); QoE attainment {_fmt(None if attained is None else 100 * attained)} % of "
            f"requests sent; energy {result['energy_j']:.1f} J (jobs "
            f"{result['jobs_energy_j']:.1f} J); replans {result['replans']}; recovery s "
            f"{[round(v, 3) for v in result['recovery_s']]}")


def lost_line(result: dict[str, Any]) -> str:
    """The line on stderr when requests were not completed: how many, and why."""
    reasons = "; ".join(f"{n}: {why}" for why, n in list(result["lost_reasons"].items())[:3])
    return (f"serve: {result['lost']} of {result['sent']} requests not completed"
            f"{f' ({reasons})' if reasons else ''}")


@contextmanager
def _signals() -> Iterator[Any]:
    """SIGINT and SIGTERM set a stop flag (the run then stops cleanly) while inside."""
    from dora_rl.runtime.health import StopFlag

    stop = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, lambda signum, _frame: stop.set(signum))
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _outputs(ns: argparse.Namespace, result: dict[str, Any]) -> None:
    if ns.json:
        _write("--json", ns.json, json.dumps(result, indent=1))
    if ns.png:
        from dora_rl.runtime import timeline

        timeline.timeline_png(result, Path(ns.png))


def _main(argv: Sequence[str] | None) -> int:
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # TensorPipe's per-call warnings
    with _signals() as stop:
        args = parse(argv)
        from dora_rl.runtime.control import FixedDecider, make_decider
        from dora_rl.runtime.health import Interrupted
        from dora_rl.runtime.runner import ServeConfig, serve

        ns = args["ns"]
        try:
            decider: Any = make_decider(ns.controller, args["scenario"], args["job"])
            if args["plan"] is not None:
                decider = FixedDecider(args["plan"], decider)
            cfg = ServeConfig(
                scenario=args["scenario"], job=args["job"], requests=ns.requests,
                rate_per_s=ns.rate, batch=ns.batch, time_scale=args["time_scale"],
                control_interval_s=ns.control_interval, kills=args["kills"],
                max_missed=ns.max_missed, status=Path(ns.status) if ns.status else None,
                seed=ns.seed, bandwidth=ns.bandwidth,
                tensorboard=Path(ns.tb) if ns.tb else None, plan_wait_s=ns.plan_wait,
                host=ns.host, token=ns.token, port=ns.port, remote=tuple(ns.remote),
                progress=ns.progress)
            if stop.is_set():
                raise Interrupted(stop.signum)
            if args["http"] is not None:
                from dora_rl.runtime.http_serve import run_http

                http_host, http_port = args["http"]
                return run_http(cfg, decider, http_host, http_port, ns.token, stop)
            result, _ = serve(cfg, decider, stop)
        except Interrupted as stopped:
            print(f"serve: {stopped} before the first request; nothing served",
                  file=sys.stderr)
            return 128 + stopped.signum
        _outputs(ns, result)
        if result["interrupted"] is not None:
            written = ", ".join(f"{o} {p}" for o, p in (("--json", ns.json),
                                                        ("--status", ns.status)) if p)
            print(f"serve: interrupted by {result['interrupted']}: sent {result['sent']} of "
                  f"{ns.requests} requests, completed {result['completed']}, workers stopped"
                  f"{f'; partial result in {written}' if written else ''}", file=sys.stderr)
            return 128 + int(signal.Signals[result["interrupted"]])
        print(summary_line(result))
        if result["lost"]:
            print(lost_line(result), file=sys.stderr)
            return 1
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status: 0 all requests completed, 1 some did not, 2 bad
    input (one line on stderr), 130/143 stopped by SIGINT/SIGTERM."""
    return run_cli(_main, argv)


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # workers and RPC are stopped: skip torch's slow teardown
