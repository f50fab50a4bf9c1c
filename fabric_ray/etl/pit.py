"""Point-in-time (as-of) joins: training sets from an entity table and feature tables.

For every row of the *entity table* (join keys, an entity timestamp, any other columns) and every
:class:`FeatureTable`, the join picks the feature row that a model would have seen at that
moment:

1. same join key values (every key column equal; a null key matches nothing);
2. ``feature timestamp <= entity timestamp`` (a feature row stamped at the entity's instant counts);
3. ``feature timestamp >= entity timestamp - ttl`` when the table has a TTL (the edge is
   *inclusive*, as in Feast's file offline store; ``ttl_s=None`` or ``0`` means no limit);
4. of those, the latest feature timestamp; ties broken by the created timestamp (latest wins, a
   null created timestamp loses to any value), then by source order (the later row wins: the
   later file in the source's list, the later row in its file or table).

No match gives nulls in that table's feature columns. The output has exactly one row per entity
row, in input order (duplicates kept: Feast drops them, feast-dev/feast#6787), with the entity
columns first, unchanged, then each table's features in the order given. Feature rows with a
null key or timestamp are ignored; an entity row with a null key or timestamp gets nulls.

Timestamps may be Arrow timestamps of any unit (time-zone aware or naive, naive read as UTC) or
dates, or integers read as milliseconds since the epoch; they are compared as instants.

:func:`point_in_time_join` runs in this process: per feature table, the feature rows are sorted by
(key, timestamp) packed into one int64 and reduced to one winner per pair, and each entity row
finds its candidate with one ``searchsorted`` (NumPy and Arrow, no Python loop over rows).
:func:`fabric_ray.etl.pit_ray.point_in_time_join_ray` runs the same matching out of core on Ray,
bucket by bucket. ``docs/point-in-time.md`` states the semantics with examples.

Example:
    >>> import pyarrow as pa
    >>> entities = pa.table({"user": [1, 1, 2], "event_timestamp": [1_000, 5_000, 1_000]})
    >>> spend = pa.table({"user": [1, 1, 2], "ts": [0, 4_000, 2_000], "spend": [1.0, 2.0, 3.0]})
    >>> table = FeatureTable("spend", spend, join_keys="user", timestamp_column="ts", features="spend", ttl_s=3)
    >>> point_in_time_join(entities, [table]).to_pydict()["spend"]
    [1.0, 2.0, None]
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = ["FeatureTable", "ParquetFiles", "PitJoinError", "point_in_time_join"]

_NS_PER_MS = 1_000_000
_NULL_CREATED = np.iinfo(np.int64).min  # sorts before every real created timestamp


class PitJoinError(ValueError):
    """A point-in-time join was set up wrongly: a missing column, a type that cannot match, a name clash."""


@dataclass(frozen=True)
class ParquetFiles:
    """Parquet files read as one table, in list order (which is the source order for ties).

    Args:
        paths: file paths on ``filesystem`` (``StorageLocation.join(...)`` paths for a storage root).
        filesystem: a ``pyarrow.fs.FileSystem``, e.g. ``StorageLocation.arrow_filesystem()``;
            ``None``: the local file system.
        schema: the table's schema when known (a storage Dataset's); a file lacking one of its
            columns reads it as nulls (columns added by schema evolution). ``None``: the first
            file's schema, and every file must have the columns read.

    Raises:
        PitJoinError: no paths and no schema were given.
    """

    paths: tuple[str, ...]
    filesystem: pafs.FileSystem | None = None
    schema: pa.Schema | None = None

    def __post_init__(self) -> None:
        paths = (self.paths,) if isinstance(self.paths, str) else tuple(self.paths)
        if not paths and self.schema is None:
            raise PitJoinError("ParquetFiles: no paths given; pass at least one Parquet file (or the schema of an empty source)")
        object.__setattr__(self, "paths", paths)

    @cached_property
    def table_schema(self) -> pa.Schema:
        """``schema``, or else the first file's (its footer is read once)."""
        if self.schema is not None:
            return self.schema
        try:
            return pq.read_schema(self.paths[0], filesystem=self.filesystem)
        except (OSError, pa.ArrowInvalid) as exc:
            raise PitJoinError(f"cannot read the schema of Parquet file {self.paths[0]!r}: {exc}; check the path and its filesystem") from exc

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """All files concatenated (only ``columns`` when given)."""
        columns = list(columns) if columns is not None else self.table_schema.names
        if not self.paths:
            return self.table_schema.empty_table().select(columns)
        return pa.concat_tables([read_parquet_file(p, self.filesystem, columns, self.schema) for p in self.paths])


