"""Keyed count and sum, all-time and over the latest tumbling window, updated a batch at a time.

State is columnar (NumPy arrays indexed by a key's row), so one update costs a few vectorized
operations plus one dictionary lookup per *distinct* key in the batch, not per event.

Window semantics: for each key, the window features describe the tumbling window that holds
the key's latest event time seen so far. An event for an older window still counts all-time,
but not in the window features. The result does not depend on the order in which events
arrive, so it can be checked against a direct computation over the same events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["KeyedWindowAggregate", "RunningTotals"]

_NO_WINDOW = np.iinfo(np.int64).min


class KeyedWindowAggregate:
    """Per-key count and sum of a value, all-time and in the latest tumbling window.

    Args:
        window_ms: tumbling window size in milliseconds.

    Raises:
        ValueError: ``window_ms`` is not positive.

    Example:
        >>> import pyarrow as pa
        >>> agg = KeyedWindowAggregate(window_ms=60_000)
        >>> out = agg.update(pa.array([7, 7, 8]), pa.array([1.0, 2.0, 5.0]), pa.array([0, 61_000, 10]))
        >>> out.to_pylist()[0]
        {'key': 7, 'count': 2, 'sum': 3.0, 'window_start_ms': 60000, 'window_count': 1, 'window_sum': 2.0, 'last_event_ms': 61000}
    """

    COLUMNS = ("key", "count", "sum", "window_start_ms", "window_count", "window_sum", "last_event_ms")

    def __init__(self, window_ms: int) -> None:
        if window_ms <= 0:
            raise ValueError(f"window_ms must be positive; got {window_ms}")
        self.window_ms = int(window_ms)
        self._row_of: dict[Hashable, int] = {}
        self._keys: list[Hashable] = []
        self._count = np.zeros(0, dtype=np.int64)
        self._sum = np.zeros(0, dtype=np.float64)
        self._window = np.zeros(0, dtype=np.int64)
        self._wcount = np.zeros(0, dtype=np.int64)
        self._wsum = np.zeros(0, dtype=np.float64)
        self._last = np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._keys)

    def _rows(self, keys: list[Hashable]) -> np.ndarray:
        """Row of each key, adding rows for keys not seen before."""
        rows = np.empty(len(keys), dtype=np.int64)
        for i, key in enumerate(keys):
            row = self._row_of.get(key)
            if row is None:
                row = self._row_of[key] = len(self._keys)
                self._keys.append(key)
            rows[i] = row
        self._grow(len(self._keys))
        return rows

    def _grow(self, n: int) -> None:
        size = len(self._count)
        if n <= size:
            return
        new = max(n, size * 2, 1024)
        pad = new - size
        self._count = np.concatenate([self._count, np.zeros(pad, np.int64)])
        self._sum = np.concatenate([self._sum, np.zeros(pad, np.float64)])
        self._window = np.concatenate([self._window, np.full(pad, _NO_WINDOW, np.int64)])
        self._wcount = np.concatenate([self._wcount, np.zeros(pad, np.int64)])
        self._wsum = np.concatenate([self._wsum, np.zeros(pad, np.float64)])
        self._last = np.concatenate([self._last, np.full(pad, _NO_WINDOW, np.int64)])

    def update(self, keys: pa.Array, values: pa.Array, event_ms: pa.Array) -> pa.Table:
        """Fold a batch of events in and return the new state of every key it touched.

        Args:
            keys: entity key per event (no nulls).
            values: value per event to count and sum (no nulls).
            event_ms: event time per event, milliseconds since the epoch (no nulls).

        Returns:
            One row per distinct key of the batch, with the columns in ``COLUMNS``.
        """
        if len(keys) == 0:
            return self._table(np.empty(0, dtype=np.int64), [])
        uniq = pc.unique(keys)
        pos = pc.index_in(keys, value_set=uniq).to_numpy()
        uniq_keys = uniq.to_pylist()
        rows = self._rows(uniq_keys)
        vals = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
        ts = np.asarray(event_ms.to_numpy(zero_copy_only=False), dtype=np.int64)
        n = len(uniq_keys)

        self._count[rows] += np.bincount(pos, minlength=n)
        self._sum[rows] += np.bincount(pos, weights=vals, minlength=n)
        last = np.full(n, _NO_WINDOW, dtype=np.int64)
        np.maximum.at(last, pos, ts)
        self._last[rows] = np.maximum(self._last[rows], last)

        win = ts - np.mod(ts, self.window_ms)
        batch_latest = np.full(n, _NO_WINDOW, dtype=np.int64)
        np.maximum.at(batch_latest, pos, win)
        old = self._window[rows]
        latest = np.maximum(old, batch_latest)
        moved = latest > old
        self._wcount[rows[moved]] = 0
        self._wsum[rows[moved]] = 0.0
        self._window[rows] = latest

        in_latest = win == latest[pos]
        self._wcount[rows] += np.bincount(pos[in_latest], minlength=n)
        self._wsum[rows] += np.bincount(pos[in_latest], weights=vals[in_latest], minlength=n)
        return self._table(rows, uniq_keys, key_type=keys.type)

    def _table(self, rows: np.ndarray, keys: list[Hashable], key_type: pa.DataType | None = None) -> pa.Table:
        return pa.table(
            {
                "key": pa.array(keys, type=key_type),
                "count": self._count[rows],
                "sum": self._sum[rows],
                "window_start_ms": self._window[rows],
                "window_count": self._wcount[rows],
                "window_sum": self._wsum[rows],
                "last_event_ms": self._last[rows],
            }
        )

    def snapshot(self) -> pa.Table:
        """The whole state as an Arrow table (what a checkpoint stores)."""
        rows = np.arange(len(self._keys), dtype=np.int64)
        return self._table(rows, list(self._keys))

    @classmethod
    def restore(cls, window_ms: int, state: pa.Table) -> KeyedWindowAggregate:
        """Rebuild an aggregate from :meth:`snapshot` output."""
        agg = cls(window_ms)
        keys = state["key"].to_pylist()
        rows = agg._rows(keys)
        agg._count[rows] = state["count"].to_numpy()
        agg._sum[rows] = state["sum"].to_numpy()
        agg._window[rows] = state["window_start_ms"].to_numpy()
        agg._wcount[rows] = state["window_count"].to_numpy()
        agg._wsum[rows] = state["window_sum"].to_numpy()
        agg._last[rows] = state["last_event_ms"].to_numpy()
        return agg


@dataclass(frozen=True)
class RunningTotals:
    """A pipeline ``aggregate`` step: :class:`KeyedWindowAggregate` over named columns.

    Emits, per batch, one row per key the batch touched, with the aggregate columns renamed by
    ``output_names`` (columns not named there are left out).

    Args:
        key: entity key column.
        value: column counted and summed.
        time: event time column (ms since the epoch).
        window_ms: tumbling window size.
        output_names: output column name for each of ``KeyedWindowAggregate.COLUMNS`` wanted.

    Example:
        >>> import pyarrow as pa
        >>> totals = RunningTotals("user", "amount", "ts", 60_000, {"key": "user", "count": "n", "sum": "total"})
        >>> op = totals.create()
        >>> op.update(pa.table({"user": [1, 1], "amount": [2.0, 3.0], "ts": [0, 1]})).to_pylist()
        [{'user': 1, 'n': 2, 'total': 5.0}]
        >>> totals.create(op.snapshot()).update(pa.table({"user": [1], "amount": [1.0], "ts": [2]})).to_pylist()
        [{'user': 1, 'n': 3, 'total': 6.0}]
    """

    key: str
    value: str
    time: str
    window_ms: int
    output_names: Mapping[str, str] = field(default_factory=lambda: {c: c for c in KeyedWindowAggregate.COLUMNS})

    def __post_init__(self) -> None:
        if self.window_ms <= 0:
            raise ValueError(f"running totals over {self.value!r}: window_ms must be positive; got {self.window_ms}")
        unknown = set(self.output_names) - set(KeyedWindowAggregate.COLUMNS)
        if unknown:
            raise ValueError(f"running totals over {self.value!r}: output_names has unknown columns {sorted(unknown)}; known: {list(KeyedWindowAggregate.COLUMNS)}")

    @property
    def columns(self) -> tuple[str, ...]:
        """Input columns it reads."""
        return (self.key, self.value, self.time)

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """Schema of the rows it emits, given the input schema."""
        types = {"key": schema.field(self.key).type, "count": pa.int64(), "sum": pa.float64(), "window_start_ms": pa.int64(), "window_count": pa.int64(), "window_sum": pa.float64(), "last_event_ms": pa.int64()}
        return pa.schema([(self.output_names[c], types[c]) for c in KeyedWindowAggregate.COLUMNS if c in self.output_names])

    def create(self, state: pa.Table | None = None) -> _RunningTotalsOperator:
        """A fresh operator, or one continuing from :meth:`_RunningTotalsOperator.snapshot` output."""
        agg = KeyedWindowAggregate(self.window_ms) if state is None else KeyedWindowAggregate.restore(self.window_ms, state)
        return _RunningTotalsOperator(self, agg)


class _RunningTotalsOperator:
    def __init__(self, spec: RunningTotals, agg: KeyedWindowAggregate) -> None:
        self.spec = spec
        self.agg = agg
        self._cols = [c for c in KeyedWindowAggregate.COLUMNS if c in spec.output_names]

    def update(self, table: pa.Table) -> pa.Table:
        s = self.spec
        state = self.agg.update(table[s.key].combine_chunks(), table[s.value].combine_chunks(), table[s.time].combine_chunks())
        return state.select(self._cols).rename_columns([s.output_names[c] for c in self._cols])

    def snapshot(self) -> pa.Table:
        return self.agg.snapshot()
