"""Readers' path resolution against both storage kinds (no Ray): globs, folders, files, errors naming the URI."""

from __future__ import annotations

import pyarrow as pa
import pytest

from fabric_ray.config import StorageConfig
from fabric_ray.etl.sources import SourceError, decode_block, describe_error, resolve_files
from fabric_ray.storage import open_location
from fabric_ray.storage.fs import StorageError

FILES = (
    "raw/2024/a.parquet",
    "raw/2024/b.parquet",
    "raw/2025/c.parquet",
    "raw/2025/notes.txt",
    "raw/2025/_tmp/d.parquet",
    "raw/.hidden.parquet",
    "raw/top.csv",
)


@pytest.fixture
def root(storage_root):
    loc = open_location(storage_root.uri, storage_root.config)
    for name in FILES:
        loc.write_bytes(name, b"x")
    return storage_root


def names(resolved, root):
    prefix = open_location(root.uri, root.config).path.rstrip("/") + "/"
    return [p[len(prefix):] for p in resolved.paths]


@pytest.mark.parametrize(
    ("path", "fmt", "want"),
    [
        ("raw", "parquet", ["raw/2024/a.parquet", "raw/2024/b.parquet", "raw/2025/c.parquet"]),
        ("raw/", "csv", ["raw/top.csv"]),
        ("raw/2024/*.parquet", "parquet", ["raw/2024/a.parquet", "raw/2024/b.parquet"]),
        ("raw/*/*.parquet", "parquet", ["raw/2024/a.parquet", "raw/2024/b.parquet", "raw/2025/c.parquet"]),
        ("raw/**/*.parquet", "parquet", ["raw/2024/a.parquet", "raw/2024/b.parquet", "raw/2025/c.parquet"]),
        ("raw/**", "parquet", ["raw/2024/a.parquet", "raw/2024/b.parquet", "raw/2025/c.parquet", "raw/2025/notes.txt", "raw/top.csv"]),
        ("raw/202[4]/?.parquet", "parquet", ["raw/2024/a.parquet", "raw/2024/b.parquet"]),
        ("raw/2025/notes.txt", "csv", ["raw/2025/notes.txt"]),
    ],
)
def test_relative_paths_resolve_under_the_storage_root(root, path, fmt, want):
    resolved = resolve_files(path, fmt, root.uri, root.config)
    assert names(resolved, root) == want
    assert all(u.startswith(f"{root.kind}://") for u in resolved.uris)
    assert resolved.location.arrow_filesystem() is not None


def test_full_uris_are_used_as_they_are(root):
    uri = root.uri.rstrip("/")
    assert names(resolve_files(f"{uri}/raw/2024", "parquet", "file:///elsewhere", root.config), root) == [
        "raw/2024/a.parquet", "raw/2024/b.parquet"
    ]
    assert names(resolve_files(f"{uri}/raw/2025/c.parquet", "parquet", "file:///elsewhere", root.config), root) == ["raw/2025/c.parquet"]
    assert names(resolve_files(f"{uri}/raw/*/[ab].parquet", "parquet", "file:///elsewhere", root.config), root) == [
        "raw/2024/a.parquet", "raw/2024/b.parquet"
    ]


@pytest.mark.parametrize(
    ("path", "fmt", "message"),
    [
        ("raw/2026", "parquet", "raw/2026 does not exist"),
        ("raw/2026/x.parquet", "parquet", "raw/2026/x.parquet does not exist"),
        ("raw/*.json", "json", "no file matches"),
        ("raw/2025", "json", "no .json/.jsonl"),
    ],
)
def test_nothing_found_names_the_uri(root, path, fmt, message):
    with pytest.raises(SourceError) as info:
        resolve_files(path, fmt, root.uri, root.config)
    assert message in str(info.value)
    assert f"{root.kind}://" in str(info.value)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/etc/passwd", "is absolute"),
        ("raw/../../etc", "'..' is not allowed"),
        ("http://host/x.parquet", "use file:///abs/path, s3://bucket/key"),
    ],
)
def test_paths_that_leave_the_root_are_refused(path, message):
    with pytest.raises(SourceError, match=message):
        resolve_files(path, "parquet", "file:///tmp/root")


def test_a_missing_bucket_names_the_uri(s3_endpoint):
    config = StorageConfig(
        root="s3://no-such-bucket-etl/x",
        endpoint_url=s3_endpoint["endpoint_url"],
        access_key_id="testing",
        secret_access_key="testing",
    )
    with pytest.raises(StorageError) as info:
        resolve_files("raw/*.parquet", "parquet", config.root, config)
    assert "s3://no-such-bucket-etl/x/raw" in str(info.value) and "does not exist" in str(info.value)


def test_an_unreachable_endpoint_names_the_uri():
    from fabric_ray.loopback import free_port

    config = StorageConfig(
        root="s3://bucket/x", endpoint_url=f"http://127.0.0.1:{free_port()}", access_key_id="k", secret_access_key="s"
    )
    with pytest.raises(StorageError) as info:
        resolve_files("raw", "parquet", config.root, config)
    assert "s3://bucket/x/raw" in str(info.value) and info.value.transient


def test_kafka_json_values_become_columns_with_their_offsets():
    block = pa.table({
        "value": pa.array([b'{"user_id": 1, "amount": 2.5}', None, b'{\n "user_id": 2, "amount": 4}'], pa.binary()),
        "partition": pa.array([3, 3, 1], pa.int32()),
        "offset": pa.array([7, 8, 0], pa.int64()),
        "timestamp": pa.array([1_000, 1_001, 1_002], pa.timestamp("ms")),
    })
    out = decode_block("json", "kafka", block)
    assert out.to_pydict() == {
        "user_id": [1, 2], "amount": [2.5, 4.0], "_partition": [3, 1], "_offset": [7, 0], "_timestamp_ms": [1_000, 1_002]
    }
    assert decode_block("raw", "kafka", block) is block
    assert decode_block("parquet", "path", block) is block


def test_kafka_values_that_are_not_json_name_their_offsets():
    block = pa.table({"value": [b'{"a": 1}', b"not json"], "partition": [0, 0], "offset": [10, 11], "timestamp": [0, 0]})
    with pytest.raises(SourceError, match="between offsets 10 and 11 is not a JSON object"):
        decode_block("json", "kafka", block)


def test_errors_are_described_by_their_innermost_cause():
    try:
        try:
            raise FileNotFoundError("s3://b/k.parquet")
        except FileNotFoundError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as outer:
        assert describe_error(outer) == "FileNotFoundError: s3://b/k.parquet"