def read_parquet_file(path: str, filesystem: pafs.FileSystem | None, columns: Sequence[str] | None, schema: pa.Schema | None = None) -> pa.Table:
    """``columns`` (``None``: all) of one Parquet file; with ``schema``, a column the file lacks is read as nulls.

    Raises:
        PitJoinError: the file is missing or unreadable, or lacks a column ``schema`` does not
            supply; the message names the file.
    """
    try:
        handle = pq.ParquetFile(path, filesystem=filesystem)
        if columns is None:
            return handle.read()
        present = set(handle.schema_arrow.names)
        missing = [c for c in columns if c not in present]
        if missing and (schema is None or any(c not in schema.names for c in missing)):
            raise PitJoinError(f"Parquet file {path!r} has no column {missing[0]!r} (columns: {handle.schema_arrow.names})")
        table = handle.read(columns=[c for c in columns if c in present])
    except (OSError, pa.ArrowInvalid) as exc:
        raise PitJoinError(f"cannot read Parquet file {path!r}: {exc}; check the path, its filesystem and that it is Parquet") from exc
    if not missing:
        return table.select(list(columns))
    arrays = [table[c] if c in present else pa.nulls(table.num_rows, schema.field(c).type) for c in columns]
    return pa.table(arrays, names=list(columns))


def _is_storage_dataset(source: object) -> bool:
    """Duck-typed ``fabric_ray.storage.dataset.Dataset`` (file_paths() and a location with arrow_filesystem())."""
    return hasattr(source, "file_paths") and hasattr(getattr(source, "location", None), "arrow_filesystem")


def _is_source(source: object) -> bool:
    """Whether ``source`` is a kind of feature source (no I/O)."""
    paths = isinstance(source, (list, tuple)) and bool(source) and all(isinstance(p, str) for p in source)
    return isinstance(source, (pa.Table, ParquetFiles)) or paths or _is_storage_dataset(source)


def as_parquet_files(source: object) -> ParquetFiles | None:
    """``source`` as :class:`ParquetFiles` when it names files (paths, ParquetFiles, a storage
    Dataset: its latest version's files and schema); ``None`` for anything else."""
    if isinstance(source, ParquetFiles):
        return source
    if isinstance(source, (list, tuple)) and source and all(isinstance(p, str) for p in source):
        return ParquetFiles(tuple(source))
    if _is_storage_dataset(source):
        version = source.version
        return ParquetFiles(tuple(source.file_paths(version=version)), source.location.arrow_filesystem(), source.snapshot(version).schema)
    return None


