"""The point-in-time join out of core on Ray: hash buckets, joined one bucket per task.

Same semantics and output as :func:`fabric_ray.etl.pit.point_in_time_join` (``docs/point-in-time.md``),
for entity and feature tables larger than one process's memory. Three waves of Ray tasks, their
intermediate pieces in Ray's object store (which spills to local disk when it fills):

1. **split**: one task per entity block and per feature *unit* (a Parquet file, or a slice of an
   in-memory table) reads it, converts timestamps to ns and cuts its rows into ``buckets`` pieces
   by a stable hash of the table's join keys (:func:`fabric_ray.etl.pit.bucket_of`). Entity
   pieces carry only keys, timestamp and a row id (block << 32 | row); feature pieces carry keys,
   timestamps, a source-order id (unit << 32 | row) and the features.
2. **join**: one task per (feature table, bucket) concatenates that bucket's pieces, as-of joins
   them (:func:`fabric_ray.etl.pit.asof_match`) and cuts the matched feature values by entity
   block. It holds one bucket of one table, nothing more.
3. **assemble**: one task per entity block puts each table's values back in row order beside
   the block's own columns.

The result is a ``ray.data.Dataset`` with one block per entity block, in entity order, so
``ds.write_parquet(...)``, ``ds.iter_batches()`` or ``ds.to_arrow_refs()`` stream it on without a
gather. Memory per task is about one entity block plus one bucket (by default about 256 MiB of a
feature table, see ``buckets``) plus one input unit in the split wave.

Example (needs a running Ray cluster, so not run as a doctest)::

    ds = point_in_time_join_ray(entities, [FeatureTable("spend", ParquetFiles(paths, fs), "user", "ts", ["spend"], ttl_s=86_400)])
    ds.write_parquet("s3://bucket/training/2026-11-26", filesystem=fs)
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from fabric_ray.etl.pit import (
    _NULL_CREATED,
    FeatureTable,
    ParquetFiles,
    PitJoinError,
    _valid,
    as_parquet_files,
    asof_match,
    bucket_of,
    check_join,
    key_codes,
    key_type,
    read_parquet_file,
    split_by,
    take_or_null,
    to_ns,
)

__all__ = ["point_in_time_join_local", "point_in_time_join_ray"]

ROW_ID = "__pit_row"
TS = "__pit_ts"
CREATED = "__pit_created"
ORDER = "__pit_order"
VALID = "__pit_valid"
_LOW_32 = (1 << 32) - 1
BUCKET_BYTES = 256 * 2**20  # default target of in-memory bytes per bucket of a feature table
PARQUET_EXPANSION = 4  # in-memory bytes per Parquet byte, roughly (compression and encodings)


def _plan(table: FeatureTable, entity_schema: pa.Schema, full_feature_names: bool) -> dict[str, Any]:
    """What a task needs to know about one feature table (small and picklable: no source data)."""
    schema = table.schema()
    return {
        "name": table.name,
        "join_keys": list(table.join_keys),
        "key_types": [key_type(entity_schema.field(k).type, schema.field(k).type, k) for k in table.join_keys],
        "timestamp_column": table.timestamp_column,
        "created_column": table.created_column,
        "features": list(table.features),
        "outputs": table.output_names(full_feature_names),
        "ttl_ns": table.ttl_ns,
        "columns": table.columns,
    }


def _load(unit: Any, columns: Sequence[str] | None) -> pa.Table:
    """A unit: a table (resolved from its ObjectRef by Ray) or ``(path, filesystem, schema)`` of a Parquet file."""
    if isinstance(unit, pa.Table):
        return unit if columns is None else unit.select(list(columns))
    path, filesystem, schema = unit
    return read_parquet_file(path, filesystem, columns, schema)


def _entity_piece_columns(block: pa.Table, plan: dict, ts: np.ndarray, ts_valid: np.ndarray, row_ids: np.ndarray) -> pa.Table:
    keys = {k: block[k] if block[k].type == t else block[k].cast(t) for k, t in zip(plan["join_keys"], plan["key_types"])}
    return pa.table({**keys, TS: ts, VALID: ts_valid, ROW_ID: row_ids})


def _split_entities(unit: Any, block_index: int, plans: list[dict], buckets: int, timestamp_column: str, return_block: bool) -> Any:
    """Task: an entity block's per-(table, bucket) pieces, plus the block itself when read from a file."""
    block = _load(unit, None)
    ts, ts_valid = to_ns(block[timestamp_column], f"entity column {timestamp_column!r}")
    row_ids = (np.int64(block_index) << np.int64(32)) | np.arange(block.num_rows, dtype=np.int64)
    pieces: list[Any] = []
    for plan in plans:
        piece = _entity_piece_columns(block, plan, ts, ts_valid, row_ids)
        pieces.extend(split_by(piece, bucket_of([piece[k] for k in plan["join_keys"]], buckets), buckets))
    return _one_or_list(pieces + [block] if return_block else pieces)


