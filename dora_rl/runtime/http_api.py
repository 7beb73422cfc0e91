"""The OpenAI-compatible HTTP API of an LLM service (FastAPI).

Routes: ``POST /v1/chat/completions`` and ``POST /v1/completions`` (non-streaming, or with
``"stream": true`` server-sent events in OpenAI's chunk format ending with ``data: [DONE]``),
``GET /v1/models`` (the jobs served, as model ids in OpenAI's list format), ``GET /status``
(the runtime's status, as the ``--status`` file holds it) and ``GET /metrics`` (Prometheus
text, :mod:`dora_rl.runtime.llm_metrics`). With a token, every route needs
``Authorization: Bearer <token>``. Bad requests get OpenAI-style JSON errors
(``{"error": {"message", "type", "param", "code"}}``) with status 400, 401 or 404; a request
the service cannot serve (no plan, stopping) gets 503.

The tokenizer is byte-level (:mod:`dora_rl.runtime.tiny_lm`): a chat's messages become the
prompt ``"<role>: <content>\\n"`` per message, then ``"assistant: "``.
"""

from __future__ import annotations

import asyncio
import codecs
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, Protocol

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from dora_rl.runtime.health import Refused
from dora_rl.runtime.http_errors import ApiError
from dora_rl.runtime.http_status import ServiceStatus
from dora_rl.runtime.http_tensors import infer_request
from dora_rl.runtime.tiny_lm import EOS, encode

DEFAULT_MAX_TOKENS = 16


class TokenService(Protocol):
    """What the API serves: greedy generation per model id, status and metrics; an inference
    service answers :meth:`infer_jobs` and :meth:`infer` (and has no model ids)."""

    context_tokens: int

    def model_ids(self) -> list[str]:
        """The model ids (LLM job names) served."""

    def generate(self, model: str, prompt: list[int], max_tokens: int) -> Iterator[int]:
        """Output tokens of one request (raises :class:`Refused` when it cannot be served)."""

    def infer_jobs(self) -> dict[str, tuple[Any, int | None]]:
        """Per inference job served: one item of its input (a tensor) and its vocabulary."""

    def infer(self, job: str, x: Any) -> tuple[Any, float, int]:
        """(output tensor, latency in the card's ms, plan id) of one inference request
        (raises :class:`Refused` when it cannot be served)."""

    def status(self) -> dict[str, Any]:
        """The status as JSON-ready data."""

    def metrics_text(self) -> str:
        """The Prometheus text exposition."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str
    max_tokens: int | None = None
    stream: bool = False


class CompletionBody(_Body):
    """``POST /v1/completions``."""

    prompt: str


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str


class ChatBody(_Body):
    """``POST /v1/chat/completions``."""

    messages: list[Message]
    max_completion_tokens: int | None = None


def chat_prompt(messages: list[Message]) -> str:
    """The text a chat becomes.

    Example:
        >>> chat_prompt([Message(role="user", content="hi")])
        'user: hi\\nassistant: '
    """
    return "".join(f"{m.role}: {m.content}\n" for m in messages) + "assistant: "


def _checked(service: TokenService, body: _Body, text: str,
             max_tokens: int | None) -> tuple[list[int], int]:
    """The prompt's tokens and the output limit; raises :class:`ApiError` when bad."""
    if body.model not in service.model_ids():
        raise ApiError(404, f"The model '{body.model}' does not exist (served: "
                            f"{', '.join(service.model_ids())})", "model", "model_not_found")
    prompt = encode(text)
    room = service.context_tokens - len(prompt)
    if room < 1:
        raise ApiError(400, f"The prompt is {len(prompt)} tokens; this model's context is "
                            f"{service.context_tokens} tokens", "prompt",
                       "context_length_exceeded")
    limit = DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens
    if not 1 <= limit <= room:
        raise ApiError(400, f"max_tokens {limit}: must be between 1 and {room} (the context "
                            f"left after a {len(prompt)}-token prompt)", "max_tokens",
                       "invalid_value")
    return prompt, min(limit, room)


def _events(chunks: Iterator[dict[str, Any]]) -> Iterator[str]:
    """Server-sent events of ``chunks``, then ``data: [DONE]``; a refusal mid-stream
    becomes an error event."""
    try:
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
    except Refused as refusal:
        error = ApiError(503, str(refusal), kind="server_error", code="unavailable")
        yield f"data: {json.dumps(error.body())}\n\n"
    yield "data: [DONE]\n\n"