@dataclass(frozen=True, eq=False)
class FeatureTable:
    """One feature table of a point-in-time join.

    Args:
        name: the table's name (prefixes its features when ``full_feature_names`` is set).
        source: a ``pyarrow.Table``, :class:`ParquetFiles`, a list of local Parquet paths, or a
            ``fabric_ray.storage.dataset.Dataset`` (its current files, in its listing order).
        join_keys: key column(s); the entity table must have columns of the same names.
        timestamp_column: the feature timestamp (Arrow timestamp or date, or int ms since the epoch).
        features: the column(s) to fetch.
        created_column: optional created timestamp breaking ties on ``timestamp_column``.
        ttl_s: how far back a feature row may lie behind the entity timestamp, in seconds
            (inclusive); ``None`` or ``0``: no limit.

    Raises:
        PitJoinError: empty keys or features, a feature that is also a key or timestamp, a
            negative TTL, or a source of another kind.
    """

    name: str
    source: Any
    join_keys: tuple[str, ...]
    timestamp_column: str
    features: tuple[str, ...]
    created_column: str | None = None
    ttl_s: float | None = None

    def __post_init__(self) -> None:
        for attr in ("join_keys", "features"):
            value = getattr(self, attr)
            object.__setattr__(self, attr, (value,) if isinstance(value, str) else tuple(value))
        where = f"feature table {self.name!r}"
        if not self.name:
            raise PitJoinError("feature table: name must not be empty")
        if not self.join_keys:
            raise PitJoinError(f"{where}: join_keys must name at least one column")
        if not self.features:
            raise PitJoinError(f"{where}: features must name at least one column")
        special = set(self.join_keys) | {self.timestamp_column, self.created_column}
        clash = [f for f in self.features if f in special]
        if clash:
            raise PitJoinError(f"{where}: {clash[0]!r} is a key or timestamp column, not a feature; drop it from features")
        if len(set(self.features)) != len(self.features):
            raise PitJoinError(f"{where}: features {list(self.features)} name a column twice")
        if self.ttl_s is not None and not self.ttl_s >= 0:
            raise PitJoinError(f"{where}: ttl_s must be >= 0 seconds (or None for no limit); got {self.ttl_s}")
        if not _is_source(self.source):
            raise PitJoinError(f"{where}: source must be a pyarrow.Table, ParquetFiles, a list of Parquet paths or a storage Dataset; got {type(self.source).__name__}")

    @property
    def ttl_ns(self) -> int | None:
        """The TTL in nanoseconds, ``None`` when unlimited."""
        return None if not self.ttl_s else int(round(self.ttl_s * 1e9))

    @property
    def columns(self) -> list[str]:
        """The columns the join reads from the source."""
        return [*self.join_keys, self.timestamp_column, *([self.created_column] if self.created_column else []), *self.features]

    def output_names(self, full_feature_names: bool) -> list[str]:
        """The output column of each feature: ``feature``, or ``name__feature`` with ``full_feature_names``."""
        return [f"{self.name}__{f}" if full_feature_names else f for f in self.features]

    def resolve(self) -> FeatureTable:
        """This table with its source pinned: a ``pyarrow.Table`` or :class:`ParquetFiles`.

        A storage Dataset is read at its latest version as of this call, so one join sees one version.
        """
        if isinstance(self.source, pa.Table):
            return self
        files = as_parquet_files(self.source)
        return self if files is self.source else replace(self, source=files)

    def schema(self) -> pa.Schema:
        """The source's schema (of its first file for plain files)."""
        source = self.source if isinstance(self.source, (pa.Table, ParquetFiles)) else self.resolve().source
        return source.schema if isinstance(source, pa.Table) else source.table_schema

    def read(self) -> pa.Table:
        """The source's needed columns, all rows, in source order."""
        if isinstance(self.source, pa.Table):
            return self.source.select(self.columns)
        return as_parquet_files(self.source).read(self.columns)


def check_join(entity_schema: pa.Schema, tables: Sequence[FeatureTable], timestamp_column: str, full_feature_names: bool) -> list[pa.Field]:
    """Check that the join can run; return the output's feature fields in order.

    Raises:
        PitJoinError: a column is missing, keys cannot be compared, a timestamp has the wrong
            type, two output columns share a name, or two tables share a name.
    """
    if not tables:
        raise PitJoinError("point-in-time join: give at least one FeatureTable")
    names = [t.name for t in tables]
    if len(set(names)) != len(names):
        raise PitJoinError(f"point-in-time join: feature table names must differ; got {names}")
    if timestamp_column not in entity_schema.names:
        raise PitJoinError(f"entity table has no timestamp column {timestamp_column!r} (columns: {entity_schema.names}); pass timestamp_column=")
    timestamp_kind(entity_schema.field(timestamp_column).type, f"entity column {timestamp_column!r}")
    taken = set(entity_schema.names)
    out: list[pa.Field] = []
    for table in tables:
        schema = table.schema()
        where = f"feature table {table.name!r}"
        for column in table.columns:
            if column not in schema.names:
                raise PitJoinError(f"{where}: source has no column {column!r} (columns: {schema.names})")
        for key in table.join_keys:
            if key not in entity_schema.names:
                raise PitJoinError(f"{where}: entity table has no join key column {key!r}; rename the entity column to {key!r}")
            key_type(entity_schema.field(key).type, schema.field(key).type, f"{where}: join key {key!r}")
        timestamp_kind(schema.field(table.timestamp_column).type, f"{where}: column {table.timestamp_column!r}")
        if table.created_column:
            timestamp_kind(schema.field(table.created_column).type, f"{where}: column {table.created_column!r}")
        for feature, name in zip(table.features, table.output_names(full_feature_names)):
            if name in taken:
                raise PitJoinError(f"{where}: output column {name!r} already exists; rename it or pass full_feature_names=True")
            taken.add(name)
            out.append(pa.field(name, schema.field(feature).type))
    return out


