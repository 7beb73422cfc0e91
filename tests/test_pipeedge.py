"""Import of PipeEdge's scheduler profile files (models, device types, devices)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dora_rl.config import load_model
from dora_rl.errors import ConfigError
from dora_rl.pipeedge import MB_BYTES, load_pipeedge, measured_times, to_model

SAMPLE = Path(__file__).resolve().parents[1] / "envs" / "pipeedge_sample"
VIT = "google/vit-base-patch16-224"

BASE: dict[str, Any] = {
    "models.yml": {"M": {"layers": 3, "parameters_in": 12, "parameters_out": [6, 6, 2],
                         "mem_MB": [1.5, 2.0, 0.25]}},
    "device_types.yml": {
        "fast": {"bw_Mbps": 1000, "mem_MB": 4096, "model_profiles": {
            "M": [{"batch_size": 4, "dtype": "torch.float32", "time_s": [0.1, 0.2, 0.3]}]}},
        "empty": {"bw_Mbps": 100, "mem_MB": 512, "model_profiles": None},
    },
    "devices.yml": {"fast": ["h0", "h1"], "empty": []},
}


def write(root: Path, files: dict[str, Any]) -> Path:
    for name, data in files.items():
        (root / name).write_text(yaml.safe_dump(data), encoding="utf-8")
    return root


def mutated(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    files = copy.deepcopy(BASE)
    change(files)
    return write(tmp_path, files)


def test_pipeedge_sample_loads_with_its_models_device_types_and_hosts() -> None:
    prof = load_pipeedge(SAMPLE)
    assert {n: m.layers for n, m in prof.models.items()} == {
        "DummyModel": 0, VIT: 48, "google/vit-large-patch16-224": 96}
    assert prof.models[VIT].parameters_in == 3 * 224 * 224
    assert set(prof.device_types) == {"DummyDeviceType", "Minnowboard-E3845", "RCC-VE-C2558"}
    assert prof.device_types["RCC-VE-C2558"].mem_MB == 8192
    assert prof.device_types["DummyDeviceType"].model_profiles == {}
    assert prof.hosts["Minnowboard-E3845"] == ("mb-0", "mb-1", "mb-2", "mb-3")
    assert prof.hosts["DummyDeviceType"] == ()


def test_sample_converts_to_a_model_with_both_boards_measured(tmp_path: Path) -> None:
    prof = load_pipeedge(SAMPLE)
    model = to_model(prof, VIT, "torch.float32", 8)
    assert model.name == "google_vit-base-patch16-224" and len(model.layers) == 48
    assert model.layers[0].param_bytes == pytest.approx(26.857472 * MB_BYTES)
    assert model.layers[0].activation_bytes == 302592 * 4
    assert model.layers[-1].activation_bytes == 1000 * 4
    assert [m.device for m in model.measured] == ["Minnowboard-E3845", "RCC-VE-C2558"]
    assert all(m.batch == 8 and m.dtype == "float32" and len(m.time_s) == 48
               for m in model.measured)
    out = tmp_path / "vit.yaml"
    out.write_text(yaml.safe_dump(model.model_dump(mode="json")), encoding="utf-8")
    assert load_model(out) == model


def test_measured_times_accepts_dtype_with_or_without_torch_prefix() -> None:
    prof = load_pipeedge(SAMPLE)
    times = measured_times(prof, VIT, "RCC-VE-C2558", "float32", 8)
    assert len(times) == 48 and times[0] == pytest.approx(0.36892950534820557)
    assert times == measured_times(prof, VIT, "RCC-VE-C2558", "torch.float32", 8)


def test_missing_profile_names_the_device_type_and_what_exists(tmp_path: Path) -> None:
    prof = load_pipeedge(write(tmp_path, BASE))
    with pytest.raises(ConfigError) as err:
        measured_times(prof, "M", "fast", "torch.float16", 4)
    assert err.value.source.endswith("device_types.yml")
    assert err.value.path == "fast.model_profiles.M"
    assert "torch.float32/4" in err.value.problem
    with pytest.raises(ConfigError, match="no such device type"):
        measured_times(prof, "M", "slow", "torch.float32", 4)
    assert to_model(prof, "M", "torch.float32", 2).measured == []


def test_shorter_parameters_out_repeats_as_sched_pipeline_does(tmp_path: Path) -> None:
    def change(f: dict[str, Any]) -> None:
        f["models.yml"]["M"]["parameters_out"] = [7]
    prof = load_pipeedge(mutated(tmp_path, change))
    assert prof.models["M"].parameters_out == (7, 7, 7)


def test_to_model_rejects_unknown_or_empty_models_and_unknown_dtypes() -> None:
    prof = load_pipeedge(SAMPLE)
    with pytest.raises(ConfigError, match="no such model"):
        to_model(prof, "nope")
    with pytest.raises(ConfigError) as err:
        to_model(prof, "DummyModel")
    assert err.value.path == "DummyModel.layers"
    with pytest.raises(ConfigError, match="unknown dtype"):
        to_model(prof, VIT, "torch.complex64", 8)


def _set(file: str, keys: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(files: dict[str, Any]) -> None:
        node = files[file]
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return change


def _delete(file: str, keys: list[Any]) -> Callable[[dict[str, Any]], None]:
    def change(files: dict[str, Any]) -> None:
        node = files[file]
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]
    return change


FAST_M = ["fast", "model_profiles", "M"]
MALFORMED = [
    ("mem_MB", _set("models.yml", ["M", "mem_MB"], [1.0, 2.0]),
     "models.yml", "M.mem_MB", "has 2 entries, layers is 3"),
    ("mem negative", _set("models.yml", ["M", "mem_MB"], [1.0, -2.0, 1.0]),
     "models.yml", "M.mem_MB[1]", "must be a finite number >= 0"),
    ("out too long", _set("models.yml", ["M", "parameters_out"], [1, 2, 3, 4]),
     "models.yml", "M.parameters_out", "has 4 entries, layers is 3"),
    ("out float", _set("models.yml", ["M", "parameters_out"], [1, 2.5, 3]),
     "models.yml", "M.parameters_out[1]", "must be an integer"),
    ("layers str", _set("models.yml", ["M", "layers"], "three"),
     "models.yml", "M.layers", "must be an integer"),
    ("missing key", _delete("models.yml", ["M", "parameters_in"]),
     "models.yml", "M.parameters_in", "required field is missing"),
    ("unknown key", _set("models.yml", ["M", "flops"], [1, 2, 3]),
     "models.yml", "M.flops", "unknown key"),
    ("model not map", _set("models.yml", ["M"], [1, 2]),
     "models.yml", "M", "must be a mapping"),
    ("time_s length", _set("device_types.yml", [*FAST_M, 0, "time_s"], [0.1]),
     "device_types.yml", "fast.model_profiles.M[0].time_s", "has 1 entries, model 'M' has 3"),
    ("time negative", _set("device_types.yml", [*FAST_M, 0, "time_s"], [0.1, -1, 0.3]),
     "device_types.yml", "fast.model_profiles.M[0].time_s[1]", ">= 0"),
    ("batch zero", _set("device_types.yml", [*FAST_M, 0, "batch_size"], 0),
     "device_types.yml", "fast.model_profiles.M[0].batch_size", "must be >= 1"),
    ("dtype missing", _delete("device_types.yml", [*FAST_M, 0, "dtype"]),
     "device_types.yml", "fast.model_profiles.M[0].dtype", "required field is missing"),
    ("profiles not list", _set("device_types.yml", FAST_M, {"time_s": [1, 2, 3]}),
     "device_types.yml", "fast.model_profiles.M", "must be a list"),
    ("duplicate profile", _set("device_types.yml", FAST_M, [
        {"batch_size": 4, "dtype": "torch.float32", "time_s": [1, 2, 3]},
        {"batch_size": 4, "dtype": "float32", "time_s": [1, 2, 3]}]),
     "device_types.yml", "fast.model_profiles.M[1]", "duplicate profile"),
    ("bw missing", _delete("device_types.yml", ["fast", "bw_Mbps"]),
     "device_types.yml", "fast.bw_Mbps", "required field is missing"),
    ("mem not number", _set("device_types.yml", ["fast", "mem_MB"], "4G"),
     "device_types.yml", "fast.mem_MB", "must be a number"),
    ("unknown type", _set("devices.yml", ["slow"], ["h9"]),
     "devices.yml", "slow", "unknown device type"),
    ("host not str", _set("devices.yml", ["fast"], ["h0", 7]),
     "devices.yml", "fast[1]", "must be a host name"),
    ("duplicate host", _set("devices.yml", ["empty"], ["h1"]),
     "devices.yml", "fast[1]", "duplicate host 'h1'"),  # keys are written sorted
]


@pytest.mark.parametrize(("change", "file", "field", "problem"),
                         [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_file_gives_config_error_naming_file_and_field(
        tmp_path: Path, change: Callable[[dict[str, Any]], None], file: str, field: str,
        problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_pipeedge(mutated(tmp_path, change))
    assert Path(err.value.source).name == file
    assert err.value.path == field
    assert problem in err.value.problem
    assert str(err.value).startswith(f"{tmp_path / file}: {field}: ")


def test_unreadable_or_non_mapping_files_give_config_errors(tmp_path: Path) -> None:
    write(tmp_path, BASE)
    (tmp_path / "devices.yml").unlink()
    with pytest.raises(ConfigError, match="devices.yml: cannot read file"):
        load_pipeedge(tmp_path)
    (tmp_path / "devices.yml").write_text("fast: [h0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="devices.yml: line .*invalid YAML"):
        load_pipeedge(tmp_path)
    (tmp_path / "devices.yml").write_text("{}\n", encoding="utf-8")
    (tmp_path / "models.yml").write_text("- M\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="models.yml: must be a mapping"):
        load_pipeedge(tmp_path)
