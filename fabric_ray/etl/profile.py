"""Per-column data profiles built from mergeable partials, in bounded memory.

A :class:`ProfileBuilder` folds in batches (Arrow tables or record batches) and merges with
other builders, so each Ray Data block builds one and the driver merges them; its
:meth:`~ProfileBuilder.result` is a :class:`Profile`, an immutable value that round-trips
through JSON and is stored with each ETL run. Memory per column is bounded whatever the row
count (about 60 KiB for a numeric column).

Per column (``kind`` is ``numeric``, ``timestamp``, ``string``, ``bool`` or ``other``):

* ``count`` (rows, nulls included) and ``nulls`` (Arrow nulls; ``nans`` counts float NaN apart);
* ``distinct``: non-null, non-NaN values, exact (64-bit value hashes) up to ``exact_distinct``
  (4096) values, then a HyperLogLog sketch (precision 14: about 0.8 % relative error);
  ``distinct_exact`` says which. Both are exact functions of the set of values, so any split
  into batches gives the same count;
* ``min``, ``max``; ``mean`` and ``std`` (population, over finite values) for numbers,
  timestamps (in microseconds since the epoch, UTC) and booleans (the share of true);
* ``quantiles`` p1, p5, p25, p50, p75, p95, p99 and ``quantile_grid`` (201 quantiles at ranks
  0, 0.005, ..., 1) from a KLL sketch (:mod:`fabric_ray.etl.quantiles`): each within 0.5 %
  of rank of the true one (exact while a column holds at most 1024 values);
* ``histogram``: PSI bins of equal frequency (``bins``, 10 by default): edge ``i`` is the
  smallest value with more than ``i / bins`` of the values at or below it, so about that share
  lies strictly below; duplicate edges are dropped (ties), bin ``i`` is
  ``[edges[i-1], edges[i])``, and the counts are read from the sketch;
* strings: ``min_length``, ``max_length``, ``mean_length`` (characters), and for strings and
  booleans ``frequencies``: exact value counts while at most ``max_categories`` (64) distinct
  values occur (the top values), else None.

Example:
    >>> import pyarrow as pa
    >>> b = ProfileBuilder().update(pa.table({"x": [1, 2, None], "s": ["a", "bb", "a"]}))
    >>> b = b.merge(ProfileBuilder().update(pa.table({"x": [10, 3, 4], "s": ["c", None, "a"]})))
    >>> p = b.result()
    >>> x = p.column("x")
    >>> (p.rows, x.count, x.nulls, x.distinct, x.min, x.max, x.quantiles["p50"])
    (6, 6, 1, 5, 1, 10, 3.0)
    >>> p.column("s").frequencies
    (('a', 3), ('bb', 1), ('c', 1))
    >>> Profile.from_json(p.to_json()) == p
    True
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric_ray.etl.quantiles import DEFAULT_K, GRID_SIZE, QuantileSketch
from fabric_ray.streams.sketches import estimate, hash64

__all__ = [
    "QUANTILES",
    "ColumnProfile",
    "Histogram",
    "Profile",
    "ProfileBuilder",
    "ProfileError",
    "column_kind",
    "profile_table",
    "to_epoch_us",
]

FORMAT_VERSION = 1
QUANTILES = {"p1": 0.01, "p5": 0.05, "p25": 0.25, "p50": 0.5, "p75": 0.75, "p95": 0.95, "p99": 0.99}
_US = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": None}
_DAY_US = 86_400_000_000


class ProfileError(ValueError):
    """A profile cannot be built or read; the message names the column and the value."""


def column_kind(t: pa.DataType) -> str:
    """The profile kind of an Arrow type: numeric, timestamp, string, bool or other.

    Example:
        >>> column_kind(pa.int32()), column_kind(pa.timestamp("ms")), column_kind(pa.dictionary(pa.int8(), pa.string()))
        ('numeric', 'timestamp', 'string')
    """
    if pa.types.is_dictionary(t):
        return column_kind(t.value_type)
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "timestamp"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    return "other"


def _values(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array, dictionary decoded, nulls dropped."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    return col.drop_null() if col.null_count else col


def to_epoch_us(arr: pa.Array) -> np.ndarray:
    """Timestamps or dates (no nulls) as int64 microseconds since the epoch (ns are floored)."""
    t = arr.type
    if pa.types.is_date32(t):
        return arr.cast(pa.int32()).to_numpy().astype(np.int64) * _DAY_US
    if pa.types.is_date64(t):
        return arr.cast(pa.int64()).to_numpy() * 1_000
    raw = arr.cast(pa.int64()).to_numpy()
    factor = _US[t.unit]
    return raw // 1_000 if factor is None else raw * factor


# -- JSON helpers ------------------------------------------------------------------------------


def _f_out(x: Any) -> Any:
    """A float for JSON: non-finite values as the strings inf, -inf, nan."""
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return x


def _f_in(x: Any) -> Any:
    return float(x) if x in ("inf", "-inf", "nan") else x


def _py(x: Any) -> Any:
    """A NumPy scalar as a plain Python value."""
    return x.item() if isinstance(x, np.generic) else x


# -- partial statistics ------------------------------------------------------------------------


def _sorted_unique(h: np.ndarray) -> np.ndarray:
    # np.unique is far slower than a SIMD sort plus a neighbour compare on uint64 here
    s = np.sort(h)
    if len(s) < 2:
        return s
    keep = np.empty(len(s), dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _hll_update(registers: np.ndarray, h: np.ndarray, precision: int) -> None:
    """Fold uint64 hashes into one HyperLogLog sketch in place: the registers of
    :func:`fabric_ray.streams.sketches.update_registers` (top ``precision`` bits choose the
    register, the rank of the first set bit below them is the value), in fewer passes.

    The bit length of ``w = h << precision`` is read from the float exponent of ``w >> 11``
    (under 2**53, so exact), or of ``w``'s low 11 bits where those are all it has.
    """
    if not len(h):
        return
    p = np.uint64(precision)
    reg = (h >> (np.uint64(64) - p)).astype(np.intp)
    w = h << p
    _, bits = np.frexp((w >> np.uint64(11)).astype(np.float64))
    bits += 11
    low = bits == 11  # w >> 11 == 0: rare (1 in 2**(53 - precision))
    if low.any():
        bits[low] = np.frexp((w[low] & np.uint64(0x7FF)).astype(np.float64))[1]
    rho = np.minimum(65 - bits, 65 - precision).astype(np.uint8)
    np.maximum.at(registers, reg, rho)


class _Distinct:
    """Distinct values: exact 64-bit hashes up to a threshold, then HyperLogLog registers."""

    __slots__ = ("threshold", "precision", "hashes", "registers")

    def __init__(self, threshold: int, precision: int) -> None:
        self.threshold, self.precision = threshold, precision
        self.hashes: np.ndarray | None = np.empty(0, dtype=np.uint64)
        self.registers: np.ndarray | None = None

    def add(self, h: np.ndarray, *, unique: bool = False) -> None:
        """Fold in value hashes; ``unique``: they are of distinct values (so past the threshold
        already, the set need not be sorted to know it)."""
        if not len(h):
            return
        if self.registers is None:
            registers = np.zeros(1 << self.precision, dtype=np.uint8)
            if unique and len(h) > self.threshold:
                _hll_update(registers, self.hashes, self.precision)
            else:
                u = _sorted_unique(np.concatenate([self.hashes, h]))
                if len(u) <= self.threshold:
                    self.hashes = u
                    return
                h = u
            self.registers, self.hashes = registers, None
        _hll_update(self.registers, h, self.precision)

    def merge(self, other: _Distinct) -> None:
        if other.registers is None:
            self.add(other.hashes)
            return
        if self.registers is None:
            mine, self.hashes = self.hashes, None
            self.registers = other.registers.copy()
            _hll_update(self.registers, mine, self.precision)
        else:
            self.registers = np.maximum(self.registers, other.registers)

    def count(self) -> tuple[int, bool]:
        if self.registers is None:
            return len(self.hashes), True
        return int(estimate(self.registers.reshape(1, -1))[0]), False


class _Moments:
    """Count, mean and sum of squared deviations, merged with Chan's parallel formula."""

    __slots__ = ("n", "mean", "m2")

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, x: np.ndarray) -> None:
        if len(x):
            other = _Moments()
            other.n, other.mean = len(x), float(np.mean(x))
            other.m2 = float(np.sum(np.square(x - other.mean)))
            self.merge(other)

    def merge(self, o: _Moments) -> None:
        if not o.n:
            return
        n = self.n + o.n
        delta = o.mean - self.mean
        self.m2 += o.m2 + delta * delta * self.n * o.n / n
        self.mean += delta * o.n / n
        self.n = n

    def std(self) -> float | None:
        return math.sqrt(max(self.m2, 0.0) / self.n) if self.n else None


