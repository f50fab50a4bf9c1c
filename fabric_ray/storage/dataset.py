"""Parquet datasets with a schema, a partitioning and atomic commits, on ``file://`` or ``s3://``.

A dataset is a folder: data files in hive-style partition folders plus a commit log
(``_log/<version>.json``, see :mod:`fabric_ray.storage.commit_log`). Readers follow the log and
nothing else, so a data file exists for them only once a committed entry names it:

1. :meth:`Dataset.stage` validates a table against the schema, splits it by the partitioning and
   writes one Parquet file per partition under a unique name (invisible: no entry names it);
2. :meth:`Dataset.commit` publishes staged files in one create-only write of the next log entry.
   A writer that loses the race for a version re-reads the log, checks that nobody removed what
   it removes, and tries the next version.

:meth:`~Dataset.write` does both. :meth:`~Dataset.compact` rewrites a partition's small files into
larger ones in one commit (readers see the same rows), :meth:`~Dataset.evolve` adds nullable
columns, :meth:`~Dataset.vacuum` deletes files no reader can reach any more. ``docs/storage.md``
explains the protocol and why it is safe on S3.

Example:
    >>> import tempfile, pyarrow as pa
    >>> from fabric_ray.storage import open_location, TimePartitioning
    >>> spec = DatasetSpec("events", pa.schema({"user": pa.int64(), "ts": pa.int64(), "v": pa.float64()}),
    ...                    TimePartitioning("ts"), key=("user",))
    >>> ds = Dataset.create(open_location(f"file://{tempfile.mkdtemp()}"), spec)
    >>> ds.write(pa.table({"user": [1, 2], "ts": [0, 86_400_000], "v": [0.5, 1.5]})).version
    1
    >>> ds.read(keys=[2]).to_pylist(), ds.read(version=0).num_rows
    ([{'user': 2, 'ts': 86400000, 'v': 1.5}], 0)
    >>> [f.partition for f in ds.snapshot().files]
    [{'date': '1970-01-01'}, {'date': '1970-01-02'}]
"""

from __future__ import annotations

import bisect
import logging
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fabric_ray.storage.commit_log import (
    CHECKPOINT_EVERY,
    Commit,
    CommitConflict,
    CommitLog,
    DataFile,
    DatasetError,
    LogState,
    SchemaEvolutionError,
    Snapshot,
    check_evolution,
    schema_from_dict,
    schema_to_dict,
)
from fabric_ray.storage.fs import StorageError, StorageLocation
from fabric_ray.storage.partitioning import (
    Partitioning,
    PartitioningError,
    TimePartitioning,
    Unpartitioned,
    epoch_ms,
    parse_partitioning,
    path_of,
)

__all__ = [
    "Commit",
    "CommitConflict",
    "DataFile",
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "SchemaEvolutionError",
    "Snapshot",
]

log = logging.getLogger(__name__)

MAX_COMMIT_ATTEMPTS = 100  # versions tried by one commit before giving up under contention
_IO_THREADS = 8
_STAT_TYPES = (int, float, str, bool)


