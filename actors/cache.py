"""CacheShard: one shard of the hot feature state, a Ray actor around
:class:`~fabric_ray.features.cache_shard.ShardCore` (all the logic lives there).

The actor is *threaded* (``max_concurrency``): reads that miss go to the online store
(read-through) and write-throughs wait for it, and neither should hold up the many reads that
hit. The core's cache lock is held briefly and never across I/O; store calls are serialised
under a second lock. A daemon thread opens the store (:meth:`ShardCore.warm`), then calls
:meth:`ShardCore.tick` to flush the write-behind buffer (every
``write_behind_interval_s``, or at once when ``write_behind_rows`` wait) and to reload hot keys
near expiry (refresh-ahead). (An asyncio actor would run every call on one event loop, where a
blocking SQLite read would stall every other read.)

Ray restarts a dead shard (``max_restarts=-1``); it comes back empty with a new
``incarnation`` and warms through read-through. Idempotent calls are retried on the new
incarnation. :class:`ShardedCacheWriter` keeps the rows it sent until a ``flush()`` confirms
them durable, and re-sends them (write-through) to a shard whose incarnation changed, so rows
that waited in a dead shard's write-behind buffer are not lost.
"""

from __future__ import annotations

import threading
import traceback
import uuid
from typing import Any, Callable, Hashable, Sequence

import pyarrow as pa
import ray

from fabric_ray.features.cache import Lookup
from fabric_ray.features.cache_settings import CacheSettings
from fabric_ray.features.cache_shard import ShardCore
from fabric_ray.features.catalog import Catalog
from fabric_ray.features.definitions import FeatureView
from fabric_ray.features.online import merge_lookups, plan_reads
from fabric_ray.features.routing import split_by_shard

__all__ = ["CacheShard", "ShardedCacheWriter", "cache_shard_name", "read_online", "submit_reads"]

RETRIES = 3  # idempotent calls survive a shard restart


