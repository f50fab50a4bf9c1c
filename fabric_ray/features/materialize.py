"""Materialization: the latest offline row of each entity, written to the online store, on Ray Data.

:func:`materialize` takes, for every batch feature view (a view with a
:class:`~fabric_ray.features.catalog.BatchSource`: Parquet files under a ``file://`` or ``s3://``
URI, a local path, or a path under the storage root), the rows whose event time lies in
``[start, end)``, keeps the latest row of each entity (the latest event time; on a tie the
latest created timestamp when the source has one, a null created timestamp losing; then the
later row in file order), and writes those rows to the online store through
:class:`~fabric_ray.features.online_store.OnlineStore` (Feast's online store interface) in
batches of ``features.materialize_batch_rows``.

How, in three stages, with memory bounded by the entities, never by the rows:

1. **plan** (driver): the Parquet footers only. Row groups whose event-time statistics lie
   wholly outside ``[start, end)`` are skipped (an incremental run over appended files reads the
   new row groups only), the rest packed into ranges of about ``etl.block_bytes``.
2. **scan** (Ray Data, streaming, a few tasks per CPU): each range is read (needed columns
   only), filtered to the interval, and cut by a stable hash of the entity key into one piece
   per *reducer*; a task sends its pieces to the reducers and waits until they took them, so at
   most a few ranges are in flight at once.
3. **reduce** (one reducer actor per CPU): a reducer keeps the latest row of each of its keys
   (its share of the entities), folding buffered pieces in when they outgrow what it holds;
   at the end it sorts its rows in the online store's key order and hands them to the driver in
   batches, which the driver writes (SQLite takes one writer) and passes to ``warm``.

Peak memory is about one reducer's share of the entities times three per reducer (its rows, a
buffer as large, their fold), plus a range per scan task and one write batch in the driver.

Incremental runs keep their bookkeeping where ``feast materialize-incremental`` keeps its: the
view's ``materialization_intervals`` in the Feast registry (``cfg.feature_registry``). A run
records ``(start, end)`` there, and an incremental run starts at the latest recorded end, so
our runs and Feast's continue each other. A first incremental run starts at ``end - ttl`` (as
Feast does, but from ``end`` rather than from now), or at the beginning when the view has no
TTL (Feast: a year back).

Example (needs a running Ray cluster and a Feast registry, so not run as a doctest)::

    report = materialize(cfg, catalog, ["user_daily"], end=datetime.now(timezone.utc))
    print(report.to_dict())
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric_ray.config import FabricConfig
from fabric_ray.etl.pit import PitJoinError, bucket_of, split_by, to_ns
from fabric_ray.etl.sources import ParquetRange, SourceError, pack_row_groups, resolve_files
from fabric_ray.features.catalog import BatchSource, Catalog
from fabric_ray.features.definitions import FeatureView
from fabric_ray.features.online_store import CREATED_TS, EVENT_TS, OnlineStore, key_order

__all__ = ["LatestRows", "MaterializeError", "MaterializeReport", "ViewReport", "materialize", "scan_rows"]

Warm = Callable[[str, pa.Table], Any]

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
TS = "__ts_ns"
CREATED = "__created_ns"
ORDER = "__order"
_NULL_CREATED = np.iinfo(np.int64).min
_NS_PER_MS = 1_000_000


class MaterializeError(ValueError):
    """A view cannot be materialized; the message names the view, and the file or column at fault."""


@dataclass(frozen=True)
class ViewReport:
    """What one view's materialization did.

    Attributes:
        view: the feature view.
        start, end: the interval ``[start, end)`` of event times (``start`` ``None``: from the beginning).
        files: Parquet files of the source; ``row_groups_read`` of ``row_groups`` were read
            (the others lie outside the interval by their statistics).
        rows_read: rows of the row groups read; ``rows_in_range`` of them lie in the interval.
        entities_written: rows written to the online store (one per entity).
        seconds: wall time; ``scan_seconds`` of it until every reducer held its latest rows,
            ``write_seconds`` writing them (and warming).
        recorded: whether the interval was recorded in the Feast registry.
    """

    view: str
    start: dt.datetime | None
    end: dt.datetime
    files: int = 0
    row_groups: int = 0
    row_groups_read: int = 0
    rows_read: int = 0
    rows_in_range: int = 0
    entities_written: int = 0
    seconds: float = 0.0
    scan_seconds: float = 0.0
    write_seconds: float = 0.0
    recorded: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view, "start": self.start.isoformat() if self.start else None, "end": self.end.isoformat(),
            "files": self.files, "row_groups": self.row_groups, "row_groups_read": self.row_groups_read,
            "rows_read": self.rows_read, "rows_in_range": self.rows_in_range, "entities_written": self.entities_written,
            "seconds": round(self.seconds, 3), "scan_seconds": round(self.scan_seconds, 3),
            "write_seconds": round(self.write_seconds, 3), "recorded": self.recorded,
        }


@dataclass(frozen=True)
class MaterializeReport:
    """What :func:`materialize` did, per view, and the totals."""

    views: tuple[ViewReport, ...]
    seconds: float

    @property
    def rows_read(self) -> int:
        return sum(v.rows_read for v in self.views)

    @property
    def entities_written(self) -> int:
        return sum(v.entities_written for v in self.views)

    def view(self, name: str) -> ViewReport:
        """The report of view ``name``."""
        for v in self.views:
            if v.view == name:
                return v
        raise KeyError(f"no view {name!r} in this report; it has {[v.view for v in self.views]}")

    def to_dict(self) -> dict[str, Any]:
        return {"views": [v.to_dict() for v in self.views], "rows_read": self.rows_read,
                "entities_written": self.entities_written, "seconds": round(self.seconds, 3)}

    def __str__(self) -> str:
        lines = []
        for v in self.views:
            since = v.start.isoformat() if v.start else "the beginning"
            if v.row_groups == 0 and v.rows_read == 0 and v.start is not None and v.start >= v.end:
                lines.append(f"{v.view}: nothing to do (materialized up to {v.end.isoformat()} already)")
                continue
            lines.append(
                f"{v.view}: [{since}, {v.end.isoformat()}): {v.rows_read:,} rows read ({v.rows_in_range:,} in range, "
                f"{v.row_groups_read} of {v.row_groups} row groups in {v.files} files), {v.entities_written:,} entities "
                f"written in {v.seconds:.1f} s{'' if v.recorded else ' (not recorded in the Feast registry)'}"
            )
        lines.append(f"total: {self.rows_read:,} rows read, {self.entities_written:,} entities written in {self.seconds:.1f} s")
        return "\n".join(lines)


# -- the plan ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanPlan:
    """What a scan task needs (small and picklable): the view, its source columns, the interval, the reducers' count."""

    view: FeatureView
    timestamp_field: str
    created_field: str | None
    start_ns: int | None
    end_ns: int
    buckets: int
    filesystem: Any
    scheme: str

    @property
    def columns(self) -> list[str]:
        cols = [self.view.entity.join_key, *self.view.feature_names, self.timestamp_field]
        return cols + ([self.created_field] if self.created_field else [])


