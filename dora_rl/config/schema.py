"""Typed, frozen schema of scenario cards, model profiles and the device catalog.

YAML is only the serialisation: :mod:`dora_rl.config.loader` parses it with ``yaml.safe_load``
and validates it against these models. Unknown keys are errors, every number must be finite, and
sizes and rates must be positive. Units are in the field names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dora_rl.config.formats import WeightFormat, default_format

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
OpenFraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Name = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")]

LayerKind = Literal["embedding", "conv", "transformer", "linear", "norm", "pool", "head", "other"]
LAYER_KINDS: tuple[str, ...] = LayerKind.__args__  # type: ignore[attr-defined]


class Frozen(BaseModel):
    """Base: immutable, unknown keys rejected, values validated on assignment."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- model profiles
class Layer(Frozen):
    """One partitionable layer (or block) of a model; quantities are per item.

    An item is one sample for vision models and one token for language models (``Model.unit``).
    """

    name: str
    kind: LayerKind = "other"
    forward_flops: NonNegFloat
    backward_flops: NonNegFloat | None = None
    """Defaults to twice the forward FLOPs."""
    param_bytes: NonNegFloat
    activation_bytes: NonNegFloat
    """Bytes of this layer's output per item: what crosses a stage boundary after it."""
    saved_activation_bytes: NonNegFloat | None = None
    """Bytes autograd keeps per item for the backward pass; defaults to ``activation_bytes``."""
    optimizer_state_bytes: NonNegFloat | None = None
    """Optimizer state for full fine-tuning; defaults to ``2 * param_bytes`` (Adam moments)."""
    lora_param_bytes: NonNegFloat = 0.0
    """Trainable adapter bytes when fine-tuning with LoRA-style adapters."""
    kv_bytes_per_token: NonNegFloat = 0.0
    """KV-cache bytes this layer holds per token of context (decoder LLMs)."""


class Measured(Frozen):
    """Per-layer times measured on one device kind with ``python -m dora_rl.profile --measure``."""

    device: str
    batch: PositiveInt
    dtype: str = "float32"
    time_s: list[NonNegFloat]
    """Seconds for the whole batch, one entry per layer, in layer order."""


class Model(Frozen):
    """A model as an ordered list of layers, as written by the profiler.

    ``param_bytes`` of every layer is at ``dtype_bytes``; ``weight_format`` is how the weights are
    stored and run (see :mod:`dora_rl.config.formats`), by default the format of ``dtype_bytes``.
    """

    name: Name
    unit: Literal["sample", "token"] = "sample"
    dtype_bytes: PositiveInt = 4
    weight_format: WeightFormat = "fp32"
    """Defaults to the format matching ``dtype_bytes`` (fp32 for 4, fp16 for 2, int8 for 1)."""
    seq_len: PositiveInt | None = None
    """Tokens per training sample for token models."""
    source: str = ""
    layers: list[Layer] = Field(min_length=1)
    measured: list[Measured] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _default_format(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("weight_format") is not None:
            return data
        size = data.get("dtype_bytes", 4)
        if not isinstance(size, int | float) or not float(size).is_integer() or size <= 0:
            return data  # the field's own validation reports it
        fmt = default_format(int(size))
        if fmt is None:
            raise ValueError(f"weight_format is required: dtype_bytes {size} has no default "
                             "format (4 -> fp32, 2 -> fp16, 1 -> int8)")
        return {**data, "weight_format": fmt}


class ModelRef(Frozen):
    """A model a card names: inline layers, a profile file relative to the card, or (with
    neither) the shipped profile of that name, optionally in another ``weight_format``."""

    name: Name
    profile: str | None = None
    layers: list[Layer] | None = None
    unit: Literal["sample", "token"] = "sample"
    dtype_bytes: PositiveInt = 4
    seq_len: PositiveInt | None = None
    weight_format: WeightFormat | None = None
    """Format of the weights; the profile's own (or that of ``dtype_bytes``) when omitted."""


# --------------------------------------------------------------------------- devices
class Power(Frozen):
    """Power draw in watts of the whole device in each activity state."""

    idle_w: NonNegFloat
    busy_w: NonNegFloat
    tx_w: NonNegFloat
    rx_w: NonNegFloat


class DvfsLevel(Frozen):
    """A slower frequency level: compute speed relative to nominal, and its busy power."""

    name: str = ""
    speed: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
    busy_w: NonNegFloat


class Compute(Frozen):
    """Compute speed: peak FLOP/s with an efficiency per layer kind, or measured profiles."""

    peak_flops: PositiveFloat | None = None
    efficiency: dict[LayerKind, Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]] = Field(
        default_factory=dict
    )
    """Achieved fraction of peak per layer kind; kinds not listed use ``default_efficiency``."""
    default_efficiency: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.3
    memory_bandwidth_gbps: PositiveFloat | None = None
    """DRAM bandwidth in GB/s; bounds each layer below by the time to read its weights."""
    measured: dict[str, str] = Field(default_factory=dict)
    """Model name -> profile file (relative to the card) holding ``measured`` times."""
    format_speed: dict[WeightFormat, PositiveFloat] = Field(default_factory=dict)
    """Compute throughput per weight format relative to the nominal precision of
    ``peak_flops``; formats not listed run at the nominal rate (1.0)."""


