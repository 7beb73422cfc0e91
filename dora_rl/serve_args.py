"""The command line of ``python -m dora_rl.serve``: parsed and checked up front.

:func:`parse` reads the arguments and checks every one before anything starts (the card, the
job, numbers and their limits, outputs that must be writable, the network options, the
controller, a fixed plan); a problem is one :class:`UsageError` naming the argument.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dora_rl.config import Scenario
from dora_rl.errors import ArgParser, ConfigError, DoraError, UsageError
from dora_rl.paths import find
from dora_rl.scenarios import load


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
    p = ArgParser(prog="python -m dora_rl.serve", description="Serve a card's job live.")
    p.add_argument("--scenario", required=True, help="card name or path")
    p.add_argument("--controller", default="static", help="baseline name or run folder")
    p.add_argument("--job", help="job name (default: the card's first inference job; with "
                                 "--http its first llm_inference job, else inference job)")
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
                   help="serve the job over HTTP until stopped (instead of --requests): an "
                        "llm_inference job as an OpenAI-compatible API, an inference job at "
                        "POST /v1/infer/JOB")
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


__all__ = ["LIMITS", "UsageError", "parse", "parse_http", "parse_kill"]
