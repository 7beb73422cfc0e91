"""Import the profile files of PipeEdge (github.com/usc-isi/PipeEdge) as ``dora_rl`` models.

PipeEdge's scheduler ``sched-pipeline`` reads three YAML files (``README_Scheduler.md``,
``src-native/yaml_types.h``):

``models.yml``
    model name -> ``layers`` (int), ``parameters_in`` (int: input elements per sample of the first
    layer), ``parameters_out`` (list of int: output elements per sample of each layer) and
    ``mem_MB`` (list of float: memory of each layer). ``mem_MB`` must have ``layers`` entries;
    a shorter ``parameters_out`` is repeated cyclically, as ``sched-pipeline`` does.
``device_types.yml``
    device type -> ``mem_MB``, ``bw_Mbps`` and ``model_profiles``: model name -> list of
    ``{dtype: "torch.float32", batch_size: 8, time_s: [seconds per layer for the batch]}``.
``devices.yml``
    device type -> list of host names.

Units: PipeEdge's profiler writes ``mem_MB`` as a resident-memory delta divided by 10**6, so
``param_bytes = mem_MB * 1e6`` here (``sched-pipeline`` itself multiplies by 2**20). Output
elements become ``activation_bytes`` at the dtype's size. PipeEdge profiles carry no FLOP counts,
so the imported layers have ``forward_flops: 0`` and their cost comes from the measured times.

Every problem is a :class:`~dora_rl.errors.ConfigError` naming the file, the field and the
problem, e.g. ``models.yml: ViT-B_16.mem_MB: has 47 entries, layers is 48``.

Example:
    >>> str(ConfigError("models.yml", "ViT-B_16.mem_MB", "has 47 entries, layers is 48"))
    'models.yml: ViT-B_16.mem_MB: has 47 entries, layers is 48'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from dora_rl.config.limits import MAX_LAYERS, short
from dora_rl.config.loader import read_yaml
from dora_rl.config.names import NAME_MAX_CHARS, NAME_RULE, is_safe_name, plain_text
from dora_rl.config.parse import format_loc, problem_text
from dora_rl.config.schema import Layer, Measured, Model
from dora_rl.errors import ConfigError

MB_BYTES = 1_000_000
"""Bytes per PipeEdge ``mem_MB`` unit (its profiler divides byte counts by 10**6)."""

DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "float64": 8,
               "double": 8, "int8": 1, "uint8": 1, "qint8": 1, "quint8": 1}
"""Element sizes of the PyTorch dtypes PipeEdge profiles name (without ``torch.``)."""

FILES = ("models.yml", "device_types.yml", "devices.yml")

MAX_ELEMENTS = 10**12
"""Largest ``parameters_in`` / ``parameters_out`` (elements per sample)."""
MAX_MEM_MB = 1e9
"""Largest ``mem_MB`` of a layer or a device type (1 PB)."""
MAX_BW_MBPS = 1e6
"""Largest ``bw_Mbps`` (1 Tbit/s)."""
MAX_TIME_S = 1e6
"""Largest measured time of one layer."""
MAX_BATCH = 65_536
"""Largest ``batch_size``."""


@dataclass(frozen=True)
class PipeEdgeModel:
    """One ``models.yml`` entry; ``parameters_out`` is expanded to ``layers`` entries."""

    name: str
    layers: int
    parameters_in: int
    parameters_out: tuple[int, ...]
    mem_MB: tuple[float, ...]


@dataclass(frozen=True)
class PipeEdgeModelProfile:
    """One measured configuration of a model on a device type."""

    dtype: str
    batch_size: int
    time_s: tuple[float, ...]


@dataclass(frozen=True)
class PipeEdgeDeviceType:
    """One ``device_types.yml`` entry: memory, bandwidth and per-model profiles."""

    name: str
    mem_MB: float
    bw_Mbps: float
    model_profiles: Mapping[str, tuple[PipeEdgeModelProfile, ...]]


@dataclass(frozen=True)
class PipeEdgeProfile:
    """The three files of a PipeEdge profile directory, validated."""

    directory: str
    models: Mapping[str, PipeEdgeModel]
    device_types: Mapping[str, PipeEdgeDeviceType]
    hosts: Mapping[str, tuple[str, ...]]
    """Device type -> host names (``devices.yml``)."""


def dtype_name(dtype: str) -> str:
    """Normalise a PyTorch dtype name: ``'torch.float32'`` -> ``'float32'``.

    Example:
        >>> dtype_name("torch.float32"), dtype_name("float16")
        ('float32', 'float16')
    """
    return dtype.removeprefix("torch.")


def _mapping(value: Any, label: str, path: str, what: str) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(label, path, f"must be a mapping of {what}, got {type(value).__name__}")
    return value


def _int(value: Any, label: str, path: str, low: int = 0, high: int = MAX_ELEMENTS) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(label, path, f"must be an integer, got {short(value)}")
    if value < low:
        raise ConfigError(label, path, f"must be >= {low}, got {short(value)}")
    if value > high:
        raise ConfigError(label, path, f"must be <= {high:,}, got {short(value)}")
    return value


def _num(value: Any, label: str, path: str, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(label, path, f"must be a number, got {short(value)}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(label, path, f"must be a finite number >= 0, got {short(value)}")
    if value > high:
        raise ConfigError(label, path, f"must be <= {high:g}, got {short(value)}")
    return float(value)


def _list(value: Any, label: str, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(label, path, f"must be a list, got {type(value).__name__}")
    if len(value) > MAX_LAYERS:
        raise ConfigError(label, path, f"has {len(value)} entries, more than the limit of "
                          f"{MAX_LAYERS}")
    return value


def _key(value: Any, label: str) -> str:
    """A model or device type name: at most 256 characters, no control characters."""
    name = str(value)
    if len(name) > 256 or plain_text(name) != name:
        raise ConfigError(label, short(name), "a name must have at most 256 characters and no "
                          "control characters")
    return name


def _keys(entry: dict[Any, Any], required: tuple[str, ...], label: str, path: str) -> None:
    for key in entry:
        if key not in required:
            raise ConfigError(label, f"{path}.{key}", "unknown key")
    for key in required:
        if key not in entry:
            raise ConfigError(label, f"{path}.{key}", "required field is missing")


def _model(name: str, entry: Any, label: str) -> PipeEdgeModel:
    entry = _mapping(entry, label, name, "model properties")
    _keys(entry, ("layers", "parameters_in", "parameters_out", "mem_MB"), label, name)
    layers = _int(entry["layers"], label, f"{name}.layers", high=MAX_LAYERS)
    p_in = _int(entry["parameters_in"], label, f"{name}.parameters_in")
    mem = [_num(v, label, f"{name}.mem_MB[{i}]", MAX_MEM_MB)
           for i, v in enumerate(_list(entry["mem_MB"], label, f"{name}.mem_MB"))]
    if len(mem) != layers:
        raise ConfigError(label, f"{name}.mem_MB", f"has {len(mem)} entries, layers is {layers}")
    out = [_int(v, label, f"{name}.parameters_out[{i}]")
           for i, v in enumerate(_list(entry["parameters_out"], label, f"{name}.parameters_out"))]
    if len(out) > layers or (layers and not out):
        raise ConfigError(label, f"{name}.parameters_out",
                          f"has {len(out)} entries, layers is {layers}")
    full = tuple(out[i % len(out)] for i in range(layers))
    return PipeEdgeModel(name, layers, p_in, full, tuple(mem))


def _profiles(value: Any, label: str, path: str,
              model: PipeEdgeModel | None) -> tuple[PipeEdgeModelProfile, ...]:
    out: list[PipeEdgeModelProfile] = []
    for j, entry in enumerate(_list(value, label, path)):
        where = f"{path}[{j}]"
        entry = _mapping(entry, label, where, "profile properties")
        _keys(entry, ("batch_size", "dtype", "time_s"), label, where)
        if not isinstance(entry["dtype"], str) or not entry["dtype"]:
            raise ConfigError(label, f"{where}.dtype", f"must be a dtype name, got "
                              f"{short(entry['dtype'])}")
        batch = _int(entry["batch_size"], label, f"{where}.batch_size", low=1, high=MAX_BATCH)
        times = tuple(_num(v, label, f"{where}.time_s[{i}]", MAX_TIME_S)
                      for i, v in enumerate(_list(entry["time_s"], label, f"{where}.time_s")))
        if times and sum(times) <= 0:
            raise ConfigError(label, f"{where}.time_s", "every time is 0; a measured profile "
                              "needs positive times")
        if model is not None and len(times) != model.layers:
            raise ConfigError(label, f"{where}.time_s",
                              f"has {len(times)} entries, model {model.name!r} has "
                              f"{model.layers} layers")
        prof = PipeEdgeModelProfile(entry["dtype"], batch, times)
        if any(dtype_name(p.dtype) == dtype_name(prof.dtype) and p.batch_size == batch
               for p in out):
            raise ConfigError(label, where, f"duplicate profile for dtype {prof.dtype} "
                              f"batch_size {batch}")
        out.append(prof)
    return tuple(out)


def _device_type(name: str, entry: Any, label: str,
                 models: Mapping[str, PipeEdgeModel]) -> PipeEdgeDeviceType:
    entry = _mapping(entry, label, name, "device type properties")
    _keys(entry, ("mem_MB", "bw_Mbps", "model_profiles"), label, name)
    mem = _num(entry["mem_MB"], label, f"{name}.mem_MB", MAX_MEM_MB)
    bw = _num(entry["bw_Mbps"], label, f"{name}.bw_Mbps", MAX_BW_MBPS)
    raw = _mapping(entry["model_profiles"], label, f"{name}.model_profiles",
                   "model name -> list of profiles")
    profiles = {str(m): _profiles(v, label, f"{name}.model_profiles.{m}", models.get(str(m)))
                for m, v in raw.items()}
    return PipeEdgeDeviceType(name, mem, bw, profiles)


def _hosts(data: Any, label: str,
           types: Mapping[str, PipeEdgeDeviceType]) -> dict[str, tuple[str, ...]]:
    hosts: dict[str, tuple[str, ...]] = {}
    seen: set[str] = set()
    for dev_type, value in _mapping(data, label, "", "device type -> hosts").items():
        if dev_type not in types:
            raise ConfigError(label, str(dev_type), f"unknown device type (device_types.yml has: "
                              f"{', '.join(sorted(types)) or 'none'})")
        names = _list([] if value is None else value, label, str(dev_type))
        for i, host in enumerate(names):
            if not isinstance(host, str) or not is_safe_name(host):
                raise ConfigError(label, f"{dev_type}[{i}]", f"must be a host name "
                                  f"({NAME_RULE}), got {short(host)}")
            if host in seen:
                raise ConfigError(label, f"{dev_type}[{i}]", f"duplicate host {short(host)}")
            seen.add(host)
        hosts[str(dev_type)] = tuple(names)
    return hosts


def load_pipeedge(directory: str | Path) -> PipeEdgeProfile:
    """Load and validate ``models.yml``, ``device_types.yml`` and ``devices.yml`` of a directory.

    Raises:
        ConfigError: naming the file, the field path and the problem.
    """
    root = Path(directory)
    labels = {f: str(root / f) for f in FILES}
    data = {f: read_yaml(root / f, labels[f]) for f in FILES}
    lab = labels["models.yml"]
    models = {_key(k, lab): _model(_key(k, lab), v, lab)
              for k, v in _mapping(data["models.yml"], lab, "", "model name -> model").items()}
    lab = labels["device_types.yml"]
    types = {_key(k, lab): _device_type(_key(k, lab), v, lab, models) for k, v in
             _mapping(data["device_types.yml"], lab, "", "device type -> properties").items()}
    hosts = _hosts(data["devices.yml"], labels["devices.yml"], types)
    return PipeEdgeProfile(str(root), models, types, hosts)


def _dtype_bytes(dtype: str) -> int:
    try:
        return DTYPE_BYTES[dtype_name(dtype)]
    except KeyError:
        raise ConfigError("<argument>", "dtype", f"unknown dtype {dtype!r} (known: "
                          f"{', '.join(sorted(DTYPE_BYTES))})") from None


def _get_model(profile: PipeEdgeProfile, model_name: str) -> PipeEdgeModel:
    if model_name not in profile.models:
        raise ConfigError(str(Path(profile.directory) / "models.yml"), model_name,
                          f"no such model (known: {', '.join(sorted(profile.models))})")
    return profile.models[model_name]


def measured_times(profile: PipeEdgeProfile, model_name: str, device_type: str, dtype: str,
                   batch: int) -> list[float]:
    """Seconds per layer for a batch of ``batch`` samples of ``model_name`` on ``device_type``.

    Raises:
        ConfigError: if the model, the device type or a profile for (dtype, batch) is missing.
    """
    _get_model(profile, model_name)
    label = str(Path(profile.directory) / "device_types.yml")
    if device_type not in profile.device_types:
        raise ConfigError(label, device_type, f"no such device type (known: "
                          f"{', '.join(sorted(profile.device_types))})")
    where = f"{device_type}.model_profiles.{model_name}"
    profiles = profile.device_types[device_type].model_profiles.get(model_name, ())
    for prof in profiles:
        if dtype_name(prof.dtype) == dtype_name(dtype) and prof.batch_size == batch:
            return list(prof.time_s)
    have = ", ".join(f"{p.dtype}/{p.batch_size}" for p in profiles) or "none"
    raise ConfigError(label, where, f"no profile for dtype {dtype} batch_size {batch} "
                      f"(has: {have})")


def to_model(profile: PipeEdgeProfile, model_name: str, dtype: str = "torch.float32",
             batch: int = 8) -> Model:
    """Convert a PipeEdge model to a ``dora_rl`` :class:`~dora_rl.config.Model`.

    Layers are named ``layer1``..``layerN`` (PipeEdge numbers layers from 1) with
    ``param_bytes = mem_MB * 1e6`` and ``activation_bytes = parameters_out * dtype bytes``;
    every device type with a profile for (``dtype``, ``batch``) becomes a ``measured`` entry.
    The model's name is made safe by :func:`safe_model_name`.

    Raises:
        ConfigError: if the model is unknown or has no layers, or the dtype is unknown.
    """
    model = _get_model(profile, model_name)
    size = _dtype_bytes(dtype)
    if model.layers == 0:
        raise ConfigError(str(Path(profile.directory) / "models.yml"), f"{model_name}.layers",
                          "model has no layers")
    layers = [Layer(name=f"layer{i + 1}", kind="other", forward_flops=0.0,
                    param_bytes=mem * MB_BYTES, activation_bytes=float(out * size))
              for i, (mem, out) in enumerate(zip(model.mem_MB, model.parameters_out,
                                                 strict=True))]
    measured = [Measured(device=name, batch=batch, dtype=dtype_name(dtype),
                         time_s=measured_times(profile, model_name, name, dtype, batch))
                for name, dev in sorted(profile.device_types.items())
                if any(dtype_name(p.dtype) == dtype_name(dtype) and p.batch_size == batch
                       for p in dev.model_profiles.get(model_name, ()))]
    try:
        return Model(name=safe_model_name(model_name), unit="sample", dtype_bytes=size,
                     source=f"PipeEdge profile {profile.directory}: {model_name} ({dtype}, "
                     f"batch {batch}); no FLOP counts, measured times"[:4096],
                     layers=layers, measured=measured)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(str(Path(profile.directory) / "models.yml"),
                          f"{model_name}.{format_loc(tuple(err['loc']))}",
                          problem_text(dict(err))) from None


def safe_model_name(name: str) -> str:
    """A PipeEdge model name as a safe ``dora_rl`` name: characters outside
    ``[A-Za-z0-9_.-]`` become ``_``, a leading ``.`` or ``-`` too; cut to 64 characters.

    Example:
        >>> safe_model_name("google/vit-base-patch16-224"), safe_model_name("../x")
        ('google_vit-base-patch16-224', '_._x')
    """
    out = re.sub(r"[^A-Za-z0-9_.\-]", "_", name)[:NAME_MAX_CHARS] or "_"
    return "_" + out[1:] if out[0] in ".-" else out
