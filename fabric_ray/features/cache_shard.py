"""The logic of one cache shard: a :class:`~fabric_ray.features.cache.FeatureCache` in front of an
online store, with read-through, write-through, write-behind and refresh-ahead.

``actors/cache.py`` wraps a :class:`ShardCore` in a Ray actor and calls :meth:`ShardCore.tick`
from a background thread; everything here runs (and is tested) without Ray.

The online store is any object with ``read(view, keys) -> pa.Table`` (the found keys' rows:
join key, features, ``event_ts_ms``) and ``write(view, table) -> int``, such as
:class:`fabric_ray.features.online_store.OnlineStore`. It is created lazily by ``store_factory``
in the process that uses it.

Consistency, in short (``docs/cache-shards.md`` has the whole story):

* the cache keeps the newest row per key by event time, so a slow read-through or a refresh
  cannot overwrite a newer streamed value;
* the store never gets a row the cache refused as older, and writes to it are serialised in the
  order the cache accepted them (the store's own upsert does not compare event times);
* a read-through also looks at the rows still waiting in the write-behind buffer, so an evicted
  key is never answered with an older store value while its newer row waits to be written;
* reads of the store go through their own store instance (their own connection), so a
  read-through never waits behind a write-behind flush; the buffer's rows taken before the
  read (in flight ones included) cover a flush that commits meanwhile;
* keys a read-through did not find are remembered for ``miss_ttl_s``
  (:mod:`~fabric_ray.features.miss_memory`), so a client polling for an entity that has not
  arrived yet does not turn every request into a store read; a put forgets its keys at once;
* a restarted shard starts empty and answers from the store (read-through); rows that waited in
  the dead shard's write-behind buffer are re-sent by their writer
  (:class:`actors.cache.ShardedCacheWriter` keeps them until a flush confirms them).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Hashable, Sequence

import pyarrow as pa

from fabric_ray.features.cache import FeatureCache, Lookup, WriteBehindBuffer, latest_per_key
from fabric_ray.features.cache_settings import WRITE_MODES, CacheSettings
from fabric_ray.features.catalog import Catalog
from fabric_ray.features.definitions import FeatureView
from fabric_ray.features.miss_memory import MissMemory

__all__ = ["BACKLOG_FACTOR", "ShardCore"]

BACKLOG_FACTOR = 4  # a behind put flushes itself once this many times write_behind_rows wait


class ShardCore:
    """One cache shard's state and patterns; thread-safe (an actor serves calls on many threads).

    Args:
        catalog: the feature views served (a :class:`~fabric_ray.features.catalog.Catalog`, or a
            sequence of views).
        settings: the shard's budget and patterns (default :class:`CacheSettings`).
        store_factory: ``() -> online store``; ``None``: no store, the shard is a cache only
            (no read-through, and writes stay in the cache whatever the write mode).
        clock_ms: the wall clock in ms (tests pass their own).

    Example:
        >>> import pyarrow as pa
        >>> from fabric_ray.features.definitions import Entity, Feature, FeatureView
        >>> v = FeatureView("v", Entity("user", "user_id"), (Feature("n", "int64"),))
        >>> class Store:  # the online store's two methods
        ...     rows = pa.table({"user_id": [7], "n": [70], "event_ts_ms": [1]})
        ...     def read(self, view, keys): return self.rows.filter(pa.compute.is_in(self.rows["user_id"], pa.array(keys)))
        ...     def write(self, view, table): return table.num_rows
        >>> core = ShardCore([v], CacheSettings(write_mode="through"), Store)
        >>> core.put("v", pa.table({"user_id": [1], "n": [3], "event_ts_ms": [10]}))
        1
        >>> core.get("v", [1, 7, 8], ["n"]).values  # 7 is read through from the store
        {'n': [3, 70, None]}
        >>> core.stats()["read_through_rows"], core.size("v")
        (1, 2)
    """

    def __init__(
        self,
        catalog: Catalog | Sequence[FeatureView],
        settings: CacheSettings | None = None,
        store_factory: Callable[[], Any] | None = None,
        *,
        clock_ms: Callable[[], int] | None = None,
    ) -> None:
        self.catalog = catalog if isinstance(catalog, Catalog) else Catalog.of(catalog)
        self.settings = settings or CacheSettings()
        self._store_factory = store_factory
        self._store: Any = None
        self._reader: Any = None  # a second store instance for reads: they never wait behind writes
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        s = self.settings
        self.cache = FeatureCache(
            self.catalog.views, s.cache_bytes, refresh_ahead=s.refresh_ahead, refresh_min_hits=s.refresh_min_hits
        )
        self.buffer = WriteBehindBuffer(
            {name: v.entity.join_key for name, v in self.catalog.views.items()}, s.write_behind_rows, s.write_behind_interval_s
        )
        self.misses = MissMemory(s.miss_ttl_s * 1000)
        self._lock = threading.Lock()  # the cache, the buffer and the miss memory: held briefly, never across I/O
        self._store_lock = threading.RLock()  # every write to the store, in order (the store need not be thread-safe)
        self._reader_lock = threading.Lock()  # every read of the store, through the reader
        # Durability marks: puts that buffered rows are numbered; every row of the puts up to
        # _durable_seq is in the store (wait_durable waits for it, without forcing a write).
        self._accepted_seq = 0
        self._durable_seq = 0
        self._durable_changed = threading.Condition(self._lock)
        self.counters = {"store_reads": 0, "store_writes": 0, "written_through": 0, "read_through_calls": 0, "known_absent": 0}

    @property
    def has_store(self) -> bool:
        """Whether an online store is configured."""
        return self._store_factory is not None

    def _new_store(self) -> Any:
        if self._store_factory is None:
            raise RuntimeError("this cache shard has no online store (store_factory=None)")
        return self._store_factory()

    def _get_store(self) -> Any:
        if self._store is None:
            self._store = self._new_store()
        return self._store

    def _get_reader(self) -> Any:
        if self._reader is None:
            self._reader = self._new_store()
        return self._reader

    def warm(self) -> None:
        """Open the online store and prepare each view's table now, so the first read-through
        does not pay for it (importing Feast alone takes seconds). Nothing without a store."""
        if not self.has_store:
            return
        for lock, get in ((self._store_lock, self._get_store), (self._reader_lock, self._get_reader)):
            with lock:
                store = get()
                for view_name in self.catalog.views:
                    store.read(view_name, [])

    def write_mode(self, write: str | None = None) -> str:
        """The effective write mode of a put: ``write`` if given, else the settings'; ``"none"`` without a store.

        Raises:
            ValueError: an unknown mode, or ``"through"``/``"behind"`` asked of a shard with no store.
        """
        if write is None:
            return self.settings.write_mode if self.has_store else "none"
        if write not in WRITE_MODES:
            raise ValueError(f"write mode must be one of {list(WRITE_MODES)}; got {write!r}")
        if write != "none" and not self.has_store:
            raise ValueError(f"write={write!r} needs an online store, and this cache shard has none (store_factory=None)")
        return write

    # ------------------------------------------------------------------ writes

    def put(self, view_name: str, table: pa.Table, write: str | None = None) -> int:
        """Cache ``table``'s rows (last write wins by event time) and send the ones stored to the
        online store according to ``write`` (default: the settings' write mode).

        ``"through"`` returns once the store has them; ``"behind"`` buffers them (written within
        ``write_behind_interval_s``, or at once past ``write_behind_rows``; a put that finds
        :data:`BACKLOG_FACTOR` times that many waiting writes them itself); ``"none"`` keeps them
        in the cache only.

        Returns:
            Rows stored (newer than what was held).

        Raises:
            KeyError: unknown view. ValueError: bad rows or write mode. Whatever the store
            raises on a write-through (the rows are cached; put them again to retry).
        """
        mode = self.write_mode(write)
        if mode == "through":
            with self._store_lock:  # cache order = store order
                with self._lock:
                    mask = self.cache.accept(view_name, table, now_ms=self._clock_ms())
                    self._forget_misses(view_name, table)
                    seq = self._accepted_seq
                    if self.buffer.pending:
                        batch = self.buffer.take()  # older buffered rows go first
                    else:
                        batch = {}
                self._write_batch(batch, seq)
                stored = int(mask.sum())
                if stored:
                    rows = table if stored == table.num_rows else table.filter(pa.array(mask))
                    rows = latest_per_key(rows, self.catalog.view(view_name).entity.join_key)
                    self.counters["store_writes"] += 1
                    self._get_store().write(view_name, _row_table(self.catalog.view(view_name), rows))
                    self.counters["written_through"] += rows.num_rows
                return stored
        with self._lock:
            mask = self.cache.accept(view_name, table, now_ms=self._clock_ms())
            self._forget_misses(view_name, table)
            stored = int(mask.sum())
            if mode == "behind" and stored:
                rows = table if stored == table.num_rows else table.filter(pa.array(mask))
                self.buffer.add(view_name, _row_table(self.catalog.view(view_name), rows))
                self._accepted_seq += 1
            backlog = self.buffer.pending >= BACKLOG_FACTOR * self.settings.write_behind_rows
        if backlog:  # the store falls behind: the writer waits (back-pressure) instead of the buffer growing
            self.flush()
        return stored

    def _forget_misses(self, view_name: str, table: pa.Table) -> None:
        """Under the lock: the keys of rows that arrived are no longer known absent."""
        if self.misses.size(view_name):
            self.misses.forget(view_name, table.column(self.catalog.view(view_name).entity.join_key).to_pylist())

    def _write_batch(self, batch: dict[str, pa.Table], seq: int) -> int:
        """Write drained rows (holding the store lock); failed views go back to the buffer.

        ``seq``: the last put whose rows were buffered when ``batch`` was taken; once every view
        is written, all of them are durable.
        """
        written = 0
        error: BaseException | None = None
        for view_name, rows in batch.items():
            ok = False
            try:
                if error is None:
                    self.counters["store_writes"] += 1
                    self._get_store().write(view_name, rows)
                    ok = True
                    written += rows.num_rows
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the rows are put back
                error = exc
            finally:
                with self._lock:
                    self.buffer.done(view_name, ok=ok)
        if error is not None:
            raise error
        with self._lock:
            if seq > self._durable_seq:
                self._durable_seq = seq
                self._durable_changed.notify_all()
        return written

    def flush(self) -> int:
        """Write every buffered row to the online store now; return how many rows were written.

        Raises:
            Whatever the store raises (the rows stay buffered for the next flush).
        """
        with self._store_lock:
            with self._lock:
                seq = self._accepted_seq
                batch = self.buffer.take() if self.buffer.pending else {}
            return self._write_batch(batch, seq)

    def wait_durable(self, timeout_s: float) -> bool:
        """Wait until every row buffered before this call is in the online store; ``False`` on timeout.

        Nothing is forced: the rows go with the next write-behind flush (``tick``, every
        ``write_behind_interval_s``), so many writers waiting for durability (the stream's
        checkpoints) add no writes of their own. Something must call :meth:`tick` or
        :meth:`flush` meanwhile (the actor's background thread does).
        """
        with self._durable_changed:
            target = self._accepted_seq
            return self._durable_changed.wait_for(lambda: self._durable_seq >= target, timeout_s)

    # ------------------------------------------------------------------ reads

    def get(self, view_name: str, keys: Sequence[Hashable], features: Sequence[str]) -> Lookup:
        """Look up ``features`` of ``keys``; with read-through, misses are read from the store.

        Keys the store has not either are ``NOT_FOUND``. A read-through's rows are cached (last
        write wins, so a newer streamed value that arrived meanwhile is kept).

        Raises:
            KeyError: unknown view or features. Whatever the store raises on a read-through.
        """
        now_ms = self._clock_ms()
        with self._lock:
            lookup = self.cache.get(view_name, keys, features, now_ms=now_ms)
        if not (self.settings.read_through and self.has_store):
            return lookup
        positions = [i for i, t in enumerate(lookup.event_ms) if t is None]
        if positions and self.misses:
            with self._lock:
                known = self.misses.absent(view_name, [keys[i] for i in positions], now_ms)
            self.counters["known_absent"] += sum(known)
            positions = [i for i, gone in zip(positions, known) if not gone]
        if not positions:
            return lookup
        missing = list(dict.fromkeys(keys[i] for i in positions))
        self._load(view_name, missing, origin="read_through")
        with self._lock:
            again = self.cache.get(view_name, [keys[i] for i in positions], features, now_ms=now_ms, record=False)
            # still missing while the lock is held: a put of one of them comes later and forgets it
            self.misses.remember(view_name, (keys[i] for i, t in zip(positions, again.event_ms) if t is None), self._clock_ms())
        if all(t is None for t in again.event_ms):
            return lookup
        for j, i in enumerate(positions):
            lookup.event_ms[i] = again.event_ms[j]
            for f in features:
                lookup.values[f][i] = again.values[f][j]
                lookup.statuses[f][i] = again.statuses[f][j]
        return lookup

    def _load(self, view_name: str, keys: list, *, origin: str) -> int:
        """Read ``keys`` from the store into the cache, with their rows still waiting to be written."""
        with self._lock:
            waiting = self.buffer.rows_for(view_name, keys)  # taken before the read: see the module docstring
        with self._reader_lock:
            self.counters["store_reads"] += 1
            if origin == "read_through":
                self.counters["read_through_calls"] += 1
            found = self._get_reader().read(view_name, keys)
        now_ms = self._clock_ms()
        with self._lock:
            stored = 0
            if found is not None and found.num_rows:
                stored += int(self.cache.accept(view_name, found, now_ms=now_ms, origin=origin).sum())
            if waiting is not None:
                stored += int(self.cache.accept(view_name, waiting, now_ms=now_ms, origin="refresh").sum())
        return stored

    def refresh(self) -> int:
        """Reload the hot keys near expiry from the store; return how many keys were refreshed."""
        if not self.has_store:
            return 0
        with self._lock:
            due = self.cache.take_refresh_due()
        refreshed = 0
        for view_name, keys in due.items():
            self._load(view_name, keys, origin="refresh")
            with self._lock:
                refreshed += self.cache.mark_refreshed(view_name, keys, now_ms=self._clock_ms())
        return refreshed

    def tick(self) -> dict[str, int]:
        """Background work: flush the write-behind buffer when due, then refresh-ahead.

        Returns:
            ``{"flushed": rows written, "refreshed": keys reloaded}``.
        """
        with self._lock:
            due = self.buffer.due()
        flushed = self.flush() if due else 0
        return {"flushed": flushed, "refreshed": self.refresh()}

    # ------------------------------------------------------------------ sizes

    def size(self, view_name: str) -> int:
        """Keys held for a view."""
        with self._lock:
            return self.cache.size(view_name)

    def stats(self) -> dict[str, Any]:
        """The cache's counters (see :meth:`FeatureCache.stats`) plus write-behind and store counters."""
        with self._lock:
            b = self.buffer
            return {
                **self.cache.stats(),
                **self.counters,
                "write_behind_pending": b.pending,
                "write_behind_flushed": b.flushed,
                "write_behind_failures": b.failures,
                "known_absent_keys": sum(self.misses.size(v) for v in self.catalog.views),
                "write_mode": self.write_mode(),
                "read_through": bool(self.settings.read_through and self.has_store),
                "has_store": self.has_store,
            }

    def close(self) -> None:
        """Close the store and the reader if they were opened (buffered rows are not written: flush first)."""
        for lock, attr in ((self._store_lock, "_store"), (self._reader_lock, "_reader")):
            with lock:
                store = getattr(self, attr)
                if store is not None and hasattr(store, "close"):
                    store.close()
                setattr(self, attr, None)


def _row_table(view: FeatureView, table: pa.Table) -> pa.Table:
    """``table`` with exactly the view's row columns, in order (extra columns are dropped)."""
    columns = [view.entity.join_key, *view.feature_names, "event_ts_ms"]
    return table if table.column_names == columns else table.select(columns)
