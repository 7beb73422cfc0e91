"""Progress of a running service on the console: a live table, or a line now and then.

A :class:`Monitor` thread reads a running :class:`~dora_rl.runtime.runner.Runtime` (its status
and the control intervals closed so far) every ``period_s`` and shows one row per served job:
requests sent, completed, in flight and not completed, latency (an LLM job: time to first
token and per output token, p50 and p95, and QoE attainment), the plan in force and its
devices, the devices' power modes, and the energy drawn so far. On a terminal the table is
redrawn in place (rich's ``Live``); otherwise (a log, a pipe) one plain line is printed every
``line_every_s`` seconds. Both go to standard error, so standard output keeps only the result.

Example:
    >>> snap = Snapshot(job="chat", state="serving", sent=12, completed=10, not_completed=1,
    ...                 in_flight=1, plan="(8,) on fast", modes="fast:0", energy_j=41.5,
    ...                 jobs_energy_j=12.0, latency_ms=(None, None),
    ...                 ttft_ms=(20.0, 45.0), tpot_ms=(5.0, 7.5), attainment=0.9,
    ...                 elapsed_s=12.0)
    >>> for part in line(snap).split(", "):
    ...     print(part)
    serve 12 s: chat serving
    10/12 done
    1 in flight
    1 not completed
    TTFT p50/p95 20.0/45.0 ms
    TPOT p50/p95 5.00/7.50 ms
    QoE 90.0 %
    plan (8,) on fast
    modes fast:0
    41.5 J (jobs 12.0 J)
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rich import box
from rich.console import Console
from rich.live import Live
from rich.table import Table

if TYPE_CHECKING:
    from dora_rl.runtime.runner import Runtime

Progress = Literal["auto", "live", "lines", "off"]
"""How progress is shown: ``live`` (a table redrawn in place), ``lines`` (a plain line every
so often), ``off``, or ``auto`` (``live`` on a terminal, ``lines`` otherwise)."""
PROGRESS_CHOICES: tuple[str, ...] = ("auto", "live", "lines", "off")
RECENT = 2000
"""Latest completed requests the latency percentiles and QoE share are taken over."""
LINE_EVERY_S = 30.0
"""Seconds between plain progress lines."""

Pair = tuple[float | None, float | None]
"""A (p50, p95) pair in ms; None where nothing was measured."""


@dataclass(frozen=True)
class Snapshot:
    """What the console shows of a running service at one moment."""

    job: str
    state: str
    sent: int
    completed: int
    not_completed: int
    in_flight: int
    plan: str
    modes: str
    energy_j: float
    jobs_energy_j: float
    latency_ms: Pair
    ttft_ms: Pair
    tpot_ms: Pair
    attainment: float | None
    elapsed_s: float


def percentiles_ms(values_s: list[float]) -> Pair:
    """(p50, p95) of ``values_s`` in ms (nearest rank), or (None, None) when empty.

    Example:
        >>> percentiles_ms([0.001 * i for i in range(1, 101)])
        (50.0, 95.0)
    """
    if not values_s:
        return None, None
    ordered = sorted(values_s)
    n = len(ordered)
    return (round(ordered[max(0, (n + 1) // 2 - 1)] * 1e3, 6),
            round(ordered[max(0, -(-95 * n // 100) - 1)] * 1e3, 6))


def snapshot(rt: Runtime) -> Snapshot:
    """The console's view of ``rt`` now."""
    from dora_rl.runtime.loop import status

    intervals = list(rt.telemetry.intervals)
    info = status(rt, intervals[-1] if intervals else None)
    with rt.lock:
        plan = rt.live.plan
        modes = rt.power_now.modes
        recent = rt.records[-RECENT:]
    devices = " | ".join("+".join(rt.names[d] for d in group) for group in plan.stage_devices)
    metrics = getattr(rt, "metrics", None)
    ttft: Pair = (None, None)
    tpot: Pair = (None, None)
    attainment = None
    if metrics is not None:  # an LLM service: token figures instead of request latency
        ttft_s, tpot_s = metrics.recent(rt.job.name)
        ttft, tpot = percentiles_ms(ttft_s), percentiles_ms(tpot_s)
        attainment = metrics.attainment(rt.job.name)
        latency: Pair = (None, None)
    else:
        latency = percentiles_ms([r.latency_ms / 1e3 for r in recent])
        missed = sum(1 for r in recent if r.missed)
        attainment = 1.0 - missed / len(recent) if recent else None
    sent, completed = int(info["sent"]), int(info["completed"])  # type: ignore[call-overload]
    failed = int(info["not_completed"])  # type: ignore[call-overload]
    return Snapshot(
        job=rt.job.name, state=str(info["state"]), sent=sent, completed=completed,
        not_completed=failed, in_flight=max(sent - completed - failed, 0),
        plan=f"{plan.stage_end} on {devices}",
        modes=" ".join(f"{n}:{'sleep' if m < 0 else m}" for n, m in zip(rt.names, modes,
                                                                         strict=True)),
        energy_j=sum(t.energy_j for t in intervals),
        jobs_energy_j=sum(t.jobs_energy_j for t in intervals), latency_ms=latency,
        ttft_ms=ttft, tpot_ms=tpot, attainment=attainment,
        elapsed_s=time.monotonic() - rt.start_t)


