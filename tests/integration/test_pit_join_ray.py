"""The point-in-time join out of core on the session's Ray cluster equals the in-process join."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fabric_ray.etl.pit import FeatureTable, ParquetFiles, PitJoinError, point_in_time_join
from fabric_ray.etl.pit_ray import point_in_time_join_ray
from tests.unit.etl_pit.cases import merge_asof_reference, random_case, rows


def _collect(ds) -> pa.Table:
    import ray

    return pa.concat_tables(ray.get(ds.to_arrow_refs()))


@pytest.mark.parametrize(("seed", "buckets", "block_rows", "blocks"), [(0, 3, 120, 5), (1, 8, 120, 5), (2, None, 120, 5), (3, 1, 1000, 1)])
def test_ray_path_equals_the_in_process_path_over_several_blocks_and_buckets(ray_cluster, seed, buckets, block_rows, blocks):
    entities, tables = random_case(seed, entities=500)
    ds = point_in_time_join_ray(entities, tables, buckets=buckets, block_rows=block_rows)
    assert ds.num_blocks() == blocks  # one output block per entity block, in order
    got = _collect(ds)
    assert got.equals(point_in_time_join(entities, tables))
    assert rows(got) == merge_asof_reference(entities, tables)


def test_one_table_one_bucket_one_block(ray_cluster):
    # every task has a single return here (Ray's num_returns=1 gives a ref, not a list)
    entities, tables = random_case(4, entities=200)
    got = _collect(point_in_time_join_ray(entities, tables[0], buckets=1, block_rows=1000))
    assert got.equals(point_in_time_join(entities, tables[0]))


def test_ray_dataset_entities_and_parquet_features_on_storage(ray_cluster, storage_root):
    import ray

    from fabric_ray.storage.fs import open_location

    location = open_location(storage_root.uri, storage_root.config)
    filesystem = location.arrow_filesystem()
    filesystem.create_dir(location.join("spend"), recursive=True)
    entities, tables = random_case(7)
    spend = tables[0].source
    paths = []
    for i, start in enumerate(range(0, spend.num_rows, 500)):
        paths.append(location.join("spend", f"part-{i}.parquet"))
        pq.write_table(spend.slice(start, 500), paths[-1], filesystem=filesystem)
    from_files = FeatureTable("spend", ParquetFiles(paths, filesystem), "user", "ts", ["amount", "count"], created_column="created", ttl_s=10)
    ds = point_in_time_join_ray(ray.data.from_arrow(entities).repartition(3), [from_files, tables[1]])  # default buckets: estimated from the files
    assert _collect(ds).equals(point_in_time_join(entities, tables))


def test_unreadable_feature_file_fails_naming_it(ray_cluster, tmp_path):
    import ray

    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    schema = pa.schema([("user", pa.int64()), ("ts", pa.int64()), ("v", pa.float64())])
    table = FeatureTable("t", ParquetFiles([str(bad)], schema=schema), "user", "ts", "v")
    with pytest.raises((PitJoinError, ray.exceptions.RayTaskError), match="bad.parquet"):
        _collect(point_in_time_join_ray(pa.table({"user": [1], "event_timestamp": [0]}), table, buckets=2))


def test_storage_dataset_source_on_ray(ray_cluster, storage_root):
    from fabric_ray.storage import Dataset, DatasetSpec, HashBuckets, open_location

    entities, tables = random_case(12)
    spend = tables[0].source
    dataset = Dataset.create(open_location(storage_root.uri, storage_root.config), DatasetSpec("spend", spend.schema, HashBuckets("user", 3)))
    for start in range(0, spend.num_rows, 500):
        dataset.write(spend.slice(start, 500))
    table = FeatureTable("spend", dataset, "user", "ts", ["amount", "count"], created_column="created", ttl_s=10)
    got = _collect(point_in_time_join_ray(entities, [table, tables[1]], buckets=5, block_rows=150))
    assert got.equals(point_in_time_join(entities, tables))
