"""Storage shard actors: :class:`StorageShardActor` wraps one StorageShard; :class:`StorageShards` routes.

The actor restores its shard when it starts (committed rows on storage plus the shard's
write-ahead segments), flushes in a background thread when the buffer is due (rows, bytes or
age), and drains on :meth:`StorageShardActor.stop`. Actors are named
``storage:<dataset>:<shard>`` in the caller's namespace so any process can find them again.

:class:`StorageShards` is a small picklable router: a write is split by owning shard and sent
to each owner (acknowledged when all owners have it durable); lookups by key go only to the
owning shards; scans, ``latest`` and ``downsample`` go to every shard and are concatenated
(each key lives on exactly one shard, so per-shard results never overlap).
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import ray

from fabric_ray.storage.dataset import Commit, Dataset
from fabric_ray.storage.shard import StorageShard, _shard_column, owner_shards

__all__ = ["PartialWriteError", "StorageShardActor", "StorageShards", "storage_shard_name"]

log = logging.getLogger(__name__)

SHARD_NUM_CPUS = 0.05


class PartialWriteError(RuntimeError):
    """Some shards did not acknowledge their part of a write.

    Attributes:
        acknowledged: rows the other shards acknowledged (durable; do not send them again).
        unacknowledged: the rows of the failed shards, to retry once they are back.
        failures: shard id -> the exception its call raised.
    """

    def __init__(self, dataset: str, acknowledged: int, unacknowledged: pa.Table, failures: Mapping[int, BaseException]) -> None:
        first = next(iter(failures.values()))
        super().__init__(
            f"dataset {dataset!r}: shard(s) {sorted(failures)} did not acknowledge {unacknowledged.num_rows} row(s) "
            f"({type(first).__name__}: {str(first)[:200]}); {acknowledged} row(s) were acknowledged by the others. "
            f"Call StorageShards.revive() and retry error.unacknowledged"
        )
        self.acknowledged = acknowledged
        self.unacknowledged = unacknowledged
        self.failures = dict(failures)


def storage_shard_name(dataset: str, index: int) -> str:
    """Actor name of shard ``index`` of ``dataset``.

    Example:
        >>> storage_shard_name("temps", 2)
        'storage:temps:2'
    """
    return f"storage:{dataset}:{index}"


@ray.remote(num_cpus=SHARD_NUM_CPUS, max_restarts=-1, max_task_retries=0, max_concurrency=4)
class StorageShardActor:
    """One :class:`~fabric_ray.storage.shard.StorageShard`, restored on start, flushed in the background.

    Args:
        dataset: the dataset.
        shard_id: this shard.
        shards: how many shards share the dataset.
        options: ``flush_rows``, ``flush_bytes``, ``flush_age_s`` for the shard, and
            ``compact_every_flushes`` (default 8; 0: never): after that many flushes the shard
            compacts the small files of the partitions it owns, in the background.
    """

    def __init__(self, dataset: Dataset, shard_id: int, shards: int, options: Mapping[str, Any] | None = None) -> None:
        options = dict(options or {})
        self._compact_every = int(options.pop("compact_every_flushes", 8))
        self._flushes_since_compaction = 0
        self._shard = StorageShard.restore(dataset, shard_id, shards, **options)
        self._last_error: str | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._tick_s = min(0.25, max(0.01, self._shard.flush_age_s / 4))
        self._thread = threading.Thread(target=self._flusher, name=f"storage-flush-{shard_id}", daemon=True)
        self._thread.start()

    def _flusher(self) -> None:
        backoff_s = self._tick_s
        while not self._stop.is_set():
            self._wake.wait(backoff_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                if self._shard.flush_due() and self._shard.flush() is not None:
                    self._flushes_since_compaction += 1
                if self._compact_every and self._flushes_since_compaction >= self._compact_every:
                    self._flushes_since_compaction = 0
                    self._shard.compact()
                backoff_s = self._tick_s
            except Exception:  # noqa: BLE001 - rows stay buffered and durable; reported in stats()
                self._last_error = traceback.format_exc(limit=3)
                backoff_s = min(max(backoff_s * 2, 0.1), 5.0)

    def ping(self) -> tuple[int, int]:
        """``(shard_id, shards)``, once the shard is restored (construction returned)."""
        return self._shard.shard_id, self._shard.shards

    def write(self, table: pa.Table) -> int:
        """Rows acknowledged (durable in the write-ahead segment); wakes the flusher when due."""
        n = self._shard.write(table)
        if self._shard.flush_due():
            self._wake.set()
        return n

    def flush(self) -> Commit | None:
        """Flush now."""
        return self._shard.flush()

    def get(self, keys: Sequence[Any], columns: Sequence[str] | None = None) -> pa.Table:
        return self._shard.get(keys, columns)

    def scan(self, start_ms: int | None, end_ms: int | None, keys: Sequence[Any] | None = None) -> pa.Table:
        return self._shard.scan(start_ms, end_ms, keys)

    def latest(self, keys: Sequence[Any] | None = None) -> pa.Table:
        return self._shard.latest(keys)

    def downsample(self, start_ms: int | None, end_ms: int | None, interval_ms: int, aggs: Mapping[str, Sequence[str]],
                   keys: Sequence[Any] | None = None) -> pa.Table:
        return self._shard.downsample(start_ms, end_ms, interval_ms, aggs, keys)

    def stats(self) -> dict[str, Any]:
        """The shard's counters plus the last background flush error."""
        return {**self._shard.stats(), "last_error": self._last_error}

    def stop(self, drain: bool = True) -> dict[str, Any]:
        """Stop the flusher, flush what is buffered (``drain``), refuse further writes."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        self._shard.close(flush=drain)
        return self.stats()


class StorageShards:
    """A picklable router over the ``shards`` actors of one dataset.

    Make one with :meth:`start` (creates missing actors, finds running ones by name) and pass
    it around freely; :meth:`revive` re-creates actors that died for good.

    Args:
        dataset: the dataset.
        handles: actor handles, index = shard id.
        options: shard options used when (re-)creating actors.
        namespace: the Ray namespace of the actors (``None``: the caller's).
    """

    def __init__(self, dataset: Dataset, handles: Sequence[Any], options: Mapping[str, Any] | None = None,
                 namespace: str | None = None, detached: bool = False) -> None:
        self.dataset = dataset
        self.handles = list(handles)
        self.options = dict(options or {})
        self.namespace = namespace
        self.detached = detached

    @property
    def shards(self) -> int:
        return len(self.handles)

    @classmethod
    def start(cls, dataset: Dataset, shards: int, *, namespace: str | None = None, detached: bool = False,
              timeout_s: float = 60, **options: Any) -> StorageShards:
        """Find or create the ``shards`` actors of ``dataset`` and wait until all are restored.

        Args:
            dataset: the dataset.
            shards: how many shards (>= 1); must match the running actors' count.
            namespace: the actors' Ray namespace (``None``: the caller's).
            detached: outlive the creating driver.
            timeout_s: how long to wait for restores.
            options: ``flush_rows``, ``flush_bytes``, ``flush_age_s``.
        """
        if not isinstance(shards, int) or shards < 1:
            raise ValueError(f"dataset {dataset.spec.name!r}: shards must be an int >= 1; got {shards!r}")
        router = cls(dataset, [None] * shards, options, namespace, detached)
        router.handles = [router._create(i) for i in range(shards)]
        found = ray.get([h.ping.remote() for h in router.handles], timeout=timeout_s)
        wrong = [(i, got) for i, got in enumerate(found) if got != (i, shards)]
        if wrong:
            i, (shard_id, running) = wrong[0]
            raise ValueError(
                f"dataset {dataset.spec.name!r}: actor {storage_shard_name(dataset.spec.name, i)} runs shard {shard_id} of {running}, "
                f"not {i} of {shards}; stop the running shards (StorageShards.stop, drain=True) before changing the shard count"
            )
        return router

    def _create(self, index: int) -> Any:
        name = storage_shard_name(self.dataset.spec.name, index)
        opts: dict[str, Any] = {"name": name, "get_if_exists": True}
        if self.namespace is not None:
            opts["namespace"] = self.namespace
        if self.detached:
            opts["lifetime"] = "detached"
        return StorageShardActor.options(**opts).remote(self.dataset, index, self.shards, self.options)

    def revive(self, timeout_s: float = 60) -> list[int]:
        """Re-create the actors that died for good (``ray.kill(..., no_restart=True)``, node loss).

        Returns:
            The shard ids re-created (each restored from storage and its write-ahead segments).
        """
        dead = []
        for i, handle in enumerate(self.handles):
            try:
                ray.get(handle.ping.remote(), timeout=timeout_s)
            except ray.exceptions.RayActorError:
                dead.append(i)
        deadline = time.monotonic() + timeout_s
        for i in dead:
            while True:  # the dead actor's name is released asynchronously
                handle = self._create(i)
                try:
                    ray.get(handle.ping.remote(), timeout=max(1.0, deadline - time.monotonic()))
                    break
                except ray.exceptions.RayActorError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            self.handles[i] = handle
        return dead

    # -- routing -------------------------------------------------------------------------------

    def _owners(self, table: pa.Table) -> np.ndarray:
        return owner_shards(table, self.dataset.spec.partitioning, self.shards)

    def write(self, table: pa.Table, timeout_s: float | None = 60) -> int:
        """Send each row to its owning shard; return the rows acknowledged (all of them).

        Raises:
            PartialWriteError: some owners did not acknowledge; ``error.unacknowledged`` holds
                exactly their rows (retry those, after :meth:`revive`, to write each row once).
        """
        if table.num_rows == 0:
            return 0
        owners = self._owners(table)
        parts = {int(s): table.filter(pa.array(owners == s)) for s in np.unique(owners)}
        refs = {s: self.handles[s].write.remote(part) for s, part in parts.items()}
        acknowledged, failed = 0, {}
        for s, ref in refs.items():
            try:
                acknowledged += ray.get(ref, timeout=timeout_s)
            except Exception as exc:  # noqa: BLE001 - collected: the caller learns which rows to retry
                failed[s] = exc
        if failed:
            raise PartialWriteError(self.dataset.spec.name, acknowledged, pa.concat_tables([parts[s] for s in sorted(failed)]), failed)
        return acknowledged

    def _key_owners(self, keys: Sequence[Any]) -> dict[int, list[Any]]:
        """Keys per owning shard; every shard when the key does not decide ownership."""
        column = _shard_column(self.dataset.spec.partitioning)
        names = list(self.dataset.spec.key)
        if column is None:
            return {0: list(keys)}
        if column not in names:
            return {s: list(keys) for s in range(self.shards)}
        position = names.index(column)
        values = [k if len(names) == 1 else k[position] for k in keys]
        field = self.dataset.spec.schema.field(column)
        owners = self._owners(pa.table({column: pa.array(values, field.type)}))
        plan: dict[int, list[Any]] = {}
        for key, owner in zip(keys, owners.tolist()):
            plan.setdefault(owner, []).append(key)
        return plan

    def _gather(self, refs: list, timeout_s: float | None, *, by_time: bool = False) -> pa.Table:
        """Concatenate per-shard answers, sorted like one shard's: by key (then time)."""
        table = pa.concat_tables(ray.get(refs, timeout=timeout_s), promote_options="default")
        spec = self.dataset.spec
        order = [(k, "ascending") for k in spec.key if k in table.column_names]
        if by_time and spec.time_column is not None and spec.time_column in table.column_names:
            order.append((spec.time_column, "ascending"))
        return table.sort_by(order) if order and len(refs) > 1 else table

    def get(self, keys: Sequence[Any], columns: Sequence[str] | None = None, timeout_s: float | None = 60) -> pa.Table:
        """The latest row of each key (absent keys: no row), asked only of the owning shards; sorted by key."""
        plan = self._key_owners(list(keys)) or {0: []}
        return self._gather([self.handles[s].get.remote(ks, columns) for s, ks in sorted(plan.items())], timeout_s)

    def scan(self, start_ms: int | None, end_ms: int | None, keys: Sequence[Any] | None = None, timeout_s: float | None = 60) -> pa.Table:
        """Rows in ``[start_ms, end_ms)`` from every shard (or the owners of ``keys``), sorted by key and time."""
        return self._gather([self.handles[s].scan.remote(start_ms, end_ms, ks) for s, ks in sorted(self._plan(keys).items())], timeout_s, by_time=True)

    def _plan(self, keys: Sequence[Any] | None) -> dict[int, Any]:
        """Shard -> keys to ask it for (``None``: all of its keys)."""
        if keys is None:
            return dict.fromkeys(range(self.shards))
        return dict(self._key_owners(list(keys))) or {0: []}

    def latest(self, keys: Sequence[Any] | None = None, timeout_s: float | None = 60) -> pa.Table:
        """The latest row of every key (or of ``keys``, asking only their owners)."""
        return self._gather([self.handles[s].latest.remote(ks) for s, ks in sorted(self._plan(keys).items())], timeout_s)

    def downsample(self, start_ms: int | None, end_ms: int | None, interval_ms: int, aggs: Mapping[str, Sequence[str]],
                   keys: Sequence[Any] | None = None, timeout_s: float | None = 60) -> pa.Table:
        """Downsampled aggregates per key (each key's intervals come whole from its one shard)."""
        plan = sorted(self._plan(keys).items())
        return self._gather([self.handles[s].downsample.remote(start_ms, end_ms, interval_ms, dict(aggs), ks) for s, ks in plan], timeout_s, by_time=True)

    def flush(self, timeout_s: float | None = 120) -> list[Commit | None]:
        """Flush every shard now; one commit (or ``None``) per shard."""
        return ray.get([h.flush.remote() for h in self.handles], timeout=timeout_s)

    def stats(self, timeout_s: float | None = 30) -> list[dict[str, Any]]:
        """Every shard's counters."""
        return ray.get([h.stats.remote() for h in self.handles], timeout=timeout_s)

    def stop(self, drain: bool = True, timeout_s: float | None = 120) -> list[dict[str, Any]]:
        """Drain (flush) and stop every shard, then end the actors."""
        stats = ray.get([h.stop.remote(drain) for h in self.handles], timeout=timeout_s)
        for h in self.handles:
            ray.kill(h, no_restart=True)
        return stats