def _pair(p: Pair, digits: int) -> str:
    if p[0] is None or p[1] is None:
        return "-"
    return f"{p[0]:.{digits}f}/{p[1]:.{digits}f}"


def table(snap: Snapshot) -> Table:
    """The live table of ``snap``: one labelled line per figure (fits 80 columns)."""
    out = Table(title=f"dora_rl serve: {snap.job}, {snap.elapsed_s:.0f} s, {snap.state}",
                title_justify="left", show_header=False, box=box.SIMPLE)
    out.add_column("what", style="bold")
    out.add_column("value")
    out.add_row("requests", f"{snap.completed} done of {snap.sent} sent, {snap.in_flight} in "
                            f"flight, {snap.not_completed} not completed")
    for label, pair, digits in _figures(snap):
        out.add_row(label, "-" if pair[0] is None else
                    f"p50 {pair[0]:.{digits}f} ms, p95 {pair[1]:.{digits}f} ms")
    out.add_row("QoE met", "-" if snap.attainment is None else f"{100 * snap.attainment:.1f} %")
    out.add_row("plan", snap.plan)
    out.add_row("power modes", snap.modes)
    out.add_row("energy", f"{snap.energy_j:.1f} J (the job's {snap.jobs_energy_j:.1f} J)")
    return out


def _figures(snap: Snapshot) -> list[tuple[str, Pair, int]]:
    """The latency figures to show: an LLM job's TTFT and TPOT, else request latency."""
    if snap.ttft_ms[0] is not None or snap.latency_ms[0] is None:
        return [("TTFT", snap.ttft_ms, 1), ("TPOT", snap.tpot_ms, 2)]
    return [("latency", snap.latency_ms, 1)]


def line(snap: Snapshot) -> str:
    """One plain line of ``snap`` (for logs and pipes)."""
    figures = ", ".join(f"{label} p50/p95 {_pair(pair, digits)} ms"
                        for label, pair, digits in _figures(snap))
    qoe = "-" if snap.attainment is None else f"{100 * snap.attainment:.1f} %"
    return (f"serve {snap.elapsed_s:.0f} s: {snap.job} {snap.state}, {snap.completed}/{snap.sent}"
            f" done, {snap.in_flight} in flight, {snap.not_completed} not completed, {figures},"
            f" QoE {qoe}, plan {snap.plan}, modes {snap.modes}, {snap.energy_j:.1f} J (jobs "
            f"{snap.jobs_energy_j:.1f} J)")


class Monitor:
    """Shows ``rt``'s progress until :meth:`stop` (see the module docstring).

    Args:
        rt: The running service; how: a :data:`Progress` choice; period_s: seconds between
            redraws of the live table; line_every_s: seconds between plain lines
            (:data:`LINE_EVERY_S` by default).
    """

    def __init__(self, rt: Runtime, how: str = "auto", period_s: float = 1.0,
                 line_every_s: float | None = None) -> None:
        self.rt = rt
        self.console = Console(stderr=True)
        if how == "auto":
            how = "live" if self.console.is_terminal else "lines"
        self.how = how
        self.period_s = period_s if how == "live" else \
            LINE_EVERY_S if line_every_s is None else line_every_s
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        """Begin showing progress (nothing for ``off``)."""
        if self.how == "off":
            return
        self.thread = threading.Thread(target=self._run, name="dora-console", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Stop showing progress (the live table stays on screen as last drawn)."""
        self.done.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
            self.thread = None

    def _run(self) -> None:
        try:
            if self.how == "live":
                with Live(table(snapshot(self.rt)), console=self.console,
                          refresh_per_second=4, transient=False) as live:
                    while not self.done.wait(self.period_s):
                        live.update(table(snapshot(self.rt)))
                    live.update(table(snapshot(self.rt)))
            else:
                while not self.done.wait(self.period_s):
                    print(line(snapshot(self.rt)), file=sys.stderr, flush=True)
        except Exception as error:  # noqa: BLE001 - progress must never stop the service
            print(f"serve: progress display stopped ({type(error).__name__}: {error})",
                  file=sys.stderr, flush=True)


__all__ = ["LINE_EVERY_S", "PROGRESS_CHOICES", "Monitor", "Progress", "Snapshot", "line",
           "percentiles_ms", "snapshot", "table"]