def _split_features(unit: Any, unit_index: int, plan: dict, buckets: int) -> Any:
    """Task: a feature unit's valid rows (non-null keys and timestamp) cut into bucket pieces."""
    table = _load(unit, plan["columns"])
    ts, valid = to_ns(table[plan["timestamp_column"]], f"feature table {plan['name']!r}: column {plan['timestamp_column']!r}")
    for key in plan["join_keys"]:
        valid &= _valid(table[key])
    columns: dict[str, Any] = {k: table[k] if table[k].type == t else table[k].cast(t) for k, t in zip(plan["join_keys"], plan["key_types"])}
    columns[TS] = ts
    if plan["created_column"]:
        created, created_valid = to_ns(table[plan["created_column"]], f"feature table {plan['name']!r}: column {plan['created_column']!r}")
        columns[CREATED] = np.where(created_valid, created, _NULL_CREATED)
    columns[ORDER] = (np.int64(unit_index) << np.int64(32)) | np.arange(table.num_rows, dtype=np.int64)
    columns.update({f: table[f] for f in plan["features"]})
    piece = pa.table(columns)
    if not valid.all():
        piece = piece.filter(pa.array(valid))
    return _one_or_list(split_by(piece, bucket_of([piece[k] for k in plan["join_keys"]], buckets), buckets))


def _join_bucket(plan: dict, blocks: int, *pieces: pa.Table) -> Any:
    """Task: as-of join one bucket of one table (``blocks`` entity pieces, then feature pieces);
    the matched values cut by entity block."""
    entities = pa.concat_tables(pieces[:blocks])
    features = pa.concat_tables(pieces[blocks:])
    order = features[ORDER].to_numpy()
    if len(order) > 1 and not (np.diff(order) > 0).all():  # keep source order: the later row wins full ties
        features = features.take(pa.array(np.argsort(order, kind="stable")))
    keys = plan["join_keys"]
    e_code, f_code = key_codes([entities[k] for k in keys], [features[k] for k in keys])
    e_code = np.where(entities[VALID].to_numpy(), e_code, -1)
    e_ts = entities[TS].to_numpy()
    created = features[CREATED].to_numpy() if plan["created_column"] else None
    matched = asof_match(e_code, e_ts, f_code, features[TS].to_numpy(), created, plan["ttl_ns"])
    values = take_or_null(features.select(plan["features"]), matched).rename_columns(plan["outputs"])
    row_ids = entities[ROW_ID].to_numpy()
    out = values.add_column(0, ROW_ID, pa.array(row_ids))
    return _one_or_list(split_by(out, row_ids >> 32, blocks))


def _assemble(block: pa.Table, n_tables: int, buckets: int, *pieces: pa.Table) -> pa.Table:
    """Task: the entity block with each table's features, back in the block's row order."""
    out = block
    for t in range(n_tables):
        values = pa.concat_tables(pieces[t * buckets : (t + 1) * buckets])
        if values.num_rows != block.num_rows:
            raise RuntimeError(f"point-in-time join lost rows: block of {block.num_rows} got {values.num_rows} for table {t}")
        local = values[ROW_ID].to_numpy() & _LOW_32
        inverse = np.empty(len(local), dtype=np.int64)
        inverse[local] = np.arange(len(local))
        values = values.take(pa.array(inverse)).drop_columns([ROW_ID])
        for name in values.column_names:
            out = out.append_column(name, values[name])
    return out


def _one_or_list(out: list) -> Any:
    """A task's return: the list for several returns, the lone value for one (Ray's num_returns=1)."""
    return out if len(out) > 1 else out[0]


