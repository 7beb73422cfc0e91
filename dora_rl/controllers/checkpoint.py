"""Guards on what a run folder hands the loader: completeness, sizes and finite weights.

A run folder is *complete* when training finished: ``run.json`` says ``"complete": true``
(written last, atomically, by :mod:`dora_rl.training.run_folder`). Folders written before
``run.json`` existed (the shipped ``checkpoints/``) count as complete when they hold
``model.zip``, the final model, which older versions also saved only at the end of training.

Checkpoint zips are read with limits, before and while reading, so that a small file cannot
make the loader allocate gigabytes: the zip itself, and ``policy.pth``'s declared uncompressed
size, are at most :data:`MAX_CHECKPOINT_BYTES`; its compression ratio at most
:data:`MAX_COMPRESSION_RATIO`; and the reader stops at the limit whatever the header says.
Every floating-point tensor must be finite.
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from dora_rl.errors import DoraError

RUN_RECORD = "run.json"
"""The completion marker of a run folder (see :func:`require_complete`)."""
MAX_CHECKPOINT_BYTES = 256 * 2**20
"""Largest checkpoint zip, and largest ``policy.pth`` inside it once uncompressed (256 MiB; a
policy of this project is well under 1 MiB)."""
MAX_COMPRESSION_RATIO = 100.0
"""Largest uncompressed / compressed size of ``policy.pth`` (weights barely compress)."""
_RATIO_FLOOR_BYTES = 2**20  # smaller members may compress as they like


class CheckpointError(DoraError):
    """A run folder or checkpoint is missing, truncated or does not match this dora_rl."""


def run_record(run_dir: Path) -> dict[str, Any] | None:
    """The folder's ``run.json`` as a dict, or None if it has none.

    Raises:
        CheckpointError: ``run.json`` exists but is not a JSON object.
    """
    path = run_dir / RUN_RECORD
    if not path.exists():
        return None
    try:
        with open(path, "rb") as handle:
            record = json.loads(handle.read(2**16))  # a few hundred bytes when written here
    except (OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{path}: not readable as JSON ({reason})") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{path}: not a JSON object")
    return record


def require_complete(run_dir: Path) -> None:
    """Refuse a run folder whose training did not finish.

    Raises:
        CheckpointError: ``run folder X is incomplete: training was interrupted ...``.
    """
    record = run_record(run_dir)
    if record is None:
        if (run_dir / "model.zip").exists():
            return  # written before run.json existed: model.zip was saved last
        raise CheckpointError(f"run folder {run_dir} is incomplete: training was interrupted "
                              "(no model.zip); train again or pick a complete run folder")
    if record.get("complete") is True:
        return
    step = record.get("interrupted_at_step")
    when = f" at step {step}" if isinstance(step, int) else ""
    raise CheckpointError(f"run folder {run_dir} is incomplete: training was interrupted{when} "
                          f"({RUN_RECORD} says complete: false); train again or pick a "
                          "complete run folder")


def _bounded_read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> bytes:
    """A member's bytes after checking its declared sizes; never more than the limit."""
    where = f"{path}: {info.filename}"
    if info.file_size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{where}: unpacks to {info.file_size / 2**20:.0f} MiB, above the "
                              f"limit of {MAX_CHECKPOINT_BYTES // 2**20} MiB")
    if info.file_size > _RATIO_FLOOR_BYTES and \
            info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
        ratio = info.file_size / max(info.compress_size, 1)
        raise CheckpointError(f"{where}: compressed {ratio:.0f} to 1, above the limit of "
                              f"{MAX_COMPRESSION_RATIO:.0f} to 1 (not a checkpoint of weights)")
    with archive.open(info) as member:
        data = member.read(MAX_CHECKPOINT_BYTES + 1)
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{where}: unpacks to more than {MAX_CHECKPOINT_BYTES // 2**20} "
                              "MiB (its header says less)")
    return data


def _check_inner(data: bytes, path: Path) -> None:
    """``policy.pth`` is itself a zip (torch's format): its records must fit the limit too."""
    if not data.startswith(b"PK"):
        return  # torch's legacy format: torch.load reads it from the bounded bytes
    with zipfile.ZipFile(io.BytesIO(data)) as inner:
        total = sum(i.file_size for i in inner.infolist())
    if total > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path}: policy.pth: its records declare {total / 2**20:.0f} "
                              f"MiB, above the limit of {MAX_CHECKPOINT_BYTES // 2**20} MiB")


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The policy's tensors from an SB3 ``.zip`` (``policy.pth`` only, as data, bounded).

    Raises:
        CheckpointError: one line naming the file (and member or tensor) and the problem.
    """
    try:
        if path.stat().st_size > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(f"{path}: {path.stat().st_size / 2**20:.0f} MiB, above the "
                                  f"limit of {MAX_CHECKPOINT_BYTES // 2**20} MiB")
        with zipfile.ZipFile(path) as archive:
            data = _bounded_read(archive, archive.getinfo("policy.pth"), path)
        _check_inner(data, path)
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except zipfile.BadZipFile:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or not a zip "
                              "file)") from None
    except KeyError:
        raise CheckpointError(f"{path}: not a readable checkpoint (no policy.pth inside: "
                              "truncated, or not a stable-baselines3 model)") from None
    except (RuntimeError, pickle.UnpicklingError, EOFError, OSError, ValueError,
            MemoryError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: policy.pth: not readable as weights ({reason})") \
            from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise CheckpointError(f"{path}: policy.pth: not a state dict of tensors")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: policy.pth: tensor {name!r} holds NaN or infinite "
                                  "values (training diverged or the file was altered)")
    return state