def _time_parts(p: Partitioning) -> list[TimePartitioning]:
    parts = getattr(p, "parts", (p,))
    return [x for x in parts if isinstance(x, TimePartitioning)]


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset holds and how it is laid out; immutable, YAML-friendly.

    Attributes:
        name: a short name used in messages and run records.
        schema: the Arrow schema of its rows.
        partitioning: the folder layout (default: none).
        key: the key column(s): point reads (``keys=``) and per-file key statistics.
        time_column: the event-time column for ``start_ms``/``end_ms`` reads (defaults to the
            time partitioning's column; a timestamp of any unit/zone, a date or int64 epoch-ms).
    """

    name: str
    schema: pa.Schema
    partitioning: Partitioning = field(default_factory=Unpartitioned)
    key: tuple[str, ...] = ()
    time_column: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise DatasetError(f"dataset name must be a non-empty string without '/'; got {self.name!r}")
        if not isinstance(self.schema, pa.Schema) or not len(self.schema):
            raise DatasetError(f"dataset {self.name!r}: schema must be a non-empty pyarrow.Schema; got {self.schema!r}")
        schema_to_dict(self.schema)  # refuses types that cannot be stored
        if not isinstance(self.partitioning, Partitioning):
            raise DatasetError(f"dataset {self.name!r}: partitioning must be a Partitioning; got {self.partitioning!r}")
        key = (self.key,) if isinstance(self.key, str) else tuple(self.key)
        object.__setattr__(self, "key", key)
        times = _time_parts(self.partitioning)
        if self.time_column is None and times:
            object.__setattr__(self, "time_column", times[0].column)
        if times and times[0].column != self.time_column:
            raise DatasetError(
                f"dataset {self.name!r}: time partitioning is on {times[0].column!r} but time_column is {self.time_column!r}; use one column"
            )
        for role, cols in (("key", key), ("partition", self.partitioning.columns), ("time", (self.time_column,) if self.time_column else ())):
            for col in cols:
                if col not in self.schema.names:
                    raise DatasetError(f"dataset {self.name!r}: {role} column {col!r} is not in the schema (columns: {self.schema.names})")
        if self.time_column:
            t = self.schema.field(self.time_column).type
            if not (pa.types.is_timestamp(t) or pa.types.is_date(t) or pa.types.is_integer(t)):
                raise DatasetError(f"dataset {self.name!r}: time column {self.time_column!r} must be a timestamp, a date or int64 epoch-ms; got {t}")

    def to_dict(self) -> dict[str, Any]:
        """``{"name", "schema": {"col": "type"}, "partitioning", "key", "time_column"}``."""
        return {"name": self.name, "schema": schema_to_dict(self.schema), "partitioning": self.partitioning.to_dict(),
                "key": list(self.key), "time_column": self.time_column}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DatasetSpec:
        """The inverse of :meth:`to_dict` (``partitioning``, ``key`` and ``time_column`` optional)."""
        unknown = set(d) - {"name", "schema", "partitioning", "key", "time_column"}
        if unknown:
            raise DatasetError(f"dataset spec: unknown field(s) {sorted(unknown)}")
        try:
            return cls(d["name"], schema_from_dict(d["schema"]), parse_partitioning(d.get("partitioning")),
                       tuple(d.get("key") or ()), d.get("time_column"))
        except KeyError as exc:
            raise DatasetError(f"dataset spec: missing field {exc.args[0]!r}") from exc
        except PartitioningError as exc:
            raise DatasetError(f"dataset {d.get('name')!r}: {exc}") from exc


def _stat(value: Any) -> Any:
    return value if isinstance(value, _STAT_TYPES) and not (isinstance(value, float) and value != value) else None


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """How data files are written: snappy, with dictionary encoding for text-like columns only.

    Dictionary-encoding every column (pyarrow's default) costs about three times the write time
    on numeric columns, whose values are mostly distinct, and makes their files no smaller.

    Example:
        >>> parquet_options(pa.schema([("x", pa.int64()), ("c", pa.string())]))
        {'compression': 'snappy', 'use_dictionary': ['c']}
    """
    texty = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_boolean, pa.types.is_dictionary)
    return {"compression": "snappy", "use_dictionary": [f.name for f in schema if any(is_(f.type) for is_ in texty)]}


class Dataset:
    """A Parquet dataset on storage (see the module docstring). Picklable: Ray workers can stage.

    Use :meth:`create` or :meth:`open`, not the constructor.
    """

    def __init__(self, location: StorageLocation, state: LogState) -> None:
        self.location = location
        self._log = CommitLog(location)
        self._state = state
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"location": self.location, "state": self._state}

    def __setstate__(self, d: dict[str, Any]) -> None:
        self.__init__(d["location"], d["state"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"Dataset({self.spec.name!r}, {self.location.uri!r}, version={self._state.version})"

    # -- opening ----------------------------------------------------------------------------------

    @classmethod
    def create(cls, location: StorageLocation, spec: DatasetSpec, *, exist_ok: bool = False) -> Dataset:
        """Create the dataset ``spec`` at ``location`` (version 0, no files).

        Raises:
            DatasetError: one exists there (unless ``exist_ok`` and it has this spec, or an
                evolution of its schema), naming the URI and what differs.
            StorageError: the location is unusable (missing bucket, credentials, ...).
        """
        spec_meta = {k: v for k, v in spec.to_dict().items() if k != "schema"}
        create = Commit(0, "create", (), (), {}, int(time.time() * 1000), spec.schema, uuid.uuid4().hex)
        log_ = CommitLog(location)
        if log_.try_append(create, spec_meta):
            state = LogState(0, spec_meta, spec.schema, {})
            log_.write_checkpoint(state)
            return cls(location, state)
        existing = cls.open(location)
        if not exist_ok:
            raise DatasetError(f"a dataset already exists at {location.uri} ({existing.spec.name!r}); open it with Dataset.open")
        have = existing.spec
        for attr in ("partitioning", "key", "time_column"):
            if getattr(have, attr) != getattr(spec, attr):
                raise DatasetError(f"dataset at {location.uri} exists with {attr} {getattr(have, attr)!r}, not {getattr(spec, attr)!r}")
        if have.schema != spec.schema:
            try:
                check_evolution(spec.schema, have.schema)
            except SchemaEvolutionError as exc:
                raise DatasetError(f"dataset at {location.uri} exists with another schema: {exc}") from exc
        return existing

    @classmethod
    def open(cls, location: StorageLocation) -> Dataset:
        """Open the dataset at ``location`` at its latest version.

        Raises:
            DatasetError: there is none, naming the URI.
        """
        return cls(location, CommitLog(location).latest())

    # -- state --------------------------------------------------------------------------------------

    @property
    def spec(self) -> DatasetSpec:
        """The spec, with the schema of the latest version this object has seen."""
        s = self._state
        return DatasetSpec(s.spec["name"], s.schema, parse_partitioning(s.spec["partitioning"]), tuple(s.spec.get("key") or ()),
                           s.spec.get("time_column"))

    @property
    def version(self) -> int:
        """The latest committed version (re-reads the log's tail)."""
        return self._refresh().version

    def _refresh(self) -> LogState:
        state = self._log.latest(self._state)
        with self._lock:
            if state.version > self._state.version:
                self._state = state
            return self._state

    def _state_at(self, version: int | None) -> LogState:
        if version is None:
            return self._refresh()
        known = self._state
        if version == known.version:
            return known
        if version > known.version and version > self._refresh().version:
            raise DatasetError(f"dataset {known.spec['name']!r}: version {version} does not exist; the latest is {self._state.version}")
        return self._state if version == self._state.version else self._log.at(version)

    def snapshot(self, version: int | None = None) -> Snapshot:
        """The files and schema of ``version`` (default: the latest)."""
        return self._state_at(version).snapshot()

    def history(self) -> list[Commit]:
        """Every commit, oldest first."""
        return self._log.read_commits(self._log.versions())

    # -- writing ------------------------------------------------------------------------------------

    def _conform(self, table: pa.Table | pa.RecordBatch) -> pa.Table:
        """``table`` with the dataset's columns in order; refuses any mismatch, naming the column."""
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        schema, name = self._state.schema, self._state.spec["name"]
        names = table.column_names
        if len(set(names)) != len(names):
            raise DatasetError(f"dataset {name!r}: the table has duplicate column(s) {sorted({n for n in names if names.count(n) > 1})}")
        for n in names:
            if n not in schema.names:
                raise DatasetError(f"dataset {name!r}: column {n!r} ({table.schema.field(n).type}) is not in the dataset's schema; add it with evolve() first")
        cols = []
        for f in schema:
            if f.name not in names:
                if not f.nullable:
                    raise DatasetError(f"dataset {name!r}: column {f.name!r} ({f.type} not null) is missing from the table")
                cols.append(pa.nulls(table.num_rows, f.type))
                continue
            col = table[f.name]
            if col.type != f.type:
                if not pa.types.is_null(col.type):
                    raise DatasetError(f"dataset {name!r}: column {f.name!r} is {col.type} in the table but {f.type} in the dataset")
                col = pa.nulls(table.num_rows, f.type)
            if not f.nullable and col.null_count:
                raise DatasetError(f"dataset {name!r}: column {f.name!r} is not nullable but holds {col.null_count} null(s)")
            cols.append(col)
        return pa.Table.from_arrays(cols, schema=schema)

    def _stats(self, table: pa.Table) -> dict[str, tuple[Any, Any]]:
        spec = self._state.spec
        out = {}
        for col in dict.fromkeys([*(spec.get("key") or ()), *([spec["time_column"]] if spec.get("time_column") else [])]):
            arr = table[col]
            if spec.get("time_column") == col or pa.types.is_timestamp(arr.type) or pa.types.is_date(arr.type):
                arr = epoch_ms(arr, col)
            mm = pc.min_max(arr)
            lo, hi = _stat(mm["min"].as_py()), _stat(mm["max"].as_py())
            if lo is not None and hi is not None:
                out[col] = (lo, hi)
        return out

    def _write_file(self, partition: dict[str, str], table: pa.Table) -> DataFile:
        folder = path_of(partition)
        rel = f"{folder}/" if folder else ""
        rel += f"part-{int(time.time() * 1000)}-{uuid.uuid4().hex}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, **parquet_options(table.schema))
        data = sink.getvalue().to_pybytes()
        self.location.write_bytes(rel, data)
        return DataFile(rel, dict(partition), table.num_rows, len(data), self._stats(table))

    def stage(self, table: pa.Table | pa.RecordBatch) -> list[DataFile]:
        """Validate ``table``, split it by partition and write its files; no reader sees them until :meth:`commit`.

        Returns:
            The staged files, to pass to :meth:`commit` (or :meth:`abort`).

        Raises:
            DatasetError: a column is missing, extra, of another type, or null where it may not be
                (naming the column and both types), or a partition column cannot be partitioned.
        """
        try:
            table = self._conform(table)
        except DatasetError:
            seen = self._state.version
            if self._refresh().version == seen:
                raise
            table = self._conform(table)  # the schema may have evolved since this object last looked
        if table.num_rows == 0:
            return []
        try:
            parts = self.spec.partitioning.split(table)
        except PartitioningError as exc:
            raise DatasetError(f"dataset {self._state.spec['name']!r}: {exc}") from exc
        if len(parts) == 1:
            return [self._write_file(*parts[0])]
        with ThreadPoolExecutor(min(_IO_THREADS, len(parts))) as pool:
            return list(pool.map(lambda pt: self._write_file(*pt), parts))

    def abort(self, staged: Iterable[DataFile]) -> None:
        """Delete staged, never-committed files (files the latest version references are refused)."""
        staged = list(staged)
        live = self._refresh().files
        committed = [f.path for f in staged if f.path in live]
        if committed:
            raise DatasetError(f"dataset {self._state.spec['name']!r}: cannot abort committed file(s) {committed[:3]}")
        self.location.delete([f.path for f in staged])

    def commit(self, added: Iterable[DataFile], removed: Iterable[str] = (), *, operation: str = "append",
               metadata: Mapping[str, Any] | None = None, schema: pa.Schema | None = None) -> Commit:
        """Publish staged files (and remove others) as the next version, atomically.

        One create-only write of ``_log/<version>.json`` is the whole commit. If another writer
        took that version first, the commit re-reads the log and retries on the next version,
        unless a file it removes is gone by then (:class:`CommitConflict`).

        Args:
            added: staged files to add.
            removed: paths (as in :attr:`DataFile.path`) of committed files to remove.
            operation: a word for the history.
            metadata: JSON-able metadata stored in the entry.
            schema: a new schema (only :meth:`evolve` passes one).

        Raises:
            CommitConflict: a removed file was removed by someone else, an added file is
                already committed, or more than ``MAX_COMMIT_ATTEMPTS`` versions were lost.
            SchemaEvolutionError: ``schema`` is not an allowed evolution of the current one.
        """
        added, removed = tuple(added), tuple(dict.fromkeys(removed))
        name = self._state.spec["name"]
        for f in added:
            if not isinstance(f, DataFile) or f.path.startswith("/") or _reserved(f.path) or ".." in f.path.split("/") or not f.path.endswith(".parquet"):
                raise DatasetError(f"dataset {name!r}: {f!r} is not a staged data file of this dataset")
        meta = dict(metadata or {})
        commit_id = uuid.uuid4().hex
        state = self._refresh()
        for attempt in range(1, MAX_COMMIT_ATTEMPTS + 1):
            gone = [p for p in removed if p not in state.files]
            if gone:
                raise CommitConflict(f"dataset {name!r}: {gone[0]!r} is no longer in version {state.version} (a concurrent "
                                     f"compaction or overwrite removed it); re-read and retry")
            again = [f.path for f in added if f.path in state.files]
            if again:
                raise CommitConflict(f"dataset {name!r}: {again[0]!r} is already committed (version {state.version} has it)")
            if schema is not None:
                check_evolution(state.schema, schema)
            commit = Commit(state.version + 1, operation, added, removed, meta, int(time.time() * 1000), schema, commit_id)
            if self._log.try_append(commit):
                new = state.apply(commit, self.location.uri)
                with self._lock:
                    if new.version > self._state.version:
                        self._state = new
                if new.version % CHECKPOINT_EVERY == 0:
                    self._log.write_checkpoint(new)
                return commit
            time.sleep(random.uniform(0, min(0.2, 0.002 * attempt)))  # spread out contending writers
            state = self._refresh()
        raise CommitConflict(f"dataset {name!r}: lost the race for {MAX_COMMIT_ATTEMPTS} versions in a row; too many concurrent writers")

    def write(self, table: pa.Table | pa.RecordBatch, *, mode: str = "append", metadata: Mapping[str, Any] | None = None) -> Commit:
        """Stage and commit ``table``: ``append`` adds rows; ``overwrite`` replaces the rows it saw.

        ``overwrite`` removes the files of the version it read; rows appended concurrently by
        others stay (their commit is ordered after the read). If the commit fails, the staged
        files are deleted.
        """
        if mode not in ("append", "overwrite"):
            raise DatasetError(f"dataset {self._state.spec['name']!r}: mode must be 'append' or 'overwrite'; got {mode!r}")
        removed = list(self._refresh().files) if mode == "overwrite" else []
        staged = self.stage(table)
        try:
            return self.commit(staged, removed, operation=mode, metadata=metadata)
        except BaseException:
            self._abort_quietly(staged)
            raise

    def _abort_quietly(self, staged: list[DataFile]) -> None:
        try:
            self.location.delete([f.path for f in staged])
        except StorageError as exc:  # orphans are invisible; vacuum removes them
            log.warning("dataset %s: could not delete staged files after a failed commit: %s", self.location.uri, exc)

    def evolve(self, new_schema: pa.Schema) -> Commit:
        """Commit ``new_schema``: it may only add nullable columns; old files read them as null.

        Raises:
            SchemaEvolutionError: a column dropped, renamed, retyped, its nullability changed, or
                a new non-nullable column, naming it.
        """
        schema_to_dict(new_schema)
        check_evolution(self._refresh().schema, new_schema)
        return self.commit((), operation="evolve", schema=new_schema)

    # -- reading ------------------------------------------------------------------------------------

    def _key_map(self, keys: Sequence[Any] | None) -> dict[str, list[Any]] | None:
        if keys is None:
            return None
        key = tuple(self._state.spec.get("key") or ())
        if not key:
            raise DatasetError(f"dataset {self._state.spec['name']!r} has no key columns; keys= needs DatasetSpec(key=...)")
        keys = list(keys)
        if len(key) == 1:
            return {key[0]: keys}
        bad = [k for k in keys if not isinstance(k, tuple) or len(k) != len(key)]
        if bad:
            raise DatasetError(f"dataset {self._state.spec['name']!r}: keys are tuples of {key}; got {bad[0]!r}")
        return {c: [k[i] for k in keys] for i, c in enumerate(key)}

    def _prune(self, files: Iterable[DataFile], keys: dict[str, list[Any]] | None, start_ms: int | None, end_ms: int | None) -> list[DataFile]:
        part = self.spec.partitioning
        time_col = self._state.spec.get("time_column")
        if (start_ms is not None or end_ms is not None) and not time_col:
            raise DatasetError(f"dataset {self._state.spec['name']!r} has no time column; start_ms/end_ms need DatasetSpec(time_column=...)")
        sorted_keys = {}
        for c, vals in (keys or {}).items():
            try:
                sorted_keys[c] = sorted(set(vals))
            except TypeError:
                continue
        out = []
        for f in files:
            if not part.may_contain(f.partition, keys=keys, start_ms=start_ms, end_ms=end_ms):
                continue
            if time_col and time_col in f.stats:
                lo, hi = f.stats[time_col]
                if (end_ms is not None and lo >= end_ms) or (start_ms is not None and hi < start_ms):
                    continue
            if any(not _any_between(sorted_keys[c], *f.stats[c]) for c in sorted_keys if c in f.stats):
                continue
            out.append(f)
        return out

    def file_paths(self, *, keys: Sequence[Any] | None = None, start_ms: int | None = None, end_ms: int | None = None,
                   version: int | None = None) -> list[str]:
        """Full paths (on :meth:`StorageLocation.arrow_filesystem`) of the files that may hold matching rows.

        Pruned by partition and per-file statistics only: the files may hold other rows too.
        Pass them to ``ray.data.read_parquet(paths, filesystem=location.arrow_filesystem())``.
        """
        files = self._prune(self._state_at(version).files.values(), self._key_map(keys), start_ms, end_ms)
        return [self.location.join(f.path) for f in files]

    def read(self, *, columns: Sequence[str] | None = None, filter: pc.Expression | None = None, keys: Sequence[Any] | None = None,
             start_ms: int | None = None, end_ms: int | None = None, version: int | None = None) -> pa.Table:
        """The rows of ``version`` (default: latest) matching every given condition.

        Args:
            columns: columns to return (default: all, in schema order).
            filter: a ``pyarrow.compute`` expression over any columns.
            keys: key values (tuples for a multi-column key).
            start_ms: inclusive lower bound on the time column (epoch ms).
            end_ms: exclusive upper bound on the time column (epoch ms).
            version: time travel to an older version (until :meth:`vacuum` removes its files).

        Raises:
            DatasetError: a file is missing, corrupt or of a foreign schema (naming its URI), or an
                unknown column.
        """
        state = self._state_at(version)
        schema = state.schema
        columns = list(columns) if columns is not None else schema.names
        unknown = [c for c in columns if c not in schema.names]
        if unknown:
            raise DatasetError(f"dataset {state.spec['name']!r}: no column(s) {unknown} (columns: {schema.names})")
        key_map = self._key_map(keys)
        files = self._prune(state.files.values(), key_map, start_ms, end_ms)

        time_col = state.spec.get("time_column")
        needed = None if filter is not None else [
            c for c in schema.names
            if c in columns or (key_map is not None and c in key_map) or (c == time_col and (start_ms is not None or end_ms is not None))
        ]

        def one(f: DataFile) -> pa.Table:
            t = self._read_file(f, schema, needed)
            mask = None
            if key_map is not None:
                mask = _key_mask(t, key_map)
            if time_col and (start_ms is not None or end_ms is not None):
                ms = epoch_ms(t[time_col], time_col)
                for cond in ([pc.greater_equal(ms, start_ms)] if start_ms is not None else []) + ([pc.less(ms, end_ms)] if end_ms is not None else []):
                    mask = cond if mask is None else pc.and_(mask, cond)
            if mask is not None:
                t = t.filter(pc.fill_null(mask, False))
            if filter is not None:
                t = t.filter(filter)
            return t.select(columns)

        if not files:
            return schema.empty_table().select(columns)
        if len(files) == 1:
            return one(files[0])
        with ThreadPoolExecutor(min(_IO_THREADS, len(files))) as pool:
            tables = list(pool.map(one, files))
        return pa.concat_tables(tables)

    def _read_file(self, f: DataFile, schema: pa.Schema, columns: Sequence[str] | None = None) -> pa.Table:
        """One data file as a table of ``schema`` (or of its ``columns``); columns it predates read as null."""
        uri = self.location.uri_of(f.path)
        try:
            with self.location.arrow_filesystem().open_input_file(self.location.join(f.path)) as handle:
                pf = pq.ParquetFile(handle)
                file_schema = pf.schema_arrow
                for g in file_schema:
                    if g.name not in schema.names:
                        raise DatasetError(f"data file {uri}: column {g.name!r} ({g.type}) is not in the dataset's schema; the file does not belong to this dataset")
                    want = schema.field(g.name).type
                    if g.type != want:
                        raise DatasetError(f"data file {uri}: column {g.name!r} is {g.type} in the file but {want} in the dataset")
                for g in schema:
                    if g.name not in file_schema.names and not g.nullable:
                        raise DatasetError(f"data file {uri}: non-nullable column {g.name!r} ({g.type}) is missing from the file")
                if pf.metadata.num_rows != f.rows:
                    raise DatasetError(f"data file {uri} holds {pf.metadata.num_rows} rows but was committed with {f.rows}; it was replaced outside the dataset")
                wanted = schema.names if columns is None else list(columns)
                table = pf.read(columns=[c for c in wanted if c in file_schema.names])
        except DatasetError:
            raise
        except FileNotFoundError as exc:
            raise DatasetError(f"data file {uri} is committed but missing (deleted outside the dataset?); restore it or commit its removal") from exc
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise DatasetError(f"data file {uri} cannot be read as Parquet ({type(exc).__name__}: {exc}); restore it or commit its removal") from exc
        target = pa.schema([schema.field(c) for c in wanted])
        cols = [table[g.name] if g.name in table.column_names else pa.nulls(table.num_rows, g.type) for g in target]
        return pa.Table.from_arrays(cols, schema=target)

    # -- maintenance --------------------------------------------------------------------------------

    def compact(self, *, target_file_bytes: int = 128 * 2**20, min_files: int = 4, metadata: Mapping[str, Any] | None = None,
                partitions: Callable[[Mapping[str, str]], bool] | None = None) -> Commit | None:
        """Rewrite each partition's small files (under half of ``target_file_bytes``) into larger ones, in one commit.

        A partition is compacted when it has ``min_files`` or more small files; they are packed,
        in commit order, into groups of at most ``target_file_bytes`` and each group is rewritten
        as one file (so memory holds one group at a time). Readers see the same rows (in another
        file order); readers of older versions keep working until :meth:`vacuum`. Concurrent
        appends are kept; a concurrent compaction of the same files makes this one fail with
        :class:`CommitConflict` (its new files are then deleted).

        Args:
            partitions: compact only partitions for which this returns true (a storage shard
                compacts the buckets it owns, so shards never race each other); ``None``: all.

        Returns:
            The commit, or ``None`` when no partition needed it.
        """
        if min_files < 2:
            raise DatasetError(f"compact: min_files must be >= 2; got {min_files}")
        state = self._refresh()
        groups: dict[str, list[DataFile]] = {}
        for f in state.files.values():
            if f.bytes < target_file_bytes // 2 and (partitions is None or partitions(f.partition)):
                groups.setdefault(path_of(f.partition), []).append(f)
        bins: list[list[DataFile]] = []
        for files in groups.values():
            if len(files) < min_files:
                continue
            current: list[DataFile] = []
            for f in files:
                if current and sum(g.bytes for g in current) + f.bytes > target_file_bytes:
                    bins.append(current)
                    current = []
                current.append(f)
            bins.append(current)
        bins = [b for b in bins if len(b) >= 2]
        if not bins:
            return None
        staged: list[DataFile] = []
        try:
            for b in bins:
                table = pa.concat_tables([self._read_file(f, state.schema) for f in b])
                staged.append(self._write_file(dict(b[0].partition), table))
            removed = [f.path for b in bins for f in b]
            info = {"files_in": len(removed), "files_out": len(staged), **dict(metadata or {})}
            return self.commit(staged, removed, operation="compact", metadata=info)
        except BaseException:
            self._abort_quietly(staged)
            raise

    def vacuum(self, *, older_than_s: float) -> list[str]:
        """Delete data files that no version committed in the last ``older_than_s`` references.

        A file is kept when the latest version has it, when a version that was current at any
        time in the window has it (readers may still be on it), or when it was written in the
        window (a writer may be about to commit it). Everything else under the dataset root
        (orphans of crashed writers, files of compacted-away versions) is deleted. Choose
        ``older_than_s`` longer than any reader's run and any stage-to-commit gap.

        Returns:
            The deleted paths, relative to the dataset root.
        """
        if older_than_s < 0:
            raise DatasetError(f"vacuum: older_than_s must be >= 0; got {older_than_s}")
        cutoff_s = time.time() - older_than_s
        state = self._refresh()
        protected = set(state.files)
        v = state.version
        while v > 0:  # files removed by commits inside the window were live in it
            c = self._log.read_commit(v)
            if c.timestamp_ms < cutoff_s * 1000:
                break
            protected.update(c.removed)
            v -= 1
        doomed = []
        for info in self.location.list_details():
            if _reserved(info.name) or info.name in protected or info.modified_s >= cutoff_s:
                continue
            base = info.name.rsplit("/", 1)[-1]
            if base.endswith(".parquet") or base.startswith(".tmp-"):
                doomed.append(info.name)
        self.location.delete(doomed)
        return doomed


def _reserved(rel: str) -> bool:
    """Whether ``rel`` lies under a reserved top-level folder: ``_name`` without ``=`` (``_log``,
    ``_checkpoints``, a shard's ``_shards``); data never goes there and vacuum never looks there."""
    top = rel.split("/", 1)[0]
    return top.startswith("_") and "=" not in top and "/" in rel


def _any_between(sorted_values: list[Any], lo: Any, hi: Any) -> bool:
    """Whether some value lies in ``[lo, hi]`` (``True`` when the types do not compare)."""
    try:
        i = bisect.bisect_left(sorted_values, lo)
        return i < len(sorted_values) and sorted_values[i] <= hi
    except TypeError:
        return True


def _key_mask(table: pa.Table, key_map: dict[str, list[Any]]) -> pa.ChunkedArray | pa.Array:
    cols = list(key_map)
    if len(cols) == 1:
        return pc.is_in(table[cols[0]], value_set=pa.array(key_map[cols[0]], table.schema.field(cols[0]).type))
    wanted = pa.table({c: pa.array(key_map[c], table.schema.field(c).type) for c in cols}).group_by(cols).aggregate([])
    rows = pa.table({**{c: table[c] for c in cols}, "__row": pa.array(np.arange(table.num_rows))})
    hit = rows.join(wanted, keys=cols, join_type="left semi")["__row"].to_numpy()
    mask = np.zeros(table.num_rows, dtype=bool)
    mask[hit] = True
    return pa.array(mask)