def cache_shard_name(index: int) -> str:
    """Actor name of cache shard ``index``.

    Example:
        >>> cache_shard_name(2)
        'cache:2'
    """
    return f"cache:{index}"


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=8)
class CacheShard:
    """Latest feature values for the keys that hash to this shard, in front of the online store.

    Args:
        catalog: the feature views served (a :class:`~fabric_ray.features.catalog.Catalog`; a
            sequence of views also works).
        settings: budget and patterns (default :class:`CacheSettings`).
        store_factory: picklable ``() -> OnlineStore`` (e.g.
            ``functools.partial(OnlineStore, cfg, catalog)``), called lazily in the actor;
            ``None``: cache only.
    """

    def __init__(
        self,
        catalog: Catalog | Sequence[FeatureView],
        settings: CacheSettings | None = None,
        store_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._core = ShardCore(catalog, settings, store_factory)
        self._incarnation = uuid.uuid4().hex
        self._restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._warmed = threading.Event()
        self._wake = threading.Event()
        self._tick_s = min(0.25, max(0.01, self._core.settings.write_behind_interval_s / 4))
        self._thread = threading.Thread(target=self._background, name="cache-shard-tick", daemon=True)
        self._thread.start()

    def _background(self) -> None:
        try:
            self._core.warm()
        except Exception:  # noqa: BLE001 - the first read or write will raise it to its caller
            self._last_error = traceback.format_exc(limit=3)
        finally:
            self._warmed.set()
        wait_s = self._tick_s
        while not self._stop.is_set():
            self._wake.wait(wait_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._core.tick()
                wait_s = self._tick_s
            except Exception:  # noqa: BLE001 - rows stay buffered; reported in stats()
                self._last_error = traceback.format_exc(limit=3)
                wait_s = min(max(wait_s * 2, 0.1), 5.0)

    @ray.method(max_task_retries=RETRIES)
    def ready(self, timeout_s: float = 120) -> dict[str, Any]:
        """Wait until the shard has opened its online store (importing Feast alone takes seconds,
        a CPU burst that would otherwise land on the first reads and the stream); return
        ``{"warm": bool, "last_error": str | None}``."""
        warm = self._warmed.wait(timeout_s)
        return {"warm": warm, "last_error": self._last_error}

    @ray.method(max_task_retries=RETRIES)
    def put(self, view_name: str, table: pa.Table, write: str | None = None) -> int:
        """Cache rows (last write wins by event time) and send them on per ``write``
        (``"through"``, ``"behind"``, ``"none"``; default the settings'); return rows stored."""
        stored = self._core.put(view_name, table, write)
        if self._core.buffer.pending >= self._core.settings.write_behind_rows:
            self._wake.set()
        return stored

    @ray.method(max_task_retries=RETRIES)
    def get(self, view_name: str, keys: Sequence[Hashable], features: Sequence[str]) -> Lookup:
        """Look up features of keys (misses read through to the online store)."""
        return self._core.get(view_name, keys, features)

    @ray.method(max_task_retries=RETRIES)
    def flush(self) -> int:
        """Write the write-behind buffer to the online store now; return rows written."""
        return self._core.flush()

    @ray.method(max_task_retries=RETRIES)
    def wait_durable(self, timeout_s: float = 30) -> bool:
        """Wait until the rows buffered before this call are in the online store, written by the
        background flush (nothing forced); ``False`` on timeout."""
        return self._core.wait_durable(timeout_s)

    @ray.method(max_task_retries=RETRIES)
    def size(self, view_name: str) -> int:
        """Keys held for a view."""
        return self._core.size(view_name)

    @ray.method(max_task_retries=RETRIES)
    def stats(self) -> dict[str, Any]:
        """Counters (hits, misses, evictions, stale, ...), sizes, incarnation, ``state`` (``"warming"``
        while the online store is being opened, then ``"ready"``) and last background error."""
        return {**self._core.stats(), "incarnation": self._incarnation, "restarted": self._restarted,
                "state": "ready" if self._warmed.is_set() else "warming", "last_error": self._last_error}

    @ray.method(max_task_retries=RETRIES)
    def info(self) -> dict[str, Any]:
        """``{"incarnation", "write_mode", "has_store"}``: what a writer needs to know."""
        return {"incarnation": self._incarnation, "write_mode": self._core.write_mode(), "has_store": self._core.has_store}

    def stop(self) -> int:
        """Stop the background thread, flush what is buffered, close the store; return rows flushed."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        try:
            return self._core.flush()
        finally:
            self._core.close()


class ShardedCacheWriter:
    """A feature sink that routes rows to the cache shards by the stable hash of their key.

    :meth:`write` returns once every owning shard has the rows (cached; written to the store
    too with write-through). :meth:`flush` makes every shard write its write-behind rows now;
    :meth:`sync` waits until the shards' own background flushes have written them, adding no
    writes, so the stream engine calls it before a checkpoint commits offsets (the processor
    calls ``sync()``, or ``flush()``, of sinks that have one). Until then the writer keeps what it
    sent with write-behind, and re-sends it to any shard that restarted meanwhile.

    Args:
        shards: the cache shard handles, in shard order.
        view: the feature view written.
        write: write mode for these rows (``None``: each shard's setting).
        retain_rows: rows kept for re-sending past which :meth:`write` flushes itself.
    """

    def __init__(self, shards: Sequence[Any], view: FeatureView, write: str | None = None, *, retain_rows: int = 200_000) -> None:
        self.shards = list(shards)
        self.view = view
        self.write_mode = write
        self.retain_rows = retain_rows
        self._known: list[str] | None = None  # each shard's incarnation at the last flush
        self._retain: list[bool] = []
        self._retained: dict[int, list[pa.Table]] = {}
        self._retained_rows = 0
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()

    def _learn(self) -> None:
        if self._known is None:
            infos = ray.get([s.info.remote() for s in self.shards])
            self._retain = [(self.write_mode or i["write_mode"]) == "behind" and i["has_store"] for i in infos]
            self._known = [i["incarnation"] for i in infos]

    def write(self, features: pa.Table) -> None:
        """Write and wait for every owning shard, so a delivered batch implies cached values."""
        parts = split_by_shard(features, self.view.entity.join_key, len(self.shards))
        if not parts:
            return
        self._learn()
        ray.get([self.shards[s].put.remote(self.view.name, part, self.write_mode) for s, part in parts.items()])
        kept = {s: part for s, part in parts.items() if self._retain[s]}
        if kept:
            with self._lock:
                for s, part in kept.items():
                    self._retained.setdefault(s, []).append(part)
                    self._retained_rows += part.num_rows
            if self._retained_rows >= self.retain_rows:
                self.flush()

    def flush(self) -> int:
        """Make every shard write its write-behind rows now; return rows written.

        A shard found restarted since the last flush gets this writer's unconfirmed rows again,
        written through to the store.

        Raises:
            ray.exceptions.RayError or the store's error: nothing is confirmed; call again.
        """
        return self._confirm(lambda: sum(ray.get([s.flush.remote() for s in self.shards])))

    def sync(self, timeout_s: float = 60) -> int:
        """Wait until every shard's background flush has written the rows this writer sent;
        return rows re-sent to restarted shards.

        Unlike :meth:`flush` it adds no store writes: with four partition owners checkpointing
        every few seconds, forced flushes wrote the shards' buffers several times as often as
        their own ``write_behind_interval_s`` does, each time with fewer rows to coalesce.

        Raises:
            TimeoutError: some shard did not write its buffer within ``timeout_s`` (its store
                fails or is slow; its ``stats()`` says why); nothing is confirmed, call again.
            ray.exceptions.RayError: as for :meth:`flush`.
        """

        def wait() -> int:
            done = ray.get([s.wait_durable.remote(timeout_s) for s in self.shards], timeout=timeout_s + 30)
            late = [i for i, ok in enumerate(done) if not ok]
            if late:
                raise TimeoutError(f"cache shards {late} did not write their write-behind rows within {timeout_s}s; see their stats()['last_error']")
            return 0

        return self._confirm(wait)

    def _confirm(self, wait: Callable[[], int]) -> int:
        """Run ``wait`` (rows durable on every live shard), re-send to restarted shards, forget what is confirmed."""
        with self._flush_lock:
            self._learn()
            with self._lock:
                sent = {s: list(tables) for s, tables in self._retained.items()}
            written = wait()
            infos = ray.get([s.info.remote() for s in self.shards])
            restarted = [s for s, info in enumerate(infos) if info["incarnation"] != self._known[s]]
            resend: dict[int, list[pa.Table]] = {}
            if restarted:
                with self._lock:  # everything kept for it, also rows written since the snapshot
                    resend = {s: list(self._retained.get(s, ())) for s in restarted}
                refs = [
                    self.shards[s].put.remote(self.view.name, pa.concat_tables(tables, promote_options="permissive"), "through")
                    for s, tables in resend.items()
                    if tables
                ]
                ray.get(refs)
                written += sum(t.num_rows for tables in resend.values() for t in tables)
            for s in restarted:
                self._known[s] = infos[s]["incarnation"]
            with self._lock:  # forget what is confirmed; rows written meanwhile stay kept
                for s in set(sent) | set(resend):
                    done = {id(t) for t in (*sent.get(s, ()), *resend.get(s, ()))}
                    self._retained[s] = [t for t in self._retained.get(s, ()) if id(t) not in done]
                self._retained_rows = sum(t.num_rows for tables in self._retained.values() for t in tables)
            return written

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"], state["_flush_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock, self._flush_lock = threading.Lock(), threading.Lock()

    @property
    def retained_rows(self) -> int:
        """Rows sent with write-behind and not yet confirmed by a flush."""
        return self._retained_rows


def submit_reads(shards: Sequence[Any], view_name: str, keys: Sequence[Hashable], features: Sequence[str]) -> dict[int, tuple[list[int], Any]]:
    """Send one ``get`` per shard that owns some of ``keys``; values are ``(positions, ObjectRef)``."""
    plan = plan_reads(keys, len(shards))
    return {s: (pos, shards[s].get.remote(view_name, [keys[i] for i in pos], features)) for s, pos in plan.items()}


def read_online(shards: Sequence[Any], view_name: str, keys: Sequence[Hashable], features: Sequence[str], timeout_s: float = 10) -> Lookup:
    """Blocking online read across shards (for Python callers; the HTTP server awaits instead)."""
    refs = submit_reads(shards, view_name, keys, features)
    got = ray.get([ref for _, ref in refs.values()], timeout=timeout_s)
    parts = {s: (pos, lookup) for (s, (pos, _)), lookup in zip(refs.items(), got)}
    return merge_lookups(len(keys), features, parts)
