"""fabric_ray.features.cache_shard: read-through, write-through, write-behind and refresh-ahead
over an in-memory online store with the real store's two methods and its upsert semantics."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from fabric_ray.features.cache import ENTRY_BYTES, FIXED_VALUE_BYTES, NOT_FOUND, OUTSIDE_MAX_AGE, PRESENT, WriteBehindBuffer
from fabric_ray.features.cache_settings import CacheSettings
from fabric_ray.features.cache_shard import BACKLOG_FACTOR, ShardCore
from fabric_ray.features.catalog import Catalog
from fabric_ray.features.definitions import Entity, Feature, FeatureView

USER = Entity("user", "user_id")
PAY = FeatureView("pay", USER, (Feature("n", "int64"), Feature("total", "float64")))
DAILY = FeatureView("daily", USER, (Feature("n", "int64"),), ttl_s=10)
CATALOG = Catalog.of([PAY, DAILY])
ONE = ENTRY_BYTES + 3 * FIXED_VALUE_BYTES  # bytes of one "pay" entry


class MemoryStore:
    """The online store's interface in memory. Like Feast's stores, a write replaces whatever is
    held for the key, whatever its event time."""

    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.reads: list[tuple[str, list]] = []
        self.writes: list[tuple[str, list[dict]]] = []
        self.fail_writes = 0

    def read(self, view: str, keys) -> pa.Table:
        self.reads.append((view, list(keys)))
        found = [self.rows[view][k] for k in keys if k in self.rows.get(view, {})]
        fv = CATALOG.view(view)
        cols = [fv.entity.join_key, *fv.feature_names, "event_ts_ms"]
        return pa.table({c: [r[c] for r in found] for c in cols}) if found else pa.table({c: pa.array([], pa.int64()) for c in cols})

    def write(self, view: str, table: pa.Table) -> int:
        if self.fail_writes:
            self.fail_writes -= 1
            raise ConnectionError("online store unavailable")
        rows = table.to_pylist()
        self.writes.append((view, rows))
        key = CATALOG.view(view).entity.join_key
        for r in rows:
            self.rows.setdefault(view, {})[r[key]] = r
        return len(rows)


def pay(keys, n, ts) -> pa.Table:
    return pa.table({"user_id": keys, "n": n, "total": [float(x) for x in n], "event_ts_ms": ts})


class Clock:
    def __init__(self, ms: int = 0) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def core(store: MemoryStore | None = None, clock: Clock | None = None, **settings) -> ShardCore:
    factory = None if store is None else (lambda: store)
    return ShardCore(CATALOG, CacheSettings(**settings), factory, clock_ms=clock or Clock(100))


# ---------------------------------------------------------------------------- write-through


def test_write_through_reaches_the_store_before_put_returns():
    store = MemoryStore()
    c = core(store, write_mode="through")
    assert c.put("pay", pay([1, 2], [10, 20], [5, 5])) == 2
    assert store.rows["pay"][1]["n"] == 10 and store.rows["pay"][2]["n"] == 20
    s = c.stats()
    assert s["written_through"] == 2 and s["write_behind_pending"] == 0 and s["puts"] == 2


def test_write_through_sends_only_rows_the_cache_stored_newest_per_key():
    store = MemoryStore()
    c = core(store, write_mode="through")
    c.put("pay", pay([1], [10], [50]))
    c.put("pay", pay([1, 1, 1, 2], [1, 3, 2, 7], [10, 60, 55, 1]))  # ts 10 older than held; 60 newest
    view, written = store.writes[-1]
    assert view == "pay" and sorted(written, key=lambda r: r["user_id"]) == [
        {"user_id": 1, "n": 3, "total": 3.0, "event_ts_ms": 60},
        {"user_id": 2, "n": 7, "total": 7.0, "event_ts_ms": 1},
    ]
    assert store.rows["pay"][1]["n"] == 3
    c.put("pay", pay([1], [0], [1]))  # a replay: neither cached nor written
    assert store.rows["pay"][1]["n"] == 3 and len(store.writes) == 2


def test_write_through_failure_raises_and_a_retry_writes():
    store = MemoryStore()
    store.fail_writes = 1
    c = core(store, write_mode="through")
    with pytest.raises(ConnectionError, match="online store unavailable"):
        c.put("pay", pay([1], [10], [5]))
    assert "pay" not in store.rows
    assert c.put("pay", pay([1], [10], [5])) == 1  # equal event time: accepted again, written
    assert store.rows["pay"][1]["n"] == 10


def test_extra_columns_are_not_written():
    store = MemoryStore()
    c = core(store, write_mode="through")
    c.put("pay", pay([1], [10], [5]).append_column("extra", pa.array(["x"])))
    assert set(store.writes[0][1][0]) == {"user_id", "n", "total", "event_ts_ms"}


# ---------------------------------------------------------------------------- write-behind


def test_write_behind_buffers_until_flush():
    store = MemoryStore()
    c = core(store, write_mode="behind")
    c.put("pay", pay([1, 2], [10, 20], [5, 5]))
    c.put("pay", pay([1], [11], [6]))
    assert "pay" not in store.rows
    assert c.stats()["write_behind_pending"] == 3
    assert c.get("pay", [1], ["n"]).values == {"n": [11]}  # served from the cache meanwhile
    assert c.flush() == 2  # coalesced per key
    assert {k: r["n"] for k, r in store.rows["pay"].items()} == {1: 11, 2: 20}
    s = c.stats()
    assert (s["write_behind_pending"], s["write_behind_flushed"]) == (0, 2)
    assert c.flush() == 0


def test_write_behind_drains_by_rows_on_tick():
    store = MemoryStore()
    c = core(store, write_mode="behind", write_behind_rows=3, write_behind_interval_s=3600)
    c.put("pay", pay([1, 2], [1, 2], [1, 1]))
    assert c.tick() == {"flushed": 0, "refreshed": 0}
    c.put("pay", pay([3], [3], [1]))
    assert c.tick()["flushed"] == 3
    assert sorted(store.rows["pay"]) == [1, 2, 3]


def test_a_backlog_makes_put_flush_itself():
    store = MemoryStore()
    c = core(store, write_mode="behind", write_behind_rows=2, write_behind_interval_s=3600)
    c.put("pay", pay(list(range(2 * BACKLOG_FACTOR - 1)), [0] * (2 * BACKLOG_FACTOR - 1), [1] * (2 * BACKLOG_FACTOR - 1)))
    assert "pay" not in store.rows
    c.put("pay", pay([100], [1], [1]))
    assert len(store.rows["pay"]) == 2 * BACKLOG_FACTOR and c.stats()["write_behind_pending"] == 0


def test_a_failed_flush_keeps_the_rows_for_the_next():
    store = MemoryStore()
    c = core(store, write_mode="behind")
    c.put("pay", pay([1], [10], [5]))
    store.fail_writes = 1
    with pytest.raises(ConnectionError):
        c.flush()
    s = c.stats()
    assert s["write_behind_pending"] == 1 and s["write_behind_failures"] == 1
    c.put("pay", pay([1], [12], [7]))
    assert c.flush() == 1
    assert store.rows["pay"][1]["n"] == 12


def test_write_through_after_write_behind_keeps_the_order():
    """A buffered older row must not reach the store after a newer written-through one."""
    store = MemoryStore()
    c = core(store, write_mode="behind")
    c.put("pay", pay([1], [10], [5]))
    c.put("pay", pay([1], [20], [6]), write="through")
    c.flush()
    assert store.rows["pay"][1]["n"] == 20


def test_write_none_stays_in_the_cache():
    store = MemoryStore()
    c = core(store, write_mode="behind")
    c.put("pay", pay([1], [10], [5]), write="none")
    c.flush()
    assert store.writes == [] and c.size("pay") == 1


def test_without_a_store_writes_stay_in_the_cache_and_modes_are_refused():
    c = core(None)
    assert c.stats()["write_mode"] == "none" and not c.stats()["read_through"]
    assert c.put("pay", pay([1], [10], [5])) == 1
    assert c.flush() == 0 and c.stats()["write_behind_pending"] == 0
    assert c.get("pay", [2], ["n"]).statuses == {"n": [NOT_FOUND]}
    with pytest.raises(ValueError, match=r"write='through' needs an online store, and this cache shard has none"):
        c.put("pay", pay([1], [10], [5]), write="through")
    with pytest.raises(ValueError, match=r"write mode must be one of \['through', 'behind', 'none'\]; got 'later'"):
        c.put("pay", pay([1], [10], [5]), write="later")


def test_a_catalog_or_views_both_work():
    assert ShardCore([PAY]).put("pay", pay([1], [1], [1])) == 1


# ---------------------------------------------------------------------------- read-through


def test_read_through_answers_misses_and_keeps_them():
    store = MemoryStore()
    store.write("pay", pay([7, 8], [70, 80], [3, 4]))
    c = core(store)
    c.put("pay", pay([1], [10], [5]), write="none")
    got = c.get("pay", [7, 1, 9, 8, 7], ["n", "total"])
    assert got.values == {"n": [70, 10, None, 80, 70], "total": [70.0, 10.0, None, 80.0, 70.0]}
    assert got.statuses["n"] == [PRESENT, PRESENT, NOT_FOUND, PRESENT, PRESENT]
    assert got.event_ms == [3, 5, None, 4, 3]
    assert store.reads == [("pay", [7, 9, 8])]  # each missing key once
    s = c.stats()
    assert (s["hits"], s["misses"], s["read_through_rows"], s["read_through_calls"]) == (1, 4, 2, 1)
    store.reads.clear()
    assert c.get("pay", [7, 8], ["n"]).values == {"n": [70, 80]}
    assert store.reads == []  # now cached


def test_a_miss_is_remembered_for_miss_ttl_then_read_again():
    store, clock = MemoryStore(), Clock(100)
    c = core(store, clock, miss_ttl_s=1.0)
    assert c.get("pay", [9], ["n"]).statuses == {"n": [NOT_FOUND]}
    assert store.reads == [("pay", [9])]
    store.write("pay", pay([9], [90], [1]))  # another writer fills the store
    clock.ms = 1_099  # within the miss ttl: answered from memory, no store read
    assert c.get("pay", [9], ["n"]).statuses == {"n": [NOT_FOUND]}
    assert store.reads == [("pay", [9])] and c.stats()["known_absent"] == 1
    clock.ms = 1_100  # expired: read through again, and found
    assert c.get("pay", [9], ["n"]).values == {"n": [90]}
    assert store.reads == [("pay", [9]), ("pay", [9])]


def test_a_put_ends_a_remembered_miss_at_once():
    store = MemoryStore()
    c = core(store, miss_ttl_s=60.0)
    assert c.get("pay", [5, 6], ["n"]).statuses == {"n": [NOT_FOUND, NOT_FOUND]}
    assert c.stats()["known_absent_keys"] == 2
    c.put("pay", pay([5], [50], [1]), write="none")
    assert c.get("pay", [5, 6], ["n"]).statuses == {"n": [PRESENT, NOT_FOUND]}
    assert c.stats()["known_absent_keys"] == 1
    # evicted later, the key is read through again (not answered from the old miss)
    c.cache._entries.clear()
    store.write("pay", pay([5], [50], [1]))
    assert c.get("pay", [5], ["n"]).values == {"n": [50]}


def test_miss_ttl_zero_reads_through_on_every_miss():
    store = MemoryStore()
    c = core(store, miss_ttl_s=0)
    c.get("pay", [9], ["n"])
    c.get("pay", [9], ["n"])
    assert store.reads == [("pay", [9]), ("pay", [9])]


def test_a_read_through_does_not_wait_behind_a_slow_write():
    class SlowWrites(MemoryStore):
        def __init__(self, shared: MemoryStore, gate: threading.Event, writing: threading.Event) -> None:
            super().__init__()
            self.rows, self.gate, self.writing = shared.rows, gate, writing

        def write(self, view, table):
            self.writing.set()
            assert self.gate.wait(10)
            return super().write(view, table)

    shared, gate, writing = MemoryStore(), threading.Event(), threading.Event()
    shared.write("pay", pay([7], [70], [3]))
    c = ShardCore(CATALOG, CacheSettings(), lambda: SlowWrites(shared, gate, writing), clock_ms=Clock(100))
    c.put("pay", pay([1], [10], [5]), write="behind")
    flusher = threading.Thread(target=c.flush)
    flusher.start()
    assert writing.wait(10)  # the flush holds the store's write side now
    try:
        assert c.get("pay", [7], ["n"]).values == {"n": [70]}  # answered while the write waits
    finally:
        gate.set()
        flusher.join(10)
    assert shared.rows["pay"][1]["n"] == 10


def test_read_through_can_be_turned_off():
    store = MemoryStore()
    store.write("pay", pay([7], [70], [3]))
    c = core(store, read_through=False)
    assert c.get("pay", [7], ["n"]).statuses == {"n": [NOT_FOUND]}
    assert store.reads == []


def test_read_through_reports_ttl():
    store = MemoryStore()
    store.write("daily", pa.table({"user_id": [1, 2], "n": [1, 2], "event_ts_ms": [0, 95_000]}))
    c = core(store, clock=Clock(100_000))
    got = c.get("daily", [1, 2], ["n"])
    assert got.statuses == {"n": [OUTSIDE_MAX_AGE, PRESENT]} and got.values == {"n": [1, 2]}


def test_a_restarted_shard_answers_from_the_store():
    """A new ShardCore over the same store (what a restarted actor is) answers what the old one wrote."""
    store = MemoryStore()
    first = core(store, write_mode="through")
    first.put("pay", pay([1, 2], [10, 20], [5, 5]))
    second = core(store)
    assert second.size("pay") == 0
    assert second.get("pay", [2, 1, 3], ["n"]).values == {"n": [20, 10, None]}


def test_an_evicted_key_with_a_buffered_row_is_not_answered_from_an_older_store_row():
    store = MemoryStore()
    store.write("pay", pay([1], [10], [5]))
    c = core(store, write_mode="behind", cache_bytes=ONE)
    c.put("pay", pay([1], [11], [6]))  # newer, buffered only
    c.put("pay", pay([2], [20], [6]))  # evicts 1
    assert c.stats()["evictions"] == 1
    assert c.get("pay", [1], ["n"]).values == {"n": [11]}


def test_a_read_through_never_overwrites_a_newer_value():
    store = MemoryStore()
    store.write("pay", pay([1], [10], [5]))
    c = core(store, write_mode="none")
    c.put("pay", pay([1], [99], [50]))
    c._load("pay", [1], origin="read_through")  # a slow read-through finishing after the put
    assert c.get("pay", [1], ["n"]).values == {"n": [99]}


# ---------------------------------------------------------------------------- refresh-ahead


def test_refresh_ahead_reloads_hot_keys_near_expiry():
    store = MemoryStore()
    clock = Clock(0)
    store.write("daily", pa.table({"user_id": [1, 2], "n": [1, 2], "event_ts_ms": [0, 0]}))
    c = core(store, clock=clock, refresh_ahead=0.5, refresh_min_hits=2)
    clock.ms = 1_000
    c.get("daily", [1, 2], ["n"])  # read through; loaded at 1 s
    clock.ms = 6_000
    for _ in range(2):
        c.get("daily", [1], ["n"])  # hot and past half the TTL; 2 is cold
    store.write("daily", pa.table({"user_id": [1, 2], "n": [10, 20], "event_ts_ms": [5_900, 5_900]}))
    assert c.tick() == {"flushed": 0, "refreshed": 1}
    assert c.get("daily", [1, 2], ["n"]).values == {"n": [10, 2]}
    assert c.stats()["refreshes"] == 1


def test_refresh_ahead_is_off_without_a_store():
    c = core(None, clock=Clock(9_000), refresh_ahead=0.5, refresh_min_hits=1)
    c.put("daily", pa.table({"user_id": [1], "n": [1], "event_ts_ms": [0]}))
    c.get("daily", [1], ["n"])
    assert c.refresh() == 0


# ---------------------------------------------------------------------------- threads


def test_concurrent_puts_gets_and_flushes_keep_the_newest_values():
    store = MemoryStore()
    c = core(store, write_mode="behind", write_behind_rows=50)
    errors: list[BaseException] = []

    def writer(offset: int) -> None:
        try:
            for ts in range(1, 60):
                c.put("pay", pay(list(range(offset, offset + 20)), [ts] * 20, [ts] * 20))
                c.tick()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(200):
                c.get("pay", list(range(0, 60, 7)), ["n", "total"])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(o,)) for o in (0, 20, 40)] + [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    c.flush()
    assert c.get("pay", list(range(60)), ["n"]).values == {"n": [59] * 60}
    assert {k: r["n"] for k, r in store.rows["pay"].items()} == {k: 59 for k in range(60)}


# ---------------------------------------------------------------------------- WriteBehindBuffer


def test_buffer_is_due_by_rows_or_age():
    b = WriteBehindBuffer({"pay": "user_id"}, max_rows=3, max_age_s=2.0)
    assert not b.due(now_s=100.0)
    b.add("pay", pay([1, 2], [1, 2], [1, 1]), now_s=10.0)
    assert not b.due(now_s=11.9) and b.due(now_s=12.0)
    b.add("pay", pay([3], [3], [1]), now_s=11.0)
    assert b.due(now_s=10.0)  # 3 rows


def test_buffer_rows_for_sees_pending_and_inflight_rows():
    b = WriteBehindBuffer({"pay": "user_id"}, max_rows=100, max_age_s=1.0)
    b.add("pay", pay([1, 2], [1, 2], [1, 1]))
    b.take()
    b.add("pay", pay([1], [5], [2]))
    got = b.rows_for("pay", [1, 3])
    assert sorted(got["n"].to_pylist()) == [1, 5]
    assert b.rows_for("pay", [3]) is None and b.rows_for("daily", [1]) is None
    assert b.rows_for("pay", ["not-an-int"]) is None
    b.done("pay", ok=True)
    assert b.rows_for("pay", [1])["n"].to_pylist() == [5]


def test_buffer_puts_failed_rows_back_in_front():
    b = WriteBehindBuffer({"pay": "user_id"}, max_rows=100, max_age_s=1.0)
    b.add("pay", pay([1], [1], [1]))
    b.take()
    b.add("pay", pay([1], [2], [2]))
    b.done("pay", ok=False)
    assert b.pending == 2 and b.failures == 1
    assert b.take()["pay"].to_pylist() == [{"user_id": 1, "n": 2, "total": 2.0, "event_ts_ms": 2}]


def test_warm_opens_the_store_and_touches_each_view():
    store = MemoryStore()
    opened = []
    c = ShardCore(CATALOG, CacheSettings(), lambda: opened.append(1) or store)
    c.warm()
    # the writer and the reader: two store instances (connections), each touching every view
    assert opened == [1, 1] and store.reads == [("pay", []), ("daily", [])] * 2
    core(None).warm()  # no store: nothing to do


def test_wait_durable_waits_for_the_next_flush_and_forces_none():
    store = MemoryStore()
    c = core(store, write_mode="behind")
    assert c.wait_durable(0.01)  # nothing buffered: durable at once
    c.put("pay", pay([1, 2], [10, 20], [5, 5]))
    assert not c.wait_durable(0.05) and store.writes == []  # waiting writes nothing
    done = []
    waiter = threading.Thread(target=lambda: done.append(c.wait_durable(10)))
    waiter.start()
    c.put("pay", pay([3], [30], [5]))  # after the waiter's mark: not needed by it, but flushed along
    assert c.flush() == 3
    waiter.join(10)
    assert done == [True] and c.wait_durable(0.01)


def test_wait_durable_is_not_satisfied_by_a_failed_flush():
    store = MemoryStore()
    c = core(store, write_mode="behind")
    c.put("pay", pay([1], [10], [5]))
    store.fail_writes = 1
    with pytest.raises(ConnectionError):
        c.flush()
    assert not c.wait_durable(0.01)
    assert c.flush() == 1 and c.wait_durable(0.01)


def test_a_write_through_put_makes_earlier_buffered_rows_durable():
    store = MemoryStore()
    c = core(store, write_mode="behind")
    c.put("pay", pay([1], [10], [5]))
    c.put("pay", pay([2], [20], [5]), write="through")  # writes the buffer first
    assert c.wait_durable(0.01) and {r["user_id"] for _, rows in store.writes for r in rows} == {1, 2}


def test_buffer_coalesces_once_max_rows_arrived_and_is_due_by_distinct_keys():
    b = WriteBehindBuffer({"pay": "user_id"}, max_rows=4, max_age_s=3600)
    for n in range(1, 4):  # 6 updates of two keys
        b.add("pay", pay([1, 2], [n, n], [n, n]), now_s=0.0)
    assert b.pending == 2 and not b.due(now_s=1.0)  # coalesced: 2 distinct keys wait
    b.add("pay", pay([3, 4, 5], [1, 1, 1], [1, 1, 1]), now_s=0.0)
    assert b.pending == 5 and b.due(now_s=1.0)
    assert sorted((r["user_id"], r["n"]) for r in b.take()["pay"].to_pylist()) == [(1, 3), (2, 3), (3, 1), (4, 1), (5, 1)]