def timestamp_kind(typ: pa.DataType, what: str) -> str:
    """``"time"`` (timestamp or date) or ``"int_ms"``; :class:`PitJoinError` naming ``what`` otherwise."""
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        return "time"
    if pa.types.is_integer(typ):
        return "int_ms"
    raise PitJoinError(f"{what}: a timestamp must be an Arrow timestamp, a date or integer ms since the epoch; got {typ}")


def key_type(entity_type: pa.DataType, feature_type: pa.DataType, what: str) -> pa.DataType:
    """The type both sides of a join key are compared in; :class:`PitJoinError` naming ``what`` if none.

    Integers meet as ``int64`` (whatever their widths), floats as ``float64``, strings as the
    feature side's string type; an all-null entity column takes the feature side's type.

    Example:
        >>> key_type(pa.int32(), pa.uint16(), "user"), key_type(pa.string(), pa.large_string(), "region")
        (DataType(int64), DataType(large_string))
    """
    common = _common_key_type(entity_type, feature_type)
    if common is None:
        raise PitJoinError(f"{what}: the entity column is {entity_type} but the feature column is {feature_type}; cast one to match")
    return common


def _common_key_type(entity_type: pa.DataType, feature_type: pa.DataType) -> pa.DataType | None:
    if entity_type == feature_type and not pa.types.is_integer(feature_type):
        return feature_type
    if pa.types.is_null(entity_type):
        return _common_key_type(feature_type, feature_type)
    if pa.types.is_integer(entity_type) and pa.types.is_integer(feature_type):
        return pa.uint64() if entity_type == feature_type == pa.uint64() else pa.int64()
    if pa.types.is_floating(entity_type) and pa.types.is_floating(feature_type):
        return pa.float64()
    textual = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
    if any(f(entity_type) for f in textual) and any(f(feature_type) for f in textual):
        return feature_type
    return None


def to_ns(column: pa.ChunkedArray | pa.Array, what: str = "timestamp") -> tuple[np.ndarray, np.ndarray]:
    """``(int64 ns since the epoch, valid mask)`` of a timestamp, date or int-ms column (nulls: 0, False).

    Raises:
        PitJoinError: a value lies outside what int64 nanoseconds hold (years 1677 to 2262).
    """
    typ = column.type
    try:
        if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
            ints = pc.cast(pc.cast(column, pa.timestamp("ns")), pa.int64())
        else:
            ints = pc.multiply_checked(pc.cast(column, pa.int64()), _NS_PER_MS)
    except pa.ArrowInvalid as exc:
        raise PitJoinError(f"{what}: a value is outside the years 1677-2262 that int64 nanoseconds hold ({exc}); fix or drop it") from exc
    return _filled(ints, 0), _valid(column)


