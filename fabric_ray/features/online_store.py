"""The online store behind the cache shards: any Feast online store, read and written with row tables.

:class:`OnlineStore` speaks Feast's ``OnlineStore`` interface (``online_read``,
``online_write_batch``, ``update``) for the store that ``cfg.online_store`` configures (SQLite by
default; Redis, Postgres and the rest by config), so what it writes Feast's own
``FeatureStore.get_online_features`` and ``feast serve`` read, and the other way round.

Row tables are Arrow tables with the view's join key column, any of its feature columns and
``event_ts_ms`` (int64 ms since the epoch, event time); :meth:`OnlineStore.write` also takes an
optional ``created_ts_ms`` column (Feast's created timestamp, kept by the SQLite store).

What is kept, as Feast keeps it:

* event times at the store's precision: Feast's SQLite store keeps whole seconds, so a value
  written at ``...123 ms`` reads back at ``...000 ms``;
* a null feature value, and a float NaN, are stored as an empty ``ValueProto`` (Feast's
  ``NULL_VALUE``), and read back as nulls;
* the last write of a key wins, whatever its event time (Feast's rule: a write is an upsert of
  each ``(entity, feature)``). Within one :meth:`~OnlineStore.write` call, rows repeating a key
  are reduced to the one with the latest event time first (the later row on a tie), so a batch
  never ends on an older value.

SQLite bulk path: Feast's SQLite ``online_write_batch`` runs one ``INSERT`` per (entity, feature)
from Python and protobuf objects. For ``type: sqlite`` (without vector search and the
OpenAI-compatible ``value_num`` column, which Feast writes differently) :meth:`~OnlineStore.write`
builds the same rows column by column with NumPy (entity keys in Feast's serialization version
3, ``ValueProto`` bytes, ``value_text``, epoch-second timestamps) and hands them to one
``executemany`` per batch in entity-key order, into the same table and columns with the same
upsert. The rows are byte-identical to Feast's (``tests/unit/features/test_online_store.py``
proves it and reads them back through ``FeatureStore.get_online_features``). Pass
``bulk=False`` for Feast's own path.

Example:
    >>> import tempfile, pyarrow as pa
    >>> from fabric_ray.config import FabricConfig
    >>> from fabric_ray.features.catalog import Catalog
    >>> from fabric_ray.features.definitions import Entity, Feature, FeatureView
    >>> view = FeatureView("spend", Entity("user", "user_id"), (Feature("total", "float64"),))
    >>> store = OnlineStore(FabricConfig(home=tempfile.mkdtemp()), Catalog.of([view]))
    >>> store.write("spend", pa.table({"user_id": [1, 2], "total": [3.5, None], "event_ts_ms": [1_000, 2_000]}))
    2
    >>> store.read("spend", [2, 1, 9]).sort_by("user_id").to_pydict()
    {'user_id': [1, 2], 'total': [3.5, None], 'event_ts_ms': [1000, 2000]}
    >>> store.close()
"""

from __future__ import annotations

import datetime as dt
import itertools
import struct
import threading
import time
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric_ray.config import FabricConfig
from fabric_ray.features.catalog import Catalog
from fabric_ray.features.definitions import FeatureView

__all__ = ["CREATED_TS", "EVENT_TS", "OnlineStore", "OnlineStoreError", "feast_objects"]

EVENT_TS = "event_ts_ms"
CREATED_TS = "created_ts_ms"

# ValueProto field and ValueType numbers (feast/protos/feast/types/Value.proto)
_VALUE_FIELD = {"int64": "int64_val", "float64": "double_val", "string": "string_val", "bool": "bool_val"}
_TAG = {"string": 0x12, "int64": 0x20, "float64": 0x29, "bool": 0x38}  # (field << 3) | wire type
_KEY_TYPE = {"string": 2, "int64": 4}  # ValueType.STRING, ValueType.INT64
SQLITE_BUSY_TIMEOUT_MS = 60_000
_ARROW = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string(), "bool": pa.bool_()}


class OnlineStoreError(ValueError):
    """A row table or view the online store cannot take; the message names the view and column."""


