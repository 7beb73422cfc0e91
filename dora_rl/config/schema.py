"""Typed, frozen schema of scenario cards, model profiles and the device catalog.

YAML is only the serialisation: :mod:`dora_rl.config.loader` parses it with ``yaml.safe_load``
and validates it against these models. Unknown keys are errors, every number must be finite, and
sizes and rates must be positive. Units are in the field names; sizes and rates may also be
written with a unit (``4GB``, ``866.7Mbps``: :mod:`dora_rl.config.units`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    model_validator,
)

from dora_rl.config.formats import WeightFormat, default_format
from dora_rl.config.limits import MAX_EPISODE_STEPS, MAX_LAYERS, MAX_LIST_ITEMS
from dora_rl.config.names import check_name
from dora_rl.config.units import parse_rate_gbytes, parse_rate_mbps, parse_size_bytes


def _number(value: Any) -> Any:
    """Refuse what lax pydantic would turn into a number: ``true`` (1) and ``"3"`` (3)."""
    if isinstance(value, bool):
        raise ValueError("must be a valid number, not a boolean")
    if isinstance(value, str | bytes):
        raise ValueError("must be a valid number, not a string (write it without quotes)")
    return value


def _integer(value: Any) -> Any:
    """As :func:`_number`, for integer fields (a whole float such as ``1e9`` is accepted)."""
    if isinstance(value, bool):
        raise ValueError("must be a valid integer, not a boolean")
    if isinstance(value, str | bytes):
        raise ValueError("must be a valid integer, not a string (write it without quotes)")
    if isinstance(value, float) and abs(value) >= 2.0**63:
        raise ValueError("must be an integer below 2**63")
    return value


_NUM, _INT = BeforeValidator(_number), BeforeValidator(_integer)
Float = Annotated[float, _NUM, Field(allow_inf_nan=False)]
PositiveFloat = Annotated[float, _NUM, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, _NUM, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, _NUM, Field(ge=0, le=1, allow_inf_nan=False)]
OpenFraction = Annotated[float, _NUM, Field(ge=0, lt=1, allow_inf_nan=False)]
UnitFraction = Annotated[float, _NUM, Field(gt=0, le=1, allow_inf_nan=False)]
PositiveInt = Annotated[int, _INT, Field(gt=0)]
NonNegInt = Annotated[int, _INT, Field(ge=0)]
Name = Annotated[str, AfterValidator(check_name)]
"""A name that can become a path component (:mod:`dora_rl.config.names`)."""
Text = Annotated[str, Field(max_length=4096)]
"""Free text (descriptions, sources, paths); shown through ``names.display_text``."""
Word = Annotated[str, Field(max_length=256)]
"""A short identifier that never becomes a path (a layer, a device kind, a dtype)."""

# Physical limits (docs/cards.md, "Limits"): far above any edge deployment, low enough that
# no figure derived from them overflows or allocates without bound.
_SIZE, _RATE = BeforeValidator(parse_size_bytes), BeforeValidator(parse_rate_mbps)
Bytes = Annotated[NonNegFloat, _SIZE, Field(le=1e12)]
"""Bytes per item of one layer: at most 1 TB (a number, or a size such as ``2MiB``)."""
Flops = Annotated[NonNegFloat, Field(le=1e15)]
"""FLOPs per item of one layer: at most 1e15."""
Watts = Annotated[NonNegFloat, Field(le=1e5)]
"""Power of one device: at most 100 kW."""
Mbps = Annotated[PositiveFloat, _RATE, Field(ge=1e-3, le=1e6)]
"""A link or read rate: 1 kbit/s to 1 Tbit/s (a number, or a rate such as ``10Gbps``)."""
Rate = Annotated[PositiveFloat, Field(le=1e4)]
"""Requests per second of one job: at most 10,000 (the simulator models each request)."""
Tokens = Annotated[PositiveInt, Field(le=1_048_576)]
"""Tokens of a prompt, an output or a sequence: at most 2**20."""
Batch = Annotated[PositiveInt, Field(le=65_536)]
"""Items per batch or micro-batches per iteration: at most 65,536."""
Millis = Annotated[PositiveFloat, Field(le=8.64e7)]
"""A time target in ms: at most one day."""
Weight = Annotated[NonNegFloat, Field(le=1e6)]
"""A relative weight: at most 1e6."""
MemoryBytes = Annotated[PositiveInt, _SIZE, Field(le=10**15)]
"""Memory of one device: at most 1 PB (a number, or a size such as ``8GB``)."""
BatteryWh = Annotated[PositiveFloat, Field(le=1e6)]
"""Battery of one device: at most 1 MWh."""

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

    name: Word
    kind: LayerKind = "other"
    forward_flops: Flops
    backward_flops: Flops | None = None
    """Defaults to twice the forward FLOPs."""
    param_bytes: Bytes
    activation_bytes: Bytes
    """Bytes of this layer's output per item: what crosses a stage boundary after it."""
    saved_activation_bytes: Bytes | None = None
    """Bytes autograd keeps per item for the backward pass; defaults to ``activation_bytes``."""
    optimizer_state_bytes: Bytes | None = None
    """Optimizer state for full fine-tuning; defaults to ``2 * param_bytes`` (Adam moments)."""
    lora_param_bytes: Bytes = 0.0
    """Trainable adapter bytes when fine-tuning with LoRA-style adapters."""
    kv_bytes_per_token: Bytes = 0.0
    """KV-cache bytes this layer holds per token of context (decoder LLMs)."""


