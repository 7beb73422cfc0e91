"""An inference job over HTTP: ``serve --http`` on the tiny card, ``POST /v1/infer/classify``.

One service (three workers, the fixed plan slow | mid | fast) runs in a subprocess for the
whole module; its outputs are checked against the unpartitioned model with the same weights.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import torch

from dora_rl.runtime.http_status import ServiceStatus
from dora_rl.runtime.http_tensors import TensorError, decode_json, decode_raw
from dora_rl.runtime.layers import build_layers, layer_specs, run_layers
from dora_rl.scenarios import load

CARD = load("tiny")


def reference(x: torch.Tensor) -> torch.Tensor:
    """The whole model in this process (seed 0, the service's)."""
    return run_layers(build_layers(layer_specs(CARD, 0)), 0, 8, x)


@pytest.fixture(scope="module")
def running(http_service: Callable[[list[str], str], Any]
            ) -> Iterator[tuple[subprocess.Popen[str], httpx.Client]]:
    with http_service(["--scenario", "tiny", "--plan", "3:slow,6:mid,8:fast"],
                      "/v1/infer/classify") as pair:
        yield pair


def test_a_json_item_gives_the_unpartitioned_models_output(client: httpx.Client) -> None:
    x = torch.linspace(-1, 1, 64)
    r = client.post("/v1/infer/classify", json={"input": x.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["shape"] == [1, 1000] and body["latency_ms"] > 0 and body["plan_id"] == 0
    assert torch.allclose(torch.tensor(body["output"]), reference(x[None]), atol=1e-5)


def test_raw_bytes_carry_a_batch_and_answer_with_its_shape(client: httpx.Client) -> None:
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(5))
    r = client.post("/v1/infer/classify", content=x.numpy().astype("<f4").tobytes(),
                    headers={"content-type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    assert r.headers["x-shape"] == "3,1000" and float(r.headers["x-latency-ms"]) > 0
    y = torch.from_numpy(np.frombuffer(r.content, dtype="<f4").reshape(3, 1000).copy())
    assert torch.allclose(y, reference(x), atol=1e-5)


@pytest.mark.parametrize(("path", "content", "kind", "status", "says"), [
    ("/v1/infer/nope", b'{"input": [1]}', "application/json", 404, "No inference job 'nope'"),
    ("/v1/infer/classify", b'{"input": [1, 2]}', "application/json", 400,
     "shape [2]; expected [64]"),
    ("/v1/infer/classify", b'{"input": [[1], [2, 3]]}', "application/json", 400,
     "nested lists"),
    ("/v1/infer/classify", b'{"x": 1}', "application/json", 400, '{"input": [...]}'),
    ("/v1/infer/classify", b"{", "application/json", 400, "not JSON"),
    ("/v1/infer/classify", b"abc", "application/octet-stream", 400, "whole number of items"),
    ("/v1/infer/classify", b"a" * 300_000, "application/octet-stream", 413, "at most"),
    ("/v1/infer/classify", b"x", "text/plain", 415, "application/json"),
])
def test_bad_inputs_get_one_clear_error_and_the_service_goes_on(
        client: httpx.Client, path: str, content: bytes, kind: str, status: int,
        says: str) -> None:
    r = client.post(path, content=content, headers={"content-type": kind})
    assert r.status_code == status
    assert says in r.json()["error"]["message"]
    assert client.post("/v1/infer/classify", json={"input": [0.0] * 64}).status_code == 200


def test_metrics_parse_and_status_validates_against_its_schema(
        client: httpx.Client, prometheus_samples: Callable[[str], dict[str, float]]) -> None:
    client.post("/v1/infer/classify", json={"input": [0.5] * 64})
    samples = prometheus_samples(client.get("/metrics").text)
    done = samples['dora_infer_requests_total{job="classify",outcome="completed"}']
    assert done >= 1
    assert samples['dora_infer_latency_seconds_count{job="classify"}'] == done
    assert 'dora_infer_ttft_seconds_count{job="classify"}' not in samples
    status = ServiceStatus.model_validate(client.get("/status").json())
    assert status.job == "classify" and status.completed >= done
    assert [w.device for w in status.workers] == ["slow", "mid", "fast"]


def test_sigint_stops_it_with_130(service: subprocess.Popen[str], client: httpx.Client) -> None:
    service.send_signal(signal.SIGINT)
    _, err = service.communicate(timeout=60)
    assert service.returncode == 130
    assert "stopped by SIGINT" in err


def test_token_ids_are_checked_against_the_vocabulary() -> None:
    ids = torch.zeros(1, 4, dtype=torch.long)
    assert decode_json({"input": [1, 2, 3, 4]}, ids, vocab=10).dtype == torch.long
    for bad in ([1, 2, 3, 10], [1, 2, 3, -1], [1, 2, 3, 1.5]):
        with pytest.raises(TensorError, match="token ids from 0 to 9"):
            decode_json({"input": bad}, ids, vocab=10)
    with pytest.raises(TensorError, match="NaN"):
        decode_raw(np.array([np.nan] * 3, dtype="<f4").tobytes(), torch.zeros(1, 3))
    with pytest.raises(TensorError, match="at most 2 a request"):
        decode_json({"input": [[0.0] * 3] * 3}, torch.zeros(1, 3), max_items=2)
