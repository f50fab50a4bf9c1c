"""Cache shard actors on the session's Ray cluster, in front of the real online store (Feast's SQLite
store under a temporary home, through ``fabric_ray.features.online_store.OnlineStore``):
write-through, write-behind, read-through, a killed shard, TTL and LRU eviction.

Most tests share one pair of shards (write-behind that flushes only when told; write-through asked
per writer) and use keys of their own, comparing counters before and after: starting a shard costs
seconds here (a worker process that imports Feast).
"""

from __future__ import annotations

import functools
import time
import uuid

import pyarrow as pa
import pytest
import ray

from actors.cache import CacheShard, ShardedCacheWriter, read_online
from fabric_ray.config import load_config
from fabric_ray.demo.payments import USER_PAYMENTS
from fabric_ray.features.cache import ENTRY_BYTES, FIXED_VALUE_BYTES
from fabric_ray.features.cache_settings import CacheSettings
from fabric_ray.features.feast_repo import load_catalog
from fabric_ray.features.online_store import OnlineStore
from fabric_ray.features.routing import shard_of

SHARDS = 2
PAY = ["txn_count", "amount_sum", "txn_count_1m", "amount_sum_1m"]
DAILY = ["txn_count_1d", "amount_sum_1d", "large_txn_count_1d"]
READ_S = 120  # a deadline, not a measure: the first read of a new shard waits for the store to open
NOW_MS = int(time.time()) * 1000  # whole seconds: Feast's SQLite store keeps event times in seconds


@pytest.fixture(scope="module")
def feature_env(tmp_path_factory):
    """A config whose online store is a fresh SQLite file (the store creates its tables), the demo
    catalog, and a store factory."""
    cfg = load_config(None, home=str(tmp_path_factory.mktemp("cache_shards")))
    catalog = load_catalog(cfg)
    return cfg, catalog, functools.partial(OnlineStore, cfg, catalog)


def _start(catalog, factory, **settings) -> list:
    tag = uuid.uuid4().hex[:8]  # names of our own: nothing collides with the fabrics' "cache:{i}"
    handles = [
        CacheShard.options(name=f"cachetest-{tag}:{i}", num_cpus=0).remote(catalog, CacheSettings(**settings), factory)
        for i in range(SHARDS)
    ]
    ray.get([h.info.remote() for h in handles])
    return handles


@pytest.fixture(scope="module")
def shards(ray_cluster, feature_env):
    """Two shards with write-behind that flushes only when told (``flush()``)."""
    _, catalog, factory = feature_env
    handles = _start(catalog, factory, write_mode="behind", write_behind_interval_s=3600)
    yield handles
    for h in handles:
        ray.kill(h, no_restart=True)


@pytest.fixture
def store(feature_env):
    """An OnlineStore on the same SQLite file, in this process."""
    s = feature_env[2]()
    yield s
    s.close()


def payments(keys, base: int, ts_ms: int = NOW_MS) -> pa.Table:
    n = len(keys)
    return pa.table({
        "user_id": pa.array(keys, pa.int64()),
        "txn_count": pa.array([base + k for k in keys], pa.int64()),
        "amount_sum": pa.array([float(base + k) / 2 for k in keys]),
        "txn_count_1m": pa.array([1] * n, pa.int64()),
        "amount_sum_1m": pa.array([0.5] * n),
        "event_ts_ms": pa.array([ts_ms] * n, pa.int64()),
    })


def daily(keys, ts_ms) -> pa.Table:
    return pa.table({
        "user_id": pa.array(keys, pa.int64()),
        "txn_count_1d": pa.array(keys, pa.int64()),
        "amount_sum_1d": pa.array([float(k) for k in keys]),
        "large_txn_count_1d": pa.array([0] * len(keys), pa.int64()),
        "event_ts_ms": pa.array(ts_ms, pa.int64()),
    })


def stored(store, view: str, keys) -> dict:
    """``{key: row}`` as the online store holds them."""
    return {r["user_id"]: r for r in store.read(view, list(keys)).to_pylist()}


def counters(handles) -> dict[str, int]:
    """Numeric counters summed over the shards."""
    out: dict[str, int] = {}
    for s in ray.get([h.stats.remote() for h in handles]):
        for k, v in s.items():
            if isinstance(v, int) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
    return out


def change(after: dict, before: dict, *keys: str) -> tuple:
    return tuple(after[k] - before[k] for k in keys)


