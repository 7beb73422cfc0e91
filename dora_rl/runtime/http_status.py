"""The schema of ``GET /status`` (the ``--status`` file's content, with the job served).

``GET /status`` answers through :class:`ServiceStatus`, so what it sends is validated against
the schema; ``ServiceStatus.model_json_schema()`` is the JSON Schema a client can check it with.

Example:
    >>> ServiceStatus.model_validate({
    ...     "state": "serving", "updated_s": 1.5, "job": "chat", "qoe_attainment": None,
    ...     "workers": [{"device": "fast", "pid": 42, "alive": True}], "sent": 3,
    ...     "completed": 3, "not_completed": 0, "plan_id": 0, "replans": 0, "faults": [],
    ...     "no_plan": None, "control_errors": 0, "last_error": None, "intervals": 2,
    ...     "interval": None}).state
    'serving'
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class WorkerStatus(BaseModel):
    """One device's worker process."""

    model_config = ConfigDict(extra="forbid")

    device: str
    pid: int | None
    alive: bool


class ServiceStatus(BaseModel):
    """What ``GET /status`` reports of a running service."""

    model_config = ConfigDict(extra="forbid")

    state: Literal["serving", "no_plan", "stopping", "finished", "interrupted"]
    updated_s: float = Field(ge=0, description="seconds since the service started")
    job: str
    qoe_attainment: float | None = Field(ge=0, le=1, description="requests that met QoE, of "
                                         "those completed or refused (None: none yet)")
    workers: list[WorkerStatus]
    sent: int = Field(ge=0)
    completed: int = Field(ge=0)
    not_completed: int = Field(ge=0)
    plan_id: int = Field(ge=0)
    replans: int = Field(ge=0)
    faults: list[str] = Field(description="devices lost so far")
    no_plan: str | None = Field(description="why no plan serves now (None: one does)")
    control_errors: int = Field(ge=0)
    last_error: str | None
    intervals: int = Field(ge=0, description="control intervals closed")
    interval: dict[str, Any] | None = Field(description="the last interval's telemetry")


__all__ = ["ServiceStatus", "WorkerStatus"]
