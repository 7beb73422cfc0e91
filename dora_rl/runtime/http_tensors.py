"""Tensors over HTTP for ``POST /v1/infer/<job>``: the request's input and the answer.

Two encodings, chosen by the request's ``Content-Type``:

- ``application/json``: ``{"input": [...]}``, nested lists of numbers, one item (the model's
  input shape) or a batch of items (one more leading axis); the answer is
  ``{"output": [...], "shape": [...], "latency_ms": ..., "plan_id": ...}``.
- ``application/octet-stream``: the items' raw values, little-endian, in the model's input
  type (``float32``, or ``int64`` token ids), as many whole items as the body holds; the answer
  is the output's ``float32`` values with its shape in ``X-Shape`` (``2,1000``) and the
  latency and plan in ``X-Latency-Ms`` and ``X-Plan-Id``.

Every problem is one line naming what is wrong (:class:`TensorError`); a body is refused by
its length before it is read (at most :data:`~dora_rl.runtime.service.MAX_ITEMS` items).

Example:
    >>> import torch
    >>> template = torch.zeros(1, 3)
    >>> decode_json({"input": [1, 2, 3]}, template).shape
    torch.Size([1, 3])
    >>> decode_raw(torch.arange(6, dtype=torch.float32).numpy().tobytes(), template).tolist()
    [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
"""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

import numpy as np
import torch
from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from torch import Tensor

from dora_rl.runtime.health import Refused
from dora_rl.runtime.http_errors import ApiError

JSON_BYTES_PER_VALUE = 32
"""Longest JSON text a number may take (for the body-size limit of a JSON request)."""


class TensorService(Protocol):
    """An inference service as the route sees it."""

    def infer_jobs(self) -> dict[str, tuple[Tensor, int | None]]:
        """Per inference job served: one item of its input and its vocabulary (or None)."""

    def infer(self, job: str, x: Tensor) -> tuple[Tensor, float, int]:
        """(output, latency in the card's ms, plan id) of one request."""


class TensorError(ValueError):
    """A request body that is not an input of the model (one line)."""


def item_shape(template: Tensor) -> tuple[int, ...]:
    """The shape of one item of the model's input (``template`` is one item, batched)."""
    return tuple(int(n) for n in template.shape[1:])


def max_body_bytes(template: Tensor, items: int, json_body: bool) -> int:
    """Longest body a request of at most ``items`` items may have."""
    values = items * max(math.prod(item_shape(template)), 1)
    return values * (JSON_BYTES_PER_VALUE if json_body else template.element_size()) + 64


def decode_json(body: Any, template: Tensor, max_items: int = 1024,
                vocab: int | None = None) -> Tensor:
    """The input of ``{"input": [...]}``: one item or a batch of items.

    Raises:
        TensorError: not an object with ``input``, not numbers, or not the model's shape.
    """
    if not isinstance(body, dict) or "input" not in body:
        raise TensorError('expected a JSON object {"input": [...]}')
    try:
        array = np.asarray(body["input"], dtype=np.float64)
    except (ValueError, TypeError):
        raise TensorError("input: expected nested lists of numbers of one shape") from None
    return _checked(array, template, max_items, "input", vocab)


def decode_raw(data: bytes, template: Tensor, max_items: int = 1024,
               vocab: int | None = None) -> Tensor:
    """The input of a raw little-endian body of whole items in the model's input type.

    Raises:
        TensorError: empty, or not a whole number of items.
    """
    dtype = np.dtype(str(template.dtype).replace("torch.", "")).newbyteorder("<")
    per_item = max(math.prod(item_shape(template)), 1) * dtype.itemsize
    if not data or len(data) % per_item:
        raise TensorError(f"body: {len(data)} bytes is not a whole number of items of "
                          f"{per_item} bytes ({dtype.name} values of shape "
                          f"{list(item_shape(template))})")
    array = np.frombuffer(data, dtype=dtype).astype(np.float64)
    return _checked(array.reshape(-1, *item_shape(template)), template, max_items, "body",
                    vocab)