def _filled(column: pa.ChunkedArray | pa.Array, fill: int) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if column.null_count:
        column = pc.fill_null(column, fill)
    return column.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _valid(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if column.null_count == 0:
        return np.ones(len(column), dtype=bool)
    return _to_bool(pc.is_valid(column))


def _to_bool(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=bool)


def key_codes(entity_keys: Sequence[pa.ChunkedArray], feature_keys: Sequence[pa.ChunkedArray]) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative int64 codes of composite keys, equal exactly when every key column is equal; -1 for a null.

    Both sides are cast to their common type first (see :func:`key_type`).

    Example:
        >>> e, f = key_codes([pa.chunked_array([[1, 2, None]])], [pa.chunked_array([[2, 2, 3]])])
        >>> (bool(e[1] == f[0] == f[1]), bool(e[0] == f[2]), int(e[2]))
        (True, False, -1)
    """
    n_e = len(entity_keys[0]) if entity_keys else 0
    codes: np.ndarray | None = None
    bound = 1
    for e_col, f_col in zip(entity_keys, feature_keys):
        typ = _common_key_type(e_col.type, f_col.type) or f_col.type
        e_col, f_col = (c if c.type == typ else pc.cast(c, typ) for c in (e_col, f_col))
        col_codes, size = _column_codes(pa.chunked_array(_chunks(e_col) + _chunks(f_col), type=typ))
        if codes is None:
            codes, bound = col_codes, size
            continue
        if bound * size >= 2**62:  # re-densify before the mixed-radix product could overflow
            codes, bound = densify(codes)
        nulls = (codes < 0) | (col_codes < 0)
        codes = codes * size + col_codes
        codes[nulls] = -1
        bound *= size
    assert codes is not None
    return codes[:n_e], codes[n_e:]


def _column_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """Codes of one key column (-1 for null) and their exclusive bound."""
    column = column.combine_chunks() if column.num_chunks else pa.array([], column.type)
    valid = _valid(column)
    if pa.types.is_integer(column.type) and len(column) and valid.any():
        values = _filled(column, 0) if column.type != pa.uint64() else None
        if values is not None:
            low, high = int(values[valid].min()), int(values[valid].max())
            if high - low < 2**40:  # small range: the offset is a code, no hashing needed
                return np.where(valid, values - low, -1), high - low + 1
    encoded = pc.dictionary_encode(column)
    return _filled(encoded.indices, -1), max(len(encoded.dictionary), 1)


def densify(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """``codes`` renumbered ``0..k-1`` in order (-1 kept), and ``k``."""
    live = codes >= 0
    dense = np.full(len(codes), -1, dtype=np.int64)
    distinct, dense[live] = np.unique(codes[live], return_inverse=True)
    return dense, max(len(distinct), 1)


def _chunks(column: pa.ChunkedArray | pa.Array) -> list[pa.Array]:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]


def _time_axis(e_ts: np.ndarray, f_ts: np.ndarray, codes: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Timestamps as small non-negative ints preserving order and equality, and their bound.

    Offsets from the minimum divided by their greatest common divisor (whole seconds stay
    seconds); when ``codes`` times that range would overflow an int64, ranks among the
    distinct timestamps instead.
    """
    low = min(int(e_ts.min()) if len(e_ts) else 0, int(f_ts.min()))
    e_rel, f_rel = e_ts - low, f_ts - low
    step = int(np.gcd(np.gcd.reduce(f_rel), np.gcd.reduce(e_rel) if len(e_rel) else 0)) or 1
    bound = max(int(f_rel.max()), int(e_rel.max()) if len(e_rel) else 0) // step + 1
    if codes * bound < 2**62:
        return e_rel // step, f_rel // step, bound
    distinct, inverse = np.unique(np.concatenate([f_rel, e_rel]), return_inverse=True)
    return inverse[len(f_rel) :], inverse[: len(f_rel)], len(distinct)


def asof_match(e_code: np.ndarray, e_ts: np.ndarray, f_code: np.ndarray, f_ts: np.ndarray, f_created: np.ndarray | None, ttl_ns: int | None) -> np.ndarray:
    """For each entity row, the index of its feature row (-1: none), by the rules of this module.

    Feature rows must be valid (code >= 0); an entity row with code -1 gets -1; the later
    index wins a full tie (same code, timestamp and created). Timestamps are int64 ns.

    How: each row's (code, timestamp) becomes one int64; the feature rows are sorted by it and
    reduced to one winner per distinct value (the latest created, then the highest index);
    each entity row's candidate is then one ``searchsorted`` away.

    Example:
        >>> asof_match(np.array([0, 0, 1]), np.array([5, 9, 5]), np.array([0, 0, 0]), np.array([5, 5, 1]), np.array([2, 1, 0]), None).tolist()
        [0, 0, -1]
    """
    n_f, n_e = len(f_code), len(e_code)
    result = np.full(n_e, -1, dtype=np.int64)
    live = np.flatnonzero(e_code >= 0)
    if n_f == 0 or len(live) == 0:
        return result
    e_code, e_ts = e_code[live], e_ts[live]
    codes = int(max(f_code.max(), e_code.max())) + 1
    if codes > n_f + len(live):  # sparse codes (raw key offsets): renumber so that code x time fits an int64
        dense, codes = densify(np.concatenate([f_code, e_code]))
        f_code, e_code = dense[:n_f], dense[n_f:]
    e_time, f_time, width = _time_axis(e_ts, f_ts, codes)
    f_comp = f_code * width + f_time
    order = np.argsort(f_comp)
    sorted_comp = f_comp[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_comp[1:] != sorted_comp[:-1]]))
    if f_created is None and len(starts) == n_f:
        winners = order
    else:  # per distinct (code, timestamp): the highest index among the rows of the latest created
        if f_created is None:
            best = order
        else:
            created = f_created[order]
            latest = np.maximum.reduceat(created, starts)
            best = np.where(created == np.repeat(latest, np.diff(np.append(starts, n_f))), order, -1)
        winners = np.maximum.reduceat(best, starts)
    pos = np.searchsorted(sorted_comp[starts], e_code * width + e_time, side="right") - 1
    cand = winners[np.maximum(pos, 0)]
    ok = (pos >= 0) & (f_code[cand] == e_code)
    if ttl_ns is not None:
        ok &= (e_ts - f_ts[cand]) <= ttl_ns
    result[live] = np.where(ok, cand, -1)
    return result


