"""Random point-in-time join cases and the pandas ``merge_asof`` reference they are checked against.

Shared by the unit tests (in-process join) and the integration tests (the Ray path).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fabric_ray.etl.pit import FeatureTable


def random_case(seed: int, entities: int = 400, users: int = 40, feature_rows: int = 1500) -> tuple[pa.Table, list[FeatureTable]]:
    """Entities and two feature tables with ties, TTL edges, duplicates and missing entities.

    Timestamps are whole seconds in a narrow range, so equal feature timestamps (ties, some of
    them full ties on the created timestamp too) and entity timestamps exactly ``ttl`` after a
    feature row are common. Users ``users..users+5`` have no feature rows; every fifth entity
    row duplicates an earlier one.
    """
    rng = np.random.default_rng(seed)
    user = rng.integers(0, users + 5, entities)
    region = rng.choice(["eu", "us", "ap"], entities)
    ts_ms = rng.integers(0, 60, entities) * 1000
    dup = np.arange(entities) % 5 == 4
    src = rng.integers(0, np.maximum(np.arange(entities), 1))
    user[dup], region[dup], ts_ms[dup] = user[src[dup]], region[src[dup]], ts_ms[src[dup]]
    entity_table = pa.table({
        "label": pa.array(rng.integers(0, 2, entities)),
        "user": pa.array(user),
        "region": pa.array(region),
        "event_timestamp": pa.array(ts_ms),
    })

    a_user = rng.integers(0, users, feature_rows)
    a_ts = rng.integers(0, 60, feature_rows) * 1000
    a_created = rng.integers(0, 4, feature_rows).astype(float)
    a_created[rng.random(feature_rows) < 0.1] = np.nan
    a_int = rng.integers(0, 1000, feature_rows).astype(float)
    a_int[rng.random(feature_rows) < 0.05] = np.nan
    spend = pa.table({
        "user": pa.array(a_user),
        "ts": pa.array(a_ts),
        "created": pa.array(a_created, pa.int64(), from_pandas=True),
        "amount": pa.array(rng.normal(size=feature_rows)),
        "count": pa.array(a_int, pa.int64(), from_pandas=True),
    })

    b_rows = feature_rows // 2
    b_user = rng.integers(0, users, b_rows)
    b_region = rng.choice(["eu", "us", "ap"], b_rows)
    b_ts = pa.array(rng.integers(0, 60, b_rows) * 1000, pa.timestamp("ms", tz="UTC"))
    profile = pa.table({
        "user": pa.array(b_user, pa.int32()),
        "region": pa.array(b_region),
        "updated": b_ts,
        "tier": pa.array(rng.choice(["gold", "silver", "bronze"], b_rows)),
    })
    return entity_table, [
        FeatureTable("spend", spend, join_keys="user", timestamp_column="ts", features=["amount", "count"], created_column="created", ttl_s=10),
        FeatureTable("profile", profile, join_keys=["user", "region"], timestamp_column="updated", features="tier"),
    ]


def _ms(column: pa.ChunkedArray) -> pd.Series:
    if pa.types.is_timestamp(column.type):
        column = pc.cast(pc.cast(column, pa.timestamp("ms")), pa.int64())
    return column.to_pandas()


def merge_asof_reference(entities: pa.Table, tables: list[FeatureTable], *, timestamp_column: str = "event_timestamp", full_feature_names: bool = False) -> list[dict]:
    """The join by pandas ``merge_asof`` (by the keys, backward, ``tolerance=ttl``), rows as dicts.

    Feature rows are sorted by (timestamp, created with nulls first, source order), so the last
    row merge_asof sees among equal timestamps is the documented winner. Entity timestamps must
    not be null (merge_asof refuses them); they and feature timestamps are int ms here.
    """
    out = entities.to_pandas()
    left = pd.DataFrame({"__i": np.arange(len(out)), "__ets": _ms(entities[timestamp_column])})
    for table in tables:
        source = table.read()
        keys = list(table.join_keys)
        right = pd.DataFrame({k: source[k].to_pandas() for k in keys})
        right["__fts"] = _ms(source[table.timestamp_column])
        right["__created"] = _ms(source[table.created_column]).fillna(-(2**62)) if table.created_column else 0
        right["__ord"] = np.arange(len(right))
        for f in table.features:
            right["__f_" + f] = source[f].to_pandas()
        right = right.dropna(subset=keys + ["__fts"]).sort_values(["__fts", "__created", "__ord"], kind="stable")
        right["__fts"] = right["__fts"].astype(np.int64)
        this_left = left.copy()
        for k in keys:
            this_left[k] = entities[k].to_pandas().astype(right[k].dtype)
        merged = pd.merge_asof(
            this_left.sort_values("__ets", kind="stable"),
            right,
            left_on="__ets",
            right_on="__fts",
            by=keys,
            direction="backward",
            tolerance=int(table.ttl_s * 1000) if table.ttl_s else None,
        ).sort_values("__i")
        for f, name in zip(table.features, table.output_names(full_feature_names)):
            out[name] = merged["__f_" + f].to_numpy()
    return normalize(out.to_dict("records"))


def _plain(value):
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)  # pandas widens an int column with a gap to float
    return value


def normalize(records: list[dict]) -> list[dict]:
    """Rows with NaN and None both as None and whole floats as ints."""
    return [{k: _plain(v) for k, v in r.items()} for r in records]


def rows(table: pa.Table) -> list[dict]:
    """A table's rows, normalised like the reference's."""
    return normalize(table.to_pylist())
