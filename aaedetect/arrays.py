"""Arrow arrays to numpy and back, without pandas.

pyarrow imports pandas, when it is installed, the first time an array is made from Python or numpy
values (``pa.array``, ``pa.scalar``) or turned into numpy (``to_numpy``, ``np.asarray``): it
checks whether the values are pandas objects. That import is most of the start-up of a small
``aaedetect score``, whose path never touches a DataFrame, so that path goes through the buffers
instead: numbers are read from and wrapped around the same memory, and text is laid out as
Arrow's offsets and bytes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_ARROW_TYPES = {np.dtype(np.float64): pa.float64(), np.dtype(np.float32): pa.float32(),
                np.dtype(np.int64): pa.int64(), np.dtype(np.int32): pa.int32(),
                np.dtype(np.int8): pa.int8(), np.dtype(np.uint8): pa.uint8()}


def to_numpy(array: pa.Array | pa.ChunkedArray, dtype=np.float64) -> np.ndarray:
    """A writable numpy copy of an Arrow array of numbers or booleans, as ``dtype`` (one of
    float64, float32, int64, int32, int8, uint8, or bool). Values are cast as
    ``pyarrow.compute.cast(safe=False)`` casts them; nulls become NaN, which only a float
    ``dtype`` can hold (ValueError otherwise)."""
    dtype = np.dtype(dtype)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if dtype == np.bool_:
        return to_numpy(array, np.int8).astype(bool)
    target = _ARROW_TYPES[dtype]
    if array.type != target:
        array = pc.cast(array, target, safe=False)
    n, offset = len(array), array.offset
    if n == 0:
        return np.empty(0, dtype)
    validity, data = array.buffers()[:2]
    values = np.frombuffer(data, dtype=dtype, count=offset + n)[offset:].copy()
    if array.null_count:
        if dtype.kind != "f":
            raise ValueError(f"{array.null_count} null value(s) cannot be {dtype}")
        valid = np.unpackbits(np.frombuffer(validity, np.uint8), count=offset + n, bitorder="little")
        values[valid[offset:] == 0] = np.nan
    return values


def from_numpy(values: np.ndarray) -> pa.Array:
    """An Arrow array over a 1-D numpy array of numbers (no nulls), sharing its memory."""
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(_ARROW_TYPES[values.dtype], len(values), [None, pa.py_buffer(values)])


def strings(values: Sequence[str | None]) -> pa.Array:
    """An Arrow string array of ``values``; None is null."""
    n = len(values)
    encoded = [b"" if v is None else v.encode("utf-8") for v in values]
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.fromiter(map(len, encoded), np.int64, n), out=offsets[1:])
    kind, width = (pa.string(), np.int32) if offsets[-1] < 2**31 else (pa.large_string(), np.int64)
    valid = np.fromiter((v is not None for v in values), bool, n)
    nulls = n - int(valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(kind, n, [bitmap, pa.py_buffer(offsets.astype(width)),
                                           pa.py_buffer(b"".join(encoded))], null_count=nulls)


def booleans(flags: np.ndarray) -> pa.Array:
    """An Arrow boolean array of a numpy array of truth values (no nulls)."""
    return pc.cast(from_numpy(np.asarray(flags, dtype=bool).view(np.uint8)), pa.bool_())


def is_text(kind: pa.DataType) -> bool:
    """Arrow's string types, of either offset width."""
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def is_flat(kind: pa.DataType) -> bool:
    """Text, numbers or booleans: what CSV gives, and what :func:`to_numpy` and the text paths
    read as they stand (any other type goes through pandas)."""
    return is_text(kind) or pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)


def null_string() -> pa.Scalar:
    """A null string scalar (``pa.scalar(None, pa.string())`` without pandas)."""
    return pa.nulls(1, pa.string())[0]
