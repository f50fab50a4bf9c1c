"""How a dataset's rows are laid out in hive-style folders (``field=value/...``), and pruning.

Four strategies, composable:

* :class:`TimePartitioning` (``date=YYYY-MM-DD`` or ``date=.../hour=HH``, UTC) on a time column;
* :class:`HashBuckets` (``<column>_bucket=N``): CRC-32 of the key's text modulo ``buckets``, the
  same function as :func:`fabric_ray.features.routing.shard_of` (vectorised for integer and string
  keys by :func:`crc32_text`), so a key's bucket is the same in every process and run;
* :class:`KeyRanges` (``<column>_range=I``): range ``I`` holds ``bounds[I-1] <= key < bounds[I]``
  (range 0 is below the first bound, range ``len(bounds)`` at or above the last);
* :class:`Composite`: several of these, nested in order; plus :class:`Unpartitioned`.

Time columns: a timestamp of any unit, with or without a time zone (naive timestamps are taken as
UTC), ``date32``/``date64``, or an integer column of milliseconds since the epoch
(:func:`epoch_ms`). Partition columns may not hold nulls.

:meth:`Partitioning.may_contain` answers whether a partition can hold rows matching some keys
and a time range ``[start_ms, end_ms)``; it never says no to a partition that could (that is
what makes pruning safe, and what the property tests check).

Example:
    >>> import pyarrow as pa
    >>> p = Composite([TimePartitioning("ts"), HashBuckets("user", 4)])
    >>> t = pa.table({"ts": [0, 86_400_000, 1], "user": [7, 7, 8]})
    >>> [(path_of(part), len(rows)) for part, rows in p.split(t)]
    [('date=1970-01-01/user_bucket=2', 1), ('date=1970-01-01/user_bucket=3', 1), ('date=1970-01-02/user_bucket=2', 1)]
    >>> p.may_contain({"date": "1970-01-02", "user_bucket": "2"}, keys=[7])  # user 7 hashes to bucket 2
    True
    >>> p.may_contain({"date": "1970-01-02", "user_bucket": "2"}, keys=[7], start_ms=0, end_ms=86_400_000)
    False
    >>> parse_partitioning(p.to_dict()) == p
    True
"""

from __future__ import annotations

import bisect
import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric_ray.features.routing import shard_of

__all__ = [
    "Composite",
    "HashBuckets",
    "KeyRanges",
    "Partitioning",
    "PartitioningError",
    "TimePartitioning",
    "Unpartitioned",
    "epoch_ms",
    "parse_partition_path",
    "parse_partitioning",
    "crc32_text",
    "path_of",
]

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
_UNIT_MS = {"s": (1000, 1), "ms": (1, 1), "us": (1, 1000), "ns": (1, 1_000_000)}  # (multiply, floor-divide)
_SEP = "\x1f"  # joins field values into one grouping key; cannot occur in our values


def _crc_table() -> np.ndarray:
    table = np.zeros(256, np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table[i] = c
    return table


_CRC_TABLE = _crc_table()  # CRC-32 (IEEE), as zlib.crc32
_VECTOR_MAX_CHARS = 256  # longer texts: hash per distinct value instead


def crc32_text(values: pa.Array) -> np.ndarray | None:
    """``zlib.crc32(str(v).encode())`` of every value of an integer or string array, vectorised.

    One NumPy pass per character position (table-driven CRC-32), so a million keys take a
    fraction of a second instead of a million Python calls. Returns ``None`` for other types,
    for nulls and for very long strings (callers fall back to hashing distinct values).

    Example:
        >>> import zlib, pyarrow as pa
        >>> crc32_text(pa.array([42, -7])).tolist() == [zlib.crc32(b"42"), zlib.crc32(b"-7")]
        True
    """
    t = values.type
    if values.null_count or not (pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t)):
        return None
    if pa.types.is_integer(t):
        values = values.cast(pa.string())  # the decimal text, as Python's str(int)
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], np.int64 if pa.types.is_large_string(values.type) else np.int32)
    offsets = offsets[values.offset : values.offset + n + 1].astype(np.int64)
    lengths = np.diff(offsets)
    if n and int(lengths.max()) > _VECTOR_MAX_CHARS:
        return None
    data = np.frombuffer(values.buffers()[2], np.uint8) if values.buffers()[2] is not None else np.zeros(0, np.uint8)
    crc = np.full(n, 0xFFFFFFFF, np.uint32)
    starts = offsets[:-1]
    for j in range(int(lengths.max()) if n else 0):
        rows = np.flatnonzero(lengths > j)
        c = crc[rows]
        crc[rows] = _CRC_TABLE[(c ^ data[starts[rows] + j]) & 0xFF] ^ (c >> 8)
    return crc ^ np.uint32(0xFFFFFFFF)


