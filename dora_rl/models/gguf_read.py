"""Read a GGUF file's metadata and tensor table, never its tensor data, with bounded memory.

GGUF is the file format of llama.cpp (and of distributed-llama's and prima.cpp's users): a
header, key/value metadata, a table of tensors (name, shape, type, offset) and the tensor data.
:func:`read_gguf` reads it with the ``gguf`` package's reader, which maps the file into memory
and reads only what it parses; a guard on that reader makes a truncated or malformed file one
error line instead of an exception deep inside it: every read must lie inside the file, and a
file asking for more than :data:`MAX_READS` reads (a corrupt count or array length) is refused.

Example:
    >>> import tempfile, os
    >>> bad = os.path.join(tempfile.mkdtemp(), "x.gguf")
    >>> _ = open(bad, "wb").write(b"GGML" + bytes(20))
    >>> read_gguf(bad)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    dora_rl.models.gguf_read.GGUFFileError: ...x.gguf: not a GGUF file (it does not start ...
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dora_rl.errors import DoraError

MAX_READS = 4_000_000
"""Most header reads a file may take: a 256k-token vocabulary with merges takes about 1.2M."""


class GGUFFileError(DoraError):
    """A GGUF file cannot be read (the message names the file and the problem)."""


@dataclass(frozen=True)
class TensorEntry:
    """One row of a GGUF tensor table.

    Attributes:
        name: Tensor name (``blk.0.attn_q.weight``).
        type_name: GGML type name (``Q4_0``, ``F32``, ...).
        shape: Dimensions in GGUF order (the row length first).
        n_elements: Number of weights.
        n_bytes: Bytes in the file, block scales included.
    """

    name: str
    type_name: str
    shape: tuple[int, ...]
    n_elements: int
    n_bytes: int


@dataclass(frozen=True)
class GGUFFile:
    """The metadata (scalars and strings; arrays as their length) and the tensor table."""

    path: Path
    metadata: dict[str, Any]
    tensors: tuple[TensorEntry, ...]

    def key(self, name: str) -> Any:
        """A metadata value, or None."""
        return self.metadata.get(name)


def _guarded_reader() -> type:
    from gguf import GGUFReader

    class Guarded(GGUFReader):
        """The package's reader with every read checked against the file's end."""

        reads = 0

        def _get(self, offset: int, dtype: Any, count: int = 1,
                 override_order: Any = None) -> Any:
            self.reads += 1
            if self.reads > MAX_READS:
                raise ValueError(f"more than {MAX_READS:,} header reads (a corrupt count?)")
            end = int(offset) + np.dtype(dtype).itemsize * int(count)
            if offset < 0 or count < 0 or end > len(self.data):
                raise ValueError(f"truncated: a read at byte {int(offset):,} needs {end:,} "
                                 f"bytes, the file has {len(self.data):,}")
            return super()._get(offset, dtype, count, override_order)

    return Guarded


def read_gguf(path: str | Path) -> GGUFFile:
    """Read ``path``'s metadata and tensor table (no tensor data).

    Raises:
        GGUFFileError: one line naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise GGUFFileError(f"{path}: no such file")
    if path.is_dir():
        raise GGUFFileError(f"{path}: is a directory, not a GGUF file")
    with path.open("rb") as f:
        head = f.read(4)
    if head != b"GGUF":
        raise GGUFFileError(f"{path}: not a GGUF file (it does not start with 'GGUF')")
    try:
        reader = _guarded_reader()(str(path))
        metadata = {name: _value(field) for name, field in reader.fields.items()
                    if not name.startswith("GGUF.")}
        tensors = tuple(TensorEntry(t.name, t.tensor_type.name,
                                    tuple(int(d) for d in t.shape), int(t.n_elements),
                                    int(t.n_bytes)) for t in reader.tensors)
    except (ValueError, KeyError, IndexError, TypeError, OverflowError, OSError,
            UnicodeDecodeError) as exc:
        raise GGUFFileError(f"{path}: malformed GGUF file ({_line(exc)})") from None
    return GGUFFile(path, metadata, tensors)


def _value(field: Any) -> Any:
    from gguf import GGUFValueType

    if field.types and field.types[0] == GGUFValueType.ARRAY:
        return len(field.data)
    return field.contents()


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."


__all__ = ["MAX_READS", "GGUFFile", "GGUFFileError", "TensorEntry", "read_gguf"]