class Storage(Frozen):
    """Local storage model files are loaded from."""

    medium: Literal["nvme", "emmc", "microsd", "ufs", "sata_ssd"]
    read_mbps: PositiveFloat
    """Sequential read rate in Mbit/s (like ``link_mbps``): datasheet MB/s x 8."""


class Sleep(Frozen):
    """A low-power state the device can be put in between jobs and woken from."""

    sleep_w: NonNegFloat
    """Watts drawn asleep (suspend to RAM, SC7, soft-off with wake-on-LAN, or halt)."""
    wake_s: NonNegFloat
    """Seconds from the wake request until the device can run work again."""
    wake_j: NonNegFloat
    """Energy of one wake above what the device would draw idling for ``wake_s``."""


class Thermal(Frozen):
    """How a passively cooled device heats under load and throttles (a first-order thermal
    model: :func:`~dora_rl.costmodel.formulas.device_temperature_c`)."""

    ambient_c: Annotated[float, Field(ge=-40, le=60, allow_inf_nan=False)]
    """Temperature of the air around the device."""
    c_per_w: PositiveFloat
    """Steady-state rise of the SoC above ambient per watt the device draws."""
    time_constant_s: PositiveFloat
    """Time constant of the rise toward that steady state."""
    throttle_c: Annotated[float, Field(gt=-40, le=150, allow_inf_nan=False)]
    """SoC temperature at which the firmware caps the clock."""
    throttle_level: PositiveInt
    """The ``dvfs`` level (1: the first slower level) the firmware caps it to while hot."""


class Attachment(Frozen):
    """Where a device attaches to the network and its nominal link (PHY) rate."""

    domain: Name
    link_mbps: PositiveFloat


class DeviceKind(Frozen):
    """A catalog entry: defaults a card's device may override field by field."""

    description: str = ""
    memory_bytes: PositiveInt | None = None
    compute: Compute | None = None
    power: Power | None = None
    dvfs: list[DvfsLevel] = Field(default_factory=list)
    battery_wh: PositiveFloat | None = None
    link_mbps: PositiveFloat | None = None
    storage: Storage | None = None
    sleep: Sleep | None = None
    thermal: Thermal | None = None
    """Heating and throttling; omitted for actively cooled devices (or those whose catalog
    figures are already sustained rates)."""


class DeviceSpec(Frozen):
    """A device as written in a card; missing fields come from its catalog ``kind``."""

    name: Name
    kind: str
    memory_bytes: PositiveInt | None = None
    compute: Compute | None = None
    power: Power | None = None
    dvfs: list[DvfsLevel] | None = None
    battery_wh: PositiveFloat | None = None
    can_leave: bool = False
    """True for devices that leave and rejoin (a phone leaving the house)."""
    storage: Storage | None = None
    """Replaces the kind's storage when given."""
    sleep: Sleep | None = None
    """Replaces the kind's sleep state when given."""
    thermal: Thermal | Literal[False] | None = None
    """Replaces the kind's thermal model when given (a hotter cabinet, a better heatsink);
    ``false`` drops it (the device is actively cooled and does not throttle)."""
    dedicated: bool = False
    """On only for the jobs, so its idle power is theirs to pay (an AI box, a cluster node);
    False for devices that are on anyway (a household laptop, a phone, a hub)."""
    network: Attachment


class Device(Frozen):
    """A fully resolved device: card fields merged over its catalog kind."""

    name: str
    kind: str
    memory_bytes: int
    compute: Compute
    power: Power
    dvfs: tuple[DvfsLevel, ...]
    battery_wh: float | None
    can_leave: bool
    network: Attachment
    storage: Storage | None = None
    sleep: Sleep | None = None
    dedicated: bool = False
    thermal: Thermal | None = None


# --------------------------------------------------------------------------- network
class Domain(Frozen):
    """A contention domain: a WiFi access point (one shared medium) or a wired switch."""

    name: Name
    kind: Literal["wifi", "switch"]
    cross_traffic: Fraction = 0.0
    """Long-run fraction of airtime other household traffic takes on a WiFi medium (with
    ``cross_traffic_profile``: in the busiest hour)."""
    cross_traffic_profile: Name | None = None
    """Column of ``dynamics.load_profiles`` the cross traffic follows over the day."""


class Network(Frozen):
    """Contention domains and the backbone joining them."""

    domains: list[Domain] = Field(min_length=1)
    backbone_mbps: PositiveFloat = 1000.0
    """Rate of the wired link joining domains (e.g. the AP's Ethernet uplink)."""


