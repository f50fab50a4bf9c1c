"""Route entity keys to cache shards by a stable hash (the same in every process and run)."""

from __future__ import annotations

import zlib
from typing import Hashable

import numpy as np
import pyarrow as pa

__all__ = ["shard_of", "split_by_shard"]


def shard_of(key: Hashable, shards: int) -> int:
    """The shard that owns ``key``: CRC-32 of its text form, modulo ``shards``.

    Python's ``hash()`` is salted per process, so it cannot be used across actors.

    Example:
        >>> shard_of(42, 4) == shard_of("42", 4)
        True
    """
    return zlib.crc32(str(key).encode()) % shards


def split_by_shard(table: pa.Table, key_column: str, shards: int) -> dict[int, pa.Table]:
    """Split ``table`` into one table per shard that has rows.

    Example:
        >>> t = pa.table({"k": [1, 2, 3, 4]})
        >>> sorted(sum(len(p) for p in split_by_shard(t, "k", 3).values()) for _ in [0])
        [4]
    """
    if table.num_rows == 0:
        return {}
    owners = np.fromiter((shard_of(k, shards) for k in table[key_column].to_pylist()), dtype=np.int64, count=table.num_rows)
    return {int(s): table.filter(pa.array(owners == s)) for s in np.unique(owners)}
