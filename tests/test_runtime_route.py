"""Routes of micro-batches device to device, and a worker's handling of its stage's rows."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from dora_rl.costmodel import CostModel, Plan
from dora_rl.runtime import agent, inbox
from dora_rl.runtime.emulation import Emulator
from dora_rl.runtime.route import build_route
from dora_rl.scenarios import load

NAMES = ["slow", "mid", "fast"]


@pytest.fixture(scope="module")
def emulator() -> Emulator:
    return Emulator(CostModel(load("tiny"), 0).tables)


@pytest.mark.parametrize("plan", [
    Plan(stage_end=(8,), stage_devices=((2,),)),
    Plan(stage_end=(4, 8), stage_devices=((0, 1), (2,))),
    Plan(stage_end=(3, 8), stage_devices=((2,), (0, 1))),
    Plan(stage_end=(2, 5, 8), stage_devices=((0,), (1,), (2,))),
])
def test_every_row_is_computed_once_per_stage_and_sent_once_per_boundary(
        plan: Plan, emulator: Emulator) -> None:
    items = 7
    route = build_route(plan, items, 3, NAMES, emulator, "server", "/tmp/x")
    for _, _, parts in route.stages:
        rows = sorted((p.row0, p.rows) for p in parts)
        covered = [r for r0, n in rows for r in range(r0, r0 + n)]
        assert covered == list(range(items))
    for k in range(1, len(route.stages)):
        hops = [h for h in route.hops if h.stage == k]
        assert sorted(r for h in hops for r in range(h.row0, h.row0 + h.rows)) == \
            list(range(items))
        for h in hops:
            assert h.nbytes == pytest.approx(emulator.activation_bytes(route.stages[k][0] - 1,
                                                                       h.rows))
            assert h.seconds == pytest.approx(emulator.transfer_s(h.sender, h.receiver,
                                                                  h.nbytes))
    assert route.devices == frozenset(plan.devices)


def test_data_parallel_stages_exchange_exactly_the_rows_they_share(emulator: Emulator) -> None:
    plan = Plan(stage_end=(4, 8), stage_devices=((0, 1), (2,)))
    route = build_route(plan, 5, 0, NAMES, emulator, "server", "/tmp/x")
    parts = {p.device: (p.row0, p.rows) for p in route.stages[0][2]}
    hops = {(h.sender, h.receiver): (h.row0, h.rows) for h in route.hops}
    assert hops == {(d, 2): rows for d, rows in parts.items()}
    assert route.hops_from(0, 0) == [(0, h) for h in route.hops if h.sender == 0]
    assert route.hops_from(1, 2) == []  # the last stage sends to the server


def test_the_last_stage_discounts_a_whole_round_trip(emulator: Emulator) -> None:
    emulator.call_overhead_s = [0.001, 0.001, 0.001]
    plan = Plan(stage_end=(4, 8), stage_devices=((1,), (2,)))
    route = build_route(plan, 2, 0, NAMES, emulator, "server", "/tmp/x")
    first, last = route.stages[0][2][0], route.stages[1][2][0]
    assert first.compute_s - first.reply_s == pytest.approx(0.0005)
    assert last.compute_s - last.reply_s == pytest.approx(0.001)
    emulator.call_overhead_s = [0.0, 0.0, 0.0]


def test_a_worker_waits_for_all_its_rows_then_sends_each_receiver_its_share(
        monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> None:
    sent: list[tuple[str, Any, tuple[Any, ...]]] = []

    class Done:
        def wait(self) -> None:
            return None

    def fake_rpc(to: str, fn: Any, args: tuple[Any, ...] = (), timeout: float = 0) -> Done:
        sent.append((to, fn, args))
        return Done()

    monkeypatch.setattr(agent.rpc, "rpc_async", fake_rpc)
    monkeypatch.setattr(agent, "forward", lambda first, end, x, c, r: (x * 10, c, 0.0))
    monkeypatch.setattr(agent, "send_bytes", lambda lock_dir, s, r, nbytes: (0.01, 0.02))
    monkeypatch.setattr(agent, "_COURIER", _Inline())
    # stage 0 on "fast" alone, stage 1 data parallel on slow + mid: fast gets its rows from
    # the server in one piece; here we play stage 1's "mid", which gets rows from "fast"
    plan = Plan(stage_end=(3, 8), stage_devices=((2,), (0, 1)))
    route = build_route(plan, 6, 42, NAMES, emulator, "server", "/tmp/x")
    x = torch.arange(6.0).reshape(6, 1)
    agent.stage(route, 0, 0, 0, x)
    to_workers = [(to, args) for to, fn, args in sent if fn is agent.stage]
    shares = {to: args[4] for to, args in to_workers}
    parts = {p.name: p for p in route.stages[1][2]}
    for name, part in parts.items():
        assert torch.equal(shares[name], x[part.row0: part.row0 + part.rows] * 10)
    # a stage-1 part whose rows arrive in two pieces, out of order, computes them in order
    sent.clear()
    mid = next(j for j, p in enumerate(route.stages[1][2]) if p.name == "mid")
    part = route.stages[1][2][mid]
    rows = torch.arange(float(part.rows)).reshape(-1, 1) + part.row0
    if part.rows > 1:
        agent.stage(route, 1, mid, part.row0 + 1, rows[1:])
        assert not [s for s in sent if s[1] is inbox.deliver]  # still waiting
    agent.stage(route, 1, mid, part.row0, rows[:1])
    delivered = [args for to, fn, args in sent if fn is inbox.deliver]
    assert len(delivered) == 1 and delivered[0][:2] == (42, part.row0)
    assert torch.equal(delivered[0][2], rows * 10)
    accounts = [args[0] for to, fn, args in sent if fn is inbox.account]
    assert ("busy", part.device, part.compute_s) in accounts[-1]


class _Inline:
    """A courier that runs its job at once (for tests)."""

    def submit(self, fn: Any, *args: Any) -> None:
        fn(*args)


def test_the_server_mailbox_collects_rows_and_hears_of_lost_devices() -> None:
    pending = inbox.open_request(7, 4, {1, 2})
    inbox.deliver(7, 2, torch.ones(2, 1))
    assert not pending.done.is_set()
    inbox.deliver(7, 0, torch.zeros(2, 1))
    assert pending.done.is_set()
    assert pending.output().flatten().tolist() == [0, 0, 1, 1]
    inbox.close_request(7)
    inbox.deliver(7, 0, torch.zeros(2, 1))  # late rows of a closed attempt are dropped
    other = inbox.open_request(8, 4, {1, 2})
    inbox.fail_device(3)
    assert not other.done.is_set()
    inbox.fail_device(2)
    assert other.done.is_set() and other.lost == 2
    inbox.close_request(8)


def _links(rate_a: float, rate_b: float) -> Any:
    from dora_rl.runtime.emulation import Links

    return Links(rate=(rate_a, rate_b), domain=(0, 0), wifi=(False,), free=(1.0,),
                 backbone=1e12, time_scale=1.0)


def test_a_transfer_follows_the_links_and_waits_while_one_is_down(tmp_path: Any) -> None:
    import threading
    import time

    agent.set_links(_links(1e4, 1e4))  # wired: 1,000 bytes take 0.1 s
    airtime, wall = agent.send_bytes(str(tmp_path), 0, 1, 1000.0)
    assert airtime == pytest.approx(0.1, abs=0.03) and wall >= airtime
    agent.set_links(_links(1e4, 0.0))  # the receiver's link is down
    out: list[tuple[float, float]] = []
    worker = threading.Thread(target=lambda: out.append(agent.send_bytes(str(tmp_path), 0, 1,
                                                                         1000.0)))
    worker.start()
    time.sleep(0.3)
    assert not out  # nothing moves while the link is down
    agent.set_links(_links(1e4, 2e4))  # back, at the sender's 10 kB/s
    worker.join(timeout=5)
    airtime, wall = out[0]
    assert airtime == pytest.approx(0.1, abs=0.03)  # airtime only while it moved
    assert wall >= 0.3 + 0.1 - 0.03
    agent.set_links(_links(1e4, 1e4))
    agent._LINKS.clear()
