"""Rendezvous: a join store bound to one address, and a join proven by HMAC.

The server hosts a ``torch.distributed.TCPStore`` on a socket it binds itself to ``host:port``
(a master ``TCPStore`` left to bind on its own listens on every interface), and the RPC
rendezvous goes through the same store (:func:`rpc_init_method`), so the server has no other
store listening. TensorPipe's own listener binds the address of the interface named by
``TP_SOCKET_IFNAME``, set to the interface that holds ``host`` (:func:`interface_of`).

Joining, once per attempt (the token is never written to the store nor sent)::

    worker  n = add("attempts/<device>", 1)
    server  set("nonce/<device>/<n>", 32 random hex digits)
    worker  set("proof/<device>/<n>", HMAC-SHA256(token, "<nonce>|<device>|<n>"))
    server  set("answer/<device>/<n>", "<rank>:<world>:<HMAC(token, 'ok|<nonce>|<rank>')>")
            or "refused: <reason>"

The server compares proofs with :func:`hmac.compare_digest`; a wrong proof refuses that attempt
only, and the server keeps waiting for the device until the join timeout. Once every device
has joined, the server writes ``closed``: later attempts are refused. The answer's own HMAC
lets a worker check that the server knows the token too. The store and RPC carry no
encryption: the token keeps strangers from joining, on a network one trusts.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import ipaddress
import secrets
import socket
import struct
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch.distributed as dist

from dora_rl.errors import DoraError

CLOSED_KEY = "closed"
MAX_OPEN_ATTEMPTS = 16
"""Join attempts per device the server answers (more are ignored: a flood cannot grow it)."""
POLL_S = 0.05
_STORES: dict[str, Any] = {}
"""Stores handed to :func:`torch.distributed.rpc.init_rpc` through :func:`rpc_init_method`."""
SCHEME = "dorajoin"


class JoinError(DoraError):
    """The join failed: refused, no answer, or an address that cannot be used."""


def proof(token: str, nonce: str, device: str, attempt: int) -> str:
    """The worker's answer to a challenge.

    Example:
        >>> len(proof("t", "00ff", "mid", 1))
        64
    """
    message = f"{nonce}|{device}|{attempt}".encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def _server_proof(token: str, nonce: str, rank: int) -> str:
    return hmac.new(token.encode(), f"ok|{nonce}|{rank}".encode(), hashlib.sha256).hexdigest()


# ---------------------------------------------------------------------------- addresses
def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback address."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve(host: str) -> str:
    """The numeric address of ``host`` (refusing wildcards such as ``0.0.0.0``)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise JoinError(f"--host {host}: cannot resolve it ({error})") from None
    address = str(infos[0][4][0])
    if ipaddress.ip_address(address.split("%")[0]).is_unspecified:
        raise JoinError(f"--host {host}: a wildcard address listens on every interface; give "
                        "one address of this machine")
    return address