class Measured(Frozen):
    """Per-layer times measured on one device kind with ``python -m dora_rl.profiler --measure``."""

    device: Word
    batch: Annotated[PositiveInt, Field(le=10**9)]
    dtype: Word = "float32"
    time_s: list[Annotated[NonNegFloat, Field(le=1e6)]] = Field(max_length=MAX_LAYERS)
    """Seconds for the whole batch, one entry per layer, in layer order."""


class ModuleSource(Frozen):
    """The torch module a profile was counted on, so the live runtime can run its real layers
    (written by ``python -m dora_rl.profiler --model FILE.py:FACTORY``, docs/profiles.md)."""

    factory: Text
    """``path/to/file.py:function`` (a relative path is relative to the profile file) or
    ``package.module:function``; called with no arguments, it returns the module."""
    input_shape: Annotated[list[Annotated[PositiveInt, Field(le=1 << 20)]],
                           Field(min_length=1, max_length=8)] | None = None
    """Shape of one input batch (sample models; the first dimension is the batch)."""
    tokens: Tokens | None = None
    """Tokens per sequence (token models, whose input is token ids)."""
    split_points: list[Word] | None = Field(default=None, max_length=MAX_LAYERS)
    """Module names the blocks were cut after; None: cut where the module path changes."""
    weights: Text | None = None
    """A safetensors file of the module's weights (set by the card's ``weights``); None: random."""

    @model_validator(mode="after")
    def _one_input(self) -> ModuleSource:
        if (self.input_shape is None) == (self.tokens is None):
            raise ValueError("give one of input_shape (sample models) or tokens (token models)")
        return self


class Model(Frozen):
    """A model as an ordered list of layers, as written by the profiler.

    ``param_bytes`` of every layer is at ``dtype_bytes``; ``weight_format`` is how the weights are
    stored and run (see :mod:`dora_rl.config.formats`), by default the format of ``dtype_bytes``.
    """

    name: Name
    unit: Literal["sample", "token"] = "sample"
    dtype_bytes: Annotated[PositiveInt, Field(le=16)] = 4
    weight_format: WeightFormat = "fp32"
    """Defaults to the format matching ``dtype_bytes`` (fp32 for 4, fp16 for 2, int8 for 1)."""
    seq_len: Tokens | None = None
    """Tokens per training sample for token models."""
    source: Text = ""
    layers: list[Layer] = Field(min_length=1, max_length=MAX_LAYERS)
    measured: list[Measured] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    module: ModuleSource | None = Field(default=None, exclude=True)
    """The torch module the layers were counted on (the live runtime runs it); None: none.
    Not a cost-model input, so left out of ``model_dump`` (plans do not depend on where the
    module's file or weights lie); the profile writer adds it."""

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
    profile: Text | None = None
    layers: Annotated[list[Layer], Field(min_length=1, max_length=MAX_LAYERS)] | None = None
    unit: Literal["sample", "token"] = "sample"
    dtype_bytes: Annotated[PositiveInt, Field(le=16)] = 4
    seq_len: Tokens | None = None
    weight_format: WeightFormat | None = None
    """Format of the weights; the profile's own (or that of ``dtype_bytes``) when omitted."""
    weights: Text | None = None
    """A safetensors file (relative to the card) of the weights of the profile's torch module,
    which the live runtime loads; omitted: random weights."""