class _Local:
    """Runs the task graph in this process (tables in place of ObjectRefs)."""

    def put(self, value: Any) -> Any:
        return value

    def submit(self, fn: Any, returns: int, *args: Any) -> list[Any]:
        out = fn(*args)
        return [out] if returns == 1 else list(out)


class _OnRay:
    """Runs the task graph as Ray tasks; values live in the object store."""

    _remote: dict[Any, Any] = {}  # made once per process, on first use

    def __init__(self) -> None:
        import ray

        self.ray = ray

    def put(self, value: Any) -> Any:
        return self.ray.put(value)

    def submit(self, fn: Any, returns: int, *args: Any) -> list[Any]:
        if fn not in self._remote:
            self._remote[fn] = self.ray.remote(fn)
        refs = self._remote[fn].options(num_returns=returns).remote(*args)
        return [refs] if returns == 1 else refs


def _estimated_bytes(table: FeatureTable) -> int:
    """In-memory bytes of a feature table's read columns, estimated (files: the first one's size x their number)."""
    if isinstance(table.source, pa.Table):
        return table.source.select(table.columns).nbytes
    files = as_parquet_files(table.source)
    if not files.paths:
        return 0
    filesystem = files.filesystem or pafs.LocalFileSystem()  # None means local: never resolve a URI (it could reach AWS)
    try:
        size = filesystem.get_file_info(files.paths[0]).size or 0
    except (OSError, pa.ArrowInvalid):
        size = 0  # the split task will name the file if it cannot be read
    return size * len(files.paths) * PARQUET_EXPANSION


def _feature_units(table: FeatureTable, block_rows: int, run: Any) -> list[Any]:
    """Table slices (put), or ``(path, filesystem, schema)`` per Parquet file, in source order."""
    if isinstance(table.source, pa.Table):
        source = table.source.select(table.columns)
        return [run.put(source.slice(i, block_rows)) for i in range(0, max(source.num_rows, 1), block_rows)]
    files = as_parquet_files(table.source)
    if not files.paths:  # an empty storage Dataset: one empty unit keeps the task graph uniform
        return [run.put(files.table_schema.empty_table().select(table.columns))]
    return [(path, files.filesystem, files.schema) for path in files.paths]


def _entity_units(entities: Any, block_rows: int, run: Any) -> tuple[list[Any], list[bool], pa.Schema]:
    """Entity blocks (put or ObjectRefs, or ``(path, filesystem, schema)`` per file), which are files, and the schema."""
    if isinstance(entities, pa.Table):
        units = [run.put(entities.slice(i, block_rows)) for i in range(0, max(entities.num_rows, 1), block_rows)]
        return units, [False] * len(units), entities.schema
    if type(entities).__module__.startswith("ray.data"):
        schema = entities.schema()
        if schema is None:
            raise PitJoinError("entity dataset has no schema (is it empty?); pass a pyarrow.Table instead")
        arrow_schema = getattr(schema, "base_schema", schema)
        if not isinstance(arrow_schema, pa.Schema):
            arrow_schema = pa.schema(list(zip(schema.names, schema.types)))
        units = entities.to_arrow_refs()
        return units, [False] * len(units), arrow_schema
    files = as_parquet_files(entities)
    if files is None:
        raise PitJoinError(f"entities must be a pyarrow.Table, a ray.data.Dataset, ParquetFiles or Parquet paths; got {type(entities).__name__}")
    if not files.paths:
        return [run.put(files.table_schema.empty_table())], [False], files.table_schema
    return [(path, files.filesystem, files.schema) for path in files.paths], [True] * len(files.paths), files.table_schema


