"""A run's health: serving or without a feasible plan, control steps that failed, requests
not completed and why, and a stop asked for by a signal.

The runtime never hangs on a fault and never drops a request silently: when no plan fits the
devices left (or the planner fails), :class:`Health` records the *no-plan* state with its
reason, the last good plan is kept, and requests wait for a plan (``plan_wait_s``) or are
refused with the reason; a control step that raises is recorded and the next one runs.
Warnings go to the ``dora_rl.runtime`` logger, once per distinct message.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from typing import Any

from dora_rl.errors import InfeasibleError

log = logging.getLogger("dora_rl.runtime")
MAX_ERRORS_KEPT = 20

STOPPED = "serve was stopped"
"""Why requests cut short by a signal were not completed."""

class NoPlan(InfeasibleError):
    """No plan fits the devices left (or the planner failed on them)."""


class Refused(Exception):
    """A request is not run: the run is stopping, or no plan came in time."""


class Interrupted(Exception):
    """The run was stopped by a signal before it served a request."""

    def __init__(self, signum: int | None) -> None:
        self.signum = signum if signum is not None else int(signal.SIGINT)
        super().__init__(f"interrupted by {signal.Signals(self.signum).name}")


class StopFlag:
    """Set from a signal handler (no locks taken there); the runtime polls it."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def set(self, signum: int = int(signal.SIGINT)) -> None:
        """Ask the run to stop (the first signal counts)."""
        if self.signum is None:
            self.signum = signum

    def is_set(self) -> bool:
        """A stop was asked for."""
        return self.signum is not None


def describe(error: BaseException) -> str:
    """An exception as one short line.

    Example:
        >>> describe(RecursionError("maximum recursion depth exceeded\\nmore"))
        'RecursionError: maximum recursion depth exceeded'
    """
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200] if text else ''}".rstrip(": ")


class Health:
    """The no-plan state and its periods, control-step errors, requests not completed."""

    def __init__(self) -> None:
        self.blocked: str | None = None
        """Why no plan serves now (``None``: serving)."""
        self.for_good = False
        """No plan serves, and none ever will: every device missing is gone for good."""
        self.periods: list[dict[str, Any]] = []
        """No-plan periods: ``{"t", "t_end" (None while it lasts), "reason"}``."""
        self.errors: list[dict[str, Any]] = []
        """The latest control-step errors: ``{"t", "where", "error"}``."""
        self.error_count = 0
        self.failed: dict[int, str] = {}
        """Requests not completed, by index: the reason."""
        self._lock = threading.Lock()
        self._logged: set[str] = set()

    def _warn(self, message: str, key: str | None = None) -> None:
        """Log ``message`` unless one with the same ``key`` (default: itself) was logged."""
        key = message if key is None else key
        with self._lock:
            first = key not in self._logged
            self._logged.add(key)
        if first:
            log.warning("serve: %s", message)

    def state(self) -> str:
        """``serving`` or ``no_plan``."""
        return "serving" if self.blocked is None else "no_plan"

    def no_plan(self, reason: str, changed: threading.Condition, for_good: bool = False) -> None:
        """Enter (or stay in) the no-plan state; wakes the requests waiting on ``changed``.
        ``for_good``: no device that could make a plan fit can come back (requests are then
        refused at once)."""
        with changed:
            if self.blocked is None:
                self.periods.append({"t": time.monotonic(), "t_end": None, "reason": reason})
            self.blocked, self.for_good = reason, for_good
            changed.notify_all()
        self._warn(f"no feasible plan: {reason}; the last plan is kept and requests "
                   + ("are refused: the devices missing are gone for good" if for_good
                      else "wait for one"), key=f"no plan: {reason} {for_good}")

    def serving(self, plan_id: int) -> None:
        """Leave the no-plan state (call with the runtime's lock held)."""
        if self.blocked is not None:
            self.periods[-1]["t_end"] = time.monotonic()
            self.blocked, self.for_good = None, False
            log.warning("serve: serving again on plan %d", plan_id)

    def error(self, where: str, error: BaseException) -> None:
        """A control step (``where``) raised: record it; the caller carries on."""
        entry = {"t": time.monotonic(), "where": where, "error": describe(error)}
        with self._lock:
            self.error_count += 1
            self.errors.append(entry)
            del self.errors[:-MAX_ERRORS_KEPT]
        self._warn(f"control step failed ({where}: {entry['error']}); the last good plan is "
                   "kept")

    def not_completed(self, index: int, reason: str) -> None:
        """Request ``index`` will not complete, for ``reason`` (said once per reason, except
        :data:`STOPPED`: the stop's own line counts those)."""
        with self._lock:
            self.failed[index] = reason
        if reason != STOPPED:
            self._warn(f"request {index} not completed: {reason} (said once per reason)",
                       key=f"request: {reason}")

    def reasons(self) -> dict[str, int]:
        """Requests not completed per reason, most frequent first."""
        with self._lock:
            return dict(Counter(self.failed.values()).most_common())

    def no_plan_s(self, now: float) -> float:
        """Wall seconds spent without a feasible plan."""
        return sum((p["t_end"] if p["t_end"] is not None else now) - p["t"]
                   for p in self.periods)


__all__ = ["Health", "Interrupted", "NoPlan", "Refused", "StopFlag", "describe", "log"]