def _ipv4_addresses() -> dict[str, str]:
    out = {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(s.fileno(), 0x8915,  # SIOCGIFADDR
                                  struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            out[socket.inet_ntoa(raw[20:24])] = name
    return out


def _ipv6_addresses() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) == 6:
            out[str(ipaddress.IPv6Address(bytes.fromhex(fields[0])))] = fields[5]
    return out


def interface_of(address: str) -> str:
    """The network interface holding ``address`` (for TensorPipe's ``TP_SOCKET_IFNAME``)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    table = _ipv4_addresses() if ip.version == 4 else _ipv6_addresses()
    name = table.get(str(ip))
    if name is None:
        raise JoinError(f"--host {address}: no interface of this machine has this address")
    return name


def local_address_towards(host: str, port: int) -> str:
    """This machine's address on the route to ``host`` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in resolve(host) else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect((resolve(host), port))
        return str(s.getsockname()[0])


# ---------------------------------------------------------------------------- stores
def listen_store(host: str, timeout_s: float, port: int = 0) -> Any:
    """A master ``TCPStore`` listening on ``host`` only, on ``port`` (0: a free one; the
    store's ``port`` tells which)."""
    address = resolve(host)
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise JoinError(f"--host {host} --port {port}: cannot listen there "
                        f"({error.strerror})") from None
    port = int(sock.getsockname()[1])
    fd = sock.detach()  # the store owns the socket from here on
    return dist.TCPStore(address, port, is_master=True, wait_for_workers=False,
                         timeout=timedelta(seconds=timeout_s), master_listen_fd=fd,
                         use_libuv=True)


def connect_store(host: str, port: int, timeout_s: float) -> Any:
    """A client of the server's store (it opens no listener)."""
    try:
        return dist.TCPStore(host, port, is_master=False, timeout=timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as error:
        raise JoinError(f"--connect {host}:{port}: cannot reach the server "
                        f"({str(error).splitlines()[0]})") from None


def _handler(url: str, **kwargs: Any) -> Iterator[tuple[Any, int, int]]:
    parsed = urlparse(url)
    query = dict(q.split("=") for q in parsed.query.split("&") if q)
    yield _STORES[parsed.netloc], int(query["rank"]), int(query["world_size"])


def rpc_init_method(store: Any) -> str:
    """An ``init_method`` that makes RPC rendezvous through ``store`` (no second listener)."""
    try:
        dist.register_rendezvous_handler(SCHEME, _handler)
    except RuntimeError:
        pass  # registered by an earlier run in this process
    key = secrets.token_hex(8)
    _STORES[key] = dist.PrefixStore("rpc", store)
    return f"{SCHEME}://{key}"


# ---------------------------------------------------------------------------- protocol
class Admission:
    """The server's side of joining: challenge each attempt, admit one worker per device.

    Args:
        store: The server's store; devices: names, rank ``i + 1`` for ``devices[i]``.
        token: The join token (empty on loopback).
    """

    def __init__(self, store: Any, devices: list[str], token: str) -> None:
        self.store, self.devices, self.token = store, devices, token
        self.nonces: dict[tuple[str, int], str] = {}
        self.answered: set[tuple[str, int]] = set()
        self.joined: set[str] = set()
        self.refused: list[str] = []
        """One line per refused attempt (device, attempt, reason)."""

    def step(self) -> None:
        """Challenge new attempts and answer the proofs that came in."""
        world = len(self.devices) + 1
        for rank, device in enumerate(self.devices, start=1):
            count = int(self.store.add(f"attempts/{device}", 0))
            for n in range(1, min(count, MAX_OPEN_ATTEMPTS) + 1):
                key = (device, n)
                if key in self.answered:
                    continue
                if key not in self.nonces:
                    self.nonces[key] = secrets.token_hex(16)
                    self.store.set(f"nonce/{device}/{n}", self.nonces[key])
                    continue
                if not self.store.check([f"proof/{device}/{n}"]):
                    continue
                offered = self.store.get(f"proof/{device}/{n}").decode(errors="replace")
                self.answered.add(key)
                nonce = self.nonces[key]
                if device in self.joined:
                    self._refuse(device, n, "the device has joined already")
                elif not hmac.compare_digest(offered, proof(self.token, nonce, device, n)):
                    self._refuse(device, n, "wrong join token")
                else:
                    self.joined.add(device)
                    self.store.set(f"answer/{device}/{n}",
                                   f"{rank}:{world}:{_server_proof(self.token, nonce, rank)}")

    def _refuse(self, device: str, n: int, reason: str) -> None:
        self.store.set(f"answer/{device}/{n}", f"refused: {reason}")
        self.refused.append(f"{device} attempt {n}: {reason}")

    def run(self, timeout_s: float, stop: Callable[[], None] | None = None) -> None:
        """Until every device joined (then ``closed`` is written) or ``timeout_s`` passes.

        Args:
            stop: Called every poll; it may raise to give up (an interrupt).

        Raises:
            JoinError: a device did not join in time (refused attempts named).
        """
        deadline = time.monotonic() + timeout_s
        while len(self.joined) < len(self.devices):
            if stop is not None:
                stop()
            self.step()
            if len(self.joined) == len(self.devices):
                break
            if time.monotonic() > deadline:
                missing = [d for d in self.devices if d not in self.joined]
                refused = f"; refused: {'; '.join(self.refused)}" if self.refused else ""
                raise JoinError(f"worker {', '.join(missing)}: did not join within "
                                f"{timeout_s:.0f} s{refused}")
            time.sleep(POLL_S)
        self.store.set(CLOSED_KEY, "1")


def _wait_key(store: Any, key: str, device: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while not store.check([key]):
        if store.check([CLOSED_KEY]):
            raise JoinError(f"--device {device}: refused, the server admits no more workers "
                            "(its join window is closed)")
        if time.monotonic() > deadline:
            raise JoinError(f"--device {device}: no answer from the server within "
                            f"{timeout_s:.0f} s")
        time.sleep(POLL_S)
    return str(store.get(key).decode(errors="replace"))


def request_join(store: Any, device: str, token: str, timeout_s: float) -> tuple[int, int]:
    """The worker's side: prove the token for ``device``; returns ``(rank, world size)``.

    Raises:
        JoinError: refused (wrong token, device taken, window closed), no answer, or the
            server went away.
    """
    try:
        return _request_join(store, device, token, timeout_s)
    except RuntimeError as error:  # torch's store errors: the server is gone
        raise JoinError(f"--device {device}: lost the server while joining "
                        f"({str(error).splitlines()[0] if str(error) else 'no reason'})") from None


def _request_join(store: Any, device: str, token: str, timeout_s: float) -> tuple[int, int]:
    n = int(store.add(f"attempts/{device}", 1))
    if n > MAX_OPEN_ATTEMPTS:
        raise JoinError(f"--device {device}: refused, too many join attempts for this device")
    nonce = _wait_key(store, f"nonce/{device}/{n}", device, timeout_s)
    store.set(f"proof/{device}/{n}", proof(token, nonce, device, n))
    answer = _wait_key(store, f"answer/{device}/{n}", device, timeout_s)
    if answer.startswith("refused"):
        reason = answer.partition(":")[2].strip()
        raise JoinError(f"--device {device}: the server refused the join ({reason})")
    rank, world, mac = answer.split(":")
    if not hmac.compare_digest(mac, _server_proof(token, nonce, int(rank))):
        raise JoinError(f"--device {device}: the server's answer does not prove the token")
    return int(rank), int(world)


__all__ = ["Admission", "JoinError", "connect_store", "interface_of", "is_loopback",
           "listen_store", "local_address_towards", "proof", "request_join", "resolve",
           "rpc_init_method"]
