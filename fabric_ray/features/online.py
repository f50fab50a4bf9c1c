"""Plan an online read across cache shards and merge the shards' answers back in request order."""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

from fabric_ray.features.cache import Lookup
from fabric_ray.features.routing import shard_of

__all__ = ["merge_lookups", "plan_reads"]


def plan_reads(keys: Sequence[Hashable], shards: int) -> dict[int, list[int]]:
    """Positions of ``keys`` to ask each shard for.

    Example:
        >>> sorted(i for pos in plan_reads([1, 2, 3], 2).values() for i in pos)
        [0, 1, 2]
    """
    plan: dict[int, list[int]] = {}
    for i, key in enumerate(keys):
        plan.setdefault(shard_of(key, shards), []).append(i)
    return plan


def merge_lookups(n: int, features: Sequence[str], parts: Mapping[int, tuple[Sequence[int], Lookup]]) -> Lookup:
    """Put the per-shard lookups back into one, in the order of the ``n`` requested keys.

    Args:
        n: number of keys requested.
        features: the features looked up.
        parts: ``{shard: (positions, lookup for the keys at those positions)}``.
    """
    values: dict[str, list] = {f: [None] * n for f in features}
    statuses: dict[str, list[str]] = {f: ["NOT_FOUND"] * n for f in features}
    event_ms: list[int | None] = [None] * n
    for positions, lookup in parts.values():
        for j, i in enumerate(positions):
            event_ms[i] = lookup.event_ms[j]
            for f in features:
                values[f][i] = lookup.values[f][j]
                statuses[f][i] = lookup.statuses[f][j]
    return Lookup(values, statuses, event_ms)
