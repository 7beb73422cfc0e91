"""Runtime fault matrix: a stopped and a killed worker with no feasible plan left, all workers
gone, wrong and late join tokens, SIGINT and SIGTERM, a control step that raises.

Live runs go through ``python -m dora_rl.serve`` in a child process of its own session, so a
hang cannot outlive its timeout (the whole process group is killed in ``finally``).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dora_rl import serve
from dora_rl.costmodel import Plan
from dora_rl.scenarios import load

ROOT = Path(__file__).parent.parent
TINY = ROOT / "envs" / "tiny.yaml"


def _tight_card(folder: Path) -> Path:
    """tiny with 16/16/20 MB devices and a 500 ms target: without ``fast`` no plan fits."""
    card = yaml.safe_load(TINY.read_text())
    card["name"] = "tight"
    for device, memory_bytes in zip(card["devices"], (16_000_000, 16_000_000, 20_000_000),
                                    strict=True):
        device["memory_bytes"] = memory_bytes
    card["jobs"][0]["qoe"]["latency_ms"] = 500.0
    path = folder / "tight.yaml"
    path.write_text(yaml.safe_dump(card, sort_keys=False))
    return path


def _env(tmp: Path) -> dict[str, str]:
    (tmp / "tmpdir").mkdir(exist_ok=True)
    return dict(os.environ, TMPDIR=str(tmp / "tmpdir"), TORCH_CPP_LOG_LEVEL="ERROR")


class Serve:
    """``python -m dora_rl.serve ARGS`` in its own session, with a status file."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.tmp, self.status, self.out = tmp, tmp / "status.json", tmp / "result.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dora_rl.serve", *args, "--status", str(self.status),
             "--json", str(self.out)], cwd=ROOT, env=_env(tmp), start_new_session=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def read(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.status.read_text()))
        except (OSError, ValueError):
            return {}

    def until(self, test: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0
              ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.read()
            if status and test(status):
                return status
            assert self.proc.poll() is None, self.proc.communicate()[1].decode()[-2000:]
            time.sleep(0.05)
        raise AssertionError(f"status never matched; last: {self.read()}")

    def pid(self, device: str) -> int:
        return next(int(w["pid"]) for w in self.read()["workers"] if w["device"] == device)

    def finish(self, timeout_s: float = 60.0) -> tuple[int, str, str]:
        out, err = self.proc.communicate(timeout=timeout_s)
        return self.proc.returncode, out.decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Serve]]:
    runs: list[Serve] = []

    def start(*args: str) -> Serve:
        runs.append(Serve(tmp_path, *args))
        return runs[-1]

    yield start
    for run in runs:
        run.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _listening(pid: int) -> list[tuple[str, int]]:
    """(address, port) of every TCP socket process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = []
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            if width == 8:
                text = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:
                words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
                text = socket.inet_ntop(socket.AF_INET6, words)
            out.append((text, int(port, 16)))
    return out


# ---------------------------------------------------------------------------- live runs
def test_a_stopped_then_killed_worker_with_no_feasible_plan_never_hangs(
        tmp_path: Path, launch: Callable[..., Serve]) -> None:
    """SIGSTOP ``fast``: no plan fits the others; heartbeats and status go on, requests wait,
    and after SIGCONT they complete. Then SIGKILL it: no plan will ever fit, requests are
    refused at once with the reason, the run ends, exit 1, QoE attainment over requests sent."""
    card = _tight_card(tmp_path)
    run = launch("--scenario", str(card), "--rate", "20", "--requests", "200",
                 "--control-interval", "0.2", "--max-missed", "1", "--plan-wait", "5")
    run.until(lambda s: s["completed"] >= 20)
    fast = run.pid("fast")
    os.kill(fast, signal.SIGSTOP)
    stopped_t = time.monotonic()
    blocked = run.until(lambda s: s["state"] == "no_plan")
    assert "no plan fits the devices left" in blocked["no_plan"] or \
        "planner failed" in blocked["no_plan"]
    later = run.until(lambda s: s["intervals"] >= blocked["intervals"] + 1)  # heartbeats on
    assert later["state"] == "no_plan" and later["completed"] == blocked["completed"]
    os.kill(fast, signal.SIGCONT)
    held_s = time.monotonic() - stopped_t
    # serving again: the requests that waited complete, then fast is killed for good
    run.until(lambda s: s["state"] == "serving" and s["completed"] >= later["sent"])
    os.kill(fast, signal.SIGKILL)
    code, out, err = run.finish()
    result = json.loads(run.out.read_text())
    assert code == 1, err[-2000:]
    assert result["sent"] == 200 and 0 < result["lost"] == result["sent"] - result["completed"]
    reasons = result["lost_reasons"]
    assert reasons and all(why.startswith("no feasible plan") for why in reasons)
    assert any("gone for good" in why for why in reasons)  # refused at once after the kill
    assert sum(result["lost_reasons"].values()) == result["lost"]
    periods = result["no_plan"]
    assert len(periods) == 2 and periods[0]["end_s"] is not None and periods[1]["end_s"] is None
    assert [f["device"] for f in result["faults"]] == ["fast", "fast"]
    # the outage runs from the last request completed before the stop
    assert result["recovery_s"][0] >= held_s - 0.3
    met = result["completed"] - (result["requests_missed"] - result["lost"])
    assert result["qoe_attainment"] == pytest.approx(met / 200)
    assert f"QoE attainment {100 * met / 200:.1f} % of requests sent" in out
    assert err.strip().splitlines()[-1].startswith(
        f"serve: {result['lost']} of 200 requests not completed (")
    assert "Traceback" not in err
    assert json.loads(run.status.read_text())["state"] == "finished"


def test_all_workers_gone_exits_1_and_counts_lost_requests_as_missed(
        tmp_path: Path, launch: Callable[..., Serve]) -> None:
    run = launch("--scenario", "tiny", "--rate", "20", "--requests", "40",
                 "--control-interval", "0.2", "--plan-wait", "0.5",
                 "--kill", "fast@5", "--kill", "mid@12", "--kill", "slow@12")
    code, out, err = run.finish()
    result = json.loads(run.out.read_text())
    assert code == 1, err[-2000:]
    assert result["sent"] == 40 and result["completed"] < 40
    assert result["lost"] == 40 - result["completed"] >= 20
    assert all("no plan fits the devices left (none)" in why or "attempts" in why
               for why in result["lost_reasons"])
    assert result["qoe_attainment"] <= result["completed"] / 40 < 1.0
    assert f"lost {result['lost']};" in out and "QoE attainment 100.0" not in out
    # the first kill was re-planned around: a finite outage, measured from the last completion
    assert 0 < result["recovery_s"][0] < 5.0
    assert [f["device"] for f in result["faults"]] == ["fast", "mid", "slow"]
    assert "Traceback" not in err


def test_wrong_and_late_tokens_are_refused_without_disturbing_the_run(
        tmp_path: Path, launch: Callable[..., Serve]) -> None:
    from dora_rl.runtime.rendezvous import JoinError, connect_store, request_join

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = launch("--scenario", "tiny", "--rate", "20", "--requests", "30",
                 "--control-interval", "0.25", "--token", "s3cret-token", "--port", str(port),
                 "--remote", "mid")
    store = connect_store("127.0.0.1", port, 30.0)  # waits for the server to listen
    with pytest.raises(JoinError, match=r"refused the join \(wrong join token\)"):
        request_join(store, "mid", "guess", 30.0)
    assert run.proc.poll() is None  # the server still waits for the right one
    right = subprocess.Popen([sys.executable, "-m", "dora_rl.worker", "--connect",
                              f"127.0.0.1:{port}", "--device", "mid"], cwd=ROOT,
                             env=dict(_env(tmp_path), DORA_JOIN_TOKEN="s3cret-token"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        run.until(lambda s: s["sent"] >= 5)
        listening = _listening(run.proc.pid)
        assert listening and all(address == "127.0.0.1" for address, _ in listening)
        seen = [store.get(k).decode() for k in ("nonce/mid/1", "proof/mid/1", "answer/mid/1",
                                                "nonce/mid/2", "proof/mid/2", "answer/mid/2")]
        assert not any("s3cret" in value for value in seen)
        assert seen[2] == "refused: wrong join token" and not seen[5].startswith("refused")
        with pytest.raises(JoinError, match="join window is closed"):
            request_join(store, "mid", "guess", 30.0)  # a late token
        code, _, err = run.finish()
        assert code == 0, err[-2000:]
        result = json.loads(run.out.read_text())
        assert result["completed"] == 30 and result["lost"] == 0
        assert result["join_refused"] == ["mid attempt 1: wrong join token"]
        assert right.wait(timeout=15) == 0
    finally:
        if right.poll() is None:
            right.kill()
            right.wait()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_the_workers_writes_the_partial_result_and_cleans_up(
        tmp_path: Path, launch: Callable[..., Serve], sig: int, code: int) -> None:
    run = launch("--scenario", "tiny", "--rate", "20", "--requests", "400",
                 "--control-interval", "0.25")
    status = run.until(lambda s: s["completed"] >= 5)
    workers = [int(w["pid"]) for w in status["workers"]]
    assert list((tmp_path / "tmpdir").glob("dora_rl-media-*"))  # made by this run
    os.kill(run.proc.pid, sig)
    returncode, out, err = run.finish(timeout_s=30)
    assert returncode == code
    lines = err.strip().splitlines()
    stand_in = [line for line in lines if "run as stand-in layers" in line]  # said once
    lines = [line for line in lines if line not in stand_in]
    assert len(stand_in) == 1 and len(lines) == 1, err[-2000:]
    name = signal.Signals(sig).name
    assert lines[0].startswith(f"serve: interrupted by {name}: sent ")
    assert "partial result in --json" in lines[0]
    result = json.loads(run.out.read_text())
    assert result["interrupted"] == name and 5 <= result["completed"] <= result["sent"] < 400
    assert json.loads(run.status.read_text())["state"] == "interrupted"
    assert not list((tmp_path / "tmpdir").glob("dora_rl-media-*"))
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers)


# ---------------------------------------------------------------------------- in process
@pytest.mark.parametrize("value", ["inf", "nan", "-1", "0", "1e300"])
def test_a_time_scale_out_of_range_is_one_line(value: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert serve.main(["--scenario", "tiny", "--time-scale", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --time-scale {float(value)}")


@pytest.mark.parametrize(("argv", "field"), [
    (["--host", "0.0.0.0", "--token", "t"], "--host 0.0.0.0: a wildcard"),
    (["--host", "192.0.2.250", "--token", "t"], "--host 192.0.2.250: no interface"),
    (["--host", "no-such-host.invalid"], "--host no-such-host.invalid: cannot resolve"),
    (["--remote", "mid"], "--remote: needs --port"),
    (["--remote", "phone", "--port", "1234"], "--remote phone: unknown device"),
    (["--plan-wait", "inf"], "--plan-wait inf"),
])
def test_network_options_are_checked_up_front(argv: list[str], field: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert serve.main(["--scenario", "tiny", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {field}"), err


class _Broken:
    """A decider whose planner recurses without end (like the issue's) and whose controller
    raises."""

    def __init__(self, base: Any) -> None:
        self.base = base

    def initial(self, usable: tuple[bool, ...]) -> Plan:
        return Plan(stage_end=(8,), stage_devices=((2,),))

    def candidates(self, usable: tuple[bool, ...]) -> tuple[Plan, ...]:
        raise RecursionError("maximum recursion depth exceeded")

    def decide(self, m: Any) -> None:
        raise RecursionError("maximum recursion depth exceeded in comparison")


def test_a_control_step_that_raises_keeps_the_plan_heartbeats_and_status(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dora_rl.runtime.control import make_decider
    from dora_rl.runtime.health import Refused
    from dora_rl.runtime.loop import control_step
    from dora_rl.runtime.runner import Runtime, ServeConfig
    from dora_rl.runtime.settings import LiveState

    tiny = load("tiny")
    status = tmp_path / "status.json"
    rt = Runtime(ServeConfig(tiny, status=status, plan_wait_s=0.2),
                 _Broken(make_decider("static", tiny, 0)))
    beats: list[int] = []
    lost = [["fast"]]

    def heartbeat(max_missed: int) -> list[str]:
        beats.append(max_missed)
        return lost.pop() if lost else []

    monkeypatch.setattr(rt.cluster, "heartbeat", heartbeat)
    try:
        rt._world()
        plan = Plan(stage_end=(8,), stage_devices=((2,),))
        rt.live = LiveState(plan=plan, plans=[plan])
        control_step(rt)  # fast is lost; re-planning hits the planner's RecursionError
        first = json.loads(status.read_text())
        assert first["state"] == "no_plan" and "RecursionError" in first["no_plan"]
        assert first["control_errors"] >= 1 and "RecursionError" in first["last_error"]
        assert rt.live.plan == plan  # the last good plan is kept
        with pytest.raises(Refused, match="no feasible plan within 0.2 s .*RecursionError"):
            rt._serving_plan(time.monotonic())
        monkeypatch.setattr(rt, "close_interval", lambda: 1 / 0)
        control_step(rt)  # a step whose measurement fails still beats and writes status
        assert len(beats) == 2
        assert json.loads(status.read_text())["control_errors"] > first["control_errors"]
        rt.cluster.workers["fast"].alive = True  # fast answers again
        monkeypatch.undo()
        monkeypatch.setattr(rt.cluster, "heartbeat", heartbeat)
        control_step(rt)
        assert json.loads(status.read_text())["state"] == "serving"
        assert rt._serving_plan(time.monotonic()) == (plan, 0)
        assert rt.health.periods[0]["t_end"] is not None
    finally:
        rt.cluster.close()