# --------------------------------------------------------------------------- devices
class Power(Frozen):
    """Power draw in watts of the whole device in each activity state."""

    idle_w: Watts
    busy_w: Watts
    tx_w: Watts
    rx_w: Watts


class DvfsLevel(Frozen):
    """A slower frequency level: compute speed relative to nominal, and its busy power."""

    name: Word = ""
    speed: UnitFraction
    busy_w: Watts


class Compute(Frozen):
    """Compute speed: peak FLOP/s with an efficiency per layer kind, or measured profiles."""

    peak_flops: Annotated[PositiveFloat, Field(le=1e18)] | None = None
    efficiency: dict[LayerKind, UnitFraction] = Field(
        default_factory=dict
    )
    """Achieved fraction of peak per layer kind; kinds not listed use ``default_efficiency``."""
    default_efficiency: UnitFraction = 0.3
    memory_bandwidth_gbps: Annotated[PositiveFloat, BeforeValidator(parse_rate_gbytes),
                                     Field(le=1e5)] | None = None
    """DRAM bandwidth in GB/s (or a rate such as ``68GB/s``); bounds each layer below by the
    time to read its weights."""
    measured: dict[Word, Text] = Field(default_factory=dict, max_length=MAX_LIST_ITEMS)
    """Model name -> profile file (relative to the card) holding ``measured`` times."""
    format_speed: dict[WeightFormat, Annotated[PositiveFloat, Field(le=1e3)]] = Field(
        default_factory=dict)
    """Compute throughput per weight format relative to the nominal precision of
    ``peak_flops``; formats not listed run at the nominal rate (1.0)."""


class Storage(Frozen):
    """Local storage model files are loaded from."""

    medium: Literal["nvme", "emmc", "microsd", "ufs", "sata_ssd"]
    read_mbps: Mbps
    """Sequential read rate in Mbit/s (like ``link_mbps``): datasheet MB/s x 8."""


class Sleep(Frozen):
    """A low-power state the device can be put in between jobs and woken from."""

    sleep_w: Watts
    """Watts drawn asleep (suspend to RAM, SC7, soft-off with wake-on-LAN, or halt)."""
    wake_s: Annotated[NonNegFloat, Field(le=86_400)]
    """Seconds from the wake request until the device can run work again."""
    wake_j: Annotated[NonNegFloat, Field(le=1e9)]
    """Energy of one wake above what the device would draw idling for ``wake_s``."""


class Thermal(Frozen):
    """How a passively cooled device heats under load and throttles (a first-order thermal
    model: :func:`~dora_rl.costmodel.formulas.device_temperature_c`)."""

    ambient_c: Annotated[Float, Field(ge=-40, le=60)]
    """Temperature of the air around the device."""
    c_per_w: Annotated[PositiveFloat, Field(le=1e3)]
    """Steady-state rise of the SoC above ambient per watt the device draws."""
    time_constant_s: Annotated[PositiveFloat, Field(le=1e6)]
    """Time constant of the rise toward that steady state."""
    throttle_c: Annotated[Float, Field(gt=-40, le=150)]
    """SoC temperature at which the firmware caps the clock."""
    throttle_level: Annotated[PositiveInt, Field(le=MAX_LIST_ITEMS)]
    """The ``dvfs`` level (1: the first slower level) the firmware caps it to while hot."""


