"""Load scenario cards, model profiles and the device catalog from YAML, with one-line errors.

Every problem becomes a :class:`~dora_rl.errors.ConfigError` naming the file, the field path
and the problem: ``envs/x.yaml: devices[2].memory_bytes: must be > 0, got -5``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dora_rl.config.formats import QUANTIZED, format_of_dtype
from dora_rl.config.parse import format_loc, parse_yaml, problem_text, read_yaml, validate
from dora_rl.config.schema import (
    Device,
    DeviceKind,
    DeviceSpec,
    Dynamics,
    Job,
    Layer,
    Model,
    ModuleSource,
    Network,
    Objective,
    Reward,
    ScenarioSpec,
)
from dora_rl.errors import ConfigError


@cache
def device_catalog() -> dict[str, DeviceKind]:
    """The built-in device catalog (``dora_rl/data/devices.yaml``), keyed by kind."""
    ref = resources.files("dora_rl") / "data" / "devices.yaml"
    label = "dora_rl/data/devices.yaml"
    data = parse_yaml(ref.read_text(encoding="utf-8"), label)
    if not isinstance(data, dict):
        raise ConfigError(label, "", "must be a mapping of kind -> device")
    return {k: validate(DeviceKind, v, label, k) for k, v in data.items()}


def builtin_profiles() -> list[str]:
    """Names of the model profiles shipped in ``dora_rl/data/profiles``."""
    root = resources.files("dora_rl") / "data" / "profiles"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def load_model(path: str | Path) -> Model:
    """Load a model profile file written by ``python -m dora_rl.profiler``; the file of its
    module factory (``module.factory``, relative to the profile) is made absolute."""
    path = Path(path)
    model = validate(Model, read_yaml(path), str(path))
    if model.module is None:
        return model
    where, _, attr = model.module.factory.rpartition(":")
    if not (where.endswith(".py") or "/" in where) or Path(where).is_absolute():
        return model
    factory = f"{(path.parent / where).resolve()}:{attr}"
    return model.model_copy(update={"module": model.module.model_copy(
        update={"factory": factory})})


def load_builtin_model(name: str) -> Model:
    """Load a shipped profile by model name (e.g. ``vit_b16``)."""
    ref = resources.files("dora_rl") / "data" / "profiles" / f"{name}.yaml"
    label = f"dora_rl/data/profiles/{name}.yaml"
    return validate(Model, parse_yaml(ref.read_text(encoding="utf-8"), label), label)


@dataclass(frozen=True, eq=False)
class Scenario:
    """A validated, fully resolved scenario: what every other layer consumes.

    Attributes:
        name: Scenario name.
        source: The card's path (or ``"<builtin>"``), used in error messages.
        devices: Resolved devices, in card order (their index is the device id everywhere).
        network: Contention domains.
        models: Model name -> layers.
        jobs: Jobs in card order.
        objective: Planner objective.
        dynamics: Run-time dynamics references.
        measured: (device name, model name) -> per-layer seconds per item, when measured.
        measured_format: (device name, model name) -> weight format the times were measured in
            (from the profile's ``dtype``; absent when the dtype names no known format).
    """

    name: str
    description: str
    source: str
    devices: tuple[Device, ...]
    network: Network
    models: dict[str, Model]
    jobs: tuple[Job, ...]
    objective: Objective
    dynamics: Dynamics
    measured: dict[tuple[str, str], tuple[float, ...]]
    base_dir: Path
    reward: Reward = Reward()
    measured_format: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)

    def device_index(self, name: str) -> int:
        """Index of the device called ``name``.

        Raises:
            ConfigError: no device has that name (the message lists the card's devices).
        """
        for i, device in enumerate(self.devices):
            if device.name == name:
                return i
        known = ", ".join(d.name for d in self.devices)
        raise ConfigError(self.source, "devices", f"no device named {name!r} (devices: {known})")

    def device_groups(self, *groups: str | Sequence[str]) -> tuple[tuple[int, ...], ...]:
        """Device indices of each group of device names: a plan's ``stage_devices`` by name.

        A group is one name or a list of names.

        Example:
            >>> from dora_rl.scenarios import load
            >>> load("tiny").device_groups("slow", ["mid", "fast"])
            ((0,), (1, 2))

        Raises:
            ConfigError: a name is no device of the scenario (the message lists them).
        """
        return tuple((self.device_index(g),) if isinstance(g, str)
                     else tuple(self.device_index(name) for name in g) for g in groups)


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario card.

    Raises:
        ConfigError: naming the file, the field path and the problem.
    """
    path = Path(path)
    label = str(path)
    spec = validate(ScenarioSpec, read_yaml(path), label)
    return resolve(spec, label, path.parent)


def load_scenario_text(text: str, label: str, base_dir: Path) -> Scenario:
    """Load a scenario card from its text (e.g. the copy a checkpoint keeps), resolving relative
    references (profiles, traces) against ``base_dir``.

    Raises:
        ConfigError: naming ``label``, the field path and the problem.
    """
    return resolve(validate(ScenarioSpec, parse_yaml(text, label), label), label, base_dir)


def resolve(spec: ScenarioSpec, label: str, base_dir: Path) -> Scenario:
    """Merge catalog defaults, load profiles and check every cross reference."""
    _unique([d.name for d in spec.devices], label, "devices", "device name")
    _unique([d.name for d in spec.network.domains], label, "network.domains", "domain name")
    _unique([j.name for j in spec.jobs], label, "jobs", "job name")
    domains = {d.name for d in spec.network.domains}
    devices = tuple(
        _resolve_device(d, i, label, domains) for i, d in enumerate(spec.devices)
    )
    if all(d.can_leave for d in devices):
        raise ConfigError(label, f"devices[{len(devices) - 1}].can_leave",
                          "every device may leave (can_leave: true); at least one must stay "
                          "to serve the jobs")
    models = _resolve_models(spec, label, base_dir)
    names = {d.name for d in devices}
    for j, job in enumerate(spec.jobs):
        _check_job(job, j, label, names, models)
    _check_profiles(spec, label)
    _check_dynamics_files(spec.dynamics, label, base_dir)
    measured, measured_format = _resolve_measured(devices, models, label, base_dir)
    return Scenario(
        name=spec.name, description=spec.description, source=label, devices=devices,
        network=spec.network, models=models, jobs=tuple(spec.jobs), objective=spec.objective,
        dynamics=spec.dynamics, measured=measured, base_dir=base_dir, reward=spec.reward,
        measured_format=measured_format,
    )


def _unique(names: list[str], label: str, field: str, what: str) -> None:
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            raise ConfigError(label, f"{field}[{i}].name", f"duplicate {what} {n!r}")
        seen.add(n)


def _resolve_device(spec: DeviceSpec, i: int, label: str, domains: set[str]) -> Device:
    where = f"devices[{i}]"
    catalog = device_catalog()
    if spec.kind not in catalog:
        known = ", ".join(sorted(catalog))
        raise ConfigError(label, f"{where}.kind", f"unknown device kind {spec.kind!r} "
                          f"(known: {known})")
    base = catalog[spec.kind]
    if spec.network.domain not in domains:
        raise ConfigError(label, f"{where}.network.domain",
                          f"unknown domain {spec.network.domain!r} (known: {sorted(domains)})")
    fields = {}
    for field in ("memory_bytes", "compute", "power"):
        value = getattr(spec, field) if getattr(spec, field) is not None else getattr(base, field)
        if value is None:
            raise ConfigError(label, f"{where}.{field}",
                              f"required field is missing (kind {spec.kind!r} has no default)")
        fields[field] = value
    compute = fields["compute"]
    if compute.peak_flops is None and not compute.measured:
        raise ConfigError(label, f"{where}.compute",
                          "needs peak_flops or measured profiles")
    dvfs = spec.dvfs if spec.dvfs is not None else base.dvfs
    sleep = spec.sleep if spec.sleep is not None else base.sleep
    idle_w = fields["power"].idle_w
    if sleep is not None and sleep.sleep_w >= idle_w:
        field = f"{where}.sleep.sleep_w" if spec.sleep is not None else f"{where}.kind"
        raise ConfigError(label, field, f"sleep_w {sleep.sleep_w:g} W must be below idle_w "
                          f"{idle_w:g} W (kind {spec.kind!r})")
    if spec.thermal is None:  # the kind's model (false in the card drops it)
        thermal, field, level_field = base.thermal, f"{where}.kind", f"{where}.kind"
    else:
        thermal = spec.thermal or None
        field, level_field = f"{where}.thermal", f"{where}.thermal.throttle_level"
    if thermal is not None:
        if thermal.throttle_level > len(dvfs):
            raise ConfigError(label, level_field,
                              f"throttle_level {thermal.throttle_level} names no dvfs level "
                              f"(kind {spec.kind!r} has {len(dvfs)})")
        idle_c = thermal.ambient_c + thermal.c_per_w * idle_w
        if idle_c >= thermal.throttle_c:
            raise ConfigError(label, field, f"the device would throttle idle: {idle_c:.1f} C "
                              f"at idle_w {idle_w:g} W is not below throttle_c "
                              f"{thermal.throttle_c:g} C (kind {spec.kind!r})")
    return Device(
        name=spec.name, kind=spec.kind, memory_bytes=fields["memory_bytes"], compute=compute,
        power=fields["power"], dvfs=tuple(dvfs),
        battery_wh=spec.battery_wh if spec.battery_wh is not None else base.battery_wh,
        can_leave=spec.can_leave, network=spec.network,
        storage=spec.storage if spec.storage is not None else base.storage,
        sleep=sleep, dedicated=spec.dedicated, thermal=thermal,
    )


_LAYER_FIELDS = ("unit", "dtype_bytes", "seq_len")
"""ModelRef fields that describe inline layers; a profile file carries its own."""


def _resolve_models(spec: ScenarioSpec, label: str, base_dir: Path) -> dict[str, Model]:
    _unique([m.name for m in spec.models], label, "models", "model name")
    builtin = set(builtin_profiles())
    models: dict[str, Model] = {}
    for i, ref in enumerate(spec.models):
        where = f"models[{i}]"
        if ref.profile is not None and ref.layers is not None:
            raise ConfigError(label, where, "give one of 'profile' or 'layers', not both")
        if ref.layers is not None and ref.weights is not None:
            raise ConfigError(label, f"{where}.weights", "only with a 'profile' of a torch "
                              "module (inline layers have no module)")
        if ref.layers is not None:
            fmt = {"weight_format": ref.weight_format} if ref.weight_format else {}
            models[ref.name] = _build_model(
                label, where, name=ref.name, unit=ref.unit, dtype_bytes=ref.dtype_bytes,
                seq_len=ref.seq_len, layers=list(ref.layers), **fmt)
            continue
        if ref.profile is None and ref.name not in builtin:
            raise ConfigError(label, where, f"give 'profile' or 'layers' ({ref.name!r} is not a "
                              f"built-in profile: {', '.join(sorted(builtin))})")
        for field in _LAYER_FIELDS:
            if field in ref.model_fields_set:
                raise ConfigError(label, f"{where}.{field}", "only with inline 'layers' (a "
                                  "profile sets its own; a card may override weight_format)")
        model = (load_model(base_dir / ref.profile) if ref.profile is not None
                 else load_builtin_model(ref.name))
        update: dict[str, Any] = {"name": ref.name}
        if ref.weight_format is not None:
            update["weight_format"] = ref.weight_format
        if ref.weights is not None:
            update["module"] = _with_weights(model, ref.weights, label, where, base_dir)
        models[ref.name] = model.model_copy(update=update)
    for job in spec.jobs:
        if job.model not in models and job.model in builtin:
            models[job.model] = load_builtin_model(job.model)
    return models


_NEEDS = {"inference": ("inference", ("latency_ms",)),
          "llm_inference": ("llm", ("ttft_ms", "tpot_ms")),
          "training": ("training", ("iteration_ms", "deadline_s"))}


def _with_weights(model: Model, weights: str, label: str, where: str,
                  base_dir: Path) -> ModuleSource:
    """The profile's module with the card's weights file (made absolute, checked to exist)."""
    if model.module is None:
        raise ConfigError(label, f"{where}.weights", "the profile has no torch module to load "
                          "weights into (profile one with --model FILE.py:FUNCTION)")
    path = (base_dir / weights).resolve()
    if not path.is_file():
        raise ConfigError(label, f"{where}.weights", f"no such file {str(path)!r}")
    return model.module.model_copy(update={"weights": str(path)})


def _build_model(label: str, where: str, **fields: Any) -> Model:
    try:
        return Model(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = format_loc(tuple(err["loc"]))
        raise ConfigError(label, f"{where}.{path}" if path else where, problem_text(dict(err))) \
            from None


def _check_dynamics_files(dyn: Dynamics, label: str, base_dir: Path) -> None:
    """The trace folder and the load-profile file a card names exist (their contents are
    read, and checked line by line, when the dynamics are built)."""
    if dyn.traces_dir is not None:
        folder = base_dir / dyn.traces_dir
        if not folder.is_dir():
            raise ConfigError(label, "dynamics.traces_dir", f"no such folder {str(folder)!r}")
        if not any(p.is_file() for p in folder.glob("*.csv")):
            raise ConfigError(label, "dynamics.traces_dir", f"{str(folder)!r} holds no trace "
                              "files (*.csv)")
    if dyn.load_profiles is not None and not (base_dir / dyn.load_profiles).is_file():
        raise ConfigError(label, "dynamics.load_profiles",
                          f"no such file {str(base_dir / dyn.load_profiles)!r}")


def _check_profiles(spec: ScenarioSpec, label: str) -> None:
    """Profile columns need a profile file (the columns are checked when it is read)."""
    dyn = spec.dynamics
    for j, job in enumerate(spec.jobs):
        if job.rate_profile is not None and job.training is not None:
            raise ConfigError(label, f"jobs[{j}].rate_profile",
                              "a training job has no request rate to follow")
    if dyn.load_profiles is not None:
        return
    for j, job in enumerate(spec.jobs):
        if job.rate_profile is not None:
            raise ConfigError(label, f"jobs[{j}].rate_profile",
                              "needs dynamics.load_profiles (the file of hourly load)")
    for w, dom in enumerate(spec.network.domains):
        if dom.cross_traffic_profile is not None:
            raise ConfigError(label, f"network.domains[{w}].cross_traffic_profile",
                              "needs dynamics.load_profiles (the file of hourly load)")


def _check_job(job: Job, j: int, label: str, names: set[str], models: dict[str, Model]) -> None:
    where = f"jobs[{j}]"
    if job.model not in models:
        known = sorted(set(models) | set(builtin_profiles()))
        raise ConfigError(label, f"{where}.model",
                          f"unknown model {job.model!r} (known: {', '.join(known)})")
    for k, dev in enumerate(job.devices or []):
        if dev not in names:
            raise ConfigError(label, f"{where}.devices[{k}]", f"no device named {dev!r}")
    section, targets = _NEEDS[job.workload]
    if getattr(job, section) is None:
        raise ConfigError(label, f"{where}.{section}",
                          f"required for workload {job.workload!r}")
    for other in {"inference", "llm", "training"} - {section}:
        if getattr(job, other) is not None:
            raise ConfigError(label, f"{where}.{other}",
                              f"not used by workload {job.workload!r}")
    if all(getattr(job.qoe, t) is None for t in targets):
        raise ConfigError(label, f"{where}.qoe",
                          f"workload {job.workload!r} needs at least one of {list(targets)}")
    if job.training is not None:
        _check_training(job, where, label, models[job.model])


def _check_training(job: Job, where: str, label: str, model: Model) -> None:
    tr = job.training
    assert tr is not None
    if tr.micro_batches > tr.global_batch:
        raise ConfigError(label, f"{where}.training.micro_batches",
                          f"must be <= global_batch ({tr.global_batch}), "
                          f"got {tr.micro_batches}")
    if job.qoe.deadline_s is not None and tr.iterations is None:
        raise ConfigError(label, f"{where}.training.iterations",
                          "required with qoe.deadline_s (time to finish)")
    if model.unit == "token" and model.seq_len is None:
        raise ConfigError(label, f"{where}.model",
                          f"token model {job.model!r} needs seq_len for training")
    if model.weight_format in QUANTIZED and tr.method != "lora":
        raise ConfigError(label, f"{where}.training.method",
                          f"full training needs float weights; model {job.model!r} is "
                          f"{model.weight_format} (use method: lora, which trains float "
                          "adapters over frozen quantized weights, or a float format)")


def _resolve_measured(
    devices: tuple[Device, ...], models: dict[str, Model], label: str, base_dir: Path
) -> tuple[dict[tuple[str, str], tuple[float, ...]], dict[tuple[str, str], str]]:
    out: dict[tuple[str, str], tuple[float, ...]] = {}
    formats: dict[tuple[str, str], str] = {}
    for i, dev in enumerate(devices):
        for model_name, rel in dev.compute.measured.items():
            where = f"devices[{i}].compute.measured.{model_name}"
            if model_name not in models:
                raise ConfigError(label, where, f"no model named {model_name!r} in this card")
            prof = load_model(base_dir / rel)
            if not prof.measured:
                raise ConfigError(str(base_dir / rel), "measured",
                                  "profile has no measured times (run the profiler with --measure)")
            m = prof.measured[0]
            n_layers = len(models[model_name].layers)
            if len(m.time_s) != n_layers:
                raise ConfigError(str(base_dir / rel), "measured[0].time_s",
                                  f"has {len(m.time_s)} entries, model has {n_layers} layers")
            out[(dev.name, model_name)] = tuple(t / m.batch for t in m.time_s)
            fmt = format_of_dtype(m.dtype)
            if fmt is not None:
                formats[(dev.name, model_name)] = fmt
    for (dev_name, model_name), times in out.items():
        if not all(math.isfinite(t) for t in times):
            raise ConfigError(label, f"{dev_name}.{model_name}", "non-finite measured time")
    return out, formats


def layer_defaults(layer: Layer) -> tuple[float, float, float]:
    """Backward FLOPs, saved activation bytes and optimizer bytes with defaults applied.

    Example:
        >>> layer_defaults(Layer(name="l", forward_flops=10, param_bytes=4, activation_bytes=2))
        (20.0, 2.0, 8.0)
    """
    bwd = layer.backward_flops if layer.backward_flops is not None else 2.0 * layer.forward_flops
    saved = (layer.saved_activation_bytes if layer.saved_activation_bytes is not None
             else layer.activation_bytes)
    opt = (layer.optimizer_state_bytes if layer.optimizer_state_bytes is not None
           else 2.0 * layer.param_bytes)
    return float(bwd), float(saved), float(opt)
