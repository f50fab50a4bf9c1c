"""OnlineStore against Feast's real SQLite online store: round trips, Feast reading what we wrote, bulk = Feast's rows."""

from __future__ import annotations

import pickle
import sqlite3

import pyarrow as pa
import pytest

from fabric_ray.config import FabricConfig
from fabric_ray.features.catalog import Catalog
from fabric_ray.features.definitions import Entity, Feature, FeatureView
from fabric_ray.features.online_store import (
    OnlineStore,
    OnlineStoreError,
    entity_key_bytes,
    feast_objects,
    latest_per_key,
    value_bytes,
)

ALL_TYPES = FeatureView(
    "all_types",
    Entity("user", "user_id", "int64"),
    (Feature("n", "int64"), Feature("x", "float64"), Feature("s", "string"), Feature("b", "bool")),
)
BY_NAME = FeatureView("by_name", Entity("merchant", "merchant_name", "string"), (Feature("score", "float64"),))
PROJECT = "unit_online"


def rows() -> pa.Table:
    return pa.table({
        "user_id": pa.array([3, 1, 2, -7, 2**40], pa.int64()),
        "n": pa.array([10, None, -1, 2**62, 0], pa.int64()),
        "x": pa.array([1.5, 2.0, None, float("nan"), -0.1]),
        "s": pa.array(["é", "", None, "long " * 40, "b"]),
        "b": pa.array([True, False, None, True, False]),
        "event_ts_ms": pa.array([1_767_225_600_000, 1_767_225_601_999, 5_000, 1_767_225_700_000, 0], pa.int64()),
    })


# what the store gives back: NaN is stored as null (as Feast does), event times in whole seconds
EXPECTED = {
    3: {"n": 10, "x": 1.5, "s": "é", "b": True, "event_ts_ms": 1_767_225_600_000},
    1: {"n": None, "x": 2.0, "s": "", "b": False, "event_ts_ms": 1_767_225_601_000},
    2: {"n": -1, "x": None, "s": None, "b": None, "event_ts_ms": 5_000},
    -7: {"n": 2**62, "x": None, "s": "long " * 40, "b": True, "event_ts_ms": 1_767_225_700_000},
    2**40: {"n": 0, "x": -0.1, "s": "b", "b": False, "event_ts_ms": 0},
}


def config(tmp_path, name: str = "home") -> FabricConfig:
    home = tmp_path / name
    return FabricConfig(
        home=str(home),
        features={"project": PROJECT, "registry": str(home / "registry.db"), "repo": str(tmp_path)},
    )


def store(tmp_path, name: str = "home") -> OnlineStore:
    return OnlineStore(config(tmp_path, name), Catalog.of([ALL_TYPES, BY_NAME]))


def by_key(table: pa.Table, key: str = "user_id") -> dict:
    return {r.pop(key): r for r in table.to_pylist()}


def sqlite_dump(cfg: FabricConfig, view: str) -> list[tuple]:
    with sqlite3.connect(cfg.online_store["path"]) as conn:
        return conn.execute(f"SELECT * FROM {PROJECT}_{view} ORDER BY entity_key, feature_name").fetchall()


@pytest.mark.parametrize("bulk", [True, False], ids=["bulk", "feast_write_batch"])
def test_round_trip_all_types_and_missing_keys_absent(tmp_path, bulk):
    s = store(tmp_path)
    assert s.write("all_types", rows(), bulk=bulk) == 5
    got = s.read("all_types", [2**40, 3, 999, 1, 2, -7, 3])
    assert got.column_names == ["user_id", "n", "x", "s", "b", "event_ts_ms"]
    assert got.schema.field("n").type == pa.int64() and got.schema.field("b").type == pa.bool_()
    assert by_key(got) == EXPECTED  # 999 (never written) is absent; 3 asked twice, once back
    assert s.read("all_types", [404, 405]).num_rows == 0
    assert s.read("all_types", []).num_rows == 0
    s.close()


