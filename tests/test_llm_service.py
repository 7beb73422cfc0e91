"""The LLM service over HTTP: ``serve --http`` on the tiny_llm card, three workers.

One service (``python -m dora_rl.serve --http 127.0.0.1:0`` on the fixed plan slow | mid |
fast) runs in a subprocess for the whole module (torch.distributed RPC allows one cluster per
process, and the test process may hold another); its text is checked against the
unpartitioned model with the same weights. The last test stops it with SIGINT.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import torch
import uvicorn

from dora_rl import serve
from dora_rl.runtime import tiny_lm
from dora_rl.runtime.http_api import Message, chat_prompt, create_app


def reference(text: str, max_tokens: int) -> list[int]:
    """Greedy tokens of the whole model in this process (seed 0, the service's)."""
    return tiny_lm.reference_tokens(text, max_tokens)


@pytest.fixture(scope="module")
def running(http_service: Callable[[list[str], str], Any]
            ) -> Iterator[tuple[subprocess.Popen[str], httpx.Client]]:
    with http_service(["--scenario", "envs/tiny_llm.yaml", "--plan", "3:slow,6:mid,8:fast"],
                      "/v1") as pair:
        yield pair


@contextmanager
def serving(app: Any) -> Iterator[httpx.Client]:
    """``app`` served by uvicorn in a thread on a free loopback port, and a client of it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}",
                          timeout=30.0) as c:
            yield c
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_cached_decode_equals_recomputing_the_whole_sequence() -> None:
    blocks = tiny_lm.build_blocks(seed=3)
    tokens = tiny_lm.encode("kv")
    got = tiny_lm.generate(blocks, tokens, 12)
    full = list(tokens)
    for _ in range(12):
        with torch.no_grad():
            x = torch.tensor([full])
            for block in blocks:
                x = block(x)
        full.append(tiny_lm.next_token(x))
    assert got == full[len(tokens):]
    assert len(set(got)) > 1  # the random weights do not collapse onto one token


def _sse(text: str) -> list[Any]:
    events = [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_streamed_chat_completion_equals_the_unpartitioned_model(client: httpx.Client) -> None:
    messages = [{"role": "user", "content": "Hi there"}]
    with client.stream("POST", "/v1/chat/completions",
                       json={"model": "chat", "messages": messages, "max_tokens": 20,
                             "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        chunks = _sse(r.read().decode())
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    ref = reference(chat_prompt([Message(role="user", content="Hi there")]), 20)
    assert text == tiny_lm.decode(ref)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("length", "stop")


def test_completion_streamed_and_not_give_the_models_text(client: httpx.Client) -> None:
    body = {"model": "chat", "prompt": "Once upon", "max_tokens": 16}
    plain = client.post("/v1/completions", json=body).json()
    ref = reference("Once upon", 16)
    assert plain["object"] == "text_completion"
    assert plain["choices"][0]["text"] == tiny_lm.decode(ref)
    assert plain["usage"] == {"prompt_tokens": 10, "completion_tokens": len(ref),
                              "total_tokens": 10 + len(ref)}
    streamed = client.post("/v1/completions", json={**body, "stream": True})
    chunks = _sse(streamed.text)
    text = "".join(c["choices"][0]["text"] for c in chunks)
    assert text == plain["choices"][0]["text"]
    # one chunk per output token as it comes (EOS ends the stream without a chunk), then the
    # finish reason
    tokens = [c for c in chunks if c["choices"][0]["finish_reason"] is None]
    assert len(tokens) == len(ref) - (ref[-1] == tiny_lm.EOS)


def test_models_lists_the_cards_llm_job(client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["chat"]


def test_metrics_parse_and_count_the_requests_served(
        client: httpx.Client, prometheus_samples: Callable[[str], dict[str, float]]) -> None:
    client.post("/v1/completions", json={"model": "chat", "prompt": "x", "max_tokens": 3})
    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    samples = prometheus_samples(r.text)
    assert 'dora_power_mode{device="fast"}' in samples
    done = samples['dora_llm_requests_total{job="chat",outcome="completed"}']
    assert done >= 1
    assert samples['dora_llm_ttft_seconds_count{job="chat"}'] == done
    assert samples['dora_llm_latency_seconds_bucket{job="chat",le="+Inf"}'] == done
    assert 0 <= samples['dora_llm_qoe_attainment{job="chat"}'] <= 1
    assert samples["dora_plan_id"] == 0
    assert samples["dora_energy_j_total"] >= 0
    status = client.get("/status").json()
    assert status["state"] == "serving" and status["completed"] >= done


@pytest.mark.parametrize(("body", "status", "param"), [
    ('{"model": "chat", "prompt": ', 400, None),
    ('{"model": "nope", "prompt": "a"}', 404, "model"),
    ('{"model": "chat", "prompt": "a", "max_tokens": 0}', 400, "max_tokens"),
    ('{"model": "chat", "prompt": "a", "max_tokens": 300}', 400, "max_tokens"),
    ('{"model": "chat", "prompt": "' + "x" * 300 + '"}', 400, "prompt"),
    ('{"model": "chat"}', 400, "prompt"),
])
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(
        client: httpx.Client, body: str, status: int, param: str | None) -> None:
    r = client.post("/v1/completions", content=body,
                    headers={"content-type": "application/json"})
    assert r.status_code == status
    error = r.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    ok = client.post("/v1/completions", json={"model": "chat", "prompt": "a", "max_tokens": 1})
    assert ok.status_code == 200


class _Fake:
    context_tokens = 16

    def model_ids(self) -> list[str]:
        return ["m"]

    def generate(self, model: str, prompt: list[int], max_tokens: int) -> Iterator[int]:
        yield from b"ok"[:max_tokens]

    def status(self) -> dict[str, Any]:
        return {}

    def metrics_text(self) -> str:
        return ""


def test_a_token_is_required_as_bearer_when_set() -> None:
    with serving(create_app(_Fake(), token="s3cret")) as client:
        assert client.get("/v1/models").status_code == 401
        wrong = client.get("/v1/models", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
        good = client.post("/v1/completions", json={"model": "m", "prompt": "", "max_tokens": 2},
                           headers={"Authorization": "Bearer s3cret"})
        assert good.json()["choices"][0]["text"] == "ok"


def test_http_beyond_loopback_without_token_exits_2_with_one_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    code = serve.main(["--scenario", "envs/tiny_llm.yaml", "--http", "192.168.1.10:8000"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "--token" in err and "192.168.1.10:8000" in err


def test_batch_mode_refuses_an_llm_job_and_names_http(capsys: pytest.CaptureFixture[str]) -> None:
    assert serve.main(["--scenario", "envs/tiny_llm.yaml", "--requests", "3"]) == 2
    assert "--http" in capsys.readouterr().err


def test_sigint_stops_the_service_with_130_and_one_line(
        service: subprocess.Popen[str], client: httpx.Client) -> None:
    # the module's last test: the service stops here
    assert client.get("/v1/models").status_code == 200
    service.send_signal(signal.SIGINT)
    _, err = service.communicate(timeout=30)
    assert service.returncode == 130
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("serve:")] == [
        line for line in err.splitlines() if line.strip()]
    assert "stopped by SIGINT" in err