class Attachment(Frozen):
    """Where a device attaches to the network and its nominal link (PHY) rate."""

    domain: Name
    link_mbps: Mbps


class DeviceKind(Frozen):
    """A catalog entry: defaults a card's device may override field by field."""

    description: Text = ""
    memory_bytes: MemoryBytes | None = None
    compute: Compute | None = None
    power: Power | None = None
    dvfs: list[DvfsLevel] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    battery_wh: BatteryWh | None = None
    link_mbps: Mbps | None = None
    storage: Storage | None = None
    sleep: Sleep | None = None
    thermal: Thermal | None = None
    """Heating and throttling; omitted for actively cooled devices (or those whose catalog
    figures are already sustained rates)."""


class DeviceSpec(Frozen):
    """A device as written in a card; missing fields come from its catalog ``kind``."""

    name: Name
    kind: Word
    memory_bytes: MemoryBytes | None = None
    compute: Compute | None = None
    power: Power | None = None
    dvfs: Annotated[list[DvfsLevel], Field(max_length=MAX_LIST_ITEMS)] | None = None
    battery_wh: BatteryWh | None = None
    can_leave: StrictBool = False
    """True for devices that leave and rejoin (a phone leaving the house)."""
    storage: Storage | None = None
    """Replaces the kind's storage when given."""
    sleep: Sleep | None = None
    """Replaces the kind's sleep state when given."""
    thermal: Thermal | Literal[False] | None = None
    """Replaces the kind's thermal model when given (a hotter cabinet, a better heatsink);
    ``false`` drops it (the device is actively cooled and does not throttle)."""
    dedicated: StrictBool = False
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

    domains: list[Domain] = Field(min_length=1, max_length=MAX_LIST_ITEMS)
    backbone_mbps: Mbps = 1000.0
    """Rate of the wired link joining domains (e.g. the AP's Ethernet uplink)."""


# --------------------------------------------------------------------------- jobs and QoE
class InferenceWork(Frozen):
    """DNN inference on a request stream."""

    request_rate_per_s: Rate
    batch: Batch = 1


class LlmWork(Frozen):
    """LLM inference: prefill over the prompt, then one pass per output token."""

    request_rate_per_s: Rate
    prompt_tokens: Tokens
    output_tokens: Tokens
    batch: Batch = 1


class TrainingWork(Frozen):
    """Training or fine-tuning with a 1F1B pipeline schedule."""

    global_batch: Annotated[PositiveInt, Field(le=1_048_576)]
    micro_batches: Batch = 4
    method: Literal["full", "lora"] = "full"
    iterations: Annotated[PositiveInt, Field(le=10**9)] | None = None
    """Iterations to finish, with ``qoe.deadline_s`` for a time-to-finish target."""


class Qoe(Frozen):
    """QoE targets; a job sets those that apply to its workload."""

    latency_ms: Millis | None = None
    ttft_ms: Millis | None = None
    tpot_ms: Millis | None = None
    iteration_ms: Millis | None = None
    deadline_s: Annotated[PositiveFloat, Field(le=3.2e7)] | None = None
    """At most a year."""
    energy_j: Annotated[PositiveFloat, Field(le=1e9)] | None = None
    """Cap on energy per unit of work (request or iteration)."""
    attainment: UnitFraction = 0.99
    """Share of requests (training: iterations) that must meet every target: the job's QoE
    holds while no more than ``1 - attainment`` of its arrivals miss (a p99 SLO by default;
    1 allows no miss)."""


class Job(Frozen):
    """One workload sharing the devices, with its QoE targets."""

    name: Name
    model: Word
    workload: Literal["inference", "llm_inference", "training"]
    devices: Annotated[list[Word], Field(max_length=MAX_LIST_ITEMS)] | None = None
    """Devices the job may use; all devices when omitted."""
    inference: InferenceWork | None = None
    llm: LlmWork | None = None
    training: TrainingWork | None = None
    qoe: Qoe
    weight: Annotated[PositiveFloat, Field(le=1e6)] = 1.0
    """Importance of the job's QoE violations relative to other jobs."""
    rate_profile: Name | None = None
    """Column of ``dynamics.load_profiles`` the request rate follows over the day (the
    card's rate is the busiest hour's); None: the rate never changes."""