def feast_objects(view: FeatureView, source: Any = None) -> tuple[Any, Any]:
    """Feast ``Entity`` and ``FeatureView`` equivalent to ``view`` for online-store calls.

    The online table of a view depends only on the project and the view's name, so these reach
    the same rows as the repo's own definitions.

    Args:
        view: the fabric's view.
        source: an optional Feast data source to attach (``None``: none).

    Raises:
        OnlineStoreError: the entity key is not int64 or string (Feast serializes only those).

    Example::

        entity, fv = feast_objects(view, FileSource(path=..., timestamp_field="event_timestamp"))
        FeatureStore(config=repo_config(cfg)).apply([entity, fv])
    """
    from feast import Entity, Field
    from feast import FeatureView as FeastView
    from feast.types import Bool, Float64, Int64, String
    from feast.value_type import ValueType

    dtype = view.entity.dtype
    if dtype not in _KEY_TYPE:
        raise OnlineStoreError(
            f"feature view {view.name!r}: entity {view.entity.name!r} has a {dtype} key; "
            "Feast online stores key entities by int64 or string"
        )
    types = {"int64": Int64, "float64": Float64, "string": String, "bool": Bool}
    entity = Entity(name=view.entity.name, join_keys=[view.entity.join_key],
                    value_type=ValueType.INT64 if dtype == "int64" else ValueType.STRING)
    schema = [Field(name=view.entity.join_key, dtype=types[dtype])] + [Field(name=f.name, dtype=types[f.dtype]) for f in view.features]
    ttl = dt.timedelta(seconds=view.ttl_s) if view.ttl_s else dt.timedelta(0)
    return entity, FeastView(name=view.name, entities=[entity], schema=schema, source=source, ttl=ttl, online=True)


class _Live:
    """What an :class:`OnlineStore` opens on first use (never pickled)."""

    def __init__(self, cfg: FabricConfig) -> None:
        from feast.infra.online_stores.helpers import get_online_store_from_config

        from fabric_ray.features.feast_repo import repo_config

        self.config = repo_config(cfg)
        self.store = get_online_store_from_config(self.config.online_store)
        self.views: dict[str, Any] = {}  # name -> Feast FeatureView whose table exists
        oc = self.config.online_store
        self.bulk_sqlite = (
            oc.type in ("sqlite", "feast.infra.online_stores.sqlite.SqliteOnlineStore")
            and not getattr(oc, "vector_enabled", False)
            and not getattr(oc, "enable_openai_compatible_store", False)
            and not self.config.registry.enable_online_feature_view_versioning
        )
        if oc.type in ("sqlite", "feast.infra.online_stores.sqlite.SqliteOnlineStore"):
            from pathlib import Path

            # Feast creates the file's folder but not its parents: a fresh fabric home has neither
            Path(self.store._get_db_path(self.config)).parent.mkdir(parents=True, exist_ok=True)
            # several processes write one file (cache shards, materialization): wait for the lock
            # longer than sqlite3's 5 s default before failing with "database is locked"
            conn = self.store._get_conn(self.config)
            conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            # Write-ahead logging: readers (other shards' read-throughs, feast serve) never wait for
            # a writer's transaction, and a commit is one append. It stays set in the file, and
            # every SQLite client, Feast's included, reads such a file as before.
            conn.execute("PRAGMA journal_mode = WAL")


