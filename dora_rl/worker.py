"""Join a running server as one device's worker.

Usage::

    python -m dora_rl.worker --connect HOST:PORT --device NAME [--token T]

The server (``python -m dora_rl.serve``) spawns its workers itself on one machine; on another
machine, start this with the server's rendezvous address and the device's name from the card.
A server listening beyond loopback requires the join token (``--token`` or the
``DORA_JOIN_TOKEN`` environment variable, which keeps it out of the process list); the worker
proves it by HMAC without sending it, and a wrong token, a device already taken or a join after
the server's join window is refused. Bad input or a refusal prints one line ``error: ...`` and
exits with status 2; Ctrl-C leaves with one line and status 130. Workers the server spawns
itself ignore Ctrl-C (the server stops them).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

from dora_rl.errors import ArgParser, UsageError, run_cli


def parse_connect(text: str) -> tuple[str, int]:
    """``HOST:PORT`` of ``--connect``.

    Example:
        >>> parse_connect("127.0.0.1:29500")
        ('127.0.0.1', 29500)
    """
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--connect {text}: expected HOST:PORT with a port in 1..65535")
    return host, int(port)


def _main(argv: Sequence[str] | None) -> int:
    p = ArgParser(prog="python -m dora_rl.worker", description="Join a server as a device.")
    p.add_argument("--connect", required=True, metavar="HOST:PORT")
    p.add_argument("--device", required=True, help="device name from the card")
    p.add_argument("--token", default=os.environ.get("DORA_JOIN_TOKEN", ""))
    ns = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    host, port = parse_connect(ns.connect)
    os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # before torch loads: no C++ noise
    import torch

    from dora_rl.runtime.cluster import join

    torch.set_num_threads(1)
    join(host, port, ns.device, ns.token)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 with one line on stderr for bad input or a
    refusal, 130 after Ctrl-C)."""
    if os.environ.get("DORA_RL_SPAWNED") == "1":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return run_cli(_main, argv)
    except KeyboardInterrupt:
        print("worker: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    status = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # RPC is shut down: skip the second or two of torch's teardown