def kill_and_wait(shard) -> str:
    """Kill ``shard`` and let Ray restart it; return the old incarnation once the new one answers."""
    old = ray.get(shard.info.remote())["incarnation"]
    ray.kill(shard, no_restart=False)
    deadline = time.monotonic() + 60
    while ray.get(shard.info.remote())["incarnation"] == old:  # a call may still reach the dying one
        assert time.monotonic() < deadline, "the killed cache shard did not come back"
        time.sleep(0.05)
    return old


def test_write_through_rows_are_in_the_store_when_write_returns(shards, store):
    keys = list(range(100, 140))
    before = counters(shards)
    ShardedCacheWriter(shards, USER_PAYMENTS, write="through").write(payments(keys, 1000))
    rows = stored(store, "user_payments", keys)
    assert sorted(rows) == keys
    assert all(rows[k]["txn_count"] == 1000 + k and rows[k]["event_ts_ms"] == NOW_MS for k in keys)
    assert change(counters(shards), before, "written_through", "puts", "write_behind_pending") == (40, 40, 0)


def test_write_behind_rows_reach_the_store_after_flush(shards, store):
    keys = list(range(200, 230))
    before = counters(shards)
    writer = ShardedCacheWriter(shards, USER_PAYMENTS)
    writer.write(payments(keys, 1))
    writer.write(payments(keys, 2, NOW_MS + 1000))  # newer: coalesced, only these reach the store
    assert stored(store, "user_payments", keys) == {}
    assert read_online(shards, "user_payments", keys, ["txn_count"], timeout_s=READ_S).values["txn_count"] == [2 + k for k in keys]
    assert writer.retained_rows == 60
    assert writer.flush() == 30
    assert {k: r["txn_count"] for k, r in stored(store, "user_payments", keys).items()} == {k: 2 + k for k in keys}
    after = counters(shards)
    assert change(after, before, "write_behind_flushed", "puts") == (30, 60) and after["write_behind_pending"] == 0
    assert writer.retained_rows == 0


def test_read_through_answers_keys_only_the_store_has(shards, store):
    keys = list(range(300, 320))
    store.write("user_payments", payments(keys, 7))
    before = counters(shards)
    got = read_online(shards, "user_payments", [*keys, 999_999], PAY, timeout_s=READ_S)
    assert got.values["txn_count"] == [7 + k for k in keys] + [None]
    assert got.statuses["txn_count"] == ["PRESENT"] * 20 + ["NOT_FOUND"]
    assert got.event_ms[:20] == [NOW_MS] * 20
    assert change(counters(shards), before, "misses", "hits", "read_through_rows") == (21, 0, 20)
    read_online(shards, "user_payments", keys, PAY, timeout_s=READ_S)  # now cached
    assert change(counters(shards), before, "misses", "hits", "read_through_rows") == (21, 20, 20)


def test_a_killed_shard_comes_back_empty_and_answers_through_read_through(shards):
    keys = list(range(400, 440))
    ShardedCacheWriter(shards, USER_PAYMENTS, write="through").write(payments(keys, 5))
    victim = 1
    old = kill_and_wait(shards[victim])
    assert ray.get(shards[victim].size.remote("user_payments")) == 0  # back empty
    got = read_online(shards, "user_payments", keys, PAY, timeout_s=READ_S)
    assert got.values["txn_count"] == [5 + k for k in keys]
    assert set(got.statuses["amount_sum"]) == {"PRESENT"}
    assert got.event_ms == [NOW_MS] * len(keys)
    after = ray.get(shards[victim].stats.remote())
    assert after["incarnation"] != old and after["restarted"]
    owned = sum(1 for k in keys if shard_of(k, SHARDS) == victim)
    assert (after["read_through_rows"], after["keys"], after["puts"]) == (owned, owned, 0)


def test_write_behind_rows_of_a_killed_shard_are_resent_by_the_writer(shards, store):
    keys = list(range(500, 540))
    store.write("user_payments", payments(keys, 0, NOW_MS - 10_000))  # older values in the store
    writer = ShardedCacheWriter(shards, USER_PAYMENTS)
    writer.write(payments(keys, 9))  # newer, buffered in the shards
    victim = 0
    kill_and_wait(shards[victim])  # died with its buffered rows
    lost = [k for k in keys if shard_of(k, SHARDS) == victim]
    got = read_online(shards, "user_payments", lost, ["txn_count"], timeout_s=READ_S)
    assert lost and got.values["txn_count"] == lost  # the store's older values, until the writer's flush:
    writer.flush()  # the other shard writes its buffer; the restarted one gets its rows again, written through
    assert {k: r["txn_count"] for k, r in stored(store, "user_payments", keys).items()} == {k: 9 + k for k in keys}
    got = read_online(shards, "user_payments", keys, ["txn_count"], timeout_s=READ_S)
    assert got.values["txn_count"] == [9 + k for k in keys]
    assert writer.retained_rows == 0


