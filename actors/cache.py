"""CacheShard: one shard of the hot feature state, wrapping :class:`~fabric_ray.features.cache.FeatureCache`."""

from __future__ import annotations

from typing import Any, Hashable, Sequence

import pyarrow as pa
import ray

from fabric_ray.features.cache import FeatureCache, Lookup
from fabric_ray.features.definitions import FeatureView
from fabric_ray.features.online import merge_lookups, plan_reads
from fabric_ray.features.routing import split_by_shard


def cache_shard_name(index: int) -> str:
    """Actor name of cache shard ``index``."""
    return f"cache:{index}"


@ray.remote(num_cpus=0)
class CacheShard:
    """Latest feature values for the keys that hash to this shard."""

    def __init__(self, views: Sequence[FeatureView]) -> None:
        self._cache = FeatureCache(views)

    def put(self, view_name: str, table: pa.Table) -> int:
        """Store rows (last value wins); return how many were newer."""
        return self._cache.put(view_name, table)

    def get(self, view_name: str, keys: Sequence[Hashable], features: Sequence[str]) -> Lookup:
        """Look up features of keys."""
        return self._cache.get(view_name, keys, features)

    def size(self, view_name: str) -> int:
        """Keys held for a view."""
        return self._cache.size(view_name)


class ShardedCacheWriter:
    """A feature sink that routes rows to the cache shards by the stable hash of their key."""

    def __init__(self, shards: Sequence[Any], view: FeatureView) -> None:
        self.shards = list(shards)
        self.view = view

    def write(self, features: pa.Table) -> None:
        """Write and wait for every shard, so a committed offset implies cached values."""
        parts = split_by_shard(features, self.view.entity.join_key, len(self.shards))
        ray.get([self.shards[s].put.remote(self.view.name, part) for s, part in parts.items()])


def submit_reads(shards: Sequence[Any], view_name: str, keys: Sequence[Hashable], features: Sequence[str]) -> dict[int, tuple[list[int], Any]]:
    """Send one ``get`` per shard that owns some of ``keys``; values are ``(positions, ObjectRef)``."""
    plan = plan_reads(keys, len(shards))
    return {s: (pos, shards[s].get.remote(view_name, [keys[i] for i in pos], features)) for s, pos in plan.items()}


def read_online(shards: Sequence[Any], view_name: str, keys: Sequence[Hashable], features: Sequence[str], timeout_s: float = 10) -> Lookup:
    """Blocking online read across shards (for Python callers; the HTTP server awaits instead)."""
    refs = submit_reads(shards, view_name, keys, features)
    got = ray.get([ref for _, ref in refs.values()], timeout=timeout_s)
    parts = {s: (pos, lookup) for (s, (pos, _)), lookup in zip(refs.items(), got)}
    return merge_lookups(len(keys), features, parts)
