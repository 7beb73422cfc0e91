"""Workers: spawn or admit them, join them to torch.distributed RPC, watch them, stop them.

Rendezvous goes through a ``torch.distributed.TCPStore`` the server hosts on ``host:port``,
bound to that address only (127.0.0.1 unless told otherwise; any other address needs a join
token). A worker proves the token by HMAC over a fresh nonce per attempt and gets its RPC rank
(:mod:`dora_rl.runtime.rendezvous`); the token is never stored nor sent. RPC (TensorPipe over
TCP) rendezvous through the same store and listens on the interface holding ``host``. Neither
is encrypted: run it on a network you trust.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from torch.distributed import rpc

from dora_rl.errors import DoraError
from dora_rl.runtime import agent
from dora_rl.runtime.rendezvous import (
    Admission,
    JoinError,
    connect_store,
    interface_of,
    is_loopback,
    listen_store,
    local_address_towards,
    request_join,
    resolve,
    rpc_init_method,
)

SERVER_NAME = "server"
JOIN_TIMEOUT_S = 60.0
MAX_MISSED = 3  # consecutive unanswered heartbeats before a silent worker is removed


class ClusterError(DoraError):
    """Workers could not be started or admitted."""


def backend_options(init_method: str, timeout_s: float) -> rpc.TensorPipeRpcBackendOptions:
    """TensorPipe options: TCP transport only (no shared memory), so workers may be remote."""
    return rpc.TensorPipeRpcBackendOptions(
        init_method=init_method, rpc_timeout=timeout_s, num_worker_threads=16,
        _transports=["uv"], _channels=["basic"])


def init_rpc(name: str, rank: int, world: int,
             options: rpc.TensorPipeRpcBackendOptions) -> None:
    """``rpc.init_rpc`` without torch's deprecation warning about its internal process group."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are using a Backend",
                                category=UserWarning)
        rpc.init_rpc(name, rank=rank, world_size=world, rpc_backend_options=options)


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
        host: Address to listen on (127.0.0.1 by default; never a wildcard).
        token: Join token; required unless ``host`` is a loopback address.
        rpc_timeout_s: Default timeout of each RPC.
        port: Port of the join store (0: a free one).
    """

    def __init__(self, devices: Sequence[str], host: str = "127.0.0.1", token: str = "",
                 rpc_timeout_s: float = 10.0, port: int = 0) -> None:
        if not is_loopback(host) and not token:
            raise ClusterError(f"--host {host}: listening beyond loopback needs --token")
        self.devices = list(devices)
        self.host, self.token, self.rpc_timeout_s = host, token, rpc_timeout_s
        self.address = resolve(host)
        self.interface = interface_of(self.address)
        self.store = listen_store(self.address, JOIN_TIMEOUT_S, port)
        self.port = int(self.store.port)
        self.workers = {d: WorkerInfo(d, rank + 1) for rank, d in enumerate(self.devices)}
        self.revived: list[str] = []
        self.refused: list[str] = []
        """Join attempts refused (device, attempt, reason)."""
        self.started = False

    # ------------------------------------------------------------------ start
    def spawn_local(self, skip: Sequence[str] = ()) -> None:
        """Start one worker process per device on this machine (``python -m dora_rl.worker``),
        except the devices in ``skip`` (they join from elsewhere). The token goes through the
        environment, not the command line other users can read."""
        env = dict(os.environ, OMP_NUM_THREADS="1", TP_SOCKET_IFNAME=self.interface,
                   DORA_RL_SPAWNED="1", TORCH_CPP_LOG_LEVEL="ERROR",
                   DORA_JOIN_TOKEN=self.token)
        for info in self.workers.values():
            if info.device in skip:
                continue
            cmd = [sys.executable, "-m", "dora_rl.worker", "--connect",
                   f"{self.address}:{self.port}", "--device", info.device]
            info.process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
            info.pid = info.process.pid

    def _check_spawned(self) -> None:
        for info in self.workers.values():
            if info.process is not None and info.process.poll() is not None:
                raise ClusterError(f"worker {info.device}: exited with status "
                                   f"{info.process.returncode} before joining")

    def admit(self, stop: Callable[[], None] | None = None) -> None:
        """Challenge every join attempt until each device has one worker, then join RPC as
        rank 0. ``stop`` is called while waiting and may raise to give up.

        Raises:
            ClusterError: a device did not join within :data:`JOIN_TIMEOUT_S`, or a spawned
                worker exited first.
        """
        admission = Admission(self.store, self.devices, self.token)

        def poll() -> None:
            self._check_spawned()
            if stop is not None:
                stop()

        try:
            admission.run(JOIN_TIMEOUT_S, poll)
        except JoinError as error:
            raise ClusterError(str(error)) from None
        finally:
            self.refused = list(admission.refused)
        os.environ["TP_SOCKET_IFNAME"] = self.interface  # TensorPipe listens there only
        init_rpc(SERVER_NAME, 0, len(self.workers) + 1,
                 backend_options(rpc_init_method(self.store), self.rpc_timeout_s))
        self.started = True
        for info in self.workers.values():
            info.pid = rpc.rpc_sync(info.device, agent.ping, timeout=self.rpc_timeout_s)

    # ------------------------------------------------------------------ watch
    def alive_devices(self) -> list[str]:
        """Devices whose worker is still believed alive."""
        return [d for d, w in self.workers.items() if w.alive]

    def exited(self, device: str) -> bool:
        """The device's worker is a local process that has exited (it cannot come back)."""
        proc = self.workers[device].process
        return proc is not None and proc.poll() is not None

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
    """The worker's side: prove the token, join RPC, serve until stopped, leave. TensorPipe
    listens on the interface that reaches the server (``TP_SOCKET_IFNAME`` if set).

    Raises:
        JoinError: the server refused the join or did not answer.
    """
    store = connect_store(host, port, JOIN_TIMEOUT_S)
    rank, world = request_join(store, device, token, JOIN_TIMEOUT_S)
    os.environ.setdefault("TP_SOCKET_IFNAME", interface_of(local_address_towards(host, port)))
    init_rpc(device, rank, world, backend_options(rpc_init_method(store), 10.0))
    parent = os.getppid()
    agent.wait_for_stop(parent if parent != 1 else None)
    rpc.shutdown(graceful=False)
