"""The bucketed task graph of the Ray path, run in process (no Ray): equal to the in-process join."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_ray.etl.pit import FeatureTable, ParquetFiles, PitJoinError, point_in_time_join
from fabric_ray.etl.pit_ray import point_in_time_join_local
from tests.unit.etl_pit.cases import merge_asof_reference, random_case, rows


@pytest.mark.parametrize(("seed", "buckets", "block_rows"), [(0, 1, 10_000), (1, 3, 97), (2, 7, 50), (3, 16, 1000), (4, 2, 1)])
def test_bucketed_graph_equals_the_in_process_join(seed, buckets, block_rows):
    entities, tables = random_case(seed, entities=300)
    want = point_in_time_join(entities, tables, full_feature_names=True)
    got = point_in_time_join_local(entities, tables, full_feature_names=True, buckets=buckets, block_rows=block_rows)
    assert got.equals(want)
    assert rows(got) == merge_asof_reference(entities, tables, full_feature_names=True)


def test_entities_and_features_from_parquet_files(tmp_path):
    entities, tables = random_case(5)
    entity_paths, feature_paths = [], []
    for i in range(3):
        path = tmp_path / f"entities-{i}.parquet"
        pq.write_table(entities.slice(i * 150, 150), path)
        entity_paths.append(str(path))
        path = tmp_path / f"spend-{i}.parquet"
        pq.write_table(tables[0].source.slice(i * 600, 600), path)
        feature_paths.append(str(path))
    spend = FeatureTable("spend", ParquetFiles(feature_paths), "user", "ts", ["amount", "count"], created_column="created", ttl_s=10)
    got = point_in_time_join_local(ParquetFiles(entity_paths), [spend, tables[1]], buckets=5)
    assert got.equals(point_in_time_join(entities, [tables[0], tables[1]]))


def test_empty_entities_and_empty_features():
    spend = pa.table({"user": pa.array([], pa.int64()), "ts": pa.array([], pa.int64()), "v": pa.array([], pa.float64())})
    entities = pa.table({"user": [1, 2], "event_timestamp": [0, 0]})
    assert point_in_time_join_local(entities, FeatureTable("t", spend, "user", "ts", "v"), buckets=3)["v"].to_pylist() == [None, None]
    none = entities.slice(0, 0)
    out = point_in_time_join_local(none, FeatureTable("t", spend, "user", "ts", "v"), buckets=3)
    assert out.num_rows == 0 and out.column_names == ["user", "event_timestamp", "v"]


def test_bad_arguments_are_refused():
    entities, tables = random_case(0, entities=10)
    with pytest.raises(PitJoinError, match="buckets must be >= 1"):
        point_in_time_join_local(entities, tables, buckets=0)
    with pytest.raises(PitJoinError, match="entities must be a pyarrow.Table.*got dict"):
        point_in_time_join_local({"user": [1]}, tables)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 9), st.integers(1, 120))
def test_property_any_buckets_and_blocks_give_the_same_result(seed, buckets, block_rows):
    entities, tables = random_case(seed, entities=120, users=15, feature_rows=300)
    assert point_in_time_join_local(entities, tables, buckets=buckets, block_rows=block_rows).equals(point_in_time_join(entities, tables))
