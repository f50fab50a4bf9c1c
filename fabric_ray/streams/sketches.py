"""Stable 64-bit hashes of Arrow arrays and a vectorized HyperLogLog distinct-count sketch.

The hashes are computed with NumPy over whole arrays (no Python loop over values) and do not
depend on the process (unlike Python's salted ``hash``), so a sketch saved in one process and
restored in another keeps counting the same values as the same.

HyperLogLog with precision ``p`` keeps ``m = 2**p`` one-byte registers per sketch. Its relative
standard error is about ``1.04 / sqrt(m)``: 6.5 % at ``p=8``, 3.3 % at ``p=10``, 1.6 % at
``p=12``. Small cardinalities (up to ``2.5 m``) use linear counting, which is much more exact
there. Sketches merge by taking the register-wise maximum, so a window's count is the merge of
its tiles' sketches, with the same error as one sketch over all its values.

Example:
    >>> import pyarrow as pa
    >>> regs = np.zeros((1, 1024), dtype=np.uint8)
    >>> h = hash64(pa.array([f"user-{i % 500}" for i in range(2000)]))
    >>> update_registers(regs.reshape(-1), np.zeros(len(h), dtype=np.int64), h, 10)
    >>> est = int(estimate(regs)[0])   # 500 distinct values; about 3 % error at p=10
    >>> abs(est - 500) < 50
    True
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["MAX_PRECISION", "MIN_PRECISION", "estimate", "hash64", "mix64", "relative_error", "update_registers"]

MIN_PRECISION = 4
MAX_PRECISION = 16

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SEED_BYTES = np.uint64(0x243F6A8885A308D3)


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer over a uint64 array: a fast bijection that spreads every input bit.

    Example:
        >>> mix64(np.array([0, 1], dtype=np.uint64)).tolist() != [0, 1]
        True
    """
    # in place with one scratch array: fresh large temporaries cost page faults
    z = x.astype(np.uint64, copy=True)
    tmp = np.empty_like(z)
    z += _GOLDEN
    for shift, mul in ((30, _M1), (27, _M2), (31, None)):
        np.right_shift(z, np.uint64(shift), out=tmp)
        z ^= tmp
        if mul is not None:
            z *= mul
    return z


_CHUNK_BYTES = 8192  # per pass: keeps temporaries in malloc's reused heap (big fresh arrays page-fault)


def _bytes_hash(arr: pa.Array) -> np.ndarray:
    """Hash each value of a string or binary array from its bytes (tabulation-style, vectorized).

    Every byte is mixed with its position in the value, the mixes of a value are summed, and the
    sum is mixed with the value's length. Values are hashed in passes of about 8 KiB of bytes.
    """
    if pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type):
        off_dtype = np.int64
    else:
        off_dtype = np.int32
    n = len(arr)
    _validity, offsets_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=off_dtype, count=arr.offset + n + 1)[arr.offset :].astype(np.int64)
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    out = np.zeros(n, dtype=np.uint64)
    # cut the values into passes of about _CHUNK_BYTES bytes (at least one value per pass)
    cuts = np.searchsorted(offsets, np.arange(offsets[0], offsets[-1], _CHUNK_BYTES), side="right") - 1
    bounds = np.unique(np.concatenate([[0], cuts.clip(0, n), [n]]))
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        starts = offsets[a:b]
        lengths = offsets[a + 1 : b + 1] - starts
        lo, hi = int(starts[0]), int(offsets[b])
        if hi > lo:
            pos = np.arange(hi - lo, dtype=np.int64)
            nonempty = lengths > 0
            first = starts[nonempty] - lo
            # position of every byte inside its own value: subtract its value's start
            pos -= np.repeat(first, lengths[nonempty])
            keyed = pos.view(np.uint64) * np.uint64(256) + data[lo:hi] + _SEED_BYTES
            out[a:b][nonempty] = np.add.reduceat(mix64(keyed), first)
    with np.errstate(over="ignore"):
        out += (offsets[1:] - offsets[:-1]).astype(np.uint64) * _GOLDEN
    return mix64(out)