class PartitioningError(ValueError):
    """A partitioning is invalid, or a table cannot be partitioned; names the column."""


def epoch_ms(values: pa.Array | pa.ChunkedArray, column: str = "time") -> pa.Array:
    """Milliseconds since the epoch (UTC) of a time column, nulls kept.

    Accepts timestamps of any unit (with or without a time zone; the stored instant is UTC
    either way), ``date32``/``date64`` and integers (taken as epoch milliseconds). Sub-millisecond
    values are floored, so an instant falls in the same hour and date as its millisecond.

    Raises:
        PartitioningError: another type, naming ``column``.

    Example:
        >>> import pyarrow as pa
        >>> epoch_ms(pa.array([1_500, -1], pa.timestamp("us", tz="Europe/Paris"))).to_pylist()
        [1, -1]
    """
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    t = arr.type
    if pa.types.is_timestamp(t):
        mul, div = _UNIT_MS[t.unit]
    elif pa.types.is_date32(t):
        mul, div = DAY_MS, 1
    elif pa.types.is_date64(t) or pa.types.is_integer(t):
        mul, div = 1, 1
    else:
        raise PartitioningError(f"column {column!r}: a time column must be a timestamp, a date or int64 epoch-ms; got {t}")
    if pa.types.is_date32(t):
        arr = arr.cast(pa.int32())
    raw = arr.cast(pa.int64()) if not pa.types.is_int64(arr.type) else arr
    valid = raw.is_valid().to_numpy(zero_copy_only=False)
    ints = raw.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    out = np.floor_divide(ints * mul, div) if div != 1 else ints * mul
    return pa.array(out, pa.int64(), mask=~valid if not valid.all() else None)


def path_of(partition: Mapping[str, str]) -> str:
    """The hive-style folder of a partition: ``field=value/...`` ("" when unpartitioned)."""
    return "/".join(f"{k}={v}" for k, v in partition.items())


def parse_partition_path(path: str) -> dict[str, str]:
    """The ``field=value`` folders of a relative file path, in order."""
    out = {}
    for part in path.split("/")[:-1]:
        if "=" in part:
            key, _, value = part.partition("=")
            out[key] = value
    return out


def _no_nulls(table: pa.Table, column: str) -> pa.ChunkedArray:
    if column not in table.schema.names:
        raise PartitioningError(f"partition column {column!r} is missing from the table (columns: {table.schema.names})")
    col = table[column]
    if col.null_count:
        raise PartitioningError(f"partition column {column!r} holds {col.null_count} null(s); every row needs a value to be placed")
    return col


def _key_candidates(keys: Any, column: str) -> Sequence[Any] | None:
    """The candidate values of ``column`` in ``keys`` (a mapping column -> values, or plain values)."""
    if keys is None:
        return None
    if isinstance(keys, Mapping):
        return keys.get(column)
    return list(keys)


