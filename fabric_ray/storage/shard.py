"""StorageShard: one owner of some of a dataset's buckets or key ranges, with a write-ahead buffer.

A shard accepts rows for the keys it owns, buffers them in memory and publishes them to the
dataset in one commit when the buffer is big or old enough. It answers point lookups by key,
time-range scans, the latest row per key and downsampling over *both* what is on storage and
what is still buffered, so a write is visible to reads as soon as it is acknowledged.

Ownership. With ``shards`` owners of a dataset, shard ``i`` owns the hash buckets ``b`` with
``b % shards == i`` (:class:`~fabric_ray.storage.partitioning.HashBuckets`), or the key ranges
whose index ``r`` has ``r % shards == i`` (:class:`~fabric_ray.storage.partitioning.KeyRanges`);
either may sit inside a ``Composite``. A dataset with neither is owned whole by shard 0. A
shard refuses rows (and lookups) of keys it does not own, naming the key and its owner.

Durability. :meth:`StorageShard.write` acknowledges rows only once they are in a write-ahead
segment on the dataset's storage: ``_shards/<shard>/wal-<seq:012d>.arrow`` (Arrow IPC), created
with a create-only write, so a second live owner of the same shard is fenced off at its first
write instead of interleaving. :meth:`StorageShard.flush` stages the buffer as data files and
commits them with the metadata ``{"shard": i, "shards": n, "wal_through": seq}``, then deletes
the segments up to ``seq``. Constructing a shard (:meth:`StorageShard.restore`) rebuilds the
buffer: segments with ``seq <= `` the highest ``wal_through`` this shard committed are already
in the dataset (a crash came between commit and delete) and are deleted, never loaded twice;
later segments are loaded back. A crash between staging and commit leaves staged files that no
reader sees (``Dataset.vacuum`` removes them); their segments are simply flushed again. New
segments always get a ``seq`` above both, so a committed ``wal_through`` never covers a segment
written after it.

Reads during a flush. While a flush is in flight its rows are read from memory and storage is
read at the version before its commit; a read that overlaps the start or the end of a flush is
retried, so it sees every acknowledged row exactly once.

Example:
    >>> import tempfile, pyarrow as pa
    >>> from fabric_ray.storage.fs import open_location
    >>> from fabric_ray.storage.dataset import Dataset, DatasetSpec
    >>> from fabric_ray.storage.partitioning import HashBuckets
    >>> schema = pa.schema([("sensor", pa.string()), ("ts", pa.int64()), ("value", pa.float64())])
    >>> spec = DatasetSpec("temps", schema, HashBuckets("sensor", 4), key=("sensor",), time_column="ts")
    >>> ds = Dataset.create(open_location(f"file://{tempfile.mkdtemp()}"), spec)
    >>> shard = StorageShard.restore(ds, 0, 1, flush_rows=1_000)
    >>> shard.write(pa.table({"sensor": ["a", "b", "a"], "ts": [0, 0, 60_000], "value": [1.0, 2.0, 3.0]}))
    3
    >>> shard.get(["a"])["value"].to_pylist()          # visible before any flush
    [3.0]
    >>> shard.flush().metadata["wal_through"], shard.stats()["rows_buffered"]
    (0, 0)
    >>> shard.downsample(0, 120_000, 60_000, {"value": ["max"]}).to_pydict()
    {'sensor': ['a', 'a', 'b'], 'ts': [0, 60000, 0], 'value_max': [1.0, 3.0, 2.0]}
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric_ray.storage import timeseries as ts
from fabric_ray.storage.dataset import Commit, Dataset
from fabric_ray.storage.ipc import ipc_bytes, ipc_table
from fabric_ray.storage.partitioning import Composite, HashBuckets, KeyRanges, Partitioning, PartitioningError

__all__ = ["ShardError", "ShardFencedError", "StorageShard", "owner_shards", "owns_partition", "wal_segment_name"]

log = logging.getLogger(__name__)

WAL_FOLDER = "_shards"
_WAL_RE = re.compile(r"^wal-(\d{12})\.arrow$")
_READ_RETRIES = 3
_HARD_LIMIT = 2  # a write flushes first when the buffer holds this many times a flush threshold


class ShardError(ValueError):
    """A shard refused a request; the message names the culprit (key, column, shard)."""


class ShardFencedError(RuntimeError):
    """Another live owner of this shard wrote a segment this one meant to write: stop this one."""


def wal_segment_name(shard_id: int, seq: int) -> str:
    """Path, relative to the dataset root, of write-ahead segment ``seq`` of shard ``shard_id``.

    Example:
        >>> wal_segment_name(3, 17)
        '_shards/3/wal-000000000017.arrow'
    """
    return f"{WAL_FOLDER}/{shard_id}/wal-{seq:012d}.arrow"


def _shard_part(partitioning: Partitioning) -> HashBuckets | KeyRanges | None:
    """The part of ``partitioning`` that decides ownership: its first hash or range part."""
    parts = partitioning.parts if isinstance(partitioning, Composite) else (partitioning,)
    return next((p for p in parts if isinstance(p, (HashBuckets, KeyRanges))), None)


def _shard_column(partitioning: Partitioning) -> str | None:
    part = _shard_part(partitioning)
    return part.column if part is not None else None


def owns_partition(partition: Mapping[str, str], partitioning: Partitioning, shard_id: int, shards: int) -> bool:
    """Whether shard ``shard_id`` of ``shards`` owns the data files of ``partition`` (a folder's values).

    Example:
        >>> owns_partition({"k_bucket": "5"}, HashBuckets("k", 8), 1, 4)
        True
    """
    part = _shard_part(partitioning)
    if part is None or shards == 1 or part.field not in partition:
        return shard_id == 0
    return int(partition[part.field]) % shards == shard_id


def owner_shards(table: pa.Table, partitioning: Partitioning, shards: int) -> np.ndarray:
    """The shard owning each row of ``table``: its bucket (or range index) modulo ``shards``.

    The first :class:`HashBuckets` or :class:`KeyRanges` of ``partitioning`` (itself or a part
    of a ``Composite``) decides; without one every row belongs to shard 0. Only that part's
    column needs to be in ``table``.

    Returns:
        An int64 array, one owner per row.

    Raises:
        PartitioningError: the column is missing or holds nulls.

    Example:
        >>> owner_shards(pa.table({"k": [0, 5, 10, 15]}), KeyRanges("k", (5, 10, 15)), 2).tolist()
        [0, 1, 0, 1]
    """
    part = _shard_part(partitioning)
    if part is None or shards == 1:
        return np.zeros(table.num_rows, np.int64)
    return _owners_of(part.values(table.select([part.column])), part, shards)


def _owners_of(values: pa.Table, part: HashBuckets | KeyRanges, shards: int) -> np.ndarray:
    index = values[part.field].cast(pa.int64())
    return np.asarray(index.to_numpy(), np.int64) % shards




@dataclass
class _Segment:
    """Rows acknowledged by one write: in memory and in write-ahead segment ``seq``."""

    seq: int
    table: pa.Table


class StorageShard:
    """Buffer, persist and serve the rows of the keys that one shard owns.

    Constructing one restores it (:meth:`restore` is the same call under its usual name): the
    committed rows are on storage, and the unflushed acknowledged rows are reloaded from the
    shard's write-ahead segments.

    Thread-safe: writes and reads may come from several threads while another flushes.

    Args:
        dataset: the dataset (its spec gives the schema, key, time column and partitioning).
        shard_id: this shard, ``0 <= shard_id < shards``.
        shards: how many shards share the dataset.
        flush_rows: :meth:`flush_due` once this many rows are buffered.
        flush_bytes: :meth:`flush_due` once the buffer holds this many bytes (Arrow sizes).
        flush_age_s: :meth:`flush_due` once the oldest buffered row is this old.
            The owner (the actor's flusher thread) calls :meth:`flush` when due; a write that
            finds twice ``flush_rows`` or ``flush_bytes`` buffered flushes first itself, which
            bounds memory when writes outpace the flusher.
        clock: monotonic seconds (injectable for tests).

    Raises:
        ShardError: bad arguments, naming them.
    """

    def __init__(
        self,
        dataset: Dataset,
        shard_id: int,
        shards: int,
        *,
        flush_rows: int = 100_000,
        flush_bytes: int = 64 * 1024 * 1024,
        flush_age_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        name = dataset.spec.name
        if not isinstance(shards, int) or shards < 1:
            raise ShardError(f"dataset {name!r}: shards must be an int >= 1; got {shards!r}")
        if not isinstance(shard_id, int) or not 0 <= shard_id < shards:
            raise ShardError(f"dataset {name!r}: shard_id must be in [0, {shards}); got {shard_id!r}")
        if flush_rows < 1 or flush_bytes < 1 or flush_age_s < 0:
            raise ShardError(f"dataset {name!r}: flush_rows and flush_bytes must be >= 1 and flush_age_s >= 0; got {flush_rows}, {flush_bytes}, {flush_age_s}")
        self.dataset = dataset
        self.shard_id = shard_id
        self.shards = shards
        self.flush_rows = int(flush_rows)
        self.flush_bytes = int(flush_bytes)
        self.flush_age_s = float(flush_age_s)
        self._clock = clock
        spec = dataset.spec
        self.key: tuple[str, ...] = tuple(spec.key)
        self.time_column: str | None = spec.time_column
        self._lock = threading.RLock()  # buffer, counters, generation
        self._flush_lock = threading.Lock()  # one flush at a time
        self._buffer: list[_Segment] = []
        self._flushing: list[_Segment] = []
        self._flush_base_version: int | None = None  # storage version read while a flush is in flight
        self._generation = 0  # bumped when a flush starts and when it ends (reads retry across it)
        self._oldest_at: float | None = None
        self._undeleted: list[int] = []  # committed segments whose delete failed (retried)
        self._fenced: str | None = None
        self._closed = False
        self._counters = {"writes": 0, "rows_written": 0, "flushes": 0, "rows_flushed": 0, "reads": 0, "flush_errors": 0}
        self._last_flush_version: int | None = None
        self._restored = {"segments_loaded": 0, "rows_loaded": 0, "segments_skipped": 0}
        self._next_seq = self._recover()

    @classmethod
    def restore(cls, dataset: Dataset, shard_id: int, shards: int, **options: Any) -> StorageShard:
        """The shard as it was: committed rows on storage plus every acknowledged unflushed row.

        Args:
            dataset, shard_id, shards, options: as for the constructor.

        Returns:
            The restored shard, ready to write and read.
        """
        return cls(dataset, shard_id, shards, **options)

    # -- recovery ---------------------------------------------------------------------------

    def _wal_folder(self) -> str:
        return f"{WAL_FOLDER}/{self.shard_id}"

    def _committed_through(self) -> int:
        """The highest ``wal_through`` this shard committed (-1: none)."""
        through = -1
        for commit in self.dataset.history():
            meta = commit.metadata or {}
            if meta.get("shard") == self.shard_id and meta.get("wal_through") is not None:
                through = max(through, int(meta["wal_through"]))
        return through

    def _recover(self) -> int:
        """Reload unflushed segments, delete committed ones; return the next sequence number."""
        loc = self.dataset.location
        through = self._committed_through()
        segments: list[int] = []
        for name in loc.list(self._wal_folder()):
            m = _WAL_RE.match(name)
            if m:
                segments.append(int(m.group(1)))
        stale = [s for s in segments if s <= through]
        if stale:  # a crash came after the commit and before these were deleted
            loc.delete(wal_segment_name(self.shard_id, s) for s in stale)
            self._restored["segments_skipped"] = len(stale)
        for seq in sorted(s for s in segments if s > through):
            table = ipc_table(loc.read_bytes(wal_segment_name(self.shard_id, seq)))
            self._buffer.append(_Segment(seq, self._conform(table)))
            self._restored["segments_loaded"] += 1
            self._restored["rows_loaded"] += table.num_rows
        if self._buffer:
            self._oldest_at = self._clock()
        return max([through, *segments]) + 1

    # -- ownership and validation -------------------------------------------------------------

    def owners(self, table: pa.Table) -> np.ndarray:
        """The owning shard of each row of ``table`` (which needs the partitioning's key column)."""
        return owner_shards(table, self.dataset.spec.partitioning, self.shards)

    def _check_owned(self, table: pa.Table, what: str, owners: np.ndarray | None = None) -> None:
        owners = self.owners(table) if owners is None else owners
        foreign = np.flatnonzero(owners != self.shard_id)
        if foreign.size:
            row = int(foreign[0])
            column = _shard_column(self.dataset.spec.partitioning)
            if column is None:
                raise ShardError(
                    f"dataset {self.dataset.spec.name!r} has no hash or range partitioning: shard 0 of {self.shards} owns all of it, "
                    f"not shard {self.shard_id}; send its rows and lookups to shard 0"
                )
            key = table[column][row].as_py() if column in table.column_names else None
            raise ShardError(
                f"dataset {self.dataset.spec.name!r}: {what} key {column}={key!r} belongs to shard {int(owners[row])} of {self.shards}, "
                f"not to shard {self.shard_id} ({foreign.size} such row(s)); route rows with owner_shards() or the StorageShards router"
            )

    def _conform(self, table: pa.Table) -> pa.Table:
        """``table`` with the dataset's columns, order and types (missing nullable columns as nulls)."""
        schema = self._schema()
        extra = [c for c in table.column_names if c not in schema.names]
        if extra:
            raise ShardError(f"dataset {self.dataset.spec.name!r}: column {extra[0]!r} is not in its schema {schema.names}")
        arrays = []
        for field in schema:
            if field.name not in table.column_names:
                if not field.nullable:
                    raise ShardError(f"dataset {self.dataset.spec.name!r}: column {field.name!r} is missing and not nullable")
                arrays.append(pa.nulls(table.num_rows, field.type))
                continue
            col = table[field.name]
            if col.type != field.type:
                try:
                    col = col.cast(field.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise ShardError(f"dataset {self.dataset.spec.name!r}: column {field.name!r} of type {col.type} does not fit {field.type}: {exc}") from exc
            if not field.nullable and col.null_count:
                raise ShardError(f"dataset {self.dataset.spec.name!r}: column {field.name!r} is not nullable but has {col.null_count} null(s)")
            arrays.append(col)
        return pa.Table.from_arrays(arrays, schema=schema)

    def _schema(self) -> pa.Schema:
        return self.dataset.spec.schema

    # -- writes and flushes --------------------------------------------------------------------

    def write(self, table: pa.Table) -> int:
        """Buffer ``table`` and make it durable in a write-ahead segment before returning.

        Args:
            table: rows of the dataset's schema, all of keys this shard owns.

        Returns:
            The rows acknowledged (all of ``table``'s): from now on they survive a crash and
            are visible to this shard's reads.

        Raises:
            ShardError: a row of a key another shard owns, or a column that does not fit.
            ShardFencedError: another live owner of this shard wrote first; this one must stop.
            StorageError: the segment could not be written (nothing was acknowledged).
        """
        if self._closed:
            raise ShardError(f"dataset {self.dataset.spec.name!r}: shard {self.shard_id} is closed; restore it to write again")
        if table.num_rows == 0:
            return 0
        table = self._conform(table)
        partitioning = self.dataset.spec.partitioning
        try:  # what would make the flush fail must fail here, before anything is acknowledged
            values = partitioning.values(table)
        except PartitioningError as exc:
            raise ShardError(f"dataset {self.dataset.spec.name!r}: {exc}") from exc
        part = _shard_part(partitioning)
        if self.shards > 1:
            owners = _owners_of(values, part, self.shards) if part is not None else np.zeros(table.num_rows, np.int64)
            self._check_owned(table, "row", owners)
        data = ipc_bytes(table)
        if self._over_limit():  # backpressure: the caller pays for a flush it made necessary
            self.flush()
        with self._lock:
            if self._fenced:
                raise ShardFencedError(self._fenced)
            seq = self._next_seq
            if not self.dataset.location.put_if_absent(wal_segment_name(self.shard_id, seq), data):
                self._fenced = (
                    f"dataset {self.dataset.spec.name!r}: write-ahead segment {wal_segment_name(self.shard_id, seq)} exists already: "
                    f"another owner of shard {self.shard_id} is alive; stop this one and route writes to the other"
                )
                raise ShardFencedError(self._fenced)
            self._next_seq = seq + 1
            self._buffer.append(_Segment(seq, table))
            if self._oldest_at is None:
                self._oldest_at = self._clock()
            self._counters["writes"] += 1
            self._counters["rows_written"] += table.num_rows
        return table.num_rows

    def _buffered(self) -> tuple[int, int]:
        rows = sum(s.table.num_rows for s in self._buffer)
        return rows, sum(s.table.nbytes for s in self._buffer)

    def _over_limit(self) -> bool:
        with self._lock:
            rows, nbytes = self._buffered()
            return rows >= _HARD_LIMIT * self.flush_rows or nbytes >= _HARD_LIMIT * self.flush_bytes

    def flush_due(self) -> bool:
        """Whether the buffer reached ``flush_rows`` or ``flush_bytes``, or its oldest row ``flush_age_s``."""
        with self._lock:
            if not self._buffer:
                return False
            rows, nbytes = self._buffered()
            age_s = self._clock() - (self._oldest_at if self._oldest_at is not None else self._clock())
            return rows >= self.flush_rows or nbytes >= self.flush_bytes or age_s >= self.flush_age_s

    def flush(self) -> Commit | None:
        """Publish the buffered rows to the dataset in one commit, then drop their segments.

        Returns:
            The commit, or ``None`` when nothing was buffered.

        Raises:
            StorageError, DatasetError: staging or committing failed; the rows stay buffered
                (and durable) and the next flush tries again.
        """
        with self._flush_lock:
            with self._lock:
                empty = not self._buffer
            if empty:
                self._retry_deletes()
                return None
            # Any version read now holds our earlier flushes and not this one (we hold the flush lock).
            base_version = self.dataset.version
            with self._lock:
                segments, self._buffer = self._buffer, []
                self._flushing, self._flush_base_version = segments, base_version
                self._oldest_at = None
                self._generation += 1
            through = segments[-1].seq
            table = pa.concat_tables([s.table for s in segments], promote_options="default")
            staged: list = []
            try:
                staged = self._stage(table)
                commit = self._commit(staged, through)
            except Exception:
                if staged:
                    try:
                        self.dataset.abort(staged)
                    except Exception:  # noqa: BLE001 - vacuum removes what is left; the original error matters
                        log.warning("shard %s: could not abort staged files after a failed flush", self.shard_id, exc_info=True)
                with self._lock:
                    self._buffer = segments + self._buffer
                    self._flushing, self._flush_base_version = [], None
                    self._oldest_at = self._clock()
                    self._generation += 1
                    self._counters["flush_errors"] += 1
                raise
            with self._lock:
                self._flushing, self._flush_base_version = [], None
                self._generation += 1
                self._counters["flushes"] += 1
                self._counters["rows_flushed"] += table.num_rows
                self._last_flush_version = commit.version
                self._undeleted.extend(s.seq for s in segments)
            self._retry_deletes()
            return commit

    def compact(self, *, target_file_bytes: int = 128 * 2**20, min_files: int = 4) -> Commit | None:
        """Compact the small files of the partitions this shard owns (see :meth:`Dataset.compact`).

        Each shard compacts only its own buckets or ranges, so shards of one dataset never
        compact the same files; readers see the same rows before and after.

        Returns:
            The commit, or ``None`` when no owned partition had ``min_files`` small files.
        """
        part, shard_id, shards = self.dataset.spec.partitioning, self.shard_id, self.shards
        commit = self.dataset.compact(
            target_file_bytes=target_file_bytes,
            min_files=min_files,
            metadata={"shard": shard_id, "shards": shards},
            partitions=lambda partition: owns_partition(partition, part, shard_id, shards),
        )
        if commit is not None:
            with self._lock:
                self._counters["compactions"] = self._counters.get("compactions", 0) + 1
        return commit

    def _stage(self, table: pa.Table) -> list:
        return self.dataset.stage(table)

    def _commit(self, staged: list, through: int) -> Commit:
        meta = {"shard": self.shard_id, "shards": self.shards, "wal_through": through}
        return self.dataset.commit(staged, operation="append", metadata=meta)

    def _retry_deletes(self) -> None:
        """Delete committed segments (a failure leaves them for the next flush or a restore)."""
        if not self._undeleted:
            return
        seqs = list(self._undeleted)
        try:
            self._delete_segments(seqs)
        except Exception:  # noqa: BLE001 - harmless: restore skips committed segments
            log.warning("shard %s: could not delete committed write-ahead segments %s; retrying later", self.shard_id, seqs, exc_info=True)
            return
        with self._lock:
            self._undeleted = [s for s in self._undeleted if s not in set(seqs)]

    def _delete_segments(self, seqs: Sequence[int]) -> None:
        self.dataset.location.delete(wal_segment_name(self.shard_id, s) for s in seqs)

    def close(self, *, flush: bool = True) -> Commit | None:
        """Flush what is buffered (unless ``flush=False``) and refuse further writes."""
        commit = self.flush() if flush else None
        self._closed = True
        return commit

    # -- reads ---------------------------------------------------------------------------------

    def _need_key(self, what: str) -> list[str]:
        if not self.key:
            raise ShardError(f"dataset {self.dataset.spec.name!r} declares no key: {what} needs DatasetSpec(key=...)")
        return list(self.key)

    def _need_time(self, what: str) -> str:
        if self.time_column is None:
            raise ShardError(f"dataset {self.dataset.spec.name!r} declares no time column: {what} needs DatasetSpec(time_column=...)")
        return self.time_column

    def _key_table(self, keys: Sequence[Any]) -> pa.Table:
        """Requested keys as a table of the key columns (a tuple per key for composite keys)."""
        names = self._need_key("a lookup by key")
        schema = self._schema()
        keys = list(keys)
        if len(names) == 1:
            values = {names[0]: keys}
        else:
            bad = [k for k in keys if not isinstance(k, (tuple, list)) or len(k) != len(names)]
            if bad:
                raise ShardError(f"dataset {self.dataset.spec.name!r}: key {bad[0]!r} must be a tuple of ({', '.join(names)})")
            values = {n: [k[i] for k in keys] for i, n in enumerate(names)}
        try:
            return pa.table({n: pa.array(v, schema.field(n).type) for n, v in values.items()})
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ShardError(f"dataset {self.dataset.spec.name!r}: keys {keys[:3]!r} do not fit the key column(s) {names}: {exc}") from exc

    def _owned_keys(self, keys: Sequence[Any] | None) -> pa.Table | None:
        if keys is None:
            return None
        table = self._key_table(keys)
        column = _shard_column(self.dataset.spec.partitioning)
        if column is None or column in table.column_names:
            self._check_owned(table, "requested")
        return table

    def _rows(self, keys: pa.Table | None, start_ms: int | None, end_ms: int | None) -> pa.Table:
        """Stored plus buffered rows of this shard, optionally of ``keys`` and in ``[start_ms, end_ms)``."""
        with self._lock:
            self._counters["reads"] += 1
        for _ in range(_READ_RETRIES):
            with self._lock:
                generation = self._generation
                pending = [s.table for s in self._flushing + self._buffer]
                version = self._flush_base_version if self._flushing else None
            stored = self._read_storage(keys, start_ms, end_ms, version)
            with self._lock:  # a flush that started meanwhile may have committed rows we also hold
                if version is not None or self._generation == generation:
                    break
        else:
            with self._flush_lock:  # flushes keep coming: read while none can start
                with self._lock:
                    pending = [s.table for s in self._buffer]
                stored = self._read_storage(keys, start_ms, end_ms, None)
        # promote: buffered rows may predate a schema evolution (new nullable columns read as null)
        return self._select(pa.concat_tables([stored, *pending], promote_options="default"), keys, start_ms, end_ms)

    def _read_storage(self, keys: pa.Table | None, start_ms: int | None, end_ms: int | None, version: int | None) -> pa.Table:
        """This shard's committed rows (pruned by keys and time where the dataset can)."""
        kwargs: dict[str, Any] = {"version": version}
        if keys is not None:
            kwargs["keys"] = keys.column(0).to_pylist() if keys.num_columns == 1 else list(zip(*(c.to_pylist() for c in keys.columns)))
        if self.time_column is not None:
            kwargs.update(start_ms=start_ms, end_ms=end_ms)
        table = self.dataset.read(**kwargs)
        if self.shards > 1 and table.num_rows:
            table = table.filter(pa.array(self.owners(table) == self.shard_id))
        return table

    def _select(self, table: pa.Table, keys: pa.Table | None, start_ms: int | None, end_ms: int | None) -> pa.Table:
        if self.time_column is not None and (start_ms is not None or end_ms is not None):
            table = ts.in_range(table, self.time_column, start_ms, end_ms)
        if keys is not None and table.num_rows:
            if keys.num_columns == 1:
                name = keys.column_names[0]
                table = table.filter(pc.is_in(table[name], value_set=keys[name].combine_chunks()).fill_null(False))
            else:  # a semi-join reorders rows; restore their order (it breaks ties between equal times)
                row = "__fabric_row"
                numbered = table.append_column(row, pa.array(np.arange(table.num_rows, dtype=np.int64)))
                kept = numbered.join(keys.group_by(keys.column_names).aggregate([]), keys=keys.column_names, join_type="left semi")
                table = kept.take(pc.sort_indices(kept[row])).drop_columns([row])
        return table

    def get(self, keys: Sequence[Any], columns: Sequence[str] | None = None) -> pa.Table:
        """The latest row of each of ``keys`` (keys with no row are absent), sorted by key.

        Args:
            keys: key values (tuples for a composite key); all owned by this shard.
            columns: the columns to return (default: all).

        Raises:
            ShardError: a key another shard owns, or a dataset without a key.
        """
        key_table = self._owned_keys(keys)
        rows = self._rows(key_table, None, None)
        return _columns(ts.latest_per_key(rows, self.key, self.time_column), columns)

    def scan(self, start_ms: int | None, end_ms: int | None, keys: Sequence[Any] | None = None) -> pa.Table:
        """Rows with ``start_ms <= time < end_ms`` (``None``: open), sorted by key and then time.

        Raises:
            ShardError: the dataset has no time column, or a key another shard owns.
        """
        time_column = self._need_time("a time-range scan")
        if start_ms is not None and end_ms is not None and end_ms < start_ms:
            raise ShardError(f"dataset {self.dataset.spec.name!r}: scan end_ms {end_ms} is before start_ms {start_ms}")
        rows = self._rows(self._owned_keys(keys), start_ms, end_ms)
        order = [(k, "ascending") for k in self.key] + [(time_column, "ascending")]
        return rows.take(pc.sort_indices(rows, sort_keys=order))

    def latest(self, keys: Sequence[Any] | None = None) -> pa.Table:
        """The latest row of every key this shard holds (or of ``keys``), sorted by key."""
        self._need_key("latest()")
        return ts.latest_per_key(self._rows(self._owned_keys(keys), None, None), self.key, self.time_column)

    def downsample(
        self,
        start_ms: int | None,
        end_ms: int | None,
        interval_ms: int,
        aggs: Mapping[str, Sequence[str]],
        keys: Sequence[Any] | None = None,
    ) -> pa.Table:
        """Per key, aggregates of the rows in ``[start_ms, end_ms)`` over intervals of ``interval_ms``.

        See :func:`fabric_ray.storage.timeseries.downsample` for the exact semantics; intervals
        cut by the range aggregate only the rows inside it.
        """
        time_column = self._need_time("downsample()")
        rows = self._rows(self._owned_keys(keys), start_ms, end_ms)
        return ts.downsample(rows, self.key, time_column, interval_ms, aggs)

    def stats(self) -> dict[str, Any]:
        """Counters: rows/bytes/segments buffered, flushes, reads, writes, what restore found."""
        with self._lock:
            rows, nbytes = self._buffered()
            return {
                "dataset": self.dataset.spec.name,
                "shard": self.shard_id,
                "shards": self.shards,
                "rows_buffered": rows + sum(s.table.num_rows for s in self._flushing),
                "bytes_buffered": nbytes + sum(s.table.nbytes for s in self._flushing),
                "wal_segments": len(self._buffer) + len(self._flushing) + len(self._undeleted),
                "next_seq": self._next_seq,
                "last_flush_version": self._last_flush_version,
                "flushing": bool(self._flushing),
                "fenced": self._fenced is not None,
                "closed": self._closed,
                **self._counters,
                **{f"restored_{k}": v for k, v in self._restored.items()},
            }


def _columns(table: pa.Table, columns: Sequence[str] | None) -> pa.Table:
    if columns is None:
        return table
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise ShardError(f"column {missing[0]!r} is not in the dataset (columns: {table.column_names})")
    return table.select(list(columns))