def _lesser(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else min(a, b)


def _greater(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


@dataclass
class _Settings:
    exact_distinct: int
    hll_precision: int
    sketch_k: int
    max_categories: int
    bins: int
    seed: int


class _ColumnAcc:
    """One column's partial: shared counters plus what its kind needs (unused parts stay empty)."""

    def __init__(self, name: str, type_: pa.DataType, s: _Settings) -> None:
        self.name, self.settings = name, s
        self.count = self.nulls = 0
        self._reset(type_)

    def _reset(self, type_: pa.DataType) -> None:
        """Start the statistics of a type (also when a column seen only as nulls gets a real type)."""
        s = self.settings
        self.type, self.kind = type_, column_kind(type_)
        self.nans = 0
        self.min: Any = None
        self.max: Any = None
        self.moments = _Moments()
        self.sketch = QuantileSketch(s.sketch_k, seed=s.seed) if self.kind in ("numeric", "timestamp") else None
        self.distinct: _Distinct | None = _Distinct(s.exact_distinct, s.hll_precision)
        self.categories: dict[Any, int] | None = {} if self.kind in ("string", "bool") else None
        self.max_categories = s.max_categories
        self.length_min = self.length_max = None
        self.length_sum = 0

    def add_missing(self, rows: int) -> None:
        """Rows of a batch without this column count as nulls (a column added later)."""
        self.count += rows
        self.nulls += rows

    def update(self, col: pa.Array | pa.ChunkedArray) -> None:
        if pa.types.is_null(col.type):  # a block where the column is all null (and typed so)
            self.add_missing(len(col))
            return
        if pa.types.is_null(self.type):
            self._reset(col.type)
        if column_kind(col.type) != self.kind:
            raise ProfileError(f"column {self.name!r}: type {col.type} in this batch, but {self.type} ({self.kind}) before")
        self.count += len(col)
        self.nulls += col.null_count
        arr = _values(col)
        if not len(arr):
            return
        getattr(self, f"_update_{self.kind}")(arr)

    def _update_numeric(self, arr: pa.Array) -> None:
        t = arr.type
        if pa.types.is_decimal(t):
            arr = arr.cast(pa.float64())
            t = arr.type
        raw = arr.to_numpy(zero_copy_only=False)
        if pa.types.is_floating(t):
            nan = np.isnan(raw)
            if nan.any():
                self.nans += int(nan.sum())
                raw = raw[~nan]
            if not len(raw):
                return
        self._fold(raw)

    def _update_timestamp(self, arr: pa.Array) -> None:
        self._fold(to_epoch_us(arr))

    def _fold(self, raw: np.ndarray) -> None:
        """Numbers (no NaN, no nulls): one sort gives the extremes, the sketch's input and the
        distinct values, so only distinct values are hashed."""
        x = raw.astype(np.float64, copy=False)
        finite = np.isfinite(x)
        self.moments.add(x if finite.all() else x[finite])
        ordered = np.sort(raw)
        self.min = _lesser(self.min, _py(ordered[0]))
        self.max = _greater(self.max, _py(ordered[-1]))
        self.sketch.update(ordered.astype(np.float64, copy=False), assume_sorted=True)
        if self.distinct is not None:
            keep = np.empty(len(ordered), dtype=bool)
            keep[0] = True
            np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
            distinct = ordered[keep] if not keep.all() else ordered
            self.distinct.add(hash64(pa.array(distinct)), unique=True)

    def _update_string(self, arr: pa.Array) -> None:
        if self.categories is not None:
            vc = pc.value_counts(arr)
            if len(vc) <= self.max_categories:  # the few values tell the extremes and lengths
                values = vc.field("values")
                counts = vc.field("counts").to_numpy(zero_copy_only=False)
                self._string_stats(values, counts)
                self._add_categories(dict(zip(values.to_pylist(), counts.tolist())))
                if self.categories is None:  # past max_categories with earlier batches
                    self.distinct.add(hash64(values))
                return
            self._overflow()
        self._string_stats(arr, None)
        self.distinct.add(hash64(arr))

    def _string_stats(self, values: pa.Array, counts: np.ndarray | None) -> None:
        mm = pc.min_max(values)
        self.min = _lesser(self.min, mm["min"].as_py())
        self.max = _greater(self.max, mm["max"].as_py())
        lengths = pc.utf8_length(values).to_numpy(zero_copy_only=False)
        self.length_min = _lesser(self.length_min, int(lengths.min()))
        self.length_max = _greater(self.length_max, int(lengths.max()))
        self.length_sum += int(lengths.sum() if counts is None else (lengths.astype(np.int64) * counts).sum())

    def _update_bool(self, arr: pa.Array) -> None:
        trues = int(pc.sum(arr.cast(pa.int64())).as_py() or 0)
        self._add_categories({True: trues, False: len(arr) - trues})
        self.moments.add(arr.cast(pa.float64()).to_numpy(zero_copy_only=False))

    def _update_other(self, arr: pa.Array) -> None:
        if self.distinct is not None:
            try:
                self.distinct.add(hash64(arr))
            except (TypeError, pa.ArrowException):  # nested types: no value hash
                self.distinct = None

    def _add_categories(self, counts: Mapping[Any, int]) -> None:
        if self.categories is None:
            return
        for v, c in counts.items():
            if c:
                self.categories[v] = self.categories.get(v, 0) + c
        if self.kind == "string" and len(self.categories) > self.max_categories:  # booleans: at most 2
            self._overflow()

    def _overflow(self) -> None:
        """Too many values to count exactly: the distinct sketch takes over from the counted values."""
        if self.kind == "string" and self.categories:
            self.distinct.add(hash64(pa.array(list(self.categories), pa.string())))
        self.categories = None

    def merge(self, o: _ColumnAcc) -> None:
        if pa.types.is_null(o.type):
            self.add_missing(o.count)
            return
        if pa.types.is_null(self.type):
            self._reset(o.type)
        if o.kind != self.kind:
            raise ProfileError(f"column {self.name!r}: cannot merge {o.type} ({o.kind}) into {self.type} ({self.kind})")
        self.count += o.count
        self.nulls += o.nulls
        self.nans += o.nans
        self.min, self.max = _lesser(self.min, o.min), _greater(self.max, o.max)
        self.moments.merge(o.moments)
        if self.sketch is not None:
            self.sketch.merge(o.sketch)
        if self.categories is not None:
            if o.categories is None:
                self._overflow()
            else:
                self._add_categories(o.categories)
        elif o.categories and o.kind == "string":
            self.distinct.add(hash64(pa.array(list(o.categories), pa.string())))
        if self.distinct is not None and o.distinct is not None:
            self.distinct.merge(o.distinct)
        else:
            self.distinct = None
        self.length_min = _lesser(self.length_min, o.length_min)
        self.length_max = _greater(self.length_max, o.length_max)
        self.length_sum += o.length_sum

    def result(self, bins: int) -> ColumnProfile:
        distinct, exact = self.distinct.count() if self.distinct is not None else (None, False)
        low, high = self.min, self.max
        if self.categories is not None:
            distinct, exact = len(self.categories), True
        if self.kind == "bool":
            present = sorted(self.categories)
            low, high = (present[0], present[-1]) if present else (None, None)
        grid = quantiles = hist = None
        if self.sketch is not None and self.sketch.n:
            g = self.sketch.grid(GRID_SIZE)
            grid = tuple(float(v) for v in g)
            steps = GRID_SIZE - 1
            quantiles = {name: grid[round(q * steps)] for name, q in QUANTILES.items()}
            hist = self._histogram(g, bins)
        values = self.count - self.nulls
        freqs = None
        if self.categories is not None:
            freqs = tuple(sorted(self.categories.items(), key=lambda kv: (-kv[1], str(kv[0]))))
        return ColumnProfile(
            name=self.name, type=str(self.type), kind=self.kind, count=self.count, nulls=self.nulls, nans=self.nans,
            distinct=distinct, distinct_exact=exact, min=low, max=high,
            mean=self.moments.mean if self.moments.n else None, std=self.moments.std(),
            quantiles=quantiles, quantile_grid=grid, histogram=hist, frequencies=freqs,
            min_length=self.length_min, max_length=self.length_max,
            mean_length=self.length_sum / values if self.kind == "string" and values else None,
        )

    def _histogram(self, g: np.ndarray, bins: int) -> Histogram:
        cut = self.sketch.cut_points(np.arange(1, bins) / bins)
        edges = np.unique(cut[cut > g[0]])  # an edge at the minimum would leave the first bin empty
        n = self.sketch.n
        below = np.rint(np.asarray(self.sketch.rank(edges, strict=True)) * n).astype(np.int64)
        counts = np.diff(np.concatenate([[0], below, [n]]))
        return Histogram(tuple(float(e) for e in edges), tuple(int(c) for c in counts))


# -- results -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Histogram:
    """Counts of values in bins: ``(-inf, edges[0])``, ``[edges[0], edges[1])``, ..., ``[edges[-1], inf)``.

    Example:
        >>> Histogram((1.0, 2.0), (0, 3, 1)).shares()
        (0.0, 0.75, 0.25)
    """

    edges: tuple[float, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.counts) != len(self.edges) + 1:
            raise ProfileError(f"histogram: {len(self.edges)} edges need {len(self.edges) + 1} counts; got {len(self.counts)}")

    def shares(self) -> tuple[float, ...]:
        total = sum(self.counts)
        return tuple(c / total if total else 0.0 for c in self.counts)


@dataclass(frozen=True)
class ColumnProfile:
    """The profile of one column; see the module docstring for each field. Fields a kind does
    not use are None (``nans`` 0)."""

    name: str
    type: str
    kind: str
    count: int
    nulls: int
    nans: int = 0
    distinct: int | None = None
    distinct_exact: bool = True
    min: Any = None
    max: Any = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] | None = field(default=None, hash=False)
    quantile_grid: tuple[float, ...] | None = None
    histogram: Histogram | None = None
    frequencies: tuple[tuple[Any, int], ...] | None = None
    min_length: int | None = None
    max_length: int | None = None
    mean_length: float | None = None

    @property
    def values(self) -> int:
        """Non-null values (NaN included)."""
        return self.count - self.nulls

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; non-finite floats become the strings ``inf``, ``-inf``, ``nan``."""
        d = asdict(self)
        numeric = self.kind in ("numeric", "timestamp")
        for k in ("mean", "std", "mean_length") + (("min", "max") if numeric else ()):
            d[k] = _f_out(d[k])
        if self.quantiles is not None:
            d["quantiles"] = {k: _f_out(v) for k, v in self.quantiles.items()}
        if self.quantile_grid is not None:
            d["quantile_grid"] = [_f_out(v) for v in self.quantile_grid]
        if self.histogram is not None:
            d["histogram"] = {"edges": [_f_out(e) for e in self.histogram.edges], "counts": list(self.histogram.counts)}
        if self.frequencies is not None:
            d["frequencies"] = [[v, c] for v, c in self.frequencies]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColumnProfile:
        """Read :meth:`to_dict`'s output back.

        Raises:
            ProfileError: a field is missing or unknown.
        """
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        missing = {"name", "type", "kind", "count", "nulls"} - set(d)
        if unknown or missing:
            raise ProfileError(f"column profile {d.get('name')!r}: unknown fields {sorted(unknown)}, missing {sorted(missing)}")
        d = dict(d)
        numeric = d["kind"] in ("numeric", "timestamp")
        for k in ("mean", "std", "mean_length") + (("min", "max") if numeric else ()):
            d[k] = _f_in(d.get(k))
        if d.get("quantiles") is not None:
            d["quantiles"] = {k: _f_in(v) for k, v in d["quantiles"].items()}
        if d.get("quantile_grid") is not None:
            d["quantile_grid"] = tuple(float(_f_in(v)) for v in d["quantile_grid"])
        if d.get("histogram") is not None:
            h = d["histogram"]
            d["histogram"] = Histogram(tuple(float(_f_in(e)) for e in h["edges"]), tuple(int(c) for c in h["counts"]))
        if d.get("frequencies") is not None:
            d["frequencies"] = tuple((v, int(c)) for v, c in d["frequencies"])
        return cls(**d)


@dataclass(frozen=True)
class Profile:
    """A run's profile: the row count and one :class:`ColumnProfile` per column, in order."""

    rows: int
    columns: tuple[ColumnProfile, ...]

    def column(self, name: str) -> ColumnProfile:
        """The profile of column ``name``.

        Raises:
            ProfileError: no such column (the message lists those there are).
        """
        for c in self.columns:
            if c.name == name:
                return c
        raise ProfileError(f"profile has no column {name!r}; columns: {', '.join(c.name for c in self.columns) or '(none)'}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def to_dict(self) -> dict[str, Any]:
        """``{"version": 1, "rows": N, "columns": [column dicts]}``; see :meth:`ColumnProfile.to_dict`."""
        return {"version": FORMAT_VERSION, "rows": self.rows, "columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Profile:
        """Read :meth:`to_dict`'s output back.

        Raises:
            ProfileError: not a profile, or a format version this code does not read.
        """
        if not isinstance(d, Mapping) or "columns" not in d or "rows" not in d:
            raise ProfileError(f"not a profile (expected a mapping with rows and columns); got {str(d)[:80]!r}")
        if d.get("version") != FORMAT_VERSION:
            raise ProfileError(f"profile format version {d.get('version')!r} is not supported (this code reads {FORMAT_VERSION})")
        return cls(int(d["rows"]), tuple(ColumnProfile.from_dict(c) for c in d["columns"]))

    def to_json(self, *, indent: int | None = None) -> str:
        """The profile as JSON (standard JSON: no NaN or Infinity literals)."""
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False, default=str)

    @classmethod
    def from_json(cls, text: str | bytes) -> Profile:
        """Read :meth:`to_json`'s output back."""
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ProfileError(f"profile is not valid JSON: {exc}") from None

    def to_text(self) -> str:
        """A fixed-width table, one line per column, for a terminal.

        Example:
            >>> print(ProfileBuilder().update(pa.table({"x": [1.5, None]})).result().to_text())
            column  kind     count  nulls  distinct  min  p50  max  mean
            x       numeric      2      1         1  1.5  1.5  1.5  1.5
        """
        head = ("column", "kind", "count", "nulls", "distinct", "min", "p50", "max", "mean")
        rows = [head]
        for c in self.columns:
            p50 = c.quantiles["p50"] if c.quantiles else None
            d = "" if c.distinct is None else f"{c.distinct}" if c.distinct_exact else f"~{c.distinct}"
            cell = _time_cell if c.kind == "timestamp" else _cell
            rows.append((c.name, c.kind, str(c.count), str(c.nulls), d, cell(c.min), cell(p50), cell(c.max), cell(c.mean)))
        widths = [min(24, max(len(r[i]) for r in rows)) for i in range(len(head))]
        right = {2, 3, 4}
        lines = []
        for r in rows:
            cells = [_clip(v, widths[i]).rjust(widths[i]) if i in right else _clip(v, widths[i]).ljust(widths[i]) for i, v in enumerate(r)]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)


def _clip(s: str, width: int) -> str:
    return s if len(s) <= width else s[: width - 3] + "..."


def _time_cell(us: Any) -> str:
    """Microseconds since the epoch as ISO 8601 (UTC)."""
    if us is None or (isinstance(us, float) and not math.isfinite(us)):
        return _cell(us)
    return (dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=int(us))).isoformat()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


