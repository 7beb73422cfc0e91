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
import math
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from dora_rl.config import Scenario
from dora_rl.errors import ConfigError, DoraError, run_cli
from dora_rl.paths import find
from dora_rl.scenarios import load


class UsageError(DoraError):
    """A bad command-line argument."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_kill(text: str, devices: list[str]) -> tuple[str, int]:
    """``DEVICE@REQUEST`` of ``--kill``.

    Example:
        >>> parse_kill("mid@50", ["slow", "mid"])
        ('mid', 50)
    """
    name, _, at = text.partition("@")
    if name not in devices:
        raise UsageError(f"--kill {text}: unknown device {name!r} (card has "
                         f"{', '.join(devices)})")
    if not at.isdigit():
        raise UsageError(f"--kill {text}: expected DEVICE@REQUEST with a request index")
    return name, int(at)


def _scenario(text: str) -> Scenario:
    try:
        return load(text)
    except ConfigError as error:
        raise UsageError(f"--scenario: {error}") from None


LIMITS = {"--rate": 1e6, "--time-scale": 1e4, "--control-interval": 3600.0,
          "--plan-wait": 86400.0}
"""Largest value accepted per option (beyond, a run would never end or never wait)."""


def _positive(name: str, value: float | None) -> None:
    if value is None:
        return
    if not math.isfinite(value) or not value > 0:
        raise UsageError(f"{name} {value}: must be a finite number > 0")
    if value > LIMITS[name]:
        raise UsageError(f"{name} {value}: must be at most {LIMITS[name]:g}")


def _network(ns: argparse.Namespace, devices: list[str]) -> None:
    """Check ``--host``, ``--token``, ``--port`` and ``--remote``."""
    from dora_rl.runtime.rendezvous import JoinError, interface_of, is_loopback, resolve

    try:
        interface_of(resolve(ns.host))
    except JoinError as error:
        raise UsageError(str(error)) from None
    if not is_loopback(ns.host) and not ns.token:
        raise UsageError(f"--host {ns.host}: listening beyond loopback needs --token (or "
                         "DORA_JOIN_TOKEN)")
    if not 0 <= ns.port < 65536:
        raise UsageError(f"--port {ns.port}: expected 0..65535")
    for name in ns.remote:
        if name not in devices:
            raise UsageError(f"--remote {name}: unknown device (card has {', '.join(devices)})")
    if ns.remote and not ns.port:
        raise UsageError("--remote: needs --port, so that remote workers know where to join")


def _job(scenario: Scenario, name: str | None, http: bool = False) -> int:
    """The job to serve: an inference job for the batch benchmark; with ``--http`` an
    ``llm_inference`` or ``inference`` job (by default the card's first LLM job, else its
    first inference job)."""
    jobs = [j.name for j in scenario.jobs]
    kinds = ("llm_inference", "inference") if http else ("inference",)
    if name is None:
        for kind in kinds:
            job = next((i for i, j in enumerate(scenario.jobs) if j.workload == kind), None)
            if job is not None:
                return job
        raise UsageError(f"--scenario {scenario.name}: no {' or '.join(kinds)} job to serve"
                         f"{'' if http else ' (llm_inference jobs: --http HOST:PORT)'}")
    if name not in jobs:
        raise UsageError(f"--job {name}: unknown job (card has {', '.join(jobs)})")
    job = jobs.index(name)
    if scenario.jobs[job].workload not in kinds:
        how = "with --http" if http else "in the batch mode (--http serves llm_inference)"
        raise UsageError(f"--job {name}: only {' and '.join(kinds)} jobs are served {how} "
                         f"(it is {scenario.jobs[job].workload})")
    return job


def parse_http(text: str, token: str) -> tuple[str, int]:
    """``HOST:PORT`` of ``--http``; an address beyond loopback needs a token.

    Example:
        >>> parse_http("127.0.0.1:8000", "")
        ('127.0.0.1', 8000)
    """
    from dora_rl.runtime.rendezvous import is_loopback

    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UsageError(f"--http {text}: expected HOST:PORT such as 127.0.0.1:8000")
    if host in ("0.0.0.0", "::"):
        raise UsageError(f"--http {text}: a wildcard address is refused; name the interface's "
                         "address")
    if not is_loopback(host) and not token:
        raise UsageError(f"--http {text}: listening beyond loopback needs --token (or "
                         "DORA_JOIN_TOKEN); clients then send Authorization: Bearer <token>")
    return host, int(port)


def _output(name: str, text: str | None, directory: bool = False) -> None:
    """Check up front that an output (a file, or with ``directory`` a folder) can be written,
    so a long run does not fail at its end."""
    if text is None:
        return
    path = Path(text)
    if directory:
        if path.exists() and not path.is_dir():
            raise UsageError(f"{name} {text}: exists and is not a directory")
        folder = path
    else:
        if path.is_dir():
            raise UsageError(f"{name} {text}: is a directory, expected a file")
        folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"{name} {text}: cannot create {folder} "
                         f"({error.strerror or error})") from None
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{name} {text}: {folder} is not writable")


def _controller(name: str) -> str:
    """A live controller's name, or the run folder ``name`` finds (``checkpoints/...`` may be
    the shipped one: :func:`dora_rl.paths.find`)."""
    from dora_rl.controllers.baselines import CONTROLLERS, HINDSIGHT

    live = [c for c in CONTROLLERS if c not in HINDSIGHT]
    if name in HINDSIGHT:
        raise UsageError(f"--controller {name}: needs the coming intervals in advance, "
                         f"which a live run cannot know (live: {', '.join(live)})")
    if name in CONTROLLERS:
        return name
    if not find(name).is_dir():
        raise UsageError(f"--controller {name}: neither a controller name "
                         f"({', '.join(live)}) nor a run folder")
    return str(find(name))


def parse(argv: Sequence[str] | None) -> dict[str, Any]:
    """Parse and check the command line (raises :class:`UsageError` naming the argument)."""
    p = _Parser(prog="python -m dora_rl.serve", description="Serve a card's job live.")
    p.add_argument("--scenario", required=True, help="card name or path")
    p.add_argument("--controller", default="static", help="baseline name or run folder")
    p.add_argument("--job", help="job name (default: the card's first inference job)")
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--rate", type=float, help="requests per second (default: the card's)")
    p.add_argument("--batch", type=int, help="items per request (default: the card's)")
    p.add_argument("--time-scale", default="1",
                   help="emulated seconds per modelled second, or auto: the card's fastest "
                        "device runs at this host's speed (default 1)")
    p.add_argument("--control-interval", type=float, default=0.5, help="wall seconds")
    p.add_argument("--max-missed", type=int, default=3,
                   help="heartbeats a silent worker may miss in a row before it is removed "
                        "(default 3)")
    p.add_argument("--kill", action="append", default=[], metavar="DEVICE@REQUEST")
    p.add_argument("--status", help="status file (JSON, kept current)")
    p.add_argument("--json", help="write the result as JSON")
    p.add_argument("--png", help="write a timeline figure")
    p.add_argument("--tb", help="write TensorBoard scalars to this directory")
    p.add_argument("--bandwidth", choices=("static", "trace", "synthetic"), default="static",
                   help="link dynamics the emulated links follow (default static)")
    p.add_argument("--plan", help="serve this fixed plan instead (END:DEV+DEV,END:DEV)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1",
                   help="address the join store and RPC listen on (default 127.0.0.1)")
    p.add_argument("--token", default=os.environ.get("DORA_JOIN_TOKEN", ""),
                   help="join token, required beyond loopback (default: $DORA_JOIN_TOKEN)")
    p.add_argument("--port", type=int, default=0, help="join port (default: a free one)")
    p.add_argument("--remote", action="append", default=[], metavar="DEVICE",
                   help="do not spawn this device's worker: it joins from elsewhere")
    p.add_argument("--http", metavar="HOST:PORT",
                   help="serve the card's llm_inference job over an OpenAI-compatible HTTP "
                        "API until stopped (instead of --requests)")
    p.add_argument("--progress", choices=("auto", "live", "lines", "off"), default="auto",
                   help="progress on stderr: a live table (on a terminal), a line every 30 s "
                        "(auto elsewhere), or none")
    p.add_argument("--plan-wait", type=float, default=10.0,
                   help="wall seconds a request waits while no plan fits the devices left, "
                        "before it is refused (default 10)")
    ns = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    scenario = _scenario(ns.scenario)
    http = parse_http(ns.http, ns.token) if ns.http is not None else None
    job = _job(scenario, ns.job, http is not None)
    if ns.requests < 1:
        raise UsageError(f"--requests {ns.requests}: must be at least 1")
    if ns.max_missed < 1:
        raise UsageError(f"--max-missed {ns.max_missed}: must be at least 1")
    if ns.batch is not None and ns.batch < 1:
        raise UsageError(f"--batch {ns.batch}: must be at least 1")
    if ns.time_scale == "auto":
        time_scale = None
    else:
        try:
            time_scale = float(ns.time_scale)
        except ValueError:
            raise UsageError(f"--time-scale {ns.time_scale}: expected a number or auto") from None
    for name, value in (("--rate", ns.rate), ("--time-scale", time_scale),
                        ("--control-interval", ns.control_interval),
                        ("--plan-wait", ns.plan_wait)):
        _positive(name, value)
    for name, out in (("--status", ns.status), ("--json", ns.json), ("--png", ns.png)):
        _output(name, out)
    _output("--tb", ns.tb, directory=True)
    devices = [d.name for d in scenario.devices]
    _network(ns, devices)
    kills = tuple(parse_kill(k, devices) for k in ns.kill)
    ns.controller = _controller(ns.controller)
    plan = None
    if ns.plan is not None:
        from dora_rl.runtime.control import parse_plan

        n_layers = len(scenario.models[scenario.jobs[job].model].layers)
        try:
            plan = parse_plan(ns.plan, devices, n_layers)
        except DoraError as error:
            raise UsageError(str(error)) from None
    return {"scenario": scenario, "job": job, "ns": ns, "kills": kills, "plan": plan,
            "time_scale": time_scale, "http": http}


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
        from dora_rl.runtime import figures

        figures.timeline_png(result, Path(ns.png))


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