def _checked(array: np.ndarray, template: Tensor, max_items: int, where: str,
             vocab: int | None) -> Tensor:
    """``array`` as a batch of the model's items in its input type, checked (token ids below
    ``vocab``)."""
    shape = item_shape(template)
    if tuple(array.shape) == shape:
        array = array[None]
    if tuple(array.shape[1:]) != shape or array.shape[0] < 1:
        raise TensorError(f"{where}: shape {list(array.shape)}; expected {list(shape)} or "
                          f"[n, {', '.join(str(n) for n in shape)}]")
    if array.shape[0] > max_items:
        raise TensorError(f"{where}: {array.shape[0]} items; at most {max_items} a request")
    if not np.isfinite(array).all():
        raise TensorError(f"{where}: NaN or infinite values")
    if not template.dtype.is_floating_point:
        top = vocab if vocab is not None else 2 ** 62
        if (array != np.round(array)).any() or array.min() < 0 or array.max() >= top:
            raise TensorError(f"{where}: expected integer token ids from 0 to {top - 1}")
        return torch.from_numpy(array.astype(np.int64))
    return torch.from_numpy(array.astype(np.float32))


def encode_raw(y: Tensor) -> tuple[bytes, str]:
    """The output's little-endian ``float32`` bytes and its ``X-Shape`` value."""
    values = y.detach().to(torch.float32).contiguous().numpy().astype("<f4")
    return values.tobytes(), ",".join(str(n) for n in y.shape)


async def infer_request(service: TensorService, job: str, request: Request) -> Any:
    """Answer ``POST /v1/infer/<job>`` (see the module docstring).

    Raises:
        ApiError: 404 an unknown job, 415 another content type, 413 a body too long (refused
            before it is read in full), 400 not an input of the model, 503 not served.
    """
    from dora_rl.runtime.service import MAX_ITEMS

    jobs = service.infer_jobs()
    if job not in jobs:
        raise ApiError(404, f"No inference job {job!r} here (jobs: "
                            f"{', '.join(jobs) or 'none'})", "job", "model_not_found")
    template, vocab = jobs[job]
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if kind not in ("application/json", "application/octet-stream"):
        raise ApiError(415, f"Content-Type {kind!r}: send application/json or "
                            "application/octet-stream", "content-type")
    raw = kind == "application/octet-stream"
    limit = max_body_bytes(template, MAX_ITEMS, not raw)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"body: {declared} bytes; at most {limit} ({MAX_ITEMS} items)",
                       "body")
    data = bytearray()
    async for part in request.stream():
        data += part
        if len(data) > limit:
            raise ApiError(413, f"body: more than {limit} bytes ({MAX_ITEMS} items)", "body")
    try:
        if raw:
            x = decode_raw(bytes(data), template, MAX_ITEMS, vocab)
        else:
            try:
                body = json.loads(data)
            except ValueError:
                raise TensorError("body: not JSON") from None
            x = decode_json(body, template, MAX_ITEMS, vocab)
    except TensorError as error:
        raise ApiError(400, str(error), "input") from None
    try:
        y, latency_ms, plan_id = await run_in_threadpool(service.infer, job, x)
    except Refused as refusal:
        raise ApiError(503, str(refusal), kind="server_error", code="unavailable") from None
    if raw:
        values, shape = encode_raw(y)
        return Response(values, media_type="application/octet-stream",
                        headers={"X-Shape": shape, "X-Latency-Ms": f"{latency_ms:.3f}",
                                 "X-Plan-Id": str(plan_id)})
    return {"output": y.tolist(), "shape": list(y.shape), "latency_ms": latency_ms,
            "plan_id": plan_id}


__all__ = ["JSON_BYTES_PER_VALUE", "TensorError", "decode_json", "decode_raw", "encode_raw",
           "infer_request", "item_shape", "max_body_bytes"]