def _source_uri(path: str) -> str:
    """A batch source path as ``resolve_files`` takes it: a local absolute path becomes ``file://``."""
    return f"file://{path}" if path.startswith("/") else path


def _stat_ns(value: Any, is_int_ms: bool) -> int | None:
    if isinstance(value, dt.datetime):
        return _ns(value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc))
    if isinstance(value, dt.date):
        return (value - EPOCH.date()).days * 86_400 * 10**9
    if is_int_ms and isinstance(value, (int, np.integer)):
        return int(value) * _NS_PER_MS
    return None


def _footers(resolved: Any, plan_columns: list[str], ts_field: str, view: str) -> list[tuple[str, list[tuple[int, int, int, int | None, int | None]]]]:
    """Per file: ``(row group, rows, bytes, min ns, max ns)`` of each row group; checks the columns."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow.parquet as pq

    fs = resolved.location.arrow_filesystem()

    def footer(path: str) -> list[tuple[int, int, int, int | None, int | None]]:
        uri = resolved.uri_of(path)
        try:
            with fs.open_input_file(path) as f:
                handle = pq.ParquetFile(f)
                meta, schema = handle.metadata, handle.schema_arrow
        except (pa.ArrowException, OSError) as exc:
            raise MaterializeError(f"feature view {view!r}: {uri} is not a readable Parquet file: {exc}") from None
        missing = [c for c in plan_columns if c not in schema.names]
        if missing:
            raise MaterializeError(f"feature view {view!r}: {uri} has no column(s) {missing} (columns: {schema.names})")
        ts_type = schema.field(ts_field).type
        is_int_ms = pa.types.is_integer(ts_type)
        column = next((j for j in range(meta.num_columns) if meta.schema.column(j).name == ts_field and meta.schema.column(j).path == ts_field), None)
        groups = []
        for i in range(meta.num_row_groups):
            rg = meta.row_group(i)
            low = high = None
            if column is not None and rg.column(column).physical_type != "INT96":
                stats = rg.column(column).statistics
                if stats is not None and stats.has_min_max:
                    low, high = _stat_ns(stats.min, is_int_ms), _stat_ns(stats.max, is_int_ms)
            groups.append((i, rg.num_rows, rg.total_byte_size, low, high))
        return groups

    with ThreadPoolExecutor(min(16, max(1, len(resolved.paths)))) as pool:
        return list(zip(resolved.paths, pool.map(footer, resolved.paths)))


def plan_ranges(footers: Sequence[tuple[str, Sequence[tuple[int, int, int, int | None, int | None]]]], start_ns: int | None,
                end_ns: int, block_bytes: int) -> tuple[list[ParquetRange], int]:
    """Ranges of row groups to read (those that may hold event times in ``[start, end)``), and how many row groups were skipped.

    Example:
        >>> s = 10**9  # ns per second
        >>> groups = [("a", [(0, 10, 100, 0, 5 * s), (1, 10, 100, 6 * s, 9 * s)]), ("b", [(0, 10, 100, None, None)])]
        >>> ranges, skipped = plan_ranges(groups, 6 * s, 100 * s, 150)
        >>> [r.pieces for r in ranges], skipped
        ([(('a', (1,)),), (('b', (0,)),)], 1)
    """
    kept: list[tuple[str, int, int, int]] = []
    skipped = 0
    for path, groups in footers:
        for index, n, nbytes, low, high in groups:
            # +1 µs: statistics may be at µs precision while the column is in ns
            if (high is not None and start_ns is not None and high + 1_000 < start_ns) or (low is not None and low >= end_ns):
                skipped += 1
            else:
                kept.append((path, index, n, nbytes))
    return pack_row_groups(kept, block_bytes), skipped


# -- scan and reduce (plain logic) -----------------------------------------------------------------------


def scan_rows(plan: ScanPlan, table: pa.Table, first_order: int, where: str = "") -> tuple[pa.Table, int]:
    """The rows of ``table`` in the interval, as reducer input: ``[key, *features, __ts_ns, (__created_ns), __order]``.

    Rows with a null key or event time are dropped. ``__order`` is ``first_order`` plus the row
    number (it breaks full ties: the later row wins).

    Returns:
        The rows and how many of ``table``'s rows were in the interval.

    Raises:
        MaterializeError: a column of the wrong type; names ``where`` and the column.
    """
    view = plan.view
    key = view.entity.join_key
    try:
        ts, valid = to_ns(table[plan.timestamp_field], f"column {plan.timestamp_field!r}")
    except (PitJoinError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise MaterializeError(f"feature view {view.name!r}: {where}: event time {exc}") from None
    if plan.start_ns is not None:
        valid &= ts >= plan.start_ns
    valid &= ts < plan.end_ns
    if table[key].null_count:
        valid &= np.asarray(pc.is_valid(table[key]).to_numpy(zero_copy_only=False), bool)
    columns: dict[str, Any] = {}
    for name, arrow_type in [(key, view.entity.arrow_type), *((f.name, _arrow(f.dtype)) for f in view.features)]:
        column = table[name]
        if not column.type.equals(arrow_type):
            try:
                column = pc.cast(column, arrow_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise MaterializeError(f"feature view {view.name!r}: {where}: column {name!r} is {column.type}, the view has {arrow_type}: {exc}") from None
        columns[name] = column
    columns[TS] = ts
    if plan.created_field:
        try:
            created, created_valid = to_ns(table[plan.created_field], f"column {plan.created_field!r}")
        except (PitJoinError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise MaterializeError(f"feature view {view.name!r}: {where}: created timestamp {exc}") from None
        columns[CREATED] = np.where(created_valid, created, _NULL_CREATED)
    columns[ORDER] = np.int64(first_order) + np.arange(table.num_rows, dtype=np.int64)
    out = pa.table(columns)
    in_range = int(valid.sum())
    return (out if in_range == table.num_rows else out.filter(pa.array(valid))), in_range


def _arrow(dtype: str) -> pa.DataType:
    return {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(), "bool": pa.bool_()}[dtype]


def latest(table: pa.Table, key: str) -> pa.Table:
    """One row per key of reducer input: the greatest ``(__ts_ns, __created_ns, __order)``.

    One unstable ``argsort`` of the keys (NumPy's vectorised sort, several times faster than a
    multi-key ``lexsort``), then per key group the maximum of each tie-breaker in turn
    (``maximum.reduceat``) among the rows still in the running; rows in key order.
    """
    n = table.num_rows
    if n <= 1:
        return table
    column = table[key].combine_chunks()
    codes = column.to_numpy(zero_copy_only=False) if pa.types.is_integer(column.type) else pc.dictionary_encode(column).indices.to_numpy(zero_copy_only=False)
    perm = np.argsort(codes)
    grouped = codes[perm]
    starts = np.flatnonzero(np.concatenate([[True], grouped[1:] != grouped[:-1]]))
    sizes = np.diff(np.append(starts, n))
    running: np.ndarray | None = None
    tie_breakers = [TS] + ([CREATED] if CREATED in table.column_names else []) + [ORDER]
    for name in tie_breakers:
        values = table[name].to_numpy()[perm]
        if running is not None:
            values = np.where(running, values, np.iinfo(np.int64).min)
        best = values == np.repeat(np.maximum.reduceat(values, starts), sizes)
        running = best if running is None else running & best
        if int(running.sum()) == len(starts):  # one row left per key: no tie to break further
            break
    return table.take(pa.array(perm[running]))


class LatestRows:
    """The latest row of each key among the pieces it is given; what a reducer actor runs.

    Pieces are buffered and folded in when they outgrow the rows held (at least
    ``min_fold_rows``), so each input row is sorted a small number of times and memory stays
    at about three times the distinct keys' rows.

    Example:
        >>> from fabric_ray.features.definitions import Entity, Feature
        >>> v = FeatureView("v", Entity("user", "k"), (Feature("x", "float64"),))
        >>> r = LatestRows(v, created=False, min_fold_rows=2)
        >>> r.add(pa.table({"k": [1, 2], "x": [1.0, 2.0], "__ts_ns": [5_000_000, 5_000_000], "__order": [0, 1]}))
        2
        >>> r.add(pa.table({"k": [1], "x": [3.0], "__ts_ns": [9_000_000], "__order": [2]}))
        1
        >>> [b.to_pydict() for b in r.batches(10)]
        [{'k': [1, 2], 'x': [3.0, 2.0], 'event_ts_ms': [9, 5]}]
    """

    def __init__(self, view: FeatureView, created: bool, min_fold_rows: int = 256 * 1024) -> None:
        self.view = view
        self.created = created
        self.min_fold_rows = min_fold_rows
        self._held: pa.Table | None = None
        self._buffer: list[pa.Table] = []
        self._buffered = 0

    def add(self, piece: pa.Table) -> int:
        """Take a piece of reducer input; return its rows."""
        self._buffer.append(piece)
        self._buffered += piece.num_rows
        if self._buffered >= max(self.min_fold_rows, self._held.num_rows if self._held is not None else 0):
            self._fold()
        return piece.num_rows

    def _fold(self) -> None:
        if not self._buffer:
            return
        parts = ([self._held] if self._held is not None else []) + self._buffer
        self._buffer, self._buffered = [], 0
        self._held = latest(pa.concat_tables(parts), self.view.entity.join_key)
        del parts
        pa.default_memory_pool().release_unused()  # give the fold's scratch memory back to the OS

    def count(self) -> int:
        """Distinct keys held, after folding what is buffered."""
        self._fold()
        return 0 if self._held is None else self._held.num_rows

    def batches(self, rows: int) -> Iterator[pa.Table]:
        """The latest rows as row tables of at most ``rows`` rows (``created_ts_ms`` when the source
        has created timestamps), in the online store's key order; what is held is released."""
        self._fold()
        held, self._held = self._held, None
        if held is None or held.num_rows == 0:
            return
        key = self.view.entity.join_key
        held = held.take(pa.array(key_order(self.view, held[key])))
        columns = {key: held[key], **{f: held[f] for f in self.view.feature_names}}
        columns[EVENT_TS] = _ms(held[TS])
        if self.created:
            created = held[CREATED].to_numpy()
            columns[CREATED_TS] = pa.array(created // _NS_PER_MS, mask=created == _NULL_CREATED)
        out = pa.table(columns)
        del held
        for offset in range(0, out.num_rows, rows):
            yield out.slice(offset, rows)


def _ms(ns: pa.ChunkedArray) -> pa.Array:
    return pa.array(ns.to_numpy() // _NS_PER_MS)


# -- Ray ---------------------------------------------------------------------------------------------


class _Scan:
    """The Ray Data task of the scan stage: read ranges, cut their rows by reducer, hand them over."""

    def __init__(self, plan: ScanPlan, reducers: list[Any]) -> None:
        self.plan, self.reducers = plan, reducers

    def __call__(self, batch: pa.Table) -> pa.Table:
        import ray

        read = in_range = 0
        try:
            for text, index in zip(batch.column("range").to_pylist(), batch.column("index").to_pylist()):
                piece_range = ParquetRange.from_json(text)
                order = index << 32
                for table, where in self._read(piece_range):
                    rows, n = scan_rows(self.plan, table, order, where)
                    read, in_range, order = read + table.num_rows, in_range + n, order + table.num_rows
                    if rows.num_rows:
                        parts = split_by(rows, bucket_of([rows[self.plan.view.entity.join_key]], self.plan.buckets), self.plan.buckets)
                        ray.get([self.reducers[b].add.remote(p) for b, p in enumerate(parts) if p.num_rows])
                        del parts
                    del rows, table
        except MaterializeError as exc:  # handed to the driver as data: Ray Data would bury it in its own error
            return pa.table({"rows_read": [read], "rows_in_range": [in_range], "error": [str(exc)]})
        finally:
            pa.default_memory_pool().release_unused()
        return pa.table({"rows_read": [read], "rows_in_range": [in_range], "error": pa.array([None], pa.string())})

    def _read(self, piece_range: ParquetRange) -> Iterator[tuple[pa.Table, str]]:
        import pyarrow.parquet as pq

        for path, groups in piece_range.pieces:
            where = f"{self.plan.scheme}://{path}"
            try:
                with self.plan.filesystem.open_input_file(path) as f:
                    table = pq.ParquetFile(f).read_row_groups(list(groups), columns=self.plan.columns)
            except (pa.ArrowException, OSError) as exc:
                raise MaterializeError(f"feature view {self.plan.view.name!r}: cannot read {where}: {exc}") from None
            yield table, where


_REMOTE: dict[str, Any] = {}


def _reducer_class() -> Any:
    import ray

    if "reducer" not in _REMOTE:
        _REMOTE["reducer"] = ray.remote(num_cpus=0, max_restarts=0)(_Reducer)
    return _REMOTE["reducer"]


class _Reducer(LatestRows):
    """:class:`LatestRows` as an actor: its batches stream back one at a time."""

    def stream(self, rows: int) -> Iterator[pa.Table]:
        yield from self.batches(rows)


# -- the Feast registry ------------------------------------------------------------------------------


class _Registry:
    """The Feast registry's materialization intervals (opened on first use)."""

    def __init__(self, cfg: FabricConfig) -> None:
        self.cfg = cfg
        self._store: Any = None

    @property
    def registry(self) -> Any:
        if self._store is None:
            from feast import FeatureStore

            from fabric_ray.features.feast_repo import repo_config

            self._store = FeatureStore(config=repo_config(self.cfg))
        return self._store.registry

    def view(self, name: str) -> Any | None:
        """The registry's feature view (or stream feature view) ``name``, or ``None``."""
        from feast.errors import FeatureViewNotFoundException

        project = self.cfg.features.project
        for get in (self.registry.get_feature_view, self.registry.get_stream_feature_view):
            try:
                return get(name, project, allow_cache=False)
            except FeatureViewNotFoundException:
                continue
        return None

    def record(self, stored: Any, start: dt.datetime, end: dt.datetime) -> None:
        self.registry.apply_materialization(stored, self.cfg.features.project, start, end)


# -- materialize -------------------------------------------------------------------------------------


def _as_utc(value: dt.datetime | int | str, what: str) -> dt.datetime:
    """A datetime (naive: UTC), ms since the epoch, or an ISO 8601 string, as an aware UTC datetime."""
    if isinstance(value, bool):
        raise MaterializeError(f"{what}: expected a datetime, ms since the epoch or an ISO 8601 string; got {value!r}")
    if isinstance(value, (int, np.integer)):
        return EPOCH + dt.timedelta(milliseconds=int(value))
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise MaterializeError(f"{what}: {value!r} is not an ISO 8601 time (e.g. 2026-01-31T00:00:00Z)") from None
    if not isinstance(value, dt.datetime):
        raise MaterializeError(f"{what}: expected a datetime, ms since the epoch or an ISO 8601 string; got {value!r}")
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def _ns(value: dt.datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1_000


def _views_to_run(catalog: Catalog, views: Sequence[str] | str | None) -> list[str]:
    if views is None:
        return [v for v in catalog.views if v in catalog.batch_sources]
    names = [views] if isinstance(views, str) else list(views)
    for name in names:
        catalog.view(name)
        if name not in catalog.batch_sources:
            raise MaterializeError(
                f"feature view {name!r} has no batch source to materialize from (views with one: {sorted(catalog.batch_sources)})"
            )
    return names


@dataclass
class _Bars:
    """tqdm bars for rows read and entities written (or nothing)."""

    progress: bool
    bars: list[Any] = field(default_factory=list)

    def bar(self, desc: str, total: int | None, unit: str) -> Any:
        if not self.progress:
            return _NoBar()
        from tqdm.auto import tqdm

        b = tqdm(total=total, desc=desc, unit=unit, unit_scale=True, leave=True)
        self.bars.append(b)
        return b

    def close(self) -> None:
        for b in self.bars:
            b.close()
        self.bars.clear()


class _NoBar:
    total: int | None = None

    def update(self, _n: int) -> None:
        return None

    def close(self) -> None:
        return None


def materialize(
    cfg: FabricConfig,
    catalog: Catalog,
    views: Sequence[str] | str | None = None,
    *,
    start: dt.datetime | int | str | None = None,
    end: dt.datetime | int | str | None = None,
    incremental: bool = True,
    warm: Warm | None = None,
    progress: bool = True,
) -> MaterializeReport:
    """Write the latest row of each entity with event time in ``[start, end)`` to the online store.

    See the module docstring for the semantics and how it runs. Ray is reached through
    :func:`fabric_ray.runtime.ensure_ray` (the configured cluster, or a local one).

    Args:
        cfg: the fabric config (online store, registry, ``features.materialize_batch_rows``,
            ``etl.block_bytes``, storage settings for ``s3://`` sources).
        catalog: views and their batch sources.
        views: view names (``None``: every view with a batch source).
        start: first event time included (a datetime, naive read as UTC; ms since the epoch; or
            ISO 8601). ``None``: with ``incremental``, the end of the view's last recorded
            materialization (or ``end - ttl``, or the beginning); without, the beginning.
        end: first event time excluded (``None``: now).
        incremental: start where the last recorded run ended; the view must be in the Feast
            registry (``fabric features apply``).
        warm: called as ``warm(view, rows)`` with each batch written (a row table), e.g. to
            put the rows into the cache shards.
        progress: show tqdm bars (rows read, entities written) on stderr.

    Returns:
        A :class:`MaterializeReport`; each view's interval is recorded in the Feast registry
        when the view is there.

    Raises:
        MaterializeError: a view without a batch source, an incremental run of a view the
            registry does not know, a source path without Parquet files, a missing or mistyped
            column, an unreadable file (named).
        CatalogError: an unknown view.

    Example (needs Ray and an applied feature repo)::

        report = materialize(cfg, catalog, ["user_daily"], end="2026-03-01T00:00:00Z",
                             warm=lambda view, rows: writer.write(rows))
        report.view("user_daily").entities_written
    """
    from fabric_ray.runtime import ensure_ray

    started = time.perf_counter()
    names = _views_to_run(catalog, views)
    end_dt = _as_utc(end, "end") if end is not None else dt.datetime.now(dt.timezone.utc)
    start_dt = _as_utc(start, "start") if start is not None else None
    registry = _Registry(cfg)
    store = OnlineStore(cfg, catalog)
    reports = []
    connected = False
    try:
        for name in names:
            view = catalog.view(name)
            stored = registry.view(name)
            view_start = _start_of(view, stored, start_dt, end_dt, incremental, cfg)
            if view_start is not None and view_start >= end_dt:
                reports.append(ViewReport(name, view_start, end_dt))
                continue
            if not connected:
                ensure_ray(cfg.ray)
                connected = True
            report = _materialize_view(cfg, view, catalog.batch_sources[name], view_start, end_dt, store, warm, progress)
            if stored is not None:
                registry.record(stored, view_start or EPOCH, end_dt)
                report = _with(report, recorded=True)
            reports.append(report)
    finally:
        store.close()
    return MaterializeReport(tuple(reports), time.perf_counter() - started)


def _with(report: ViewReport, **changes: Any) -> ViewReport:
    from dataclasses import replace

    return replace(report, **changes)


def _start_of(view: FeatureView, stored: Any, start: dt.datetime | None, end: dt.datetime, incremental: bool, cfg: FabricConfig) -> dt.datetime | None:
    if start is not None:
        return start
    if not incremental:
        return None
    if stored is None:
        raise MaterializeError(
            f"feature view {view.name!r} is not in the Feast registry {cfg.feature_registry} (project {cfg.features.project!r}), "
            "so there is no record of its last run: apply the feature repo first (`fabric features apply`), "
            "or pass start=... or incremental=False"
        )
    last = stored.most_recent_end_time
    if last is not None:
        return _as_utc(last, "registry end time")
    return end - dt.timedelta(seconds=view.ttl_s) if view.ttl_s else None


def _materialize_view(cfg: FabricConfig, view: FeatureView, source: BatchSource, start: dt.datetime | None, end: dt.datetime,
                      store: OnlineStore, warm: Warm | None, progress: bool) -> ViewReport:
    import ray

    from fabric_ray.etl.runner import _data_context, _read_tasks

    began = time.perf_counter()
    try:
        resolved = resolve_files(_source_uri(source.path), "parquet", cfg.storage_root, cfg.storage)
    except SourceError as exc:
        raise MaterializeError(f"feature view {view.name!r}: batch source {source.path!r}: {exc}") from None
    columns = [view.entity.join_key, *view.feature_names, source.timestamp_field] + (
        [source.created_timestamp_column] if source.created_timestamp_column else [])
    footers = _footers(resolved, columns, source.timestamp_field, view.name)
    start_ns = _ns(start) if start is not None else None
    ranges, skipped = plan_ranges(footers, start_ns, _ns(end), cfg.etl.block_bytes)
    total_groups = sum(len(g) for _, g in footers)
    report = ViewReport(view.name, start, end, files=len(footers), row_groups=total_groups, row_groups_read=total_groups - skipped)
    if not ranges:
        return _with(report, seconds=time.perf_counter() - began)

    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    created = bool(source.created_timestamp_column)
    reducers = [_reducer_class().remote(view, created) for _ in range(cpus)]
    fs = resolved.location.arrow_filesystem()
    plan = ScanPlan(view, source.timestamp_field, source.created_timestamp_column, start_ns, _ns(end), len(reducers), fs, resolved.location.scheme)
    bars = _Bars(progress)
    read_bar = bars.bar(f"{view.name}: rows read", sum(r.rows for r in ranges), "rows")
    rows_read = in_range = written = 0
    try:
        with _data_context(cfg):
            items = [{"range": r.to_json(), "index": i} for i, r in enumerate(ranges)]
            ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(ranges), _read_tasks())))
            # concurrency: a task waiting on the reducers gives its CPU back to Ray, which would
            # start more tasks (and worker processes, ~300 MiB each) than there are CPUs
            stats = ds.map_batches(_Scan(plan, reducers), batch_size=1, batch_format="pyarrow", zero_copy_batch=True, concurrency=cpus)
            for batch in stats.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=0):
                errors = [e for e in batch["error"].to_pylist() if e]
                if errors:
                    raise MaterializeError(errors[0])
                n = int(pc.sum(batch["rows_read"]).as_py() or 0)
                rows_read += n
                in_range += int(pc.sum(batch["rows_in_range"]).as_py() or 0)
                read_bar.update(n)
        counts = ray.get([r.count.remote() for r in reducers])
        read_bar.close()
        scanned = time.perf_counter()
        write_bar = bars.bar(f"{view.name}: entities written", sum(counts), "entities")
        streams = [r.stream.options(num_returns="streaming").remote(cfg.features.materialize_batch_rows) for r in reducers]
        for stream in streams:
            for ref in stream:
                batch = ray.get(ref)
                del ref
                written += store.write(view.name, batch)
                if warm is not None:
                    warm(view.name, batch.drop_columns([CREATED_TS]) if CREATED_TS in batch.column_names else batch)
                write_bar.update(batch.num_rows)
    finally:
        bars.close()
        for r in reducers:
            ray.kill(r, no_restart=True)
    done = time.perf_counter()
    return _with(report, rows_read=rows_read, rows_in_range=in_range, entities_written=written, seconds=done - began,
                 scan_seconds=scanned - began, write_seconds=done - scanned)