# -- the builder -------------------------------------------------------------------------------


class ProfileBuilder:
    """Build a :class:`Profile` from batches; builders merge, so blocks can profile in parallel.

    A column missing from a batch counts as null there (a column added to the data later).
    Builders are picklable and small (bounded per column, whatever the row count).

    Args:
        columns: profile only these columns (each must be in every batch); default all.
        exact_distinct: distinct counts are exact up to this many values, then HyperLogLog.
        hll_precision: HyperLogLog precision (relative error ``1.04 / sqrt(2**p)``).
        sketch_k: the quantile sketch's accuracy parameter (see :mod:`fabric_ray.etl.quantiles`).
        max_categories: string and boolean columns keep exact value counts up to this many values.
        bins: PSI histogram bins (equal-frequency: deciles at 10).
        seed: the quantile sketches' coin seed.

    Raises:
        ProfileError: a setting is out of range.
    """

    def __init__(self, columns: Sequence[str] | None = None, *, exact_distinct: int = 4096, hll_precision: int = 14,
                 sketch_k: int = DEFAULT_K, max_categories: int = 64, bins: int = 10, seed: int = 0) -> None:
        for name, value, low in (("exact_distinct", exact_distinct, 0), ("max_categories", max_categories, 0),
                                 ("bins", bins, 2), ("sketch_k", sketch_k, 8)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ProfileError(f"profile builder: {name} must be an integer of at least {low}; got {value!r}")
        if not 4 <= hll_precision <= 16:
            raise ProfileError(f"profile builder: hll_precision must be 4 to 16; got {hll_precision!r}")
        if bins > GRID_SIZE - 1 or (GRID_SIZE - 1) % bins:
            raise ProfileError(f"profile builder: bins must divide {GRID_SIZE - 1}; got {bins!r}")
        self.only = tuple(columns) if columns is not None else None
        self.settings = _Settings(exact_distinct, hll_precision, sketch_k, max_categories, bins, seed)
        self.rows = 0
        self._cols: dict[str, _ColumnAcc] = {}

    def update(self, batch: pa.Table | pa.RecordBatch) -> ProfileBuilder:
        """Fold in one batch; returns the builder.

        Raises:
            ProfileError: a requested column is missing, or a column changed kind (text after numbers).
        """
        names = batch.schema.names
        if self.only is not None:
            missing = [c for c in self.only if c not in names]
            if missing:
                raise ProfileError(f"profile: column {missing[0]!r} is not in the batch (columns: {', '.join(names)})")
        wanted = self.only if self.only is not None else names
        for name in wanted:
            col = batch.column(name)
            acc = self._cols.get(name)
            if acc is None:
                acc = self._cols[name] = _ColumnAcc(name, col.type, self.settings)
                acc.add_missing(self.rows)
            acc.update(col)
        for name, acc in self._cols.items():
            if name not in names:
                acc.add_missing(batch.num_rows)
        self.rows += batch.num_rows
        return self

    def merge(self, other: ProfileBuilder) -> ProfileBuilder:
        """Fold ``other`` (a builder with the same settings) into this one; returns this builder.

        Raises:
            ProfileError: different settings, or a column of different kinds.
        """
        if other.settings != self.settings or other.only != self.only:
            raise ProfileError(f"profile builders differ in settings: {self.settings} vs {other.settings}")
        for name, acc in self._cols.items():
            if name not in other._cols:
                acc.add_missing(other.rows)
        for name, acc in other._cols.items():
            mine = self._cols.get(name)
            if mine is None:
                mine = self._cols[name] = _ColumnAcc(name, acc.type, self.settings)
                mine.add_missing(self.rows)
            mine.merge(acc)
        self.rows += other.rows
        return self

    def result(self) -> Profile:
        """The profile of everything folded in so far (the builder can go on)."""
        return Profile(self.rows, tuple(acc.result(self.settings.bins) for acc in self._cols.values()))


def profile_table(table: pa.Table | pa.RecordBatch | Iterable[pa.RecordBatch], **settings: Any) -> Profile:
    """Profile a table (or an iterable of batches) in one pass; ``settings`` as for :class:`ProfileBuilder`."""
    b = ProfileBuilder(**settings)
    for batch in [table] if isinstance(table, (pa.Table, pa.RecordBatch)) else table:
        b.update(batch)
    return b.result()
