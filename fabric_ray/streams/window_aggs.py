"""Aggregate declarations and their columnar partial state, shared by tile and session windows.

Every aggregate is kept as *partials* that merge: a tile's partials for a key combine with the
next tile's, a session's with another session's. The partial fields (one NumPy array each):

===============  =========  ==========================================================
field            dtype      meaning (per key and tile or session)
===============  =========  ==========================================================
``count``        int64      events
``nulls:C``      int64      events whose column C was null
``sum:C``        float64    sum of C
``shift:C``      float64    a value of C seen in this partial (for a stable variance)
``sy:C``         float64    sum of (C - shift)
``syy:C``        float64    sum of (C - shift) squared
``min:C``        float64    minimum of C (``+inf`` when none)
``max:C``        float64    maximum of C (``-inf`` when none)
``lts:C``        int64      greatest event time with C not null (int64 min when none)
``lval:C``       float64    C at that event time (the later arrival on ties)
``hll:C``        uint8      HyperLogLog registers of C (a trailing axis of ``2**p``)
===============  =========  ==========================================================

Nulls in a value column are skipped by every aggregate of it (as pandas does); ``("count", None)``
counts events. Values are read as float64, so ``sum``/``min``/``max``/``last`` of integers above
2**53 are rounded. ``std`` is the *sample* standard deviation (``ddof=1``, pandas' default), null
below 2 values; variance partials use shifted sums (``shift`` is the first value of each partial),
which avoids the cancellation of a plain sum of squares for values far from zero.

Example:
    >>> specs = parse_aggs({"n": ("count", None), "avg": ("mean", "amount")}, "w")
    >>> [(s.name, s.op, s.column) for s in specs]
    [('n', 'count', None), ('avg', 'mean', 'amount')]
    >>> Fields(specs, precision=8).names
    ['count', 'nulls:amount', 'sum:amount']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pyarrow as pa

from fabric_ray.streams.sketches import MAX_PRECISION, MIN_PRECISION, estimate, hash64, update_registers

__all__ = ["OPS", "AggSpec", "BatchValues", "Fields", "parse_aggs"]

OPS = ("count", "sum", "mean", "min", "max", "std", "last", "approx_distinct")
I64_MIN = np.iinfo(np.int64).min

_NEEDS = {
    "count": ("nulls",),
    "sum": ("nulls", "sum"),
    "mean": ("nulls", "sum"),
    "min": ("nulls", "min"),
    "max": ("nulls", "max"),
    "std": ("nulls", "shift", "sy", "syy"),
    "last": ("lts", "lval"),
    "approx_distinct": ("hll",),
}
_KIND_ORDER = ("nulls", "sum", "shift", "sy", "syy", "min", "max", "lts", "lval", "hll")
_DTYPE = {
    "count": np.int64, "nulls": np.int64, "sum": np.float64, "shift": np.float64, "sy": np.float64,
    "syy": np.float64, "min": np.float64, "max": np.float64, "lts": np.int64, "lval": np.float64, "hll": np.uint8,
}  # fmt: skip
_IDENTITY = {"min": np.inf, "max": -np.inf, "lts": I64_MIN, "lval": np.nan}


@dataclass(frozen=True)
class AggSpec:
    """One declared aggregate: output column ``name`` = ``op`` over input ``column``."""

    name: str
    op: str
    column: str | None


def parse_aggs(aggs: Mapping[str, tuple], owner: str) -> tuple[AggSpec, ...]:
    """Validate ``{"name": (op, column)}`` declarations.

    Raises:
        ValueError: an unknown op, a missing column, an empty declaration, a reserved name.

    Example:
        >>> parse_aggs({"x": ("median", "v")}, "w")
        Traceback (most recent call last):
        ...
        ValueError: w: aggregate 'x' has unknown op 'median'; use one of count, sum, mean, min, max, std, last, approx_distinct
    """
    if not aggs:
        raise ValueError(f"{owner}: declare at least one aggregate, e.g. aggs={{'n': ('count', None)}}")
    out = []
    for name, decl in aggs.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"{owner}: aggregate names must be non-empty strings; got {name!r}")
        if name in ("key", "window_start_ms", "window_end_ms"):
            raise ValueError(f"{owner}: aggregate name {name!r} is reserved for a result column")
        if not isinstance(decl, (tuple, list)) or len(decl) != 2:
            raise ValueError(f"{owner}: aggregate {name!r} must be (op, column); got {decl!r}")
        op, column = decl
        if op not in OPS:
            raise ValueError(f"{owner}: aggregate {name!r} has unknown op {op!r}; use one of {', '.join(OPS)}")
        if column is None and op != "count":
            raise ValueError(f"{owner}: aggregate {name!r} ({op}) needs a column; got None")
        if column is not None and (not isinstance(column, str) or not column):
            raise ValueError(f"{owner}: aggregate {name!r} column must be a column name; got {column!r}")
        out.append(AggSpec(name, op, column))
    return tuple(out)


class Fields:
    """The partial-state fields a set of aggregates needs, their dtypes and identities.

    Args:
        specs: the aggregates.
        precision: HyperLogLog precision ``p`` for ``approx_distinct`` (``2**p`` registers).
    """

    def __init__(self, specs: tuple[AggSpec, ...], precision: int) -> None:
        if not MIN_PRECISION <= precision <= MAX_PRECISION:
            raise ValueError(f"distinct_precision must be in [{MIN_PRECISION}, {MAX_PRECISION}]; got {precision}")
        self.specs = specs
        self.precision = precision
        self.m = 1 << precision
        kinds: dict[str, set[str]] = {}
        for s in specs:
            if s.column is not None:
                kinds.setdefault(s.column, set()).update(_NEEDS[s.op])
        self.columns = sorted(kinds)
        self.kinds = kinds
        self.names = ["count"] + [f"{k}:{c}" for c in self.columns for k in _KIND_ORDER if k in kinds[c]]
        self.numeric = [c for c in self.columns if kinds[c] - {"hll"}]
        self.hashed = [c for c in self.columns if "hll" in kinds[c]]

    @staticmethod
    def kind(field: str) -> str:
        return field.split(":", 1)[0]

    def dtype(self, field: str) -> type:
        return _DTYPE[self.kind(field)]

    def identity(self, field: str) -> float | int:
        return _IDENTITY.get(self.kind(field), 0)

    def new(self, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
        """Arrays of ``shape`` (plus the register axis for ``hll``) filled with identities."""
        out = {}
        for f in self.names:
            full = shape + ((self.m,) if self.kind(f) == "hll" else ())
            out[f] = np.full(full, self.identity(f), dtype=self.dtype(f))
        return out

    def reset(self, arrays: dict[str, np.ndarray], where) -> None:
        """Set ``arrays[f][where]`` back to each field's identity (state freed)."""
        for f, a in arrays.items():
            a[where] = self.identity(f)

    def nbytes_per_row(self) -> int:
        """Bytes of state per key and tile (or per session)."""
        return sum(np.dtype(self.dtype(f)).itemsize * (self.m if self.kind(f) == "hll" else 1) for f in self.names)

    def fold(self, flat: dict[str, np.ndarray], idx: np.ndarray, batch: BatchValues) -> None:
        """Fold the events of ``batch`` into the partials at flat positions ``idx`` (in place).

        ``flat[f]`` are 1-D views (the register axis flattened for ``hll``); ``idx`` gives each
        event's partial. The batch is in arrival order, which decides ties of ``last``.
        """
        for c in self.columns:
            kinds = self.kinds[c]
            v, valid = batch.values.get(c), batch.valid.get(c)
            iv = idx if valid is None else idx[valid]
            vv = v if valid is None or v is None else v[valid]
            if "shift" in kinds:
                # before counts change: partials without a value of c take their shift from this batch
                fresh = (flat["count"][iv] - flat[f"nulls:{c}"][iv]) == 0
                flat[f"shift:{c}"][iv[fresh]] = vv[fresh]
                y = vv - flat[f"shift:{c}"][iv]
                np.add.at(flat[f"sy:{c}"], iv, y)
                np.add.at(flat[f"syy:{c}"], iv, y * y)
            if "nulls" in kinds and valid is not None:
                np.add.at(flat[f"nulls:{c}"], idx[~valid], 1)
            if "sum" in kinds:
                np.add.at(flat[f"sum:{c}"], iv, vv)
            if "min" in kinds:
                np.minimum.at(flat[f"min:{c}"], iv, vv)
            if "max" in kinds:
                np.maximum.at(flat[f"max:{c}"], iv, vv)
            if "lts" in kinds:
                tv = batch.time if valid is None else batch.time[valid]
                lts = flat[f"lts:{c}"]
                np.maximum.at(lts, iv, tv)
                win = np.flatnonzero(tv == lts[iv])
                # the latest arrival among events at a partial's greatest time wins
                uniq, first_rev = np.unique(iv[win][::-1], return_index=True)
                flat[f"lval:{c}"][uniq] = vv[win[len(win) - 1 - first_rev]]
            if "hll" in kinds:
                hashes = batch.hashes[c] if valid is None else batch.hashes[c][valid]
                update_registers(flat[f"hll:{c}"], iv, hashes, self.precision)
        np.add.at(flat["count"], idx, 1)

    def finalize(self, parts: dict[str, np.ndarray]) -> dict[str, pa.Array]:
        """Result columns (one per aggregate) from combined partials (one row each)."""
        count = parts["count"]
        out: dict[str, pa.Array] = {}
        for s in self.specs:
            c = s.column
            if s.op == "count":
                out[s.name] = pa.array(count if c is None else count - parts[f"nulls:{c}"], type=pa.int64())
                continue
            if s.op == "approx_distinct":
                out[s.name] = pa.array(estimate(parts[f"hll:{c}"]), type=pa.int64())
                continue
            if s.op == "last":
                lts = parts[f"lts:{c}"]
                out[s.name] = pa.array(parts[f"lval:{c}"], mask=lts == I64_MIN, type=pa.float64())
                continue
            n = count - parts[f"nulls:{c}"]
            if s.op == "sum":
                out[s.name] = pa.array(parts[f"sum:{c}"], type=pa.float64())
            elif s.op == "mean":
                with np.errstate(divide="ignore", invalid="ignore"):
                    out[s.name] = pa.array(parts[f"sum:{c}"] / n, mask=n == 0, type=pa.float64())
            elif s.op in ("min", "max"):
                out[s.name] = pa.array(parts[f"{s.op}:{c}"], mask=n == 0, type=pa.float64())
            else:  # std
                sy, syy = parts[f"sy:{c}"], parts[f"syy:{c}"]
                with np.errstate(divide="ignore", invalid="ignore"):
                    m2 = np.maximum(syy - sy * sy / n, 0.0)
                    std = np.sqrt(m2 / (n - 1))
                out[s.name] = pa.array(std, mask=n < 2, type=pa.float64())
        return out