class Objective(Frozen):
    """What the planner minimises subject to QoE."""

    mode: Literal["energy", "time"] = "energy"
    energy_budget_j: Annotated[PositiveFloat, Field(le=1e15)] | None = None
    unused_devices: Literal["idle", "off"] = "idle"
    """Whether devices outside a plan draw idle power or are powered down."""


class Dynamics(Frozen):
    """References to run-time dynamics, used by the environment."""

    traces_dir: Text | None = None
    """Directory of bandwidth traces, relative to the card (checked when the card is loaded)."""
    trace_units: Literal["relative", "absolute"] = "relative"
    """How a trace's Mbps become link rates: ``relative`` scales each trace by its 95th
    percentile (the shape of the recording, at the card's ``link_mbps``); ``absolute`` keeps
    the recorded Mbps as each device's link rate (at most 1.2 x its ``link_mbps``)."""
    bandwidth: Literal["trace", "synthetic", "static"] = "trace"
    churn_per_hour: Annotated[NonNegFloat, Field(le=3600)] = 0.0
    """Expected leave events per hour for devices with ``can_leave``."""
    background_load_max: OpenFraction = 0.0
    """Largest fraction of a device's compute that other users may take."""
    battery_floor: Fraction = 0.1
    """State of charge below which a battery device stops serving."""
    load_profiles: Text | None = None
    """CSV of hourly load per day (``day,hour,<column>,...``, relative to the card) that jobs'
    ``rate_profile`` and domains' ``cross_traffic_profile`` name (:mod:`dora_rl.dynamics.daily`)."""
    start_hour: Annotated[Float, Field(ge=0, lt=24)] | None = None
    """Hour of the day episodes start at; None: a random hour per episode."""
    interval_s: Annotated[PositiveFloat, Field(le=86_400)] = 1.0
    """Length of a control interval the environment uses by default."""
    episode_s: Annotated[PositiveFloat, Field(le=3.2e7)] = 300.0
    """Length of an episode the environment uses by default (a whole number of intervals)."""

    @model_validator(mode="after")
    def _whole_intervals(self) -> Dynamics:
        steps = self.episode_s / self.interval_s
        if abs(steps - round(steps)) > 1e-9 * steps or round(steps) < 1:
            raise ValueError(f"episode_s {self.episode_s:g} is not a whole number of "
                             f"intervals of {self.interval_s:g} s")
        if round(steps) > MAX_EPISODE_STEPS:
            raise ValueError(f"episode_s {self.episode_s:g} is {round(steps):,} intervals of "
                             f"{self.interval_s:g} s, more than {MAX_EPISODE_STEPS:,}")
        return self


class Reward(Frozen):
    """Weights of the environment's reward terms (see ``dora_rl.env.EdgeEnv``)."""

    energy_weight: Weight = 1.0
    """On the interval's energy, normalised by every device at full busy power."""
    qoe_weight: Weight = 2.0
    """On the summed relative QoE shortfall of the active jobs (weighted by job weight)."""
    switch_weight: Weight = 0.5
    """On the time stalled migrating weights after a plan switch, per interval."""
    invalid_weight: Weight = 0.2
    """On each infeasible plan choice the safety layer had to replace."""


class ScenarioSpec(Frozen):
    """A scenario card as written."""

    name: Name
    description: Text = ""
    devices: list[DeviceSpec] = Field(min_length=1, max_length=MAX_LIST_ITEMS)
    network: Network
    models: list[ModelRef] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    jobs: list[Job] = Field(min_length=1, max_length=MAX_LIST_ITEMS)
    objective: Objective = Objective()
    dynamics: Dynamics = Dynamics()
    reward: Reward = Reward()
