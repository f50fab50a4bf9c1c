"""fabric_ray.features.online: plan reads across shards and merge the answers in request order."""

from __future__ import annotations

import pyarrow as pa

from fabric_ray.features.cache import FeatureCache, Lookup
from fabric_ray.features.definitions import Entity, Feature, FeatureView
from fabric_ray.features.online import merge_lookups, plan_reads
from fabric_ray.features.routing import shard_of, split_by_shard

VIEW = FeatureView("v", Entity("user", "user_id"), (Feature("n", "int64"), Feature("x", "float64")))


def test_plan_reads_groups_positions_by_shard_in_order():
    keys = [5, 9, 5, 1, 100, 3, 9]
    plan = plan_reads(keys, 3)
    assert sorted(i for pos in plan.values() for i in pos) == list(range(len(keys)))
    for shard, positions in plan.items():
        assert positions == sorted(positions)
        assert all(shard_of(keys[i], 3) == shard for i in positions)


def test_plan_reads_of_no_keys():
    assert plan_reads([], 4) == {}


def test_merge_puts_answers_back_in_request_order():
    parts = {
        1: ([2, 0], Lookup({"n": [20, 0]}, {"n": ["PRESENT", "PRESENT"]}, [200, 0])),
        0: ([1], Lookup({"n": [None]}, {"n": ["NOT_FOUND"]}, [None])),
    }
    merged = merge_lookups(3, ["n"], parts)
    assert merged.values == {"n": [0, None, 20]}
    assert merged.statuses == {"n": ["PRESENT", "NOT_FOUND", "PRESENT"]}
    assert merged.event_ms == [0, None, 200]


def test_positions_no_shard_answered_are_not_found():
    merged = merge_lookups(2, ["n", "x"], {0: ([1], Lookup({"n": [1], "x": [2.0]}, {"n": ["PRESENT"], "x": ["NULL_VALUE"]}, [7]))})
    assert merged.values == {"n": [None, 1], "x": [None, 2.0]}
    assert merged.statuses == {"n": ["NOT_FOUND", "PRESENT"], "x": ["NOT_FOUND", "NULL_VALUE"]}
    assert merged.event_ms == [None, 7]


def test_sharded_read_equals_a_single_cache_read():
    """Writing through split_by_shard and reading through plan/merge gives what one cache would."""
    shards = 4
    table = pa.table({"user_id": list(range(0, 60, 3)), "n": list(range(20)), "x": [i / 2 for i in range(20)], "event_ts_ms": [1] * 20})
    single = FeatureCache([VIEW])
    single.put("v", table)
    caches = [FeatureCache([VIEW]) for _ in range(shards)]
    for shard, part in split_by_shard(table, "user_id", shards).items():
        caches[shard].put("v", part)
    keys = [57, 1, 0, 30, 2, 30, 999, 3]
    plan = plan_reads(keys, shards)
    parts = {s: (pos, caches[s].get("v", [keys[i] for i in pos], ["x", "n"], now_ms=5)) for s, pos in plan.items()}
    merged = merge_lookups(len(keys), ["x", "n"], parts)
    expected = single.get("v", keys, ["x", "n"], now_ms=5)
    assert merged == expected
    assert merged.statuses["n"][6] == "NOT_FOUND" and merged.values["n"][0] == 19
