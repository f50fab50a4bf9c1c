"""The hot feature cache of one shard: the latest values per entity key, for every feature view.

:class:`FeatureCache` is one LRU across all the views of a shard, within a byte budget, with
last-write-wins by event time, per-view TTL (Feast's ``OUTSIDE_MAX_AGE``) and the bookkeeping
the shard's read and write patterns need: which keys are missing (read-through), which hot keys
are near expiry (refresh-ahead), and counters. :class:`WriteBehindBuffer` holds rows on their way
to the online store. Neither does I/O or locking: ``fabric_ray.features.cache_shard`` composes
them with an online store, and ``actors/cache.py`` wraps that in an actor.

Byte estimate (cheap, consistent, close to what CPython really spends; see
``docs/cache-shards.md``): an entry costs :data:`ENTRY_BYTES` for its slot, key tuple and
bookkeeping, plus, for the key and each value, :data:`FIXED_VALUE_BYTES` for an
``int64``/``float64``/``bool`` (or a null) and :data:`STRING_BASE_BYTES` plus the UTF-8 length for
a string. It is computed per row with Arrow compute (string lengths), never per value in Python.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Hashable, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric_ray.features.definitions import FeatureView

__all__ = [
    "ENTRY_BYTES",
    "FIXED_VALUE_BYTES",
    "NOT_FOUND",
    "NULL_VALUE",
    "OUTSIDE_MAX_AGE",
    "PRESENT",
    "STRING_BASE_BYTES",
    "FeatureCache",
    "Lookup",
    "WriteBehindBuffer",
    "latest_per_key",
]

PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE = "PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE"

# Calibrated with tracemalloc on CPython 3.11 (100k entries; 1-6 int, float or string features;
# int and string keys): the estimate is within about 6% of the measured bytes.
ENTRY_BYTES = 360
FIXED_VALUE_BYTES = 36
STRING_BASE_BYTES = 52

# Entry layout: a list, so hits and load times update in place.
_VALUES, _TS, _LOADED, _HITS, _NBYTES = range(5)
_COUNTERS = ("hits", "misses", "stale", "evictions", "puts", "ignored_older", "read_through_rows", "refreshes")


@dataclass(frozen=True)
class Lookup:
    """Values of some features for some keys, column-major.

    Attributes:
        values: ``{feature: [value per key]}``.
        statuses: ``{feature: [status per key]}`` (Feast's ``PRESENT``, ``NOT_FOUND``, ...).
        event_ms: event time of each key's row (``None`` where not found).
    """

    values: dict[str, list]
    statuses: dict[str, list[str]]
    event_ms: list[int | None]


def _now_ms() -> int:
    return int(time.time() * 1000)


class FeatureCache:
    """Latest feature values per key across feature views: one LRU within a byte budget.

    Rows arrive as Arrow tables holding the view's join key, its features and an
    ``event_ts_ms`` column; a row older than the one held is ignored, so replays, out-of-order
    writers and slow read-throughs cannot move a value backwards (equal event times: the later
    write wins). A value older than its view's ``ttl_s`` is still returned, with status
    ``OUTSIDE_MAX_AGE``. When the estimated bytes pass ``max_bytes``, the least recently used
    entries (of any view) are evicted.

    Args:
        views: the feature views this cache may hold (a sequence, or a ``{name: view}`` mapping
            such as ``Catalog.views``).
        max_bytes: byte budget (estimated; see the module docstring).
        refresh_ahead: fraction of a view's TTL after which a hot key is due for a reload
            (``0``: never); see :meth:`take_refresh_due`.
        refresh_min_hits: hits since its last load that make a key hot.

    Example:
        >>> import pyarrow as pa
        >>> from fabric_ray.features.definitions import Entity, Feature, FeatureView
        >>> v = FeatureView("v", Entity("user", "user_id"), (Feature("n", "int64"),), ttl_s=60)
        >>> c = FeatureCache([v])
        >>> c.put("v", pa.table({"user_id": [1], "n": [3], "event_ts_ms": [10]}))
        1
        >>> c.get("v", [1, 2], ["n"], now_ms=20).statuses
        {'n': ['PRESENT', 'NOT_FOUND']}
        >>> c.get("v", [1], ["n"], now_ms=70_000).statuses  # past the 60 s TTL: still returned
        {'n': ['OUTSIDE_MAX_AGE']}
        >>> c.misses_of("v", [1, 2, 2])
        [2]
    """

    def __init__(
        self,
        views: Sequence[FeatureView] | Mapping[str, FeatureView],
        max_bytes: int = 256 * 2**20,
        *,
        refresh_ahead: float = 0.0,
        refresh_min_hits: int = 3,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive; got {max_bytes}")
        if not 0 <= refresh_ahead < 1:
            raise ValueError(f"refresh_ahead must be in [0, 1); got {refresh_ahead}")
        if refresh_min_hits < 1:
            raise ValueError(f"refresh_min_hits must be at least 1; got {refresh_min_hits}")
        listed = list(views.values()) if isinstance(views, Mapping) else list(views)
        self.views: dict[str, FeatureView] = {v.name: v for v in listed}
        self.max_bytes = int(max_bytes)
        self.refresh_ahead = float(refresh_ahead)
        self.refresh_min_hits = int(refresh_min_hits)
        self._entries: OrderedDict[tuple[str, Hashable], list] = OrderedDict()
        self._keys = {name: 0 for name in self.views}
        self._due: dict[str, set] = {name: set() for name in self.views}
        self.bytes = 0
        self.counters = dict.fromkeys(_COUNTERS, 0)
        # Per view: (columns to read, fixed bytes per row, string columns (key included), ttl ms,
        # refresh age ms, least ms between refreshes of a key).
        self._plans = {name: self._plan(v) for name, v in self.views.items()}

    def _plan(self, view: FeatureView) -> tuple:
        strings = [f.name for f in view.features if f.dtype == "string"]
        fixed = ENTRY_BYTES + FIXED_VALUE_BYTES * (len(view.features) - len(strings))
        if view.entity.dtype == "string":
            strings.append(view.entity.join_key)
        else:
            fixed += FIXED_VALUE_BYTES
        fixed += STRING_BASE_BYTES * len(strings)
        ttl_ms = None if view.ttl_s is None else view.ttl_s * 1000.0
        refresh_age_ms = refresh_gap_ms = None
        if ttl_ms is not None and self.refresh_ahead > 0:
            refresh_age_ms = self.refresh_ahead * ttl_ms
            refresh_gap_ms = max(1.0, (1 - self.refresh_ahead) * ttl_ms / 2)
        return view.feature_names, fixed, strings, ttl_ms, refresh_age_ms, refresh_gap_ms

    def _view(self, name: str) -> FeatureView:
        try:
            return self.views[name]
        except KeyError:
            raise KeyError(f"unknown feature view {name!r}; known: {sorted(self.views)}") from None

    # ------------------------------------------------------------------ writes

    def row_bytes(self, view_name: str, table: pa.Table) -> np.ndarray:
        """Estimated bytes of each row of ``table`` once cached (see the module docstring).

        Example:
            >>> from fabric_ray.features.definitions import Entity, Feature, FeatureView
            >>> v = FeatureView("v", Entity("m", "m_id", "string"), (Feature("s", "string"), Feature("x", "float64")))
            >>> FeatureCache([v]).row_bytes("v", pa.table({"m_id": ["ab"], "s": ["xyz"], "x": [1.0]})).tolist()
            [505]
        """
        _, fixed, strings, *_ = self._plans[self._view(view_name).name]
        sizes = np.full(table.num_rows, fixed, dtype=np.int64)
        for col in strings:
            lengths = pc.fill_null(pc.binary_length(table[col]), 0)
            sizes += np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=np.int64)
        return sizes

    def accept(self, view_name: str, table: pa.Table, *, now_ms: int | None = None, origin: str = "write") -> np.ndarray:
        """Store the rows of ``table`` that are not older than what is held; return their mask.

        Within one table, rows are applied in order, so the newest row of a key wins whatever
        its position (a later row with an equal event time wins too).

        Args:
            view_name: the view.
            table: rows with the join key, every feature of the view and ``event_ts_ms``
                (other columns are ignored).
            now_ms: load time (for refresh-ahead); default the wall clock.
            origin: ``"write"`` (counted as ``puts``), ``"read_through"`` (counted as
                ``read_through_rows``) or ``"refresh"`` (counted in neither).

        Returns:
            A boolean NumPy array: which rows were stored.

        Raises:
            KeyError: unknown view.
            ValueError: a column is missing, or some ``event_ts_ms`` is null (naming the view).
        """
        view = self._view(view_name)
        names, *_ = self._plans[view_name]
        join_key = view.entity.join_key
        missing = [c for c in (join_key, *names, "event_ts_ms") if c not in table.column_names]
        if missing:
            raise ValueError(f"rows for view {view_name!r} lack columns {missing}")
        n = table.num_rows
        if n == 0:
            return np.zeros(0, dtype=bool)
        if table["event_ts_ms"].null_count:
            raise ValueError(
                f"rows for view {view_name!r}: {table['event_ts_ms'].null_count} row(s) have a null event_ts_ms; "
                f"every row needs its event time"
            )
        now_ms = _now_ms() if now_ms is None else now_ms
        keys = table[join_key].to_pylist()
        stamps = table["event_ts_ms"].to_pylist()
        values = zip(*(table[f].to_pylist() for f in names))
        sizes = self.row_bytes(view_name, table).tolist()
        entries, counts = self._entries, self._keys
        move = entries.move_to_end
        mask = np.ones(n, dtype=bool)
        added = 0
        grown = 0
        for i, (key, ts, vals, size) in enumerate(zip(keys, stamps, values, sizes)):
            slot = (view_name, key)
            held = entries.get(slot)
            if held is None:
                entries[slot] = [vals, ts, now_ms, 0, size]
                added += 1
                grown += size
            elif ts >= held[_TS]:
                grown += size - held[_NBYTES]
                held[_VALUES], held[_TS], held[_LOADED], held[_HITS], held[_NBYTES] = vals, ts, now_ms, 0, size
                move(slot)
            else:
                mask[i] = False
        counts[view_name] += added
        self.bytes += grown
        stored = int(mask.sum())
        if origin == "write":
            self.counters["puts"] += stored
            self.counters["ignored_older"] += n - stored
        elif origin == "read_through":
            self.counters["read_through_rows"] += stored
        self._evict()
        return mask

    def put(self, view_name: str, table: pa.Table, *, now_ms: int | None = None) -> int:
        """Store the rows of ``table`` (see :meth:`accept`); return how many were stored."""
        return int(self.accept(view_name, table, now_ms=now_ms).sum())

    def _evict(self) -> None:
        entries, counts = self._entries, self._keys
        evicted = 0
        while self.bytes > self.max_bytes and entries:
            (view_name, _), held = entries.popitem(last=False)
            self.bytes -= held[_NBYTES]
            counts[view_name] -= 1
            evicted += 1
        self.counters["evictions"] += evicted

    # ------------------------------------------------------------------ reads

    def get(
        self,
        view_name: str,
        keys: Sequence[Hashable],
        features: Sequence[str],
        *,
        now_ms: int | None = None,
        record: bool = True,
    ) -> Lookup:
        """Look up ``features`` of ``keys`` in view ``view_name``.

        Args:
            now_ms: the time ages are measured at (default the wall clock).
            record: count hits, misses and staleness, mark the keys recently used and hot
                (``False`` for the second look of a read-through).

        Raises:
            KeyError: unknown view or features (naming them).
        """
        plan = self._plans.get(view_name)
        if plan is None:
            self._view(view_name)  # raises, naming the known views
        names, _, _, ttl_ms, refresh_age_ms, refresh_gap_ms = plan
        if features and not all(f in names for f in features):
            unknown = [f for f in features if f not in names]
            raise KeyError(f"feature view {view_name!r} has no features {unknown}; it has {list(names)}")
        now_ms = _now_ms() if now_ms is None else now_ms
        fetch = self._entries.get
        rows = [fetch((view_name, k)) for k in keys]
        event_ms = [None if e is None else e[_TS] for e in rows]
        if ttl_ms is None:
            base = [NOT_FOUND if e is None else PRESENT for e in rows]
            stale = 0
        else:
            oldest = now_ms - ttl_ms
            base = [NOT_FOUND if t is None else (PRESENT if t >= oldest else OUTSIDE_MAX_AGE) for t in event_ms]
            stale = base.count(OUTSIDE_MAX_AGE)
        if record:
            self._record(view_name, keys, rows, now_ms, refresh_age_ms, refresh_gap_ms, stale)
        values: dict[str, list] = {}
        statuses: dict[str, list[str]] = {}
        for j, f in enumerate(features):
            i = names.index(f)
            col = [None if e is None else e[_VALUES][i] for e in rows]
            values[f] = col
            if None in col:
                statuses[f] = [NULL_VALUE if v is None and b is not NOT_FOUND else b for v, b in zip(col, base)]
            else:  # each feature gets its own list: a caller (merge_lookups) may edit one
                statuses[f] = base if j == 0 else base[:]
        return Lookup(values, statuses, event_ms)

    def _record(self, view_name: str, keys: Sequence[Hashable], rows: list, now_ms: int,
                refresh_age_ms: float | None, refresh_gap_ms: float | None, stale: int) -> None:
        move = self._entries.move_to_end
        found = 0
        for key, e in zip(keys, rows):
            if e is None:
                continue
            found += 1
            move((view_name, key))
            e[_HITS] += 1
            if (
                refresh_age_ms is not None
                and e[_HITS] >= self.refresh_min_hits
                and now_ms - e[_TS] > refresh_age_ms
                and now_ms - e[_LOADED] >= refresh_gap_ms
            ):
                self._due[view_name].add(key)
        c = self.counters
        c["hits"] += found
        c["misses"] += len(keys) - found
        c["stale"] += stale

    def misses_of(self, view_name: str, keys: Iterable[Hashable]) -> list:
        """The distinct ``keys`` not held for the view, in first-seen order (for read-through)."""
        self._view(view_name)
        entries = self._entries
        return [k for k in dict.fromkeys(keys) if (view_name, k) not in entries]

    # ------------------------------------------------------------------ refresh-ahead

    def take_refresh_due(self) -> dict[str, list]:
        """Hot keys near expiry, per view, and forget them (the caller reloads them).

        A key is due when, at one of its hits, it had at least ``refresh_min_hits`` hits since
        it was last loaded, its age (now minus its event time) passed ``refresh_ahead`` of the
        view's TTL, and it was last loaded at least ``(1 - refresh_ahead) * TTL / 2`` ago (so a
        key the store has nothing newer for is not reloaded on every hit).
        """
        due: dict[str, list] = {}
        entries = self._entries
        for view_name, keys in self._due.items():
            if keys:
                held = [k for k in keys if (view_name, k) in entries]
                keys.clear()
                if held:
                    due[view_name] = held
        return due

    def mark_refreshed(self, view_name: str, keys: Iterable[Hashable], *, now_ms: int | None = None) -> int:
        """Note that ``keys`` were reloaded (whether or not the store had newer rows): their hit
        counts restart and their load time is now. Returns how many are held."""
        now_ms = _now_ms() if now_ms is None else now_ms
        touched = 0
        for key in keys:
            e = self._entries.get((view_name, key))
            if e is not None:
                e[_HITS], e[_LOADED] = 0, now_ms
                touched += 1
        self.counters["refreshes"] += touched
        return touched

    # ------------------------------------------------------------------ sizes

    def size(self, view_name: str) -> int:
        """Number of keys held for a view."""
        return self._keys[self._view(view_name).name]

    def __len__(self) -> int:
        return len(self._entries)

    def stats(self) -> dict[str, Any]:
        """Counters and sizes: hits, misses, stale (``OUTSIDE_MAX_AGE`` answers), evictions,
        puts, ignored_older, read_through_rows, refreshes, bytes, max_bytes, keys and
        keys_by_view."""
        return {**self.counters, "bytes": self.bytes, "max_bytes": self.max_bytes, "keys": len(self._entries),
                "keys_by_view": dict(self._keys)}


def latest_per_key(table: pa.Table, key_column: str) -> pa.Table:
    """The newest row of each key by ``event_ts_ms`` (a later row wins a tie), order not kept.

    Example:
        >>> t = pa.table({"k": [1, 2, 1, 1], "x": [10, 20, 30, 40], "event_ts_ms": [5, 5, 7, 6]})
        >>> sorted(latest_per_key(t, "k").to_pylist(), key=lambda r: r["k"])
        [{'k': 1, 'x': 30, 'event_ts_ms': 7}, {'k': 2, 'x': 20, 'event_ts_ms': 5}]
    """
    n = table.num_rows
    if n <= 1 or pc.count_distinct(table[key_column]).as_py() == n:
        return table
    ordered = table.take(pc.sort_indices(table["event_ts_ms"]))  # a stable sort: ties keep row order
    ranked = pa.table({"k": ordered[key_column], "r": pa.array(np.arange(n, dtype=np.int64))})
    last = ranked.group_by("k", use_threads=False).aggregate([("r", "max")])["r_max"]
    return ordered.take(last)


class WriteBehindBuffer:
    """Rows waiting for the online store, per view; drained as one coalesced table per view.

    Rows are kept as the Arrow tables they came in (no per-row work on the write path) and
    coalesced when drained: only the newest row of each key is written. A drain is due when
    ``max_rows`` distinct keys wait (rows are coalesced whenever ``max_rows`` have arrived) or the
    oldest has waited ``max_age_s``. Drained rows stay visible to
    :meth:`rows_for` until :meth:`done` (so a read-through during a write still sees them), and go
    back to the front of the buffer if the write failed.

    Args:
        key_columns: ``{view: join key}``.
        max_rows: rows that make a drain due.
        max_age_s: age of the oldest row that makes a drain due.

    Example:
        >>> b = WriteBehindBuffer({"v": "k"}, max_rows=3, max_age_s=1.0)
        >>> b.add("v", pa.table({"k": [1, 1], "x": [1, 2], "event_ts_ms": [1, 2]}), now_s=0.0)
        >>> b.pending, b.due(now_s=0.5), b.due(now_s=1.0)
        (2, False, True)
        >>> batch = b.take()
        >>> batch["v"].to_pylist()
        [{'k': 1, 'x': 2, 'event_ts_ms': 2}]
        >>> b.done("v", ok=True)
        >>> b.flushed, b.pending
        (1, 0)
    """

    def __init__(self, key_columns: Mapping[str, str], max_rows: int, max_age_s: float) -> None:
        self.key_columns = dict(key_columns)
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._pending: dict[str, list[pa.Table]] = {}
        self._inflight: dict[str, pa.Table] = {}
        self._merged: dict[str, int] = {}  # rows of a view right after its last coalescing
        self.pending = 0
        self.flushed = 0
        self.failures = 0
        self._oldest_s: float | None = None

    def add(self, view_name: str, table: pa.Table, *, now_s: float | None = None) -> None:
        """Buffer ``table``'s rows for ``view_name``.

        When ``max_rows`` rows wait, the view's rows are coalesced first (the newest per key), so
        a drain is due by rows only once ``max_rows`` distinct keys wait: a stream updating the
        same keys over and over is written once per ``max_age_s``, not once per ``max_rows``
        updates.
        """
        if table.num_rows == 0:
            return
        tables = self._pending.setdefault(view_name, [])
        tables.append(table)
        self.pending += table.num_rows
        rows = sum(t.num_rows for t in tables)
        # coalesce past max_rows, and again only once the rows doubled (not on every add)
        if rows >= self.max_rows and len(tables) > 1 and rows >= 2 * self._merged.get(view_name, 0):
            merged = latest_per_key(pa.concat_tables(tables, promote_options="permissive"), self.key_columns[view_name])
            self.pending -= rows - merged.num_rows
            self._merged[view_name] = merged.num_rows
            tables[:] = [merged]
        if self._oldest_s is None:
            self._oldest_s = time.monotonic() if now_s is None else now_s

    def due(self, *, now_s: float | None = None) -> bool:
        """Whether a drain is due (by rows or by age)."""
        if self.pending >= self.max_rows:
            return True
        if self._oldest_s is None:
            return False
        return (time.monotonic() if now_s is None else now_s) - self._oldest_s >= self.max_age_s

    def take(self) -> dict[str, pa.Table]:
        """Everything pending, the newest row per key per view; it stays in flight until :meth:`done`."""
        batch: dict[str, pa.Table] = {}
        for view_name, tables in self._pending.items():
            table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
            batch[view_name] = latest_per_key(table, self.key_columns[view_name])
        self._pending.clear()
        self._merged.clear()
        self.pending = 0
        self._oldest_s = None
        self._inflight.update(batch)
        return batch

    def done(self, view_name: str, *, ok: bool, now_s: float | None = None) -> None:
        """End a view's write: count it, or put its rows back in front of newer ones."""
        table = self._inflight.pop(view_name, None)
        if table is None:
            return
        if ok:
            self.flushed += table.num_rows
            return
        self.failures += 1
        self._pending.setdefault(view_name, []).insert(0, table)
        self.pending += table.num_rows
        if self._oldest_s is None:
            self._oldest_s = time.monotonic() if now_s is None else now_s

    def rows_for(self, view_name: str, keys: Sequence[Hashable]) -> pa.Table | None:
        """Pending and in-flight rows of ``keys`` (``None`` when there are none)."""
        tables = [*self._pending.get(view_name, ()), *([self._inflight[view_name]] if view_name in self._inflight else ())]
        if not tables or not keys:
            return None
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
        column = table[self.key_columns[view_name]]
        try:
            wanted = pa.array(list(keys), type=column.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            return None  # keys of another type match no row
        found = table.filter(pc.is_in(column, value_set=wanted))
        return found if found.num_rows else None