# --------------------------------------------------------------------------- jobs and QoE
class InferenceWork(Frozen):
    """DNN inference on a request stream."""

    request_rate_per_s: PositiveFloat
    batch: PositiveInt = 1


class LlmWork(Frozen):
    """LLM inference: prefill over the prompt, then one pass per output token."""

    request_rate_per_s: PositiveFloat
    prompt_tokens: PositiveInt
    output_tokens: PositiveInt
    batch: PositiveInt = 1


class TrainingWork(Frozen):
    """Training or fine-tuning with a 1F1B pipeline schedule."""

    global_batch: PositiveInt
    micro_batches: PositiveInt = 4
    method: Literal["full", "lora"] = "full"
    iterations: PositiveInt | None = None
    """Iterations to finish, with ``qoe.deadline_s`` for a time-to-finish target."""


class Qoe(Frozen):
    """QoE targets; a job sets those that apply to its workload."""

    latency_ms: PositiveFloat | None = None
    ttft_ms: PositiveFloat | None = None
    tpot_ms: PositiveFloat | None = None
    iteration_ms: PositiveFloat | None = None
    deadline_s: PositiveFloat | None = None
    energy_j: PositiveFloat | None = None
    """Cap on energy per unit of work (request or iteration)."""
    attainment: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 0.99
    """Share of requests (training: iterations) that must meet every target: the job's QoE
    holds while no more than ``1 - attainment`` of its arrivals miss (a p99 SLO by default;
    1 allows no miss)."""


class Job(Frozen):
    """One workload sharing the devices, with its QoE targets."""

    name: Name
    model: str
    workload: Literal["inference", "llm_inference", "training"]
    devices: list[str] | None = None
    """Devices the job may use; all devices when omitted."""
    inference: InferenceWork | None = None
    llm: LlmWork | None = None
    training: TrainingWork | None = None
    qoe: Qoe
    weight: PositiveFloat = 1.0
    """Importance of the job's QoE violations relative to other jobs."""
    rate_profile: Name | None = None
    """Column of ``dynamics.load_profiles`` the request rate follows over the day (the
    card's rate is the busiest hour's); None: the rate never changes."""


class Objective(Frozen):
    """What the planner minimises subject to QoE."""

    mode: Literal["energy", "time"] = "energy"
    energy_budget_j: PositiveFloat | None = None
    unused_devices: Literal["idle", "off"] = "idle"
    """Whether devices outside a plan draw idle power or are powered down."""


class Dynamics(Frozen):
    """References to run-time dynamics, used by the environment."""

    traces_dir: str | None = None
    """Directory of bandwidth traces, relative to the card."""
    bandwidth: Literal["trace", "synthetic", "static"] = "trace"
    churn_per_hour: NonNegFloat = 0.0
    """Expected leave events per hour for devices with ``can_leave``."""
    background_load_max: OpenFraction = 0.0
    """Largest fraction of a device's compute that other users may take."""
    battery_floor: Fraction = 0.1
    """State of charge below which a battery device stops serving."""
    load_profiles: str | None = None
    """CSV of hourly load per day (``day,hour,<column>,...``, relative to the card) that jobs'
    ``rate_profile`` and domains' ``cross_traffic_profile`` name (:mod:`dora_rl.dynamics.daily`)."""
    start_hour: Annotated[float, Field(ge=0, lt=24, allow_inf_nan=False)] | None = None
    """Hour of the day episodes start at; None: a random hour per episode."""
    interval_s: PositiveFloat = 1.0
    """Length of a control interval the environment uses by default."""
    episode_s: PositiveFloat = 300.0
    """Length of an episode the environment uses by default (a whole number of intervals)."""

    @model_validator(mode="after")
    def _whole_intervals(self) -> Dynamics:
        steps = self.episode_s / self.interval_s
        if abs(steps - round(steps)) > 1e-9 * steps or round(steps) < 1:
            raise ValueError(f"episode_s {self.episode_s:g} is not a whole number of "
                             f"intervals of {self.interval_s:g} s")
        return self


class Reward(Frozen):
    """Weights of the environment's reward terms (see ``dora_rl.env.EdgeEnv``)."""

    energy_weight: NonNegFloat = 1.0
    """On the interval's energy, normalised by every device at full busy power."""
    qoe_weight: NonNegFloat = 2.0
    """On the summed relative QoE shortfall of the active jobs (weighted by job weight)."""
    switch_weight: NonNegFloat = 0.5
    """On the time stalled migrating weights after a plan switch, per interval."""
    invalid_weight: NonNegFloat = 0.2
    """On each infeasible plan choice the safety layer had to replace."""


class ScenarioSpec(Frozen):
    """A scenario card as written."""

    name: Name
    description: str = ""
    devices: list[DeviceSpec] = Field(min_length=1)
    network: Network
    models: list[ModelRef] = Field(default_factory=list)
    jobs: list[Job] = Field(min_length=1)
    objective: Objective = Objective()
    dynamics: Dynamics = Dynamics()
    reward: Reward = Reward()