class Partitioning(ABC):
    """Where each row of a table goes: one string value per field (hive folder level)."""

    @property
    @abstractmethod
    def fields(self) -> tuple[str, ...]:
        """The folder levels, outermost first."""

    @property
    @abstractmethod
    def columns(self) -> tuple[str, ...]:
        """The table columns the partition values are computed from."""

    @abstractmethod
    def values(self, table: pa.Table) -> pa.Table:
        """One string column per field, one row per row of ``table``.

        Raises:
            PartitioningError: a partition column is missing, null or of the wrong type.
        """

    @abstractmethod
    def may_contain(self, partition: Mapping[str, str], *, keys: Any = None, start_ms: int | None = None,
                    end_ms: int | None = None) -> bool:
        """Whether ``partition`` can hold rows with one of ``keys`` and a time in ``[start_ms, end_ms)``.

        Args:
            partition: field -> value, as in :meth:`split` (missing fields: no pruning).
            keys: candidate key values: a mapping ``column -> values``, or plain values that
                apply to whichever column the strategy is keyed on; ``None``: any key.
            start_ms: inclusive lower time bound (``None``: unbounded).
            end_ms: exclusive upper time bound (``None``: unbounded).
        """

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A YAML/JSON-friendly form that :func:`parse_partitioning` reads back."""

    def split(self, table: pa.Table) -> list[tuple[dict[str, str], pa.Table]]:
        """The rows of ``table`` grouped by partition (row order kept within a group), sorted by path."""
        if not self.fields:
            return [({}, table)]
        if table.num_rows == 0:
            return []
        keyed = _time_groups(self, table) if isinstance(self, TimePartitioning) else None
        if keyed is None:
            vals = self.values(table)
            joined = vals.column(0) if vals.num_columns == 1 else pc.binary_join_element_wise(*vals.columns, _SEP)
            enc = joined.combine_chunks().dictionary_encode()
            labels = [dict(zip(self.fields, label.split(_SEP))) for label in enc.dictionary.to_pylist()]
            idx = enc.indices.to_numpy(zero_copy_only=False)
        else:
            idx, labels = keyed
        if len(labels) == 1:
            return [(labels[0], table)]
        # narrow codes sort by radix (stable); then one gather of the whole table, cut in zero-copy slices
        narrow = np.uint8 if len(labels) <= 1 << 8 else np.uint16 if len(labels) <= 1 << 16 else idx.dtype
        order = np.argsort(idx.astype(narrow, copy=False), kind="stable")
        counts = np.bincount(idx, minlength=len(labels))
        starts = np.cumsum(counts) - counts
        grouped = table.take(pa.array(order))
        out = [(label, grouped.slice(int(starts[code]), int(counts[code]))) for code, label in enumerate(labels) if counts[code]]
        return sorted(out, key=lambda pt: path_of(pt[0]))

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __hash__(self) -> int:
        return hash(repr(self.to_dict()))


def _time_groups(part: TimePartitioning, table: pa.Table) -> tuple[np.ndarray, list[dict[str, str]]] | None:
    """For :meth:`Partitioning.split` by time: each row's group and the groups' partitions, from the
    day (or hour) numbers, formatting only the distinct ones (the same text as ``values``); ``None``
    when the rows span too many groups for a counting pass."""
    ints = epoch_ms(_no_nulls(table, part.column), part.column).to_numpy(zero_copy_only=False)
    keys = np.floor_divide(ints, HOUR_MS if part.granularity == "hour" else DAY_MS)
    lo, hi = int(keys.min()), int(keys.max())
    if hi - lo >= 1 << 16:
        return None
    offsets = keys - lo
    present = np.flatnonzero(np.bincount(offsets, minlength=hi - lo + 1))
    compact = np.zeros(hi - lo + 1, dtype=np.int64)
    compact[present] = np.arange(len(present))
    distinct = present + lo
    days = distinct if part.granularity == "date" else np.floor_divide(distinct, 24)
    dates = pa.array(days.astype(np.int32), pa.date32()).cast(pa.string()).to_pylist()
    if part.granularity == "date":
        labels = [{"date": d} for d in dates]
    else:
        hours = pc.utf8_lpad(pa.array(distinct % 24).cast(pa.string()), 2, "0").to_pylist()
        labels = [{"date": d, "hour": h} for d, h in zip(dates, hours)]
    return compact[offsets], labels


class Unpartitioned(Partitioning):
    """Every file at the dataset root."""

    fields = ()  # type: ignore[assignment]
    columns = ()  # type: ignore[assignment]

    def values(self, table: pa.Table) -> pa.Table:
        return table.select([])

    def may_contain(self, partition: Mapping[str, str], *, keys: Any = None, start_ms: int | None = None, end_ms: int | None = None) -> bool:
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"type": "none"}

    def __repr__(self) -> str:
        return "Unpartitioned()"


@dataclass(frozen=True, eq=False)
class TimePartitioning(Partitioning):
    """``date=YYYY-MM-DD`` (and ``hour=HH``) folders by the UTC time of ``column``.

    Attributes:
        column: the time column (see :func:`epoch_ms` for the accepted types).
        granularity: ``date`` or ``hour``.
    """

    column: str
    granularity: str = "date"

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise PartitioningError(f"time partitioning: column must be a non-empty string; got {self.column!r}")
        if self.granularity not in ("date", "hour"):
            raise PartitioningError(f"time partitioning on {self.column!r}: granularity must be 'date' or 'hour'; got {self.granularity!r}")

    @property
    def fields(self) -> tuple[str, ...]:
        return ("date", "hour") if self.granularity == "hour" else ("date",)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def values(self, table: pa.Table) -> pa.Table:
        ints = epoch_ms(_no_nulls(table, self.column), self.column).to_numpy(zero_copy_only=False)
        date = pa.array(np.floor_divide(ints, DAY_MS).astype(np.int32), pa.date32()).cast(pa.string())
        if self.granularity == "date":
            return pa.table({"date": date})
        hour = np.floor_divide(ints, HOUR_MS) % 24
        return pa.table({"date": date, "hour": pc.utf8_lpad(pa.array(hour).cast(pa.string()), 2, "0")})

    def interval_ms(self, partition: Mapping[str, str]) -> tuple[int, int] | None:
        """``[start, end)`` in epoch ms of a partition's date (or hour); ``None`` if unparseable."""
        try:
            day = dt.date.fromisoformat(partition["date"])
        except (KeyError, ValueError):
            return None
        lo = (day - dt.date(1970, 1, 1)).days * DAY_MS
        if "hour" in partition:
            try:
                lo += int(partition["hour"]) * HOUR_MS
            except ValueError:
                return None
            return lo, lo + HOUR_MS
        return lo, lo + DAY_MS

    def may_contain(self, partition: Mapping[str, str], *, keys: Any = None, start_ms: int | None = None, end_ms: int | None = None) -> bool:
        if start_ms is None and end_ms is None:
            return True
        span = self.interval_ms(partition)
        if span is None:
            return True
        lo, hi = span
        return (end_ms is None or lo < end_ms) and (start_ms is None or hi > start_ms)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "time", "column": self.column, "granularity": self.granularity}