@dataclass(frozen=True)
class PreparedFeatures:
    """A feature table's rows ready to match: codes-to-be keys, ns timestamps, kept-row indices."""

    keys: list[pa.ChunkedArray]
    ts: np.ndarray
    created: np.ndarray | None
    rows: np.ndarray  # index of each kept row in the source table


def prepare_features(table: pa.Table, join_keys: Sequence[str], timestamp_column: str, created_column: str | None) -> PreparedFeatures:
    """Drop rows with a null key or timestamp; convert timestamps to ns (a null created: minimum)."""
    ts, valid = to_ns(table[timestamp_column], f"feature column {timestamp_column!r}")
    for key in join_keys:
        valid &= _valid(table[key])
    created = None
    if created_column:
        created, created_valid = to_ns(table[created_column], f"feature column {created_column!r}")
        created = np.where(created_valid, created, _NULL_CREATED)
    rows = np.flatnonzero(valid)
    if len(rows) == len(valid):
        return PreparedFeatures([table[k] for k in join_keys], ts, created, rows)
    keep = pa.array(rows)
    return PreparedFeatures([table[k].take(keep) for k in join_keys], ts[rows], None if created is None else created[rows], rows)


def match_table(entity_keys: list[pa.ChunkedArray], entity_ts: np.ndarray, entity_valid: np.ndarray, prepared: PreparedFeatures, ttl_ns: int | None) -> np.ndarray:
    """Indices into the *source* feature table for each entity row (-1: no match)."""
    e_code, f_code = key_codes(entity_keys, prepared.keys)
    e_code = np.where(entity_valid, e_code, -1)
    matched = asof_match(e_code, entity_ts, f_code, prepared.ts, prepared.created, ttl_ns)
    if len(prepared.rows) == 0:
        return matched  # all -1
    return np.where(matched >= 0, prepared.rows[np.maximum(matched, 0)], -1)