class OnlineStore:
    """Read and write row tables through the Feast online store of ``cfg`` (see the module docstring).

    Connections open on first use, and an instance pickles without them (to its config and
    catalog), so a factory that builds one can be shipped to actors. One instance may be used
    from several threads (calls are serialized).

    Args:
        cfg: the fabric config (``cfg.online_store``, ``cfg.features.project``).
        catalog: the views it may read and write.
    """

    def __init__(self, cfg: FabricConfig, catalog: Catalog) -> None:
        self.cfg = cfg
        self.catalog = catalog
        self._live: _Live | None = None
        self._lock = threading.RLock()

    def __getstate__(self) -> dict[str, Any]:
        return {"cfg": self.cfg, "catalog": self.catalog}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["cfg"], state["catalog"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"OnlineStore(type={self.cfg.online_store.get('type')!r}, project={self.cfg.features.project!r})"

    # -- plumbing -------------------------------------------------------------------------------

    def _open(self) -> _Live:
        if self._live is None:
            self._live = _Live(self.cfg)
        return self._live

    def _feast_view(self, live: _Live, name: str) -> Any:
        """The Feast view of ``name``; its online table is created if missing (once per instance)."""
        fv = live.views.get(name)
        if fv is None:
            entity, fv = feast_objects(self.catalog.view(name))
            live.store.update(live.config, tables_to_delete=[], tables_to_keep=[fv], entities_to_delete=[],
                              entities_to_keep=[entity], partial=True)
            live.views[name] = fv
        return fv

    def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        with self._lock:
            live, self._live = self._live, None
            if live is None:
                return
            conn = getattr(live.store, "_conn", None)
            if conn is not None:
                conn.close()
                live.store._conn = None

    # -- read -----------------------------------------------------------------------------------

    def read(self, view: str, keys: Sequence[Any]) -> pa.Table:
        """The stored rows of ``keys`` (found keys only, in any order), through Feast's ``online_read``.

        Returns:
            ``[join_key, *features, event_ts_ms]``; a null or missing feature value is null.

        Raises:
            CatalogError: unknown view.
            OnlineStoreError: a key of the wrong type.
        """
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        fv_def = self.catalog.view(view)
        key_field = _VALUE_FIELD[fv_def.entity.dtype]
        join_key = fv_def.entity.join_key
        if isinstance(keys, (pa.Array, pa.ChunkedArray)):
            keys = keys.to_pylist()
        keys = list(dict.fromkeys(keys))  # each key once
        try:
            protos = [EntityKey(join_keys=[join_key], entity_values=[Value(**{key_field: k})]) for k in keys]
        except (TypeError, ValueError) as exc:
            raise OnlineStoreError(f"feature view {view!r}: keys of {join_key!r} must be {fv_def.entity.dtype}: {exc}") from None
        with self._lock:
            live = self._open()
            fv = self._feast_view(live, view)
            found = live.store.online_read(live.config, fv, protos, None) if protos else []
        hit = [i for i, (ts, values) in enumerate(found) if values]
        columns: dict[str, Any] = {join_key: pa.array([keys[i] for i in hit], _ARROW[fv_def.entity.dtype])}
        for feature in fv_def.features:
            cells = [found[i][1].get(feature.name) for i in hit]
            columns[feature.name] = pa.array([_python_value(c) for c in cells], _ARROW[feature.dtype])
        stamps = [found[i][0] for i in hit]
        columns[EVENT_TS] = _datetimes_to_ms(stamps)
        return pa.table(columns)

    # -- write ----------------------------------------------------------------------------------

    def write(self, view: str, table: pa.Table, *, bulk: bool | None = None) -> int:
        """Upsert the rows of ``table`` (a row table, optionally with ``created_ts_ms``); return how many.

        Args:
            view: the feature view.
            table: join key, any of the view's features (absent ones are left as stored), and
                ``event_ts_ms``. Rows with a null key or event time are refused.
            bulk: ``None``: the SQLite bulk path where it applies, else Feast's
                ``online_write_batch``; ``False``: always Feast's; ``True``: the bulk path or
                :class:`OnlineStoreError`.

        Raises:
            CatalogError: unknown view.
            OnlineStoreError: a missing key or ``event_ts_ms`` column, an unknown column, a null
                key or time, a column of the wrong type; named.
        """
        fv_def = self.catalog.view(view)
        table = prepare_rows(fv_def, table)
        if table.num_rows == 0:
            return 0
        with self._lock:
            live = self._open()
            fv = self._feast_view(live, view)
            use_bulk = live.bulk_sqlite if bulk is None else bulk
            if use_bulk and not live.bulk_sqlite:
                raise OnlineStoreError(f"feature view {view!r}: the bulk path needs a plain sqlite online store; got {self.cfg.online_store}")
            if use_bulk:
                self._write_sqlite(live, fv, fv_def, table)
            else:
                live.store.online_write_batch(live.config, fv, feast_rows(fv_def, table), None)
        return table.num_rows

    def _write_sqlite(self, live: _Live, fv: Any, fv_def: FeatureView, table: pa.Table) -> None:
        from feast.infra.online_stores.helpers import compute_table_id
        from feast.infra.online_stores.sqlite import _quote_id

        name = compute_table_id(live.config.project, fv, False)
        sql = (
            f"INSERT INTO {_quote_id(name)} (entity_key, feature_name, value, value_text, event_ts, created_ts) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, event_ts = excluded.event_ts, created_ts = excluded.created_ts;"
        )
        conn = live.store._get_conn(live.config)
        with conn:
            conn.executemany(sql, sqlite_rows(fv_def, table, live.config.entity_key_serialization_version))


# -- row tables -------------------------------------------------------------------------------------


def prepare_rows(view: FeatureView, table: pa.Table) -> pa.Table:
    """``table`` checked and cast to the view's types, with the latest row per key only.

    Raises:
        OnlineStoreError: see :meth:`OnlineStore.write`.
    """
    key = view.entity.join_key
    allowed = {key, EVENT_TS, CREATED_TS, *view.feature_names}
    for needed in (key, EVENT_TS):
        if needed not in table.column_names:
            raise OnlineStoreError(f"feature view {view.name!r}: the rows have no {needed!r} column (columns: {table.column_names})")
    unknown = [c for c in table.column_names if c not in allowed]
    if unknown:
        raise OnlineStoreError(f"feature view {view.name!r}: unknown column(s) {unknown}; it has {list(view.feature_names)}")
    types = {key: view.entity.arrow_type, EVENT_TS: pa.int64(), CREATED_TS: pa.int64(),
             **{f.name: _ARROW[f.dtype] for f in view.features}}
    columns = {}
    for name in table.column_names:
        column = table[name]
        if not column.type.equals(types[name]):
            try:
                if pa.types.is_timestamp(column.type) and name in (EVENT_TS, CREATED_TS):
                    column = pc.cast(pc.cast(column, pa.timestamp("ms")), pa.int64())
                else:
                    column = pc.cast(column, types[name])
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise OnlineStoreError(f"feature view {view.name!r}: column {name!r} is {column.type}, expected {types[name]}: {exc}") from None
        columns[name] = column
    for needed in (key, EVENT_TS):
        if columns[needed].null_count:
            raise OnlineStoreError(f"feature view {view.name!r}: column {needed!r} has {columns[needed].null_count} null(s)")
    out = pa.table(columns)
    if out.num_rows > 1 and pc.count_distinct(out[key]).as_py() < out.num_rows:
        out = latest_per_key(out, key)
    return out


def latest_per_key(table: pa.Table, key: str) -> pa.Table:
    """One row per ``key``: the latest ``event_ts_ms``, then the latest ``created_ts_ms``, then the later row.

    Example:
        >>> t = pa.table({"k": [1, 1, 2, 1], "event_ts_ms": [5, 9, 1, 9], "x": ["a", "b", "c", "d"]})
        >>> latest_per_key(t, "k").sort_by("k").to_pydict()
        {'k': [1, 2], 'event_ts_ms': [9, 1], 'x': ['d', 'c']}
    """
    n = table.num_rows
    codes = _codes(table[key])
    sort_keys = [np.arange(n)]
    if CREATED_TS in table.column_names:
        sort_keys.append(_filled(table[CREATED_TS], np.iinfo(np.int64).min))
    sort_keys += [_filled(table[EVENT_TS], np.iinfo(np.int64).min), codes]
    order = np.lexsort(sort_keys)
    ordered = codes[order]
    last = np.flatnonzero(np.append(ordered[1:] != ordered[:-1], True))
    return table.take(pa.array(order[last]))


def _codes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_integer(column.type):
        return _filled(column, 0)
    return _filled(pc.dictionary_encode(column).indices, -1)


def _filled(column: pa.ChunkedArray | pa.Array, fill: int) -> np.ndarray:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        column = pc.fill_null(column, fill)
    return column.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


# -- Feast's generic path -----------------------------------------------------------------------------


def feast_rows(view: FeatureView, table: pa.Table) -> list[tuple[Any, dict[str, Any], dt.datetime, dt.datetime | None]]:
    """``online_write_batch`` data: ``(EntityKeyProto, {feature: ValueProto}, event time, created)`` per row."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    key, key_field = view.entity.join_key, _VALUE_FIELD[view.entity.dtype]
    entity_keys = [EntityKey(join_keys=[key], entity_values=[Value(**{key_field: k})]) for k in table[key].to_pylist()]
    per_feature = []
    for feature in view.features:
        if feature.name not in table.column_names:
            continue
        field = _VALUE_FIELD[feature.dtype]
        column = _nan_to_null(table[feature.name]) if feature.dtype == "float64" else table[feature.name]
        per_feature.append((feature.name, [Value() if v is None else Value(**{field: v}) for v in column.to_pylist()]))
    names = [n for n, _ in per_feature]
    values = [dict(zip(names, row)) for row in zip(*(v for _, v in per_feature))] if per_feature else [{} for _ in entity_keys]
    stamps = _ms_to_datetimes(table[EVENT_TS])
    created = _ms_to_datetimes(table[CREATED_TS]) if CREATED_TS in table.column_names else [None] * table.num_rows
    return list(zip(entity_keys, values, stamps, created))


def _ms_to_datetimes(column: pa.ChunkedArray) -> list[dt.datetime | None]:
    return pc.cast(column, pa.timestamp("ms", tz="UTC")).to_pylist()


def _datetimes_to_ms(stamps: list[dt.datetime | None]) -> pa.Array:
    if not stamps:
        return pa.array([], pa.int64())
    return pc.cast(pc.cast(pa.array(stamps, pa.timestamp("us", tz="UTC")), pa.timestamp("ms", tz="UTC")), pa.int64())


def _python_value(value: Any) -> Any:
    if value is None:
        return None
    which = value.WhichOneof("val")
    if which is None or which == "null_val":
        return None
    return getattr(value, which)


def _nan_to_null(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Feast stores a float NaN as a null value."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    nan = pc.is_nan(column)
    if not pc.any(nan).as_py():
        return column
    return pc.if_else(nan, pa.scalar(None, column.type), column)


# -- the SQLite bulk path --------------------------------------------------------------------------


def sqlite_rows(view: FeatureView, table: pa.Table, key_version: int = 3) -> Any:
    """The rows Feast's SQLite ``online_write_batch`` would insert for ``table``, in entity-key order.

    An iterator of ``(entity_key, feature_name, value, value_text, event_ts, created_ts)``
    tuples, one per (entity, feature present), built column by column.
    """
    if key_version < 3:
        raise OnlineStoreError(f"entity_key_serialization_version {key_version}: the bulk path writes version 3 only")
    table = table.take(pa.array(key_order(view, table[view.entity.join_key])))
    key_list = entity_key_bytes(view, table[view.entity.join_key]).to_pylist()
    event = _epoch_seconds(table[EVENT_TS])
    created = _epoch_seconds(table[CREATED_TS]) if CREATED_TS in table.column_names else itertools.repeat(None)
    per_feature = []
    for feature in view.features:
        if feature.name in table.column_names:
            column = table[feature.name].combine_chunks()
            per_feature.append((feature.name, value_bytes(column, feature.dtype).to_pylist(), value_text(column, feature.dtype)))
    if not per_feature:
        return iter(())
    rows = [zip(key_list, itertools.repeat(name), blobs, texts, event, created) for name, blobs, texts in per_feature]
    return itertools.chain.from_iterable(zip(*rows))


def key_order(view: FeatureView, keys: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Indices that sort ``keys`` as their serialized entity keys sort (bytewise, as SQLite's index does).

    An int64 key serializes as a fixed prefix and its 8 little-endian bytes: read as a big-endian
    number, those bytes sort bytewise under an ordinary (fast) sort.

    Example:
        >>> from fabric_ray.features.definitions import Entity, Feature
        >>> v = FeatureView("v", Entity("user", "id"), (Feature("n", "int64"),))
        >>> keys = pa.array([256, 1, -1, 2])
        >>> order = key_order(v, keys)
        >>> serialized = entity_key_bytes(v, keys).to_pylist()
        >>> [serialized[i] for i in order] == sorted(serialized)
        True
    """
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if view.entity.dtype == "int64":
        little = np.ascontiguousarray(keys.to_numpy(zero_copy_only=False), dtype="<i8")
        return np.argsort(little.view(">u8"))
    return pc.sort_indices(entity_key_bytes(view, keys)).to_numpy()


def entity_key_bytes(view: FeatureView, keys: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Feast's ``serialize_entity_key`` (version 3) of each key, vectorised.

    Example:
        >>> from fabric_ray.features.definitions import Entity, Feature
        >>> v = FeatureView("v", Entity("user", "id"), (Feature("n", "int64"),))
        >>> entity_key_bytes(v, pa.array([1])).to_pylist()
        [b'\\x01\\x00\\x00\\x00\\x02\\x00\\x00\\x00\\x02\\x00\\x00\\x00id\\x04\\x00\\x00\\x00\\x08\\x00\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00']
    """
    dtype = view.entity.dtype
    if dtype not in _KEY_TYPE:
        raise OnlineStoreError(f"feature view {view.name!r}: Feast online stores key entities by int64 or string, not {dtype}")
    name = view.entity.join_key.encode()
    head = struct.pack("<III", 1, 2, len(name)) + name + struct.pack("<I", _KEY_TYPE[dtype])
    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if dtype == "int64":
        values = np.asarray(keys.to_numpy(zero_copy_only=False), dtype="<i8")
        record = np.empty((len(values), len(head) + 12), np.uint8)
        record[:, : len(head)] = np.frombuffer(head, np.uint8)
        record[:, len(head) : len(head) + 4] = np.frombuffer(struct.pack("<I", 8), np.uint8)
        record[:, len(head) + 4 :] = values.view(np.uint8).reshape(-1, 8)
        return _binary(np.full(len(values), record.shape[1]), record.ravel())
    data, lengths = _utf8(keys)
    prefix = np.empty((len(lengths), len(head) + 4), np.uint8)
    prefix[:, : len(head)] = np.frombuffer(head, np.uint8)
    prefix[:, len(head) :] = lengths.astype("<u4").view(np.uint8).reshape(-1, 4)
    return _concat_rows(prefix.ravel(), np.full(len(lengths), prefix.shape[1]), data, lengths)


def value_bytes(column: pa.Array, dtype: str) -> pa.Array:
    """Serialized ``ValueProto`` of each value (``b""``, an empty ``ValueProto``, for null and NaN), vectorised.

    Example:
        >>> value_bytes(pa.array([1.5, None]), "float64").to_pylist()
        [b')\\x00\\x00\\x00\\x00\\x00\\x00\\xf8?', b'']
    """
    valid = _valid_values(column, dtype)
    n = len(column)
    tag = _TAG[dtype]
    if dtype == "float64":
        record = np.empty((n, 9), np.uint8)
        record[:, 0] = tag
        record[:, 1:] = np.asarray(column.to_numpy(zero_copy_only=False), dtype="<f8").view(np.uint8).reshape(-1, 8)
        return _binary(np.where(valid, 9, 0), record[valid].ravel())
    if dtype == "bool":
        record = np.empty((n, 2), np.uint8)
        record[:, 0] = tag
        record[:, 1] = np.asarray(pc.fill_null(column, False).to_numpy(zero_copy_only=False), dtype=np.uint8)
        return _binary(np.where(valid, 2, 0), record[valid].ravel())
    if dtype == "int64":
        ints = _filled(column, 0).view(np.uint64)
        digits, width = _varints(ints)
        record = np.concatenate([np.full((n, 1), tag, np.uint8), digits], axis=1)
        lengths = np.where(valid, width + 1, 0)
        return _binary(lengths, record[np.arange(record.shape[1]) < lengths[:, None]])
    data, lengths = _utf8(column)
    digits, width = _varints(lengths.astype(np.uint64))
    prefix = np.concatenate([np.full((n, 1), tag, np.uint8), digits], axis=1)
    prefix_lengths = np.where(valid, width + 1, 0)
    return _concat_rows(prefix[np.arange(prefix.shape[1]) < prefix_lengths[:, None]], prefix_lengths, data, np.where(valid, lengths, 0))


def value_text(column: pa.Array, dtype: str) -> list[str | None]:
    """Feast's ``value_text`` column: ``str()`` of the Python value (``None`` for null and NaN)."""
    valid = _valid_values(column, dtype)
    if dtype == "float64":
        values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64).tolist()
        return [repr(v) if ok else None for v, ok in zip(values, valid.tolist())]
    if dtype == "bool":
        return pc.if_else(column, "True", "False").to_pylist()
    if dtype == "int64":
        return pc.cast(column, pa.string()).to_pylist()
    return column.to_pylist()


def _valid_values(column: pa.Array, dtype: str) -> np.ndarray:
    valid = np.ones(len(column), bool) if column.null_count == 0 else np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), bool)
    if dtype == "float64":
        valid &= ~np.isnan(np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64))
    return valid