def test_bulk_rows_are_byte_identical_to_feasts_own_materialize_conversion(tmp_path):
    """Feast's materialize path: _convert_arrow_to_proto + online_write_batch; ours: bulk and generic."""
    from feast import FileSource
    from feast.infra.online_stores.helpers import get_online_store_from_config
    from feast.utils import _convert_arrow_to_proto
    from feast.value_type import ValueType

    from fabric_ray.features.feast_repo import repo_config

    table = rows()
    feast_cfg = config(tmp_path, "feast")
    _, fv = feast_objects(ALL_TYPES, FileSource(path="unused.parquet", timestamp_field="ts"))
    feast_table = table.append_column("ts", pa.compute.cast(table["event_ts_ms"], pa.timestamp("ms", tz="UTC"))).drop_columns(["event_ts_ms"])
    rc = repo_config(feast_cfg)
    (feast_cfg.home / "features").mkdir(parents=True)
    feast_store = get_online_store_from_config(rc.online_store)
    feast_store.update(rc, [], [fv], [], [], partial=True)
    feast_store.online_write_batch(rc, fv, _convert_arrow_to_proto(feast_table.to_batches()[0], fv, {"user_id": ValueType.INT64}), None)

    for name, bulk in (("bulk", True), ("generic", False)):
        ours = store(tmp_path, name)
        ours.write("all_types", table, bulk=bulk)
        ours.close()
        assert sqlite_dump(config(tmp_path, name), "all_types") == sqlite_dump(feast_cfg, "all_types"), name
    assert len(sqlite_dump(feast_cfg, "all_types")) == 5 * 4


def test_created_timestamps_are_written_like_feasts(tmp_path):
    table = rows().append_column("created_ts_ms", pa.array([1_767_225_600_500, None, 9_000, 1, 2], pa.int64()))
    dumps = []
    for name, bulk in (("bulk", True), ("generic", False)):
        s = store(tmp_path, name)
        s.write("all_types", table, bulk=bulk)
        s.close()
        dumps.append(sqlite_dump(config(tmp_path, name), "all_types"))
    assert dumps[0] == dumps[1]
    assert {r[-1] for r in dumps[0]} == {1_767_225_600, None, 9, 0}


def test_feasts_feature_store_reads_what_we_wrote(tmp_path):
    from feast import FeatureStore, FileSource

    from fabric_ray.features.feast_repo import repo_config

    cfg = config(tmp_path)
    s = OnlineStore(cfg, Catalog.of([ALL_TYPES, BY_NAME]))
    s.write("all_types", rows())  # the default path: bulk on sqlite
    s.write("by_name", pa.table({"merchant_name": ["acme", "ünï"], "score": [0.5, 7.0], "event_ts_ms": [1_000, 2_000]}))
    s.close()
    fs = FeatureStore(config=repo_config(cfg))
    objects = []
    for view in (ALL_TYPES, BY_NAME):
        objects.extend(feast_objects(view, FileSource(path=str(tmp_path / f"{view.name}.parquet"), timestamp_field="ts")))
    fs.apply(objects)
    keys = [3, 1, 2, -7, 2**40, 999]
    got = fs.get_online_features(features=[f"all_types:{f}" for f in ALL_TYPES.feature_names],
                                 entity_rows=[{"user_id": k} for k in keys]).to_dict()
    for i, k in enumerate(keys[:-1]):
        for f in ALL_TYPES.feature_names:
            assert got[f][i] == EXPECTED[k][f], (k, f)
    assert [got[f][-1] for f in ALL_TYPES.feature_names] == [None] * 4
    named = fs.get_online_features(features=["by_name:score"], entity_rows=[{"merchant_name": "ünï"}, {"merchant_name": "acme"}]).to_dict()
    assert named["score"] == [7.0, 0.5]
    # and the other way round: what Feast writes, we read
    import pandas as pd

    fs.write_to_online_store("by_name", pd.DataFrame({"merchant_name": ["zed"], "score": [1.25], "ts": [pd.Timestamp(3_000, unit="s", tz="UTC")]}))
    again = OnlineStore(cfg, Catalog.of([ALL_TYPES, BY_NAME]))
    assert by_key(again.read("by_name", ["zed", "acme"]), "merchant_name") == {
        "zed": {"score": 1.25, "event_ts_ms": 3_000_000}, "acme": {"score": 0.5, "event_ts_ms": 1_000}}


def test_string_keys_round_trip_on_both_paths(tmp_path):
    table = pa.table({"merchant_name": ["a", "", "ß" * 100], "score": [1.0, 2.0, 3.0], "event_ts_ms": [1_000, 2_000, 3_000]})
    for name, bulk in (("bulk", True), ("generic", False)):
        s = store(tmp_path, name)
        s.write("by_name", table, bulk=bulk)
        assert by_key(s.read("by_name", ["ß" * 100, "", "a", "b"]), "merchant_name") == {
            "a": {"score": 1.0, "event_ts_ms": 1_000}, "": {"score": 2.0, "event_ts_ms": 2_000},
            "ß" * 100: {"score": 3.0, "event_ts_ms": 3_000}}
        s.close()
    assert sqlite_dump(config(tmp_path, "bulk"), "by_name") == sqlite_dump(config(tmp_path, "generic"), "by_name")


