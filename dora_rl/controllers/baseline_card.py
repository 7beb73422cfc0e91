"""The baseline controllers' card (``agents/baselines.yaml``): their settings as data.

::

    dora:   {qoe_margin: 0.1, hysteresis: 0.05, miss_tolerance: 0.0}
    greedy: {max_combinations: 4096}
    foresight: {horizon_intervals: 30}
    oracle: {beam: 64}
    random: {seed: 0}

Every field is optional (the defaults are the values above); unknown keys and bad values are
one-line errors naming the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from dora_rl.config.loader import read_yaml, validate
from dora_rl.config.schema import Float, NonNegInt
from dora_rl.paths import find, shipped

BASELINES_CARD = shipped("agents") / "baselines.yaml"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DoraSettings(_Frozen):
    """The rule-based adapter."""

    qoe_margin: Annotated[Float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.1
    """Relative slack a candidate must keep on every target to count as meeting QoE."""
    hysteresis: Annotated[Float, Field(ge=0, allow_inf_nan=False)] = 0.05
    """Keep the current plan unless another compliant one saves more than this fraction."""
    miss_tolerance: Annotated[Float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.0
    """Share of a job's requests it may miss, beyond what its attainment target allows, while
    dora lowers power modes (0: lower a mode only while every job keeps within its SLO)."""
    backoff_intervals: Annotated[NonNegInt, Field(ge=1)] = 2
    """Calm intervals a device waits before trying a slower mode again after one failed."""
    backoff_max_intervals: Annotated[NonNegInt, Field(ge=1)] = 64
    """Longest such wait (the wait doubles after each failure up to this)."""


class GreedySettings(_Frozen):
    """The privileged one-interval peek."""

    max_combinations: Annotated[NonNegInt, Field(gt=0)] = 4096
    """Joint choices of plans scored per interval at most."""


class ForesightSettings(_Frozen):
    """The privileged receding-horizon peek."""

    horizon_intervals: Annotated[NonNegInt, Field(gt=0, le=100_000)] = 30
    """Coming intervals each decision is scored over (more: sees longer pay-offs, slower)."""


class OracleSettings(_Frozen):
    """The privileged hindsight search."""

    beam: Annotated[NonNegInt, Field(gt=0, le=100_000)] = 64
    """Distinct control states kept alive per interval (more: slower, closer to exact)."""


class RandomSettings(_Frozen):
    """Uniform random actions."""

    seed: NonNegInt = 0


class BaselineSettings(_Frozen):
    """Settings of every baseline controller."""

    dora: DoraSettings = DoraSettings()
    greedy: GreedySettings = GreedySettings()
    foresight: ForesightSettings = ForesightSettings()
    oracle: OracleSettings = OracleSettings()
    random: RandomSettings = RandomSettings()


def load_baseline_settings(path: str | Path | None = None) -> BaselineSettings:
    """The card at ``path`` (default ``agents/baselines.yaml``; defaults if that is absent).

    Raises:
        ConfigError: naming the card, the field path and the problem.
    """
    if path is None and not BASELINES_CARD.exists():
        return BaselineSettings()
    path = find(path) if path is not None else BASELINES_CARD
    raw = read_yaml(path)
    return validate(BaselineSettings, raw if raw is not None else {}, str(path))
