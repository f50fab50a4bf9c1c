"""Time-series queries over Arrow tables: latest value per key, a time range, downsampling.

Pure functions over whole tables (``pyarrow.compute`` and NumPy; no Python loop per row), used
by :class:`~fabric_ray.storage.shard.StorageShard` on the union of its stored and buffered
rows, and usable on any table.

Semantics, fixed here once:

* **Time** is an integer column of milliseconds since the epoch, an Arrow ``timestamp``
  column of any unit, or a date (compared as whole milliseconds, finer units floored). Rows with a null time are never in a
  range or a bucket, and are the *oldest* rows of their key for :func:`latest_per_key`.
* **A range** ``[start_ms, end_ms)`` is half-open; a bound of ``None`` is open on that side.
* **Latest per key**: the row with the greatest time; among rows with equal times the one
  that comes last in the table wins (later writes come later).
* **Downsampling** puts each row in the interval ``floor(t / interval_ms) * interval_ms``
  (floored, so negative times work too) and aggregates each ``(key, interval)`` that has
  rows; empty intervals are not filled. Aggregates ignore nulls, like pandas ``groupby``:
  ``count`` counts non-null values; ``sum``, ``mean``, ``min`` and ``max`` of an interval
  with no value are null; ``first``/``last`` are the first/last non-null value in time order
  (ties: table order). Output columns are ``<column>_<aggregate>``, next to the key columns
  and the time column holding each interval's start, sorted by key and then time.

Example:
    >>> import pyarrow as pa
    >>> t = pa.table({"k": ["a", "b", "a", "a"], "ts": [0, 5, 1_500, 1_000], "v": [1.0, 2.0, 3.0, 4.0]})
    >>> latest_per_key(t, "k", "ts").to_pydict()
    {'k': ['a', 'b'], 'ts': [1500, 5], 'v': [3.0, 2.0]}
    >>> in_range(t, "ts", 1_000, None)["v"].to_pylist()
    [3.0, 4.0]
    >>> downsample(t, "k", "ts", 1_000, {"v": ["count", "mean", "last"]}).to_pydict()
    {'k': ['a', 'a', 'b'], 'ts': [0, 1000, 0], 'v_count': [1, 2, 1], 'v_mean': [1.0, 3.5, 2.0], 'v_last': [1.0, 3.0, 2.0]}
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric_ray.storage.partitioning import epoch_ms

__all__ = ["AGGREGATES", "downsample", "in_range", "latest_per_key", "time_ms"]

AGGREGATES = ("count", "sum", "mean", "min", "max", "first", "last")
_NUMERIC_ONLY = frozenset({"sum", "mean"})
_ROW = "__fabric_row"
_BUCKET = "__fabric_bucket"
_TIME = "__fabric_time_ms"


def _keys(key: str | Sequence[str]) -> list[str]:
    keys = [key] if isinstance(key, str) else list(key)
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise ValueError(f"key must be a column name or a non-empty sequence of them; got {key!r}")
    return keys


def _need(table: pa.Table, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in table.schema.names]
    if missing:
        raise ValueError(f"{what} column {missing[0]!r} is not in the table (columns: {table.schema.names})")


def _floor_div(values: pa.Array, divisor: int) -> pa.Array:
    """``floor(values / divisor)`` on int64 with nulls kept (NumPy, whole array)."""
    valid = pc.is_valid(values).to_numpy(zero_copy_only=False)
    raw = values.fill_null(0).to_numpy(zero_copy_only=False)
    return pa.array(np.floor_divide(raw, divisor), pa.int64(), mask=~valid)


def time_ms(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A time column as int64 milliseconds since the epoch (nulls kept; finer units floored).

    The same conversion the dataset's partitioning and pruning use
    (:func:`~fabric_ray.storage.partitioning.epoch_ms`).

    Args:
        column: integers (already milliseconds), an Arrow ``timestamp`` of any unit, or a date.

    Returns:
        An ``int64`` array.

    Raises:
        ValueError: another type, naming it.

    Example:
        >>> import datetime as dt
        >>> time_ms(pa.array([dt.datetime(1970, 1, 1, 0, 0, 1, 999)], pa.timestamp("us"))).to_pylist()
        [1000]
    """
    return epoch_ms(column)


def _from_ms(ms: pa.Array, like: pa.DataType) -> pa.Array:
    """Milliseconds back to the type of the original time column."""
    if pa.types.is_timestamp(like):
        return ms.cast(pa.timestamp("ms", like.tz)).cast(like)
    if pa.types.is_date(like):
        return ms.cast(pa.date64()).cast(like)
    return ms.cast(like)


def in_range(table: pa.Table, time_column: str, start_ms: int | None = None, end_ms: int | None = None) -> pa.Table:
    """Rows with ``start_ms <= time < end_ms``, in table order.

    Args:
        table: the rows.
        time_column: its time column.
        start_ms: inclusive lower bound; ``None``: none.
        end_ms: exclusive upper bound; ``None``: none.

    Returns:
        The rows in range (rows with a null time never are).

    Raises:
        ValueError: a missing column, or ``end_ms < start_ms``.

    Example:
        >>> in_range(pa.table({"ts": [1, 2, 3, None]}), "ts", 2, 3)["ts"].to_pylist()
        [2]
    """
    _need(table, [time_column], "time")
    if start_ms is not None and end_ms is not None and end_ms < start_ms:
        raise ValueError(f"time range: end_ms {end_ms} is before start_ms {start_ms}")
    ms = time_ms(table[time_column])
    keep = pc.is_valid(ms)
    if start_ms is not None:
        keep = pc.and_(keep, pc.greater_equal(ms, int(start_ms)))
    if end_ms is not None:
        keep = pc.and_(keep, pc.less(ms, int(end_ms)))
    return table.filter(keep.fill_null(False))