async def _threaded(events: Iterator[str]) -> AsyncIterator[str]:
    """``events`` produced by one thread of their own and handed to the event loop as they
    come (a sync iterator given to ``StreamingResponse`` would cost a thread-pool round trip
    per token). When the client goes away, the thread stops at the next event and closes
    ``events`` (the request is then counted as not completed)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    gone = threading.Event()

    def put(kind: str, value: Any) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))
        except RuntimeError:  # the loop has closed: nobody is listening any more
            pass

    def produce() -> None:
        try:
            for event in events:
                if gone.is_set():
                    break
                put("event", event)
        except Exception as error:  # noqa: BLE001 - handed to the loop, raised there
            put("error", error)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
            put("end", None)

    threading.Thread(target=produce, name="dora-stream", daemon=True).start()
    try:
        while True:
            kind, value = await queue.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        gone.set()


def _pieces(tokens: Iterator[int], done: dict[str, Any]) -> Iterator[str]:
    """Text pieces of ``tokens``, one per token (bytes decoded as UTF-8 across tokens, so a
    token that completes no character gives an empty piece: a stream still shows every
    token as it comes); ``done`` gets the token count and the finish reason."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    done.update(n=0, finish="length")
    for token in tokens:
        done["n"] += 1
        if token == EOS:
            done["finish"] = "stop"
            break
        yield decoder.decode(bytes([token])) if token < 256 else ""
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def _complete(service: TokenService, body: _Body, text: str, chat: bool,
              max_tokens: int | None) -> Any:
    prompt, limit = _checked(service, body, text, max_tokens)
    head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": body.model}
    done: dict[str, Any] = {}
    pieces = _pieces(service.generate(body.model, prompt, limit), done)
    if body.stream:
        return StreamingResponse(_threaded(_events(_chunks(head, pieces, done, chat))),
                                 media_type="text/event-stream")
    try:
        text_out = "".join(pieces)
    except Refused as refusal:
        raise ApiError(503, str(refusal), kind="server_error", code="unavailable") from None
    choice: dict[str, Any] = {"index": 0, "finish_reason": done["finish"]}
    if chat:
        choice["message"] = {"role": "assistant", "content": text_out}
    else:
        choice.update(text=text_out, logprobs=None)
    usage = {"prompt_tokens": len(prompt), "completion_tokens": done["n"],
             "total_tokens": len(prompt) + done["n"]}
    return {**head, "choices": [choice], "usage": usage}


def _chunks(head: dict[str, Any], pieces: Iterator[str], done: dict[str, Any],
            chat: bool) -> Iterator[dict[str, Any]]:
    """OpenAI's stream chunks: (chat: a role delta first) one per text piece, then the
    finish reason."""
    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(content: dict[str, Any], finish: str | None) -> dict[str, Any]:
        choice = ({"index": 0, "delta": content, "finish_reason": finish} if chat else
                  {"index": 0, **content, "logprobs": None, "finish_reason": finish})
        return {**head, "object": kind, "choices": [choice]}

    if chat:
        yield chunk({"role": "assistant", "content": ""}, None)
    for piece in pieces:
        yield chunk({"content": piece} if chat else {"text": piece}, None)
    yield chunk({} if chat else {"text": ""}, done["finish"])


def create_app(service: TokenService, token: str = "") -> FastAPI:
    """The FastAPI app serving ``service``; with ``token``, every route needs it as a bearer
    token."""

    def authorised(request: Request) -> None:
        if not token:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise ApiError(401, "Missing or wrong bearer token (Authorization: Bearer ...)",
                           code="invalid_api_key")

    app = FastAPI(title="dora_rl", dependencies=[Depends(authorised)], docs_url=None,
                  redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    def _api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    def _invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        message = f"{where + ': ' if where else ''}{first.get('msg', 'invalid request')}"
        return JSONResponse(ApiError(400, message, where).body(), status_code=400)

    @app.post("/v1/completions")
    def completions(body: CompletionBody) -> Any:
        return _complete(service, body, body.prompt, False, body.max_tokens)

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatBody) -> Any:
        limit = body.max_completion_tokens if body.max_completion_tokens is not None else \
            body.max_tokens
        return _complete(service, body, chat_prompt(body.messages), True, limit)

    @app.post("/v1/infer/{job}")
    async def infer(job: str, request: Request) -> Any:
        return await infer_request(service, job, request)

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": m, "object": "model", "created": 0,
                                            "owned_by": "dora_rl"} for m in service.model_ids()]}

    @app.get("/status", response_model=ServiceStatus)
    def status() -> dict[str, Any]:
        return service.status()

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(service.metrics_text(),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    return app