def take_or_null(table: pa.Table, indices: np.ndarray) -> pa.Table:
    """Rows ``indices`` of ``table``; -1 gives a row of nulls."""
    return table.take(pa.array(indices, type=pa.int64(), mask=indices < 0))


def point_in_time_join(entities: pa.Table, tables: Sequence[FeatureTable] | FeatureTable, *, timestamp_column: str = "event_timestamp", full_feature_names: bool = False) -> pa.Table:
    """As-of join ``entities`` with each feature table, in this process (semantics: module docstring).

    Args:
        entities: join keys, ``timestamp_column`` and any other columns; duplicates allowed.
        tables: one or more :class:`FeatureTable`; their keys may differ.
        timestamp_column: the entity timestamp column.
        full_feature_names: name outputs ``table__feature`` instead of ``feature``.

    Returns:
        ``entities`` (same rows, same order) followed by every table's feature columns.

    Raises:
        PitJoinError: see :func:`check_join`, or an unreadable Parquet source.
    """
    tables = [t.resolve() for t in ([tables] if isinstance(tables, FeatureTable) else tables)]
    fields = check_join(entities.schema, tables, timestamp_column, full_feature_names)
    entity_ts, entity_ts_valid = to_ns(entities[timestamp_column], f"entity column {timestamp_column!r}")
    out = entities
    columns = iter(fields)
    for table in tables:
        source = table.read()
        prepared = prepare_features(source, table.join_keys, table.timestamp_column, table.created_column)
        valid = entity_ts_valid.copy()
        for key in table.join_keys:
            valid &= _valid(entities[key])
        matched = match_table([entities[k] for k in table.join_keys], entity_ts, valid, prepared, table.ttl_ns)
        taken = take_or_null(source.select(list(table.features)), matched)
        for feature in table.features:
            out = out.append_column(next(columns), taken[feature])
    return out


# --- stable hashing of keys into buckets (used by the out-of-core path) -----------------------------------

_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX_1
    x = (x ^ (x >> np.uint64(27))) * _MIX_2
    return x ^ (x >> np.uint64(31))


def _column_hash(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """uint64 hash per value, the same in every process; nulls hash to 0."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if pa.types.is_integer(column.type):
        values = _filled(pc.cast(column, pa.int64(), safe=False), 0).view(np.uint64)
        hashed = _splitmix64(values)
    else:  # hash each distinct value once (CRC-32 of its text), then spread to the rows
        encoded = pc.dictionary_encode(column)
        distinct = np.fromiter(
            (zlib.crc32(v if isinstance(v, bytes) else str(v).encode()) for v in encoded.dictionary.to_pylist()),
            dtype=np.uint64,
            count=len(encoded.dictionary),
        )
        hashed = _splitmix64(distinct)[_filled(encoded.indices, 0)] if len(distinct) else np.zeros(len(column), np.uint64)
    if column.null_count:
        hashed[~_valid(column)] = 0
    return hashed


def bucket_of(keys: Sequence[pa.ChunkedArray | pa.Array], buckets: int) -> np.ndarray:
    """The bucket (``0 <= b < buckets``) of each row's composite key: a stable hash, vectorised.

    Cast both sides of a join to the same key types first: ``int32`` 7 and ``int64`` 7 share a
    bucket, but ``7`` and ``"7"`` do not.

    Example:
        >>> bucket_of([pa.array([7, 7, 8])], 4).tolist() == bucket_of([pa.array([7, 7, 8], pa.int32())], 4).tolist()
        True
    """
    hashed = np.zeros(len(keys[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in keys:
            hashed = _splitmix64(hashed ^ _column_hash(column))
    return (hashed % np.uint64(buckets)).astype(np.int64)


def split_by(table: pa.Table, part: np.ndarray, parts: int) -> list[pa.Table]:
    """``table`` cut into ``parts`` tables by ``part`` (row order kept within each)."""
    small = part.astype(np.int16) if parts <= np.iinfo(np.int16).max else part  # int16: NumPy's radix sort
    order = np.argsort(small, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(parts + 1))
    ordered = table.take(pa.array(order)) if len(order) else table
    return [ordered.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i])) for i in range(parts)]