def test_ttl_makes_values_outside_max_age(shards, store, feature_env):
    ttl_ms = int(feature_env[1].view("user_daily").ttl_s * 1000)
    old, fresh = NOW_MS - ttl_ms - 60_000, NOW_MS - 60_000
    before = counters(shards)
    ShardedCacheWriter(shards, feature_env[1].view("user_daily"), write="through").write(daily([1, 2], [old, fresh]))
    got = read_online(shards, "user_daily", [1, 2, 3], DAILY, timeout_s=READ_S)
    assert got.statuses["txn_count_1d"] == ["OUTSIDE_MAX_AGE", "PRESENT", "NOT_FOUND"]
    assert got.values["txn_count_1d"] == [1, 2, None]  # the stale value is still returned
    assert change(counters(shards), before, "stale") == (1,)
    # the same rows when they come from the store through read-through
    store.write("user_daily", daily([11, 12], [old, fresh]))
    again = read_online(shards, "user_daily", [11, 12], DAILY, timeout_s=READ_S)
    assert again.statuses["amount_sum_1d"] == ["OUTSIDE_MAX_AGE", "PRESENT"]
    assert again.event_ms == [old, fresh]
    assert change(counters(shards), before, "stale") == (1,)  # counted at the first look: they were misses
    read_online(shards, "user_daily", [11, 12], DAILY, timeout_s=READ_S)
    assert change(counters(shards), before, "stale") == (2,)


def test_lru_eviction_under_a_tiny_budget(ray_cluster, feature_env):
    _, catalog, factory = feature_env
    entry = ENTRY_BYTES + 5 * FIXED_VALUE_BYTES  # an int key and four numbers
    handles = _start(catalog, factory, write_mode="through", cache_bytes=3 * entry)
    try:
        keys = [k for k in range(600, 700) if shard_of(k, SHARDS) == 0][:10]
        ShardedCacheWriter(handles, USER_PAYMENTS).write(payments(keys, 3))
        stats = ray.get(handles[0].stats.remote())
        assert (stats["keys"], stats["evictions"], stats["bytes"]) == (3, 7, 3 * entry)
        assert read_online(handles, "user_payments", keys[-3:], ["txn_count"], timeout_s=READ_S).statuses["txn_count"] == ["PRESENT"] * 3
        assert ray.get(handles[0].stats.remote())["hits"] == 3
        # evicted keys still answer, from the store, and evict others in turn
        got = read_online(handles, "user_payments", keys[:2], ["txn_count"], timeout_s=READ_S)
        assert got.values["txn_count"] == [3 + k for k in keys[:2]]
        stats = ray.get(handles[0].stats.remote())
        assert (stats["read_through_rows"], stats["evictions"], stats["keys"], stats["misses"]) == (2, 9, 3, 2)
    finally:
        for h in handles:
            ray.kill(h, no_restart=True)


def test_sync_waits_for_the_shards_own_flush_and_resends_to_a_restarted_shard(ray_cluster, feature_env, store):
    _, catalog, factory = feature_env
    handles = _start(catalog, factory, write_mode="behind", write_behind_interval_s=0.5)
    try:
        keys = list(range(700, 740))
        writer = ShardedCacheWriter(handles, USER_PAYMENTS)
        writer.write(payments(keys, 3))
        before = counters(handles)
        assert writer.sync() == 0  # nothing re-sent: both shards wrote their buffers on their own
        assert {k: r["txn_count"] for k, r in stored(store, "user_payments", keys).items()} == {k: 3 + k for k in keys}
        assert writer.retained_rows == 0
        assert change(counters(handles), before, "write_behind_flushed") == (40,)  # once each row, no extra writes

        writer.write(payments(keys, 4, NOW_MS + 1000))
        kill_and_wait(handles[0])  # may die before its flush: the writer still holds the rows
        lost = [k for k in keys if shard_of(k, SHARDS) == 0]
        assert writer.sync() == len(lost)  # the restarted shard gets them again, written through
        assert {k: r["txn_count"] for k, r in stored(store, "user_payments", keys).items()} == {k: 4 + k for k in keys}
    finally:
        for h in handles:
            ray.kill(h, no_restart=True)
