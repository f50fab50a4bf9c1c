"""The ``s3_endpoint`` fixture is a real S3 HTTP endpoint: s3fs, pyarrow and conditional writes work on it."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
from pyarrow import fs as pafs

TABLE = pa.table({"user_id": pa.array([1, 2, 3], pa.int64()), "amount_sum": [1.5, 2.5, None], "name": ["a", "b", "c"]})


@pytest.fixture
def s3(s3_endpoint):
    fs = s3fs.S3FileSystem(
        key=s3_endpoint["access_key_id"],
        secret=s3_endpoint["secret_access_key"],
        client_kwargs={"endpoint_url": s3_endpoint["endpoint_url"], "region_name": s3_endpoint["region"]},
        skip_instance_cache=True,
    )
    return fs, f"{s3_endpoint['bucket']}/{uuid.uuid4().hex}"


@pytest.fixture
def arrow_s3(s3_endpoint):
    return pafs.S3FileSystem(
        access_key=s3_endpoint["access_key_id"],
        secret_key=s3_endpoint["secret_access_key"],
        endpoint_override=s3_endpoint["endpoint_url"].removeprefix("http://"),
        scheme="http",
        region=s3_endpoint["region"],
    )


def test_parquet_roundtrip_through_s3fs(s3):
    fs, prefix = s3
    path = f"{prefix}/t.parquet"
    with fs.open(path, "wb") as f:
        pq.write_table(TABLE, f)
    assert fs.exists(path)
    with fs.open(path, "rb") as f:
        assert pq.read_table(f).equals(TABLE)


def test_parquet_roundtrip_through_pyarrow_s3(s3, arrow_s3):
    fs, prefix = s3
    path = f"{prefix}/arrow.parquet"
    pq.write_table(TABLE, path, filesystem=arrow_s3)
    assert pq.read_table(path, filesystem=arrow_s3).equals(TABLE)
    # the same object, seen through s3fs
    with fs.open(path, "rb") as f:
        assert pq.read_table(f).equals(TABLE)
    info = arrow_s3.get_file_info(path)
    assert info.type == pafs.FileType.File and info.size > 0


def test_partitioned_dataset_through_pyarrow_s3(s3, arrow_s3):
    _, prefix = s3
    root = f"{prefix}/ds"
    pq.write_to_dataset(TABLE, root, partition_cols=["name"], filesystem=arrow_s3)
    back = pq.read_table(root, filesystem=arrow_s3)
    assert sorted(back.column("user_id").to_pylist()) == [1, 2, 3]
    assert sorted(str(v) for v in back.column("name").to_pylist()) == ["a", "b", "c"]


def test_conditional_create_on_existing_key_raises(s3):
    fs, prefix = s3
    path = f"{prefix}/lock"
    fs.pipe_file(path, b"first", mode="create")
    with pytest.raises(FileExistsError):
        fs.pipe_file(path, b"second", mode="create")
    assert fs.cat_file(path) == b"first"
