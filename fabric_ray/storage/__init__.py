"""Object storage (``file://``, ``s3://``) and Parquet datasets with atomic commits.

See ``docs/storage.md`` for the layout, the commit protocol and why it is safe on S3.
"""

from fabric_ray.storage.dataset import (
    Commit,
    CommitConflict,
    DataFile,
    Dataset,
    DatasetError,
    DatasetSpec,
    SchemaEvolutionError,
    Snapshot,
)
from fabric_ray.storage.shard import StorageShard
from fabric_ray.storage.fs import RetryPolicy, StorageError, StorageLocation, check_location, open_location
from fabric_ray.storage.partitioning import (
    Composite,
    HashBuckets,
    KeyRanges,
    Partitioning,
    TimePartitioning,
    Unpartitioned,
    parse_partitioning,
)

__all__ = [
    "Commit",
    "CommitConflict",
    "Composite",
    "DataFile",
    "Dataset",
    "DatasetError",
    "DatasetSpec",
    "HashBuckets",
    "KeyRanges",
    "Partitioning",
    "RetryPolicy",
    "SchemaEvolutionError",
    "Snapshot",
    "StorageError",
    "StorageLocation",
    "StorageShard",
    "TimePartitioning",
    "Unpartitioned",
    "check_location",
    "open_location",
    "parse_partitioning",
]
