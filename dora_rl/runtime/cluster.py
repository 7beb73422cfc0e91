"""Workers: spawn or admit them, join them to torch.distributed RPC, watch them, stop them.

Rendezvous goes through a ``torch.distributed.TCPStore`` the server hosts at ``host:port``: a
worker writes ``join/<device>`` (its join token) and reads back its RPC rank, or ``refused``
when the token does not match. RPC (TensorPipe over TCP) then runs on a second port published
in the store. The server listens on 127.0.0.1 unless told otherwise; any other address needs a
join token.
"""

from __future__ import annotations

import hmac
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import torch.distributed as dist
from torch.distributed import rpc

from dora_rl.errors import DoraError
from dora_rl.runtime import agent

SERVER_NAME = "server"
JOIN_TIMEOUT_S = 60.0
MAX_MISSED = 3  # consecutive unanswered heartbeats before a silent worker is removed


class ClusterError(DoraError):
    """Workers could not be started or admitted."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def backend_options(host: str, port: int, timeout_s: float) -> rpc.TensorPipeRpcBackendOptions:
    """TensorPipe options: TCP transport only (no shared memory), so workers may be remote."""
    return rpc.TensorPipeRpcBackendOptions(
        init_method=f"tcp://{host}:{port}", rpc_timeout=timeout_s, num_worker_threads=16,
        _transports=["uv"], _channels=["basic"])


@dataclass
class WorkerInfo:
    """One worker as the server sees it."""

    device: str
    rank: int
    pid: int | None = None
    alive: bool = True
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    missed: int = 0
    """Consecutive heartbeats the worker has not answered."""
    answered: int = 0
    """Consecutive heartbeats a removed worker has answered (it may come back)."""


class Cluster:
    """The server's side: admits one worker per device, then talks to them over RPC.

    Args:
        devices: Device names, in card order.
        host: Address to listen on (127.0.0.1 by default).
        token: Join token; required unless ``host`` is a loopback address.
        rpc_timeout_s: Default timeout of each RPC.
    """

    def __init__(self, devices: Sequence[str], host: str = "127.0.0.1", token: str = "",
                 rpc_timeout_s: float = 10.0) -> None:
        if host not in ("127.0.0.1", "localhost") and not token:
            raise ClusterError(f"--host {host}: listening beyond loopback needs --token")
        self.devices = list(devices)
        self.host, self.token, self.rpc_timeout_s = host, token, rpc_timeout_s
        self.port = free_port(host)
        self.rpc_port = free_port(host)
        self.store = dist.TCPStore(host, self.port, is_master=True, wait_for_workers=False,
                                   timeout=timedelta(seconds=JOIN_TIMEOUT_S))
        self.store.set("rpc_port", str(self.rpc_port))
        self.workers = {d: WorkerInfo(d, rank + 1) for rank, d in enumerate(self.devices)}
        self.revived: list[str] = []
        self.started = False

    # ------------------------------------------------------------------ start
    def spawn_local(self) -> None:
        """Start one worker process per device on this machine (``python -m dora_rl.worker``)."""
        env = dict(os.environ, OMP_NUM_THREADS="1", TP_SOCKET_IFNAME="lo")
        for info in self.workers.values():
            cmd = [sys.executable, "-m", "dora_rl.worker", "--connect",
                   f"{self.host}:{self.port}", "--device", info.device]
            if self.token:
                env["DORA_JOIN_TOKEN"] = self.token
            info.process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
            info.pid = info.process.pid

    def admit(self) -> None:
        """Answer every device's join request (rank or refusal), then join RPC as rank 0."""
        for info in self.workers.values():
            try:
                self.store.wait([f"join/{info.device}"], timedelta(seconds=JOIN_TIMEOUT_S))
            except RuntimeError:
                raise ClusterError(f"worker {info.device}: did not join within "
                                   f"{JOIN_TIMEOUT_S:.0f} s") from None
            offered = self.store.get(f"join/{info.device}").decode()
            if not hmac.compare_digest(offered, self.token):
                self.store.set(f"answer/{info.device}", "refused")
                raise ClusterError(f"worker {info.device}: wrong join token, refused")
            self.store.set(f"answer/{info.device}", f"{info.rank}:{len(self.workers) + 1}")
        rpc.init_rpc(SERVER_NAME, rank=0, world_size=len(self.workers) + 1,
                     rpc_backend_options=backend_options(self.host, self.rpc_port,
                                                         self.rpc_timeout_s))
        self.started = True
        for info in self.workers.values():
            info.pid = rpc.rpc_sync(info.device, agent.ping, timeout=self.rpc_timeout_s)

    # ------------------------------------------------------------------ watch
    def alive_devices(self) -> list[str]:
        """Devices whose worker is still believed alive."""
        return [d for d, w in self.workers.items() if w.alive]

    def mark_dead(self, device: str) -> bool:
        """Remove a worker; returns whether it was alive until now."""
        info = self.workers[device]
        was, info.alive = info.alive, False
        return was

    def heartbeat(self, timeout_s: float = 1.0, max_missed: int = MAX_MISSED) -> list[str]:
        """Ping every worker whose process may still run; returns the devices newly found
        dead. Devices that came back are in :attr:`revived` until :meth:`take_revived`.

        A local worker whose process has exited is dead at once, for good. Otherwise a worker
        is dead once it has missed ``max_missed`` heartbeats in a row (a busy or briefly
        disconnected worker is not dropped for one late answer); an answer resets its count.
        A removed worker that answers ``max_missed`` heartbeats in a row (it was out of reach
        and is back) is alive again.
        """
        futures = {}
        lost = []
        for d, info in self.workers.items():
            if info.process is not None and info.process.poll() is not None:
                if info.alive:
                    lost.append(d)
                info.answered = 0
                continue
            futures[d] = rpc.rpc_async(d, agent.ping, timeout=timeout_s)
        for d, fut in futures.items():
            info = self.workers[d]
            try:
                fut.wait()
            except Exception:  # noqa: BLE001 - any RPC failure means a missed heartbeat
                info.missed += 1
                info.answered = 0
                if info.alive and info.missed >= max_missed:
                    lost.append(d)
            else:
                info.missed = 0
                info.answered += 1
                if not info.alive and info.answered >= max_missed:
                    info.alive = True
                    self.revived.append(d)
        return [d for d in lost if self.mark_dead(d)]

    def take_revived(self) -> list[str]:
        """Devices found alive again since the last call."""
        out, self.revived = self.revived, []
        return out

    def probe(self, devices: Sequence[str], timeout_s: float = 1.0) -> str | None:
        """The first of ``devices`` that is removed, whose local process exited, or that
        does not answer a ping within ``timeout_s``; ``None`` if all answer."""
        for d in devices:
            info = self.workers[d]
            if not info.alive or (info.process is not None and info.process.poll() is not None):
                return d
            try:
                rpc.rpc_sync(d, agent.ping, timeout=timeout_s)
            except Exception:  # noqa: BLE001 - any RPC failure: it does not answer
                return d
        return None

    def kill(self, device: str) -> None:
        """Kill a local worker with SIGKILL (fault injection)."""
        pid = self.workers[device].pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)

    def status(self) -> list[dict[str, object]]:
        """``[{"device", "pid", "alive"}]`` for the status file."""
        return [{"device": w.device, "pid": w.pid, "alive": w.alive}
                for w in self.workers.values()]

    # ------------------------------------------------------------------ stop
    def close(self) -> None:
        """Stop every worker (politely, then by force) and leave RPC."""
        if self.started:
            for d in self.alive_devices():
                try:
                    rpc.rpc_async(d, agent.stop, timeout=1.0)
                except Exception:  # noqa: BLE001, S110 - best effort on the way out
                    pass
        deadline = time.monotonic() + 3.0
        for info in self.workers.values():
            proc = info.process
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self.started:
            rpc.shutdown(graceful=False)
            self.started = False


def join(host: str, port: int, device: str, token: str) -> None:
    """The worker's side: ask for a rank, join RPC, serve until stopped, leave.

    Raises:
        ClusterError: the server refused the token or did not answer.
    """
    try:
        store = dist.TCPStore(host, port, is_master=False,
                              timeout=timedelta(seconds=JOIN_TIMEOUT_S))
    except RuntimeError as error:
        raise ClusterError(f"--connect {host}:{port}: cannot reach the server ({error})") from None
    store.set(f"join/{device}", token)
    answer = store.get(f"answer/{device}").decode()
    if answer == "refused":
        raise ClusterError(f"--device {device}: the server refused the join token")
    rank, world = (int(v) for v in answer.split(":"))
    rpc_port = int(store.get("rpc_port").decode())
    rpc.init_rpc(device, rank=rank, world_size=world,
                 rpc_backend_options=backend_options(host, rpc_port, 10.0))
    parent = os.getppid()
    agent.wait_for_stop(parent if parent != 1 else None)
    rpc.shutdown(graceful=False)
