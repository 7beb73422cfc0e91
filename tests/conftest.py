"""Test configuration: property tests draw the same examples on every run unless asked not to.

``HYPOTHESIS_PROFILE=explore make test`` draws fresh random examples (use it when changing the
cost model); the default profile is derandomised so CI is reproducible.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from hypothesis import settings
from prometheus_client.parser import text_string_to_metric_families

settings.register_profile("default", derandomize=True, deadline=None)
settings.register_profile("explore", derandomize=False, deadline=None, max_examples=300)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture()
def prometheus_samples() -> Callable[[str], dict[str, float]]:
    """A parser of Prometheus text exposition (``prometheus_client``'s): sample name with its
    labels as written (``name{a="x",b="y"}``) to value; raises on malformed text."""

    def parse(text: str) -> dict[str, float]:
        out = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sample.labels.items())
                out[sample.name + (f"{{{labels}}}" if labels else "")] = float(sample.value)
        return out

    return parse


@contextmanager
def _http_service(argv: list[str], route: str
                  ) -> Iterator[tuple[subprocess.Popen[str], httpx.Client]]:
    """``python -m dora_rl.serve ARGV --http 127.0.0.1:0`` in a subprocess, and a client of
    the address it prints (the line must name ``route``); killed on exit if still running."""
    env = dict(os.environ, TORCH_CPP_LOG_LEVEL="ERROR")
    proc = subprocess.Popen([sys.executable, "-m", "dora_rl.serve", *argv, "--http",
                             "127.0.0.1:0", "--progress", "off"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        port = re.search(r"http://127\.0\.0\.1:(\d+)" + re.escape(route), line)
        assert port, f"no address with {route} in {line!r}"
        with httpx.Client(base_url=f"http://127.0.0.1:{port.group(1)}", timeout=30.0) as c:
            yield proc, c
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture(scope="session")
def http_service() -> Callable[[list[str], str], Any]:
    """Starts ``serve --http`` for a module's tests (:func:`_http_service`)."""
    return _http_service


@pytest.fixture(scope="module")
def service(running: tuple[subprocess.Popen[str], httpx.Client]) -> subprocess.Popen[str]:
    """The ``serve --http`` process of a module that defines ``running``."""
    return running[0]


@pytest.fixture(scope="module")
def client(running: tuple[subprocess.Popen[str], httpx.Client]) -> httpx.Client:
    """A client of that process."""
    return running[1]