def test_serializations_match_feasts():
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    ints = [0, 1, -1, 2**63 - 1, -(2**63), 300]
    assert entity_key_bytes(ALL_TYPES, pa.array(ints)).to_pylist() == [
        serialize_entity_key(EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=k)]), 3) for k in ints]
    names = ["", "x", "ü" * 200]
    assert entity_key_bytes(BY_NAME, pa.array(names)).to_pylist() == [
        serialize_entity_key(EntityKey(join_keys=["merchant_name"], entity_values=[Value(string_val=k)]), 3) for k in names]
    cases = {
        "int64": ([0, 1, -1, 127, 128, 2**63 - 1, -(2**63), None], "int64_val"),
        "float64": ([0.0, -0.0, 1e300, float("inf"), None], "double_val"),
        "string": (["", "a", "é" * 70, None], "string_val"),
        "bool": ([True, False, None], "bool_val"),
    }
    for dtype, (values, field) in cases.items():
        want = [b"" if v is None else Value(**{field: v}).SerializeToString() for v in values]
        assert value_bytes(pa.array(values), dtype).to_pylist() == want, dtype


def test_duplicate_keys_in_one_write_keep_the_latest_event(tmp_path):
    s = store(tmp_path)
    s.write("by_name", pa.table({"merchant_name": ["a", "a", "b", "a"], "score": [1.0, 3.0, 5.0, 2.0], "event_ts_ms": [1_000, 3_000, 1_000, 2_000]}))
    assert by_key(s.read("by_name", ["a", "b"]), "merchant_name") == {
        "a": {"score": 3.0, "event_ts_ms": 3_000}, "b": {"score": 5.0, "event_ts_ms": 1_000}}
    # a later write wins whatever its event time (Feast's rule)
    s.write("by_name", pa.table({"merchant_name": ["a"], "score": [9.0], "event_ts_ms": [500]}))
    assert s.read("by_name", ["a"]).to_pylist() == [{"merchant_name": "a", "score": 9.0, "event_ts_ms": 0}]


def test_latest_per_key_breaks_ties_by_created_then_row_order():
    t = pa.table({"k": ["x", "x", "x", "y"], "event_ts_ms": [5, 5, 5, 1], "created_ts_ms": [2, 3, 3, None], "v": [1, 2, 3, 4]})
    assert latest_per_key(t, "k").sort_by("k")["v"].to_pylist() == [3, 4]


def test_partial_feature_columns_leave_the_others(tmp_path):
    s = store(tmp_path)
    s.write("all_types", rows())
    s.write("all_types", pa.table({"user_id": [3], "x": [8.5], "event_ts_ms": [1_767_225_900_000]}))
    got = by_key(s.read("all_types", [3]))[3]
    # Feast keeps an event time per (entity, feature) and reports one of them per entity
    assert got.pop("event_ts_ms") in (1_767_225_600_000, 1_767_225_900_000)
    assert got == {"n": 10, "x": 8.5, "s": "é", "b": True}


def test_picklable_before_and_after_use(tmp_path):
    s = store(tmp_path)
    fresh = pickle.loads(pickle.dumps(s))
    fresh.write("all_types", rows().slice(0, 2))
    used = pickle.loads(pickle.dumps(fresh))  # an open connection does not travel
    assert sorted(used.read("all_types", [3, 1])["user_id"].to_pylist()) == [1, 3]
    fresh.close()
    fresh.close()


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (pa.table({"user_id": [1], "n": [1]}), "no 'event_ts_ms' column"),
        (pa.table({"n": [1], "event_ts_ms": [1]}), "no 'user_id' column"),
        (pa.table({"user_id": [1], "nope": [1], "event_ts_ms": [1]}), r"unknown column\(s\) \['nope'\]"),
        (pa.table({"user_id": pa.array([None, 1], pa.int64()), "event_ts_ms": [1, 2]}), "'user_id' has 1 null"),
        (pa.table({"user_id": [1], "n": ["x"], "event_ts_ms": [1]}), "column 'n' is string, expected int64"),
    ],
)
def test_bad_rows_are_refused_naming_the_column(tmp_path, table, message):
    with pytest.raises(OnlineStoreError, match=message):
        store(tmp_path).write("all_types", table)


def test_unknown_view_and_unsupported_keys(tmp_path):
    from fabric_ray.features.catalog import CatalogError

    with pytest.raises(CatalogError, match="unknown feature view 'nope'"):
        store(tmp_path).read("nope", [1])
    float_keyed = FeatureView("f", Entity("e", "k", "float64"), (Feature("v", "int64"),))
    with pytest.raises(OnlineStoreError, match="int64 or string"):
        OnlineStore(config(tmp_path), Catalog.of([float_keyed])).write("f", pa.table({"k": [1.0], "v": [1], "event_ts_ms": [1]}))
    with pytest.raises(OnlineStoreError, match="must be int64"):
        store(tmp_path).read("all_types", ["not a number"])