def _run_graph(entities: Any, tables: Sequence[FeatureTable] | FeatureTable, timestamp_column: str, full_feature_names: bool, buckets: int | None, block_rows: int, run: Any, default_buckets: Any) -> list[Any]:
    """Build and submit the split / join / assemble tasks; the output blocks (values or refs)."""
    if block_rows < 1 or (buckets is not None and buckets < 1):
        raise PitJoinError(f"block_rows and buckets must be >= 1; got block_rows={block_rows}, buckets={buckets}")
    tables = [t.resolve() for t in ([tables] if isinstance(tables, FeatureTable) else tables)]
    entity_units, from_files, entity_schema = _entity_units(entities, block_rows, run)
    check_join(entity_schema, tables, timestamp_column, full_feature_names)
    plans = [_plan(t, entity_schema, full_feature_names) for t in tables]
    feature_units = [_feature_units(t, block_rows, run) for t in tables]
    if buckets is None:
        biggest = max(_estimated_bytes(t) for t in tables)
        buckets = max(default_buckets(), -(-biggest // BUCKET_BYTES))
    n_tables, blocks = len(tables), len(entity_units)

    entity_pieces, entity_blocks = [], []  # [block][table * buckets + bucket]
    for b, unit in enumerate(entity_units):
        refs = run.submit(_split_entities, n_tables * buckets + from_files[b], unit, b, plans, buckets, timestamp_column, from_files[b])
        entity_pieces.append(refs[: n_tables * buckets])
        entity_blocks.append(refs[-1] if from_files[b] else unit)

    joined: list[list[list[Any]]] = []  # [table][bucket][block]
    for t, plan in enumerate(plans):
        feature_pieces = [run.submit(_split_features, buckets, unit, u, plan, buckets) for u, unit in enumerate(feature_units[t])]
        joined.append([
            run.submit(_join_bucket, blocks, plan, blocks, *[entity_pieces[b][t * buckets + k] for b in range(blocks)], *[p[k] for p in feature_pieces])
            for k in range(buckets)
        ])
    return [
        run.submit(_assemble, 1, entity_blocks[b], n_tables, buckets, *[joined[t][k][b] for t in range(n_tables) for k in range(buckets)])[0]
        for b in range(blocks)
    ]


def point_in_time_join_ray(
    entities: Any,
    tables: Sequence[FeatureTable] | FeatureTable,
    *,
    timestamp_column: str = "event_timestamp",
    full_feature_names: bool = False,
    buckets: int | None = None,
    block_rows: int = 250_000,
) -> Any:
    """As-of join out of core on the connected Ray cluster; same result as ``point_in_time_join``.

    Args:
        entities: a ``pyarrow.Table``, a ``ray.data.Dataset``, :class:`ParquetFiles` or a list of
            local Parquet paths (one block per file, in list order).
        tables: one or more :class:`FeatureTable`.
        timestamp_column: the entity timestamp column.
        full_feature_names: name outputs ``table__feature``.
        buckets: hash buckets per feature table; ``None``: the larger of the cluster's CPUs and
            the largest table's estimated in-memory size over :data:`BUCKET_BYTES` (256 MiB;
            Parquet files count ``PARQUET_EXPANSION`` (4) times their size).
        block_rows: rows per block when slicing in-memory tables.

    Returns:
        A ``ray.data.Dataset``: the entity rows in input order, one output block per entity
        block, each table's features appended.

    Raises:
        PitJoinError: see :func:`fabric_ray.etl.pit.check_join`; a task's error (e.g. an
            unreadable file, named) surfaces as a ``ray.exceptions.RayTaskError`` wrapping it.
    """
    import ray

    out = _run_graph(
        entities, tables, timestamp_column, full_feature_names, buckets, block_rows, _OnRay(),
        lambda: int(ray.cluster_resources().get("CPU", 1)),
    )
    return ray.data.from_arrow_refs(out)


def point_in_time_join_local(
    entities: pa.Table | ParquetFiles,
    tables: Sequence[FeatureTable] | FeatureTable,
    *,
    timestamp_column: str = "event_timestamp",
    full_feature_names: bool = False,
    buckets: int = 4,
    block_rows: int = 250_000,
) -> pa.Table:
    """The Ray path's task graph (split, join per bucket, assemble) run in this process, no Ray.

    For tests and debugging of the bucketed path; :func:`fabric_ray.etl.pit.point_in_time_join`
    is the faster in-process join. Same arguments and result as :func:`point_in_time_join_ray`.

    Example:
        >>> from fabric_ray.etl.pit import FeatureTable
        >>> spend = pa.table({"user": [1, 2, 3], "ts": [0, 0, 5], "spend": [1.0, 2.0, 3.0]})
        >>> entities = pa.table({"user": [3, 2, 1, 3], "event_timestamp": [9, 9, 9, 1]})
        >>> point_in_time_join_local(entities, FeatureTable("s", spend, "user", "ts", "spend"), buckets=3, block_rows=2)["spend"].to_pylist()
        [3.0, 2.0, 1.0, None]
    """
    blocks = _run_graph(entities, tables, timestamp_column, full_feature_names, buckets, block_rows, _Local(), lambda: buckets)
    return pa.concat_tables(blocks)
