"""Hostile-but-fair inputs (issue 17, items 4, 5, 7 and 8): every bad file ends in one line on
stderr naming the file, the field and the problem, and exit code 2; never a traceback, a
memory bomb or a silent change. Probes go through the real CLIs' ``main`` in-process."""

from __future__ import annotations

import itertools
import re
import shutil
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dora_rl import describe as inspect_cli
from dora_rl import plan as plan_cli
from dora_rl.config import load_scenario
from dora_rl.config.limits import MAX_FILE_BYTES, MAX_LAYERS, MAX_YAML_BYTES
from dora_rl.config.names import display_text, plain_text, require_name
from dora_rl.controllers.baseline_card import load_baseline_settings
from dora_rl.dynamics.traces import load_trace, load_traces
from dora_rl.env.observation import DecisionLayout, ObservationError, encode
from dora_rl.errors import ConfigError, DoraError, run_cli
from dora_rl.pipeedge import load_pipeedge, to_model
from dora_rl.training.ppo_card import load_agent_settings

ROOT = Path(__file__).resolve().parents[1]
TINY = (ROOT / "envs" / "tiny.yaml").read_text(encoding="utf-8")
PIPEEDGE = ROOT / "envs" / "pipeedge_sample"
_names = itertools.count()


def _cli(main: Callable[[Sequence[str] | None], int], argv: list[str],
         capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = run_cli(main, argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(code: int, err: str, *parts: str) -> str:
    """Assert exit 2 and one short line on stderr containing every part; return the line."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[:2000]
    assert len(lines[0]) < 400, lines[0][:400]
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def _card(tmp_path: Path, text: str | bytes, name: str | None = None) -> Path:
    path = tmp_path / (name or f"card{next(_names)}.yaml")
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def _inspect(tmp_path: Path, text: str | bytes, capsys: pytest.CaptureFixture[str],
             *parts: str) -> str:
    path = _card(tmp_path, text)
    code, _, err = _cli(inspect_cli.main, [str(path), "--json"], capsys)
    return _one_line(code, err, str(path), *parts)


# ------------------------------------------------------------------ item 4: memory bombs
@pytest.mark.parametrize("rows", ["0,5000000\n1000000000,5000000\n",
                                  "1000000000,5000000\n2000000000,5000000\n"])
def test_a_29_byte_trace_spanning_years_is_refused_before_expanding(tmp_path: Path,
                                                                    rows: str) -> None:
    path = _card(tmp_path, rows, "walk.csv")
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match=r"line 2: trace spans 1e\+09 s .* limit"):
            load_trace(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20


@pytest.mark.parametrize(("name", "size", "limit"), [("big.csv", MAX_FILE_BYTES, "16 MiB"),
                                                    ("big.yaml", MAX_YAML_BYTES, "4 MiB")])
def test_an_oversized_file_is_refused_unread(tmp_path: Path, name: str, size: int,
                                             limit: str) -> None:
    path = tmp_path / name
    with path.open("wb") as f:
        f.truncate(size + 1)  # sparse: nothing is written
    loader = load_trace if name.endswith(".csv") else load_scenario
    with pytest.raises(ConfigError, match=f"larger than the limit of {limit}"):
        loader(path)


def _alias_bomb(levels: int, fan: int) -> str:
    lines = ["a0: &a0 [lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]")
    return "\n".join(lines)


@pytest.mark.parametrize(("levels", "fan", "problem"), [
    (9, 9, "expands to more than 1,000,000 values"),  # billion laughs: 9**9 strings
    (6, 10, "expands to more than 1,000,000 values"),  # 60 aliases, 10**6 strings
    (1, 1025, "more than 1024 aliases"),
])
def test_a_yaml_alias_bomb_in_a_field_is_refused_not_echoed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], levels: int, fan: int,
        problem: str) -> None:
    # the anchors live in a (made-up) key; the field description refers to the last one
    bomb = _alias_bomb(levels, fan).replace("\n", "\n  ")
    text = TINY.replace('description: "Three', f"x-anchors:\n  {bomb}\ndescription: "
                        f"*a{levels}\nx-old: \"Three")
    start = time.perf_counter()
    _inspect(tmp_path, text, capsys, problem)
    assert time.perf_counter() - start < 10


def test_a_big_value_is_never_echoed_whole(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    text = TINY.replace("batch: 1}", "batch: [" + ", ".join(["x" * 100] * 1000) + "]}")
    line = _inspect(tmp_path, text, capsys, "jobs[0].inference.batch")
    assert len(line) < 300


@pytest.mark.parametrize(("old", "new", "field", "problem"), [
    ("request_rate_per_s: 10.0", "request_rate_per_s: 1e308",
     "jobs[0].inference.request_rate_per_s", "must be <= 10000, got 1e+308"),
    ("memory_bytes: 1000000000", "memory_bytes: 1e300", "devices[0].memory_bytes",
     "must be an integer below 2**63, got 1e+300"),
    ("memory_bytes: 1000000000", "memory_bytes: 1e18", "devices[0].memory_bytes",
     "must be <= 1000000000000000"),
    ("activation_bytes: 4.0e+3}", "activation_bytes: 1e308}", "models[0].layers[7]",
     "must be <= 1000000000000"),
    ("link_mbps: 100}", "link_mbps: 1e-300}", "devices[0].network.link_mbps",
     "must be >= 0.001"),
    ("  background_load_max: 0.0", "  episode_s: 1e7\n  interval_s: 1\n  background_load_max: 0",
     "dynamics", "more than 1,000,000"),
])
def test_rates_and_sizes_have_physical_upper_bounds(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, field: str,
        problem: str) -> None:
    assert old in TINY
    _inspect(tmp_path, TINY.replace(old, new, 1), capsys, field, problem)


def test_a_60000_layer_card_is_refused_early(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    layer = "{name: l, forward_flops: 1, param_bytes: 1, activation_bytes: 1}, "
    head, tail = TINY.split("      - {name: embed", 1)
    tail = tail[tail.index("\njobs:"):]
    text = head + "      [" + layer * 60_000 + "]" + tail  # under 4 MiB
    assert len(text) < MAX_YAML_BYTES
    start = time.perf_counter()
    _inspect(tmp_path, text, capsys, "models[0].layers", f"more than {MAX_LAYERS:,} items")
    assert time.perf_counter() - start < 10  # stops reading after 4,096 layers


def test_a_pipeedge_model_with_60000_layers_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "pe"
    shutil.copytree(PIPEEDGE, root)
    (root / "models.yml").write_text("big:\n  layers: 60000\n  parameters_in: 1\n"
                                     "  parameters_out: [1]\n  mem_MB: [1]\n")
    with pytest.raises(ConfigError, match=r"models.yml: big.layers: must be <= 4,096"):
        load_pipeedge(root)


# ------------------------------------------------------------------ item 5: NaN observations
@pytest.mark.parametrize(("text", "unit"), [
    ("".join(f"{i},1e308\n" for i in range(20)), "bytes/s"),
    ("seconds, Mbps\n" + "".join(f"{i}, 1e300\n" for i in range(20)), "Mbps"),
])
def test_trace_throughput_beyond_1_tbit_is_refused(tmp_path: Path, text: str, unit: str) -> None:
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "a_wifi.csv").write_text(text)
    match = rf"a_wifi.csv: line \d+: throughput must be <= .* {unit}"
    with pytest.raises(ConfigError, match=match):
        load_traces(tmp_path / "traces")


def test_encode_fails_loudly_on_an_infinite_input_and_keeps_nan_as_unknown() -> None:
    lay = DecisionLayout(n_devices=1, n_domains=1, n_jobs=1, k=1, history=2)
    dev, job, cand = [[1, 0, 1, 0, 0, 0, 1, 0]], [[1, 0.8, 0.1, 0, 1, 0, 0, 0, 0, 0.5]], \
        [[[1, -np.inf, 0.2, 0, 1]]]
    obs = encode(lay, [[float("nan")], [0.6]], dev, [[1.0]], [0.2], job, cand)
    assert np.isfinite(obs).all() and obs[0] == 0.0
    with pytest.raises(ObservationError, match=r"link_history\[1\]\[0\] is inf"):
        encode(lay, [[1.0], [float("inf")]], dev, [[1.0]], [0.2], job, cand)
    with pytest.raises(ObservationError, match=r"cross_traffic\[0\] is -inf"):
        encode(lay, [[1.0], [1.0]], dev, [[1.0]], [-np.inf], job, cand)
    assert issubclass(ObservationError, DoraError)


# ------------------------------------------------------------------ item 7: tracebacks
@pytest.mark.parametrize(("edit", "parts"), [
    (lambda t: t.encode().replace(b"Three", b"Th\xffree"),
     ("line 3", "not valid UTF-8 (byte 0xff at offset 56)")),
    (lambda t: t.replace("batch: 1}", "batch: " + "9" * 400 + "}"),
     ("jobs[0].inference.batch", "integer with 400 digits")),
    (lambda t: t.replace("backbone_mbps: 1000", "backbone_mbps: " + "9" * 5000),
     ("network.backbone_mbps", "integer with 5000 digits")),
    (lambda t: t.replace('description: "Three', "x: " + "[" * 100_000 + "]" * 100_000
                         + '\ndescription: "Three'), ("invalid YAML: nested deeper than 64",)),
    (lambda t: t.replace('description: "Three', 'description: "\\0 Three'), ("x",)),
])
def test_unreadable_cards_give_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        edit: Callable[[str], str | bytes],
                                        parts: tuple[str, ...]) -> None:
    text = edit(TINY)
    if parts == ("x",):  # a NUL in a description is text, not an error
        code, out, err = _cli(inspect_cli.main, [str(_card(tmp_path, text)), "--json"], capsys)
        assert code == 0, err
        return
    _inspect(tmp_path, text, capsys, *parts)


def test_markup_and_escapes_in_a_description_print_as_text(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = TINY.replace('description: "Three',
                        'description: "[/bold] [red]x\\e[31m\\e]0;t\\a Three')
    code, out, err = _cli(inspect_cli.main, [str(_card(tmp_path, text))], capsys)
    assert code == 0, err
    assert "[/bold] [red]x Three" in out
    assert "\x1b" not in out and "\x07" not in out


def test_a_pipeedge_profile_with_all_times_zero_gives_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "pe"
    shutil.copytree(PIPEEDGE, root)
    text = (root / "device_types.yml").read_text()
    start = text.index("time_s: [", text.index("google/vit-base-patch16-224"))
    end = text.index("]", start)
    n = text[start:end].count(",") + 1
    (root / "device_types.yml").write_text(text[:start] + "time_s: [" + ", ".join(["0.0"] * n)
                                           + text[end:])
    code, _, err = _cli(plan_cli.main, ["--pipeedge", str(root), "--model",
                                        "google/vit-base-patch16-224"], capsys)
    _one_line(code, err, "device_types.yml", "time_s", "every time is 0")


def test_profile_out_a_directory_gives_one_line(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from dora_rl import profiler as profile_cli

    code, _, err = _cli(profile_cli.main, ["--model", "resnet50", "--out", str(tmp_path)], capsys)
    _one_line(code, err, "--out", str(tmp_path), "is a directory")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ item 8: silent changes
@pytest.mark.parametrize(("old", "new", "field", "problem"), [
    ("  backbone_mbps: 1000", "  backbone_mbps: 1000\n  backbone_mbps: 10",
     "network.backbone_mbps", "duplicate key (line 53; also on line 52)"),
    ("batch: 1}", "batch: true}", "jobs[0].inference.batch", "not a boolean"),
    ("batch: 1}", "batch: '3'}", "jobs[0].inference.batch", "not a string"),
    ("peak_flops: 1.0e+11", "peak_flops: '1.0e11'", "devices[0].compute.peak_flops",
     "must be a valid number, not a string"),
    ("idle_w: 2.0,", "idle_w: false,", "devices[0].power.idle_w", "not a boolean"),
    ("    dvfs: []\n    thermal: false", "    dvfs: []\n    dedicated: 1\n    thermal: false",
     "devices[0].dedicated", "must be a valid boolean"),
])
def test_no_silent_change(tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str,
                          field: str, problem: str) -> None:
    assert old in TINY
    _inspect(tmp_path, TINY.replace(old, new, 1), capsys, field, problem)


def test_an_int_for_a_float_field_is_fine(tmp_path: Path) -> None:
    scenario = load_scenario(_card(tmp_path, TINY.replace("request_rate_per_s: 10.0",
                                                          "request_rate_per_s: 10")))
    assert scenario.jobs[0].inference is not None
    assert scenario.jobs[0].inference.request_rate_per_s == 10.0


def test_a_card_where_every_device_may_leave_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = TINY.replace("    network: {domain: home_ap", "    can_leave: true\n"
                        "    network: {domain: home_ap")
    _inspect(tmp_path, text, capsys, "devices[2].can_leave", "every device may leave")


@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a/b", "a\\\\b", "a\\0b", "-rf",
                                  "sl\\e[31mow", "x" * 65, ""])
@pytest.mark.parametrize(("old", "field"), [
    ("name: tiny\n", "name"), ("  - name: slow\n", "devices[0].name"),
    ("  - name: classify\n", "jobs[0].name"), ("    - {name: home_ap,", "network.domains[0].name"),
    ("  - name: tiny8\n", "models[0].name"),
])
def test_names_must_be_safe_path_components(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            name: str, old: str, field: str) -> None:
    assert old in TINY
    new = old.replace(old.split("name: ")[1].rstrip("\n,"), f'"{name}"')
    line = _inspect(tmp_path, TINY.replace(old, new, 1), capsys, f": {field}: ",
                    "must be a safe name")
    assert "\x1b" not in line and "\x00" not in line


def test_display_helpers() -> None:
    assert plain_text("a\x1b[1;31mb\x1b]0;title\x07c\x00d\u202ee") == "abcde"
    assert display_text("[/bold]") == "\\[/bold]"
    assert display_text("x" * 100, limit=10) == "xxxxxxx..."
    with pytest.raises(ConfigError, match="--run-name: must be a safe name"):
        require_name("..", "--run-name", "")


# ------------------------------------------------------------------ fuzz
_SCALARS = st.one_of(
    st.integers(-(10**30), 10**30).map(str), st.floats().map(repr),
    st.sampled_from(["true", "no", "null", "~", "'3'", "[1, 2]", "{a: 1}", "*x", "&x y", "..",
                     "[/bold]", "\\e[31m", "1e308", "-1e308", ".nan", "1" * 400, "[[[[", "'"]),
    st.text(max_size=12),
)


@st.composite
def _mutated(draw: st.DrawFn, text: str) -> bytes:
    data = text.encode("utf-8")
    for _ in range(draw(st.integers(1, 3))):
        lines = data.split(b"\n")
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "scalar", "truncate", "inject"]))
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "scalar" and b": " in lines[i]:
            key = lines[i].rsplit(b": ", 1)[0]
            lines[i] = key + b": " + draw(_SCALARS).encode("utf-8", "replace")
        data = b"\n".join(lines)
        if op == "truncate":
            data = data[: draw(st.integers(0, len(data)))]
        elif op == "inject":
            k = draw(st.integers(0, len(data)))
            data = data[:k] + draw(st.binary(min_size=1, max_size=8)) + data[k:]
    return data


def _exit_0_or_one_line(main: Callable[[Sequence[str] | None], int], argv: list[str],
                        capsys: pytest.CaptureFixture[str]) -> None:
    start = time.perf_counter()
    code, _, err = _cli(main, argv, capsys)
    assert code in (0, 2), err
    if code == 2:
        _one_line(code, err)
    assert time.perf_counter() - start < 5


_FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])


@_FUZZ
@given(data=_mutated(TINY))
def test_fuzz_cards_through_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    data: bytes) -> None:
    _exit_0_or_one_line(inspect_cli.main, [str(_card(tmp_path, data)), "--json"], capsys)


_TRACE = "".join(f"{i},{1_000_000 + 37_000 * i}\n" for i in range(12))


@_FUZZ
@given(data=_mutated(_TRACE))
def test_fuzz_traces(tmp_path: Path, data: bytes) -> None:
    path = _card(tmp_path, data, f"t{next(_names)}_wifi.csv")
    try:
        trace = load_trace(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)
    else:
        assert np.isfinite(trace.mbps).all() and len(trace.mbps) <= 1_000_001


_PE_MODELS = (PIPEEDGE / "models.yml").read_text()
_PE_TYPES = (PIPEEDGE / "device_types.yml").read_text()


@_FUZZ
@given(which=st.sampled_from(["models.yml", "device_types.yml", "devices.yml"]),
       data=st.data())
def test_fuzz_pipeedge_files_through_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          which: str, data: st.DataObject) -> None:
    root = tmp_path / f"pe{next(_names)}"
    shutil.copytree(PIPEEDGE, root)
    text = (root / which).read_text()
    (root / which).write_bytes(data.draw(_mutated(text)))
    _exit_0_or_one_line(plan_cli.main, ["--pipeedge", str(root), "--model",
                                        "google/vit-base-patch16-224"], capsys)


def test_pipeedge_to_model_makes_safe_names(tmp_path: Path) -> None:
    root = tmp_path / "pe"
    shutil.copytree(PIPEEDGE, root)
    text = (root / "models.yml").read_text().replace("google/vit-base-patch16-224:", "../x:")
    (root / "models.yml").write_text(text)
    (root / "device_types.yml").write_text(
        (root / "device_types.yml").read_text().replace("google/vit-base-patch16-224:", "../x:"))
    assert to_model(load_pipeedge(root), "../x").name == "_._x"


def test_pipeedge_host_names_are_safe_names(tmp_path: Path) -> None:
    root = tmp_path / "pe"
    shutil.copytree(PIPEEDGE, root)
    text = (root / "devices.yml").read_text().replace("- mb-0", '- "[/bold]"')
    (root / "devices.yml").write_text(text)
    with pytest.raises(ConfigError, match=r"devices.yml: Minnowboard-E3845\[0\]: must be a host"):
        load_pipeedge(root)


def test_a_checkpoint_copy_of_a_card_gets_the_same_checks(tmp_path: Path) -> None:
    from dora_rl.config.loader import load_scenario_text

    text = TINY.replace("  backbone_mbps: 1000", "  backbone_mbps: 1000\n  backbone_mbps: 10")
    with pytest.raises(ConfigError, match=r"run/config.yaml: network.backbone_mbps: duplicate"):
        load_scenario_text(text, "run/config.yaml", tmp_path)


@pytest.mark.parametrize(("card", "problem"), [
    ("default:\n  timesteps: '300'\n", "default.timesteps: must be a valid integer, not a string"),
    ("default:\n  timesteps: true\n", "default.timesteps: must be a valid integer, not a boolean"),
    ("default:\n  ppo: {gamma: 'high'}\n", "default.ppo.gamma: must be a valid number"),
    ("default:\n  eval: {oracle_regret: 1}\n", "default.eval.oracle_regret"),
])
def test_controller_cards_take_numbers_and_flags_strictly(tmp_path: Path, card: str,
                                                          problem: str) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(card)
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_agent_settings("tiny", path)


def test_baseline_cards_take_numbers_strictly(tmp_path: Path) -> None:
    path = tmp_path / "baselines.yaml"
    path.write_text("foresight: {horizon_intervals: '30'}\n")
    with pytest.raises(ConfigError, match="foresight.horizon_intervals: must be a valid integer"):
        load_baseline_settings(path)
