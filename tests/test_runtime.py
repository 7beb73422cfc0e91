"""Runtime pieces without worker processes: layers, splitting, emulation, decisions, CLIs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dora_rl import serve, worker
from dora_rl.config import Scenario
from dora_rl.costmodel import CostModel, Plan
from dora_rl.runtime.control import make_decider
from dora_rl.runtime.emulation import Emulator
from dora_rl.runtime.layers import build_layers, layer_specs, run_layers, sample_input
from dora_rl.runtime.route import split_items
from dora_rl.scenarios import load


@pytest.fixture(scope="module")
def tiny():  # type: ignore[no-untyped-def]
    return load("tiny")


def test_inline_layers_output_the_cards_activation_bytes(tiny) -> None:  # type: ignore[no-untyped-def]
    specs = layer_specs(tiny, 0)
    layers = build_layers(specs)
    x = sample_input(tiny, 0, 3, seed=1)
    for i, layer in enumerate(tiny.models["tiny8"].layers):
        x = layers[i](x)
        assert x.shape[0] == 3
        assert x.shape[1] * x.element_size() == layer.activation_bytes


def test_weights_are_the_same_for_the_same_seed_and_differ_otherwise(tiny) -> None:  # type: ignore[no-untyped-def]
    specs = layer_specs(tiny, 0)
    a, b, c = build_layers(specs, 0), build_layers(specs, 0), build_layers(specs, 1)
    assert torch.equal(a[3].scale, b[3].scale)
    assert not torch.equal(a[3].scale, c[3].scale)


def test_stages_in_sequence_equal_the_whole_model(tiny) -> None:  # type: ignore[no-untyped-def]
    layers = build_layers(layer_specs(tiny, 0))
    x = sample_input(tiny, 0, 4, seed=2)
    whole = run_layers(layers, 0, 8, x)
    halves = torch.cat([run_layers(layers, 3, 8, run_layers(layers, 0, 3, part))
                        for part in torch.split(x, [1, 3])])
    assert torch.equal(whole, halves)


def test_split_items_is_proportional_and_complete() -> None:
    assert split_items(10, [1.0, 4.0]) == [2, 8]
    assert sum(split_items(7, [1.0, 2.0, 3.0])) == 7
    assert split_items(1, [1.0, 5.0]) == [0, 1]


def test_emulated_times_match_the_cost_model_terms(tiny) -> None:  # type: ignore[no-untyped-def]
    model = CostModel(tiny)
    emu = Emulator(model.tables, time_scale=2.0)
    m = model.evaluate(Plan(stage_end=(4, 8), stage_devices=((1,), (2,))))
    assert emu.compute_s(1, 0, 4, 1) == pytest.approx(2 * m["stage_s"][0])
    nbytes = emu.activation_bytes(3, 1)
    assert emu.transfer_s(1, 2, nbytes) == pytest.approx(2 * m["transfer_s"][0])
    assert emu.transfer_s(2, 2, nbytes) == 0.0


def test_static_controller_keeps_its_plan_on_the_training_observation(tiny) -> None:  # type: ignore[no-untyped-def]
    from dora_rl.runtime.live import LiveControl
    from dora_rl.world import IntervalModel

    decider = make_decider("static", tiny, 0)
    plan = decider.initial((True, True, True))
    control = LiveControl(IntervalModel(tiny), 0)
    control.world = decider.env.dynamics.reset(np.random.default_rng(0))
    m = control.measurement((True, True, True), plan, 3, {2: set(range(8))})
    obs = decider.observation(m)
    assert obs.shape == decider.env.observation_space.shape
    assert np.all(np.abs(obs) <= 1.0)
    decision = decider.decide(m)
    assert decision.plans == (None,) and decision.modes == (0, 0, 0)


def test_fallback_candidates_avoid_a_missing_device(tiny) -> None:  # type: ignore[no-untyped-def]
    decider = make_decider("static", tiny, 0)
    for plan in decider.candidates((True, True, False)):
        assert 2 not in plan.devices


@pytest.mark.parametrize(("argv", "field"), [
    (["--scenario", "nope_card"], "--scenario"),
    (["--scenario", "tiny", "--kill", "phone@3"], "--kill phone@3"),
    (["--scenario", "tiny", "--kill", "mid@x"], "--kill mid@x"),
    (["--scenario", "tiny", "--requests", "0"], "--requests 0"),
    (["--scenario", "tiny", "--rate", "-1"], "--rate -1"),
    (["--scenario", "tiny", "--job", "nope"], "--job nope"),
    (["--scenario", "tiny", "--controller", "no_such_dir"], "--controller no_such_dir"),
    (["--scenario", "tiny", "--controller", "oracle"],
     "--controller oracle: needs the coming intervals"),
    (["--scenario", "tiny", "--plan", "4:slow,7:fast"], "--plan 4:slow,7:fast"),
    (["--scenario", "tiny", "--plan", "4:slow,8:slow"], "--plan 4:slow,8:slow"),
    (["--scenario", "tiny", "--plan", "8:phone"], "--plan 8:phone"),
    (["--scenario", "tiny", "--time-scale", "fast"], "--time-scale fast"),
    (["--scenario", "tiny", "--time-scale", "0"], "--time-scale 0"),
    (["--scenario", "tiny", "--max-missed", "0"], "--max-missed 0"),
    (["--scenario", "tiny", "--tb", "pyproject.toml"], "--tb pyproject.toml"),
    (["--scenario", "tiny", "--json", "tests"], "--json tests"),
    (["--scenario", "tiny", "--status", "pyproject.toml/s.json"], "--status pyproject.toml/s.json"),
])
def test_serve_rejects_bad_input_with_one_line(argv: list[str], field: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert serve.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"error: {field}")


def test_worker_rejects_a_bad_address(capsys: pytest.CaptureFixture[str]) -> None:
    assert worker.main(["--connect", "localhost", "--device", "mid"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: --connect localhost: expected HOST:PORT with a port in 1..65535")


def test_a_worker_with_the_wrong_token_is_refused_and_the_server_keeps_waiting(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys
    import time

    from dora_rl.runtime import cluster as cl

    monkeypatch.setattr(cl, "JOIN_TIMEOUT_S", 1.0)
    cluster = cl.Cluster(["mid"], token="right-token")
    proc = subprocess.Popen([sys.executable, "-m", "dora_rl.worker", "--connect",
                             f"127.0.0.1:{cluster.port}", "--device", "mid", "--token", "wrong"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while int(cluster.store.add("attempts/mid", 0)) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # the worker asks to join
        with pytest.raises(cl.ClusterError, match=r"did not join within 1 s; refused: "
                                                  r"mid attempt 1: wrong join token"):
            cluster.admit()
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        cluster.close()
    assert err.decode().strip().splitlines()[-1] == (
        "error: --device mid: the server refused the join (wrong join token)")


def test_listening_beyond_loopback_needs_a_token() -> None:
    from dora_rl.runtime.cluster import Cluster, ClusterError

    with pytest.raises(ClusterError, match="needs --token"):
        Cluster(["mid"], host="0.0.0.0")


class _Failing:
    """A decider that raises, or answers too late, at every control step."""

    def __init__(self, base, mode: str) -> None:  # type: ignore[no-untyped-def]
        self.base, self.mode = base, mode

    def initial(self, usable):  # type: ignore[no-untyped-def]
        return self.base.initial(usable)

    def candidates(self, usable):  # type: ignore[no-untyped-def]
        return self.base.candidates(usable)

    def decide(self, view):  # type: ignore[no-untyped-def]
        if self.mode == "raise":
            raise RuntimeError("controller crashed")
        import time

        time.sleep(0.05)
        from dora_rl.world import Decision

        return Decision(plans=(Plan(stage_end=(4, 8), stage_devices=((1,), (2,))),))


@pytest.mark.parametrize("mode", ["raise", "late"])
def test_a_failing_or_late_controller_keeps_the_last_good_plan(tiny, mode: str) -> None:  # type: ignore[no-untyped-def]
    from dora_rl.runtime.runner import Runtime, ServeConfig, _Live

    base = make_decider("static", tiny, 0)
    rt = Runtime(ServeConfig(tiny, decision_timeout_s=0.01), _Failing(base, mode))
    try:
        rt._world()
        rt.live = _Live(plan=base.initial((True, True, True)))
        assert rt._decide() is None
        assert rt.control.target is None
        assert len(rt.live.decisions_ms) == 1
    finally:
        rt.cluster.close()


class _Ping:
    """A finished RPC future: answers, or raises like a timed-out call."""

    def __init__(self, ok: bool) -> None:
        self.ok = ok

    def wait(self) -> int:
        if not self.ok:
            raise RuntimeError("RPC timed out")
        return 1


def test_a_silent_worker_is_removed_after_consecutive_missed_heartbeats(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from dora_rl.runtime import cluster as cl

    answers = {"a": [True, False, False, True, False, False, False],
               "b": [False, False, False, False, False, False, False]}
    beat = {"n": 0}
    monkeypatch.setattr(cl.rpc, "rpc_async",
                        lambda device, fn, timeout: _Ping(answers[device][beat["n"]]))
    fake = cl.Cluster.__new__(cl.Cluster)
    fake.workers = {d: cl.WorkerInfo(d, rank) for rank, d in enumerate(("a", "b"), start=1)}
    fake.revived = []
    removed = []
    for beat["n"] in range(7):
        removed.append(fake.heartbeat(max_missed=3))
    # b misses three in a row: gone on the third; a's misses are interrupted by an answer
    # until its last three
    assert removed == [[], [], ["b"], [], [], [], ["a"]]
    assert [w.alive for w in fake.workers.values()] == [False, False]


def test_a_removed_worker_that_answers_again_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    from dora_rl.runtime import cluster as cl

    answers = [False, False, True, False, True, True, True, True]
    beat = {"n": 0}
    monkeypatch.setattr(cl.rpc, "rpc_async",
                        lambda device, fn, timeout: _Ping(answers[beat["n"]]))
    fake = cl.Cluster.__new__(cl.Cluster)
    fake.workers = {"a": cl.WorkerInfo("a", 1)}
    fake.revived = []
    events = []
    for beat["n"] in range(len(answers)):
        events.append((fake.heartbeat(max_missed=2), fake.take_revived()))
    # out after two misses; back only after two answers in a row (one is not enough)
    assert events == [([], []), (["a"], []), ([], []), ([], []), ([], []), ([], ["a"]),
                      ([], []), ([], [])]
    assert fake.workers["a"].alive


def test_a_device_leaving_the_emulated_world_is_planned_around_until_it_returns(
        tiny: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    from dora_rl.runtime.runner import Runtime, ServeConfig, _Live

    base = make_decider("static", tiny, 0)
    rt = Runtime(ServeConfig(tiny), base)
    switched: list[Plan] = []
    monkeypatch.setattr(rt, "_switch", lambda plan: switched.append(plan))
    try:
        on_mid = Plan(stage_end=(4, 8), stage_devices=((1,), (2,)))
        rt._world()
        rt.live = _Live(plan=on_mid)
        rt._churn([True, True, True])  # nothing changes
        assert switched == [] and rt.presence == []
        rt._churn([False, True, True])  # slow leaves: the plan does not use it
        assert switched == [] and rt.usable() == (False, True, True)
        rt._churn([False, False, True])  # mid leaves: re-planned without it
        assert len(switched) == 1 and 1 not in switched[0].devices
        assert [f["kind"] for f in rt.live.faults] == ["left"]
        assert rt.usable() == (False, False, True)
        rt._churn([True, True, True])  # both back: usable again, for the controller to use
        assert rt.usable() == (True, True, True)
        assert [(e["device"], e["event"]) for e in rt.presence] == \
            [("slow", "left"), ("mid", "left"), ("slow", "returned"), ("mid", "returned")]
    finally:
        rt.cluster.close()