def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Protobuf base-128 varint digits of uint64 ``values``: a ``(n, 10)`` byte matrix and the digits used."""
    values = values.astype(np.uint64, copy=False)
    width = np.ones(len(values), np.int64)
    for k in range(1, 10):
        width += values >= np.uint64(1 << (7 * k))
    digits = np.empty((len(values), 10), np.uint8)
    for k in range(10):
        byte = ((values >> np.uint64(7 * k)) & np.uint64(0x7F)).astype(np.uint8)
        digits[:, k] = byte | np.where(k < width - 1, 0x80, 0).astype(np.uint8)
    return digits, width


def _utf8(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The bytes and per-value lengths of a string column (nulls: length 0)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    column = pc.cast(column, pa.large_binary()) if column.type != pa.large_binary() else column
    if column.null_count:
        column = pc.fill_null(column, b"")
    offsets = np.frombuffer(column.buffers()[1], np.int64)[column.offset : column.offset + len(column) + 1]
    data = np.frombuffer(column.buffers()[2], np.uint8)[offsets[0] : offsets[-1]] if len(column) else np.empty(0, np.uint8)
    return data, np.diff(offsets)


def _binary(lengths: np.ndarray, data: np.ndarray) -> pa.Array:
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return pa.Array.from_buffers(pa.large_binary(), len(lengths), [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data))])


def _concat_rows(a: np.ndarray, a_len: np.ndarray, b: np.ndarray, b_len: np.ndarray) -> pa.Array:
    """Row i = ``a``'s i-th piece then ``b``'s i-th piece (pieces laid end to end, of the lengths given)."""
    lengths = a_len + b_len
    out_start = np.zeros(len(lengths), np.int64)
    np.cumsum(lengths[:-1], out=out_start[1:])
    out = np.empty(int(lengths.sum()), np.uint8)
    a_start = np.cumsum(a_len) - a_len
    b_start = np.cumsum(b_len) - b_len
    out[np.repeat(out_start - a_start, a_len) + np.arange(len(a))] = a
    out[np.repeat(out_start + a_len - b_start, b_len) + np.arange(len(b))] = b
    return _binary(lengths, out)


def _local_is_utc() -> bool:
    return time.timezone == 0 and time.altzone == 0


def _epoch_seconds(column: pa.ChunkedArray) -> list[int | None]:
    """What Feast's SQLite adapter stores for an event time in ms: ``int(naive_utc.timestamp())``.

    Python reads a naive datetime as local time, so off UTC the stored integer is shifted by the
    local offset; that shift is reproduced exactly (per value) when the process is not on UTC.
    """
    ms = _filled(column, 0)
    valid = np.ones(len(ms), bool) if column.null_count == 0 else np.asarray(pc.is_valid(column).to_numpy(zero_copy_only=False), bool)
    if _local_is_utc():
        seconds = np.where(ms < 0, -((-ms) // 1000), ms // 1000).tolist()
    else:
        epoch = dt.datetime(1970, 1, 1)
        seconds = [int((epoch + dt.timedelta(milliseconds=int(m))).timestamp()) for m in ms]
    if valid.all():
        return seconds
    return [s if ok else None for s, ok in zip(seconds, valid.tolist())]