@dataclass(frozen=True, eq=False)
class HashBuckets(Partitioning):
    """``<column>_bucket=N`` folders: ``shard_of(key, buckets)`` (CRC-32 of the key's text).

    Hashing runs once per distinct key of a batch, then is gathered back over the rows.

    Attributes:
        column: the key column.
        buckets: number of buckets (>= 1).
    """

    column: str
    buckets: int

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise PartitioningError(f"hash buckets: column must be a non-empty string; got {self.column!r}")
        if not isinstance(self.buckets, int) or isinstance(self.buckets, bool) or self.buckets < 1:
            raise PartitioningError(f"hash buckets on {self.column!r}: buckets must be an integer >= 1; got {self.buckets!r}")

    @property
    def field(self) -> str:
        return f"{self.column}_bucket"

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def bucket_of(self, key: Any) -> int:
        """The bucket of one key value."""
        return shard_of(key, self.buckets)

    def values(self, table: pa.Table) -> pa.Table:
        col = _no_nulls(table, self.column).combine_chunks()
        crc = crc32_text(col)
        if crc is not None:
            rows = (crc % np.uint32(self.buckets)).astype(np.int64)
        else:  # other types: shard_of once per distinct value, gathered back over the rows
            enc = col.dictionary_encode()
            per_value = np.fromiter((self.bucket_of(v) for v in enc.dictionary.to_pylist()), np.int64, len(enc.dictionary))
            rows = per_value[enc.indices.to_numpy(zero_copy_only=False)]
        return pa.table({self.field: pa.array(rows).cast(pa.string())})

    def may_contain(self, partition: Mapping[str, str], *, keys: Any = None, start_ms: int | None = None, end_ms: int | None = None) -> bool:
        candidates = _key_candidates(keys, self.column)
        if candidates is None or self.field not in partition:
            return True
        return partition[self.field] in {str(self.bucket_of(k)) for k in candidates}

    def to_dict(self) -> dict[str, Any]:
        return {"type": "hash", "column": self.column, "buckets": self.buckets}