def to_moments(n: np.ndarray, shift: np.ndarray, sy: np.ndarray, syy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and M2 (sum of squared deviations) of shifted-sum partials; zeros where ``n == 0``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        safe = np.where(n > 0, n, 1)
        mean = np.where(n > 0, shift + sy / safe, 0.0)
        m2 = np.where(n > 0, np.maximum(syy - sy * sy / safe, 0.0), 0.0)
    return mean, m2


def combine_moments(
    n: np.ndarray, mean: np.ndarray, m2: np.ndarray, axis: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge per-part (n, mean, M2) along ``axis`` (Chan et al.): total n, mean, M2."""
    total = n.sum(axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(total > 0, (n * mean).sum(axis=axis) / np.where(total > 0, total, 1), 0.0)
    dev = mean - np.expand_dims(mu, axis)
    return total, mu, m2.sum(axis=axis) + (n * dev * dev).sum(axis=axis)


class BatchValues:
    """The value columns of a batch as NumPy: float64 values, validity masks, hashes.

    Args:
        table: the batch (already filtered to the events to fold).
        fields: which columns are needed and how.
        time: event time per row (int64 ms).
        owner: named in errors.

    Raises:
        KeyError: a declared column is missing.
        TypeError: a numeric aggregate over a non-numeric column.
    """

    def __init__(self, table: pa.Table, fields: Fields, time: np.ndarray, owner: str) -> None:
        self.time = time
        self.values: dict[str, np.ndarray] = {}
        self.valid: dict[str, np.ndarray | None] = {}
        self.hashes: dict[str, np.ndarray] = {}
        for c in fields.columns:
            if c not in table.column_names:
                raise KeyError(f"{owner}: the batch has no column {c!r} (columns: {', '.join(table.column_names)})")
            col = table.column(c)
            arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            self.valid[c] = None if arr.null_count == 0 else np.asarray(arr.is_valid().to_numpy(zero_copy_only=False))
            if c in fields.numeric:
                t = arr.type
                if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
                    raise TypeError(f"{owner}: column {c!r} has type {t}; sum/mean/min/max/std/last need numbers")
                filled = arr.fill_null(0) if arr.null_count else arr
                self.values[c] = np.asarray(filled.to_numpy(zero_copy_only=False), dtype=np.float64)
            if c in fields.hashed:
                self.hashes[c] = hash64(arr)

    def take(self, rows: np.ndarray | slice) -> BatchValues:
        """The same columns for a subset of the rows (positions or a slice), in that order."""
        out = object.__new__(BatchValues)
        out.time = self.time[rows]
        out.values = {c: v[rows] for c, v in self.values.items()}
        out.valid = {c: None if v is None else v[rows] for c, v in self.valid.items()}
        out.hashes = {c: h[rows] for c, h in self.hashes.items()}
        return out