def hash64(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A stable 64-bit hash (uint64) of every value; equal values hash equally. Nulls hash to 0.

    Integers hash by value (so ``int32`` 5 and ``int64`` 5 agree), floats by their float64 bits
    (``-0.0`` as ``0.0``), strings and binaries by their bytes, dictionary arrays by their values.

    Raises:
        TypeError: a type without a hash here (nested types).

    Example:
        >>> import pyarrow as pa
        >>> a = hash64(pa.array(["x", "y", "x"]))
        >>> bool(a[0] == a[2]) and bool(a[0] != a[1])
        True
    """
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_boolean(t):
        arr, t = arr.cast(pa.int8()), pa.int8()  # fill_null(0) refuses booleans; True/False hash as 1/0
    if pa.types.is_integer(t):
        raw = np.asarray(arr.fill_null(0).to_numpy(zero_copy_only=False))
        bits = raw.astype(np.int64).view(np.uint64) if raw.dtype != np.uint64 else raw
        out = mix64(bits)
    elif pa.types.is_floating(t):
        vals = np.asarray(arr.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.float64) + 0.0
        out = mix64(vals.view(np.uint64) ^ np.uint64(0x5851F42D4C957F2D))
    elif pa.types.is_temporal(t):
        out = mix64(np.asarray(arr.fill_null(0).to_numpy(zero_copy_only=False)).view(np.int64).view(np.uint64))
    elif pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) or pa.types.is_large_binary(t):
        out = _bytes_hash(arr)
    elif pa.types.is_string_view(t) or pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t):
        return hash64(arr.cast(pa.large_binary()))
    else:
        raise TypeError(f"hash64: values of type {t} cannot be hashed; use a number, string or binary column")
    if arr.null_count:
        out[np.asarray(arr.is_null().to_numpy(zero_copy_only=False))] = 0
    return out


def _bit_length(w: np.ndarray) -> np.ndarray:
    w = w.copy()
    for shift in (1, 2, 4, 8, 16, 32):
        w |= w >> np.uint64(shift)
    return np.bitwise_count(w).astype(np.int64)


def update_registers(regs_flat: np.ndarray, sketch: np.ndarray, hashes: np.ndarray, precision: int) -> None:
    """Fold hashed values into sketches in place.

    Args:
        regs_flat: all registers, flat uint8, ``2**precision`` consecutive registers per sketch.
        sketch: the sketch (row) each hash goes to.
        hashes: uint64 hashes from :func:`hash64`.
        precision: ``p``; the top ``p`` bits choose the register.
    """
    if len(hashes) == 0:
        return
    p = np.uint64(precision)
    reg = (hashes >> (np.uint64(64) - p)).astype(np.int64)
    rest = hashes << p
    rho = (64 - _bit_length(rest) + 1).clip(max=64 - precision + 1).astype(np.uint8)
    np.maximum.at(regs_flat, sketch * (1 << precision) + reg, rho)


def _alpha(m: int) -> float:
    return {16: 0.673, 32: 0.697, 64: 0.709}.get(m, 0.7213 / (1 + 1.079 / m))


_INV_POW2 = (2.0 ** -np.arange(66)).astype(np.float32)
_EST_CHUNK = 1 << 16  # registers per pass


def estimate(regs: np.ndarray) -> np.ndarray:
    """Distinct-count estimate (int64) of every sketch in ``regs`` (shape ``(n, 2**p)``).

    Example:
        >>> estimate(np.zeros((2, 16), dtype=np.uint8)).tolist()
        [0, 0]
    """
    regs = np.asarray(regs)
    n, m = regs.shape[0], regs.shape[-1]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    harmonic = np.empty(n, dtype=np.float64)
    zeros = m - np.count_nonzero(regs.reshape(n, m), axis=-1)
    step = max(1, _EST_CHUNK // m)
    buf = np.empty((step, m), dtype=np.float32)  # reused: no fresh big temporaries
    for a in range(0, n, step):
        block = regs[a : a + step]
        out = buf[: len(block)]
        np.take(_INV_POW2, block, out=out)
        harmonic[a : a + step] = out.sum(axis=-1, dtype=np.float64)
    raw = _alpha(m) * m * m / harmonic
    with np.errstate(divide="ignore"):
        linear = m * np.log(m / np.maximum(zeros, 1))
    est = np.where((raw <= 2.5 * m) & (zeros > 0), linear, raw)
    return np.rint(est).astype(np.int64)


def relative_error(precision: int) -> float:
    """The sketch's relative standard error at ``precision``: ``1.04 / sqrt(2**precision)``.

    Example:
        >>> round(relative_error(10), 4)
        0.0325
    """
    return 1.04 / float(np.sqrt(2.0**precision))