@dataclass(frozen=True, eq=False)
class KeyRanges(Partitioning):
    """``<column>_range=I`` folders: range ``I`` holds ``bounds[I-1] <= key < bounds[I]``.

    Attributes:
        column: the key column (numbers or strings).
        bounds: strictly increasing split points, all of one kind (numbers or strings).
    """

    column: str
    bounds: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise PartitioningError(f"key ranges: column must be a non-empty string; got {self.column!r}")
        bounds = tuple(self.bounds)
        object.__setattr__(self, "bounds", bounds)
        if not bounds:
            raise PartitioningError(f"key ranges on {self.column!r}: give at least one bound")
        kinds = {"str" if isinstance(b, str) else "num" if isinstance(b, (int, float)) and not isinstance(b, bool) else "bad" for b in bounds}
        if len(kinds) != 1 or "bad" in kinds:
            raise PartitioningError(f"key ranges on {self.column!r}: bounds must be all numbers or all strings; got {list(bounds)!r}")
        if any(not a < b for a, b in zip(bounds, bounds[1:])):
            raise PartitioningError(f"key ranges on {self.column!r}: bounds must be strictly increasing; got {list(bounds)!r}")

    @property
    def field(self) -> str:
        return f"{self.column}_range"

    @property
    def fields(self) -> tuple[str, ...]:
        return (self.field,)

    @property
    def columns(self) -> tuple[str, ...]:
        return (self.column,)

    def range_of(self, key: Any) -> int:
        """The range index of one key value."""
        return bisect.bisect_right(self.bounds, key)

    def values(self, table: pa.Table) -> pa.Table:
        col = _no_nulls(table, self.column)
        index = np.zeros(table.num_rows, np.int64)
        for bound in self.bounds:
            try:
                ge = pc.greater_equal(col, pa.scalar(bound))
            except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise PartitioningError(f"key ranges on {self.column!r}: bound {bound!r} cannot be compared with {col.type} values ({exc})") from exc
            index += ge.combine_chunks().to_numpy(zero_copy_only=False).astype(np.int64)
        return pa.table({self.field: pa.array(index).cast(pa.string())})

    def may_contain(self, partition: Mapping[str, str], *, keys: Any = None, start_ms: int | None = None, end_ms: int | None = None) -> bool:
        candidates = _key_candidates(keys, self.column)
        if candidates is None or self.field not in partition:
            return True
        try:
            return partition[self.field] in {str(self.range_of(k)) for k in candidates}
        except TypeError:  # keys of another kind than the bounds: cannot rule anything out
            return True

    def to_dict(self) -> dict[str, Any]:
        return {"type": "range", "column": self.column, "bounds": list(self.bounds)}


class Composite(Partitioning):
    """Several strategies nested in order (``date=.../user_bucket=...``)."""

    def __init__(self, parts: Sequence[Partitioning]) -> None:
        parts = tuple(parts)
        if not parts or not all(isinstance(p, Partitioning) and not isinstance(p, (Composite, Unpartitioned)) for p in parts):
            raise PartitioningError(f"composite partitioning: give one or more time, hash or range partitionings; got {parts!r}")
        names = [f for p in parts for f in p.fields]
        dup = sorted({f for f in names if names.count(f) > 1})
        if dup:
            raise PartitioningError(f"composite partitioning: field(s) {dup} appear twice; partition each column one way")
        self.parts = parts

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(f for p in self.parts for f in p.fields)

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(c for p in self.parts for c in p.columns))

    def values(self, table: pa.Table) -> pa.Table:
        cols: dict[str, pa.ChunkedArray] = {}
        for part in self.parts:
            vals = part.values(table)
            cols.update(zip(vals.column_names, vals.columns))
        return pa.table(cols)

    def may_contain(self, partition: Mapping[str, str], *, keys: Any = None, start_ms: int | None = None, end_ms: int | None = None) -> bool:
        return all(p.may_contain(partition, keys=keys, start_ms=start_ms, end_ms=end_ms) for p in self.parts)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "composite", "parts": [p.to_dict() for p in self.parts]}

    def __repr__(self) -> str:
        return f"Composite({list(self.parts)!r})"


def parse_partitioning(d: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> Partitioning:
    """A partitioning from its :meth:`~Partitioning.to_dict` form (a list means a composite).

    Raises:
        PartitioningError: an unknown ``type`` or bad fields, naming them.

    Example:
        >>> parse_partitioning({"type": "hash", "column": "user", "buckets": 8})
        HashBuckets(column='user', buckets=8)
    """
    if d is None:
        return Unpartitioned()
    if isinstance(d, Sequence) and not isinstance(d, (str, bytes)):
        return Composite([parse_partitioning(x) for x in d]) if d else Unpartitioned()
    if not isinstance(d, Mapping):
        raise PartitioningError(f"partitioning must be a mapping with a 'type'; got {d!r}")
    kind = d.get("type")
    rest = {k: v for k, v in d.items() if k != "type"}
    builders: dict[str, Any] = {
        "none": lambda: Unpartitioned(),
        "time": lambda: TimePartitioning(**rest),
        "hash": lambda: HashBuckets(**rest),
        "range": lambda: KeyRanges(**rest),
        "composite": lambda: Composite([parse_partitioning(x) for x in rest.get("parts", [])]),
    }
    if kind not in builders:
        raise PartitioningError(f"partitioning type {kind!r} is unknown; use one of {sorted(builders)}")
    if kind == "none" and rest:
        raise PartitioningError(f"partitioning 'none' takes no fields; got {sorted(rest)}")
    try:
        return builders[kind]()
    except TypeError as exc:
        raise PartitioningError(f"partitioning {kind!r}: {exc}") from exc