def _time_order(table: pa.Table, time_column: str) -> pa.Table:
    """``table`` stably sorted by time, null times first (so they are the oldest)."""
    ms = time_ms(table[time_column])
    order = pc.sort_indices(pa.table({"t": ms}), sort_keys=[("t", "ascending", "at_start")])
    return table.take(order)


def latest_per_key(table: pa.Table, key: str | Sequence[str], time_column: str | None) -> pa.Table:
    """The latest row of each key, sorted by key.

    Args:
        table: the rows.
        key: the key column, or columns.
        time_column: the time column; ``None``: the latest row is the last one in the table.

    Returns:
        One row per distinct key (a null key is a key too), all columns, sorted by key.

    Raises:
        ValueError: a missing column.

    Example:
        >>> t = pa.table({"k": [1, 1, 2], "ts": [7, 7, 1], "v": ["old", "new", "x"]})
        >>> latest_per_key(t, "k", "ts")["v"].to_pylist()
        ['new', 'x']
    """
    keys = _keys(key)
    _need(table, keys, "key")
    if table.num_rows == 0:
        return table
    ordered = table
    if time_column is not None:
        _need(table, [time_column], "time")
        ordered = _time_order(table, time_column)
    ordered = ordered.append_column(_ROW, pa.array(np.arange(ordered.num_rows, dtype=np.int64)))
    last = ordered.select([*keys, _ROW]).group_by(keys, use_threads=False).aggregate([(_ROW, "max")])
    out = ordered.take(last[f"{_ROW}_max"]).drop_columns([_ROW])
    return out.take(pc.sort_indices(out, sort_keys=[(k, "ascending") for k in keys]))


def _check_aggs(table: pa.Table, aggs: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    if not aggs:
        raise ValueError("aggs: name at least one column and its aggregates, e.g. {'value': ['mean', 'max']}")
    pairs = []
    for column, names in aggs.items():
        _need(table, [column], "aggregated")
        if isinstance(names, str):
            names = [names]
        for name in names:
            if name not in AGGREGATES:
                raise ValueError(f"aggregate {name!r} for column {column!r} is unknown; use one of {list(AGGREGATES)}")
            col_type = table.schema.field(column).type
            if name in _NUMERIC_ONLY and not (pa.types.is_integer(col_type) or pa.types.is_floating(col_type) or pa.types.is_decimal(col_type)):
                raise ValueError(f"aggregate {name!r} needs a numeric column; {column!r} is {col_type}")
            pairs.append((column, name))
    return pairs


def downsample(
    table: pa.Table,
    key: str | Sequence[str],
    time_column: str,
    interval_ms: int,
    aggs: Mapping[str, Sequence[str]],
) -> pa.Table:
    """Aggregate each key's rows over fixed intervals of time.

    Args:
        table: the rows.
        key: the key column(s); ``()`` aggregates all rows together.
        time_column: the time column; the output's column of that name holds interval starts.
        interval_ms: the interval length (> 0); intervals start at multiples of it.
        aggs: column -> aggregates among ``count, sum, mean, min, max, first, last``.

    Returns:
        One row per key and non-empty interval: key columns, the time column, then
        ``<column>_<aggregate>`` in the order of ``aggs``; sorted by key, then time.

    Raises:
        ValueError: a missing column, an unknown aggregate, ``sum``/``mean`` of a non-numeric
            column, or ``interval_ms <= 0``.

    Example:
        >>> t = pa.table({"ts": [0, 999, 1000], "v": [1, 2, None]})
        >>> downsample(t, (), "ts", 1000, {"v": ["sum", "count"]}).to_pydict()
        {'ts': [0, 1000], 'v_sum': [3, None], 'v_count': [2, 0]}
    """
    keys = [] if not isinstance(key, str) and len(key) == 0 else _keys(key)
    if int(interval_ms) <= 0:
        raise ValueError(f"interval_ms must be > 0; got {interval_ms}")
    _need(table, [*keys, time_column], "key/time")
    if time_column in keys:
        raise ValueError(f"time column {time_column!r} cannot also be a key column")
    pairs = _check_aggs(table, aggs)
    time_type = table.schema.field(time_column).type
    ms = time_ms(table[time_column])
    valid = pc.is_valid(ms)
    rows = table.filter(valid) if valid.false_count else table
    bucket = _floor_div(ms.filter(valid), int(interval_ms)) if valid.false_count else _floor_div(ms, int(interval_ms))
    work = pa.table({**{k: rows[k] for k in keys}, _BUCKET: bucket, _TIME: time_ms(rows[time_column])})
    for i, (column, _) in enumerate(pairs):
        work = work.append_column(f"__v{i}", rows[column])
    # first/last depend on row order: sort by time (stable, so ties keep table order) and
    # aggregate single-threaded, which keeps that order within each group.
    work = work.take(pc.sort_indices(work, sort_keys=[(_TIME, "ascending")]))
    grouped = work.group_by([*keys, _BUCKET], use_threads=False).aggregate([(f"__v{i}", name) for i, (_, name) in enumerate(pairs)])
    grouped = grouped.take(pc.sort_indices(grouped, sort_keys=[(k, "ascending") for k in [*keys, _BUCKET]]))
    columns: dict[str, pa.Array | pa.ChunkedArray] = {k: grouped[k] for k in keys}
    start_ms = pc.multiply(grouped[_BUCKET], int(interval_ms))
    columns[time_column] = _from_ms(start_ms.combine_chunks() if isinstance(start_ms, pa.ChunkedArray) else start_ms, time_type)
    for i, (column, name) in enumerate(pairs):
        columns[f"{column}_{name}"] = grouped[f"__v{i}_{name}"]
    return pa.table(columns)
