"""fabric_ray.streams.aggregates: KeyedWindowAggregate against a direct pure-Python computation."""

from __future__ import annotations

import math
import random
from collections import defaultdict

import pyarrow as pa
import pytest

from fabric_ray.streams.aggregates import KeyedWindowAggregate


def reference(events: list[tuple[object, float, int]], window_ms: int) -> dict[object, dict]:
    """State per key from the whole event list at once (order does not matter by definition)."""
    by_key: dict[object, list[tuple[float, int]]] = defaultdict(list)
    for key, value, ts in events:
        by_key[key].append((value, ts))
    out = {}
    for key, items in by_key.items():
        latest_window = max((ts // window_ms) * window_ms for _, ts in items)
        in_window = [v for v, ts in items if (ts // window_ms) * window_ms == latest_window]
        out[key] = {
            "count": len(items),
            "sum": math.fsum(v for v, _ in items),
            "window_start_ms": latest_window,
            "window_count": len(in_window),
            "window_sum": math.fsum(in_window),
            "last_event_ms": max(ts for _, ts in items),
        }
    return out


def assert_rows_match(rows: list[dict], expected: dict[object, dict]) -> None:
    for r in rows:
        exp = expected[r["key"]]
        for col in ("count", "window_start_ms", "window_count", "last_event_ms"):
            assert r[col] == exp[col], (r["key"], col, r[col], exp[col])
        for col in ("sum", "window_sum"):
            assert math.isclose(r[col], exp[col], rel_tol=1e-9, abs_tol=1e-9), (r["key"], col, r[col], exp[col])


def random_events(rng: random.Random, n: int, key_kind: str, window_ms: int) -> list[tuple[object, float, int]]:
    n_keys = rng.randint(1, 40)
    if key_kind == "int":
        pool: list[object] = rng.sample(range(-5, 10_000), n_keys)
    else:
        pool = [f"user-{rng.randrange(10**6)}" for _ in range(n_keys)]
    start = rng.randrange(0, 10**12)
    span = window_ms * rng.randint(1, 8)
    return [
        (rng.choice(pool), round(rng.uniform(-50, 500), 2), start + rng.randrange(span))  # out of order by construction
        for _ in range(n)
    ]


def feed(agg: KeyedWindowAggregate, batch: list[tuple[object, float, int]], key_type: pa.DataType) -> pa.Table:
    keys, values, ts = zip(*batch)
    return agg.update(pa.array(keys, key_type), pa.array(values, pa.float64()), pa.array(ts, pa.int64()))


def split(rng: random.Random, events: list, max_batches: int) -> list[list]:
    cuts = sorted(rng.sample(range(1, len(events)), min(max_batches - 1, len(events) - 1)))
    bounds = [0, *cuts, len(events)]
    return [events[a:b] for a, b in zip(bounds, bounds[1:])]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("key_kind", ["int", "string"])
def test_matches_reference_over_random_streams(seed, key_kind):
    rng = random.Random(seed * 1000 + (key_kind == "string"))
    window_ms = rng.choice([1, 7, 1000, 60_000])
    events = random_events(rng, rng.randint(50, 600), key_kind, window_ms)
    key_type = pa.int64() if key_kind == "int" else pa.string()
    agg = KeyedWindowAggregate(window_ms)
    seen: list = []
    for batch in split(rng, events, max_batches=12):
        out = feed(agg, batch, key_type)
        seen.extend(batch)
        rows = out.to_pylist()
        # one row per distinct key of the batch, each equal to the state over everything seen so far
        assert sorted(map(str, (r["key"] for r in rows))) == sorted(map(str, {k for k, _, _ in batch}))
        assert out.schema.field("key").type == key_type
        assert_rows_match(rows, reference(seen, window_ms))
    snap = agg.snapshot().to_pylist()
    expected = reference(events, window_ms)
    assert len(agg) == len(expected) == len(snap)
    assert {r["key"] for r in snap} == set(expected)
    assert_rows_match(snap, expected)


@pytest.mark.parametrize("seed", range(4))
def test_result_does_not_depend_on_arrival_order(seed):
    rng = random.Random(seed)
    events = random_events(rng, 400, "int", 100)
    a, b = KeyedWindowAggregate(100), KeyedWindowAggregate(100)
    for batch in split(rng, events, 10):
        feed(a, batch, pa.int64())
    shuffled = events[:]
    rng.shuffle(shuffled)
    for batch in split(rng, shuffled, 25):
        feed(b, batch, pa.int64())
    sa = {r["key"]: r for r in a.snapshot().to_pylist()}
    sb = {r["key"]: r for r in b.snapshot().to_pylist()}
    assert sa.keys() == sb.keys()
    assert_rows_match(list(sa.values()), {k: r for k, r in sb.items()})


def test_one_event_per_batch_equals_one_big_batch():
    rng = random.Random(3)
    events = random_events(rng, 200, "string", 50)
    a, b = KeyedWindowAggregate(50), KeyedWindowAggregate(50)
    feed(a, events, pa.string())
    for e in events:
        feed(b, [e], pa.string())
    assert_rows_match(b.snapshot().to_pylist(), reference(events, 50))
    assert_rows_match(a.snapshot().to_pylist(), reference(events, 50))


def test_docstring_example_values():
    agg = KeyedWindowAggregate(window_ms=60_000)
    out = agg.update(pa.array([7, 7, 8]), pa.array([1.0, 2.0, 5.0]), pa.array([0, 61_000, 10])).to_pylist()
    assert out == [
        {"key": 7, "count": 2, "sum": 3.0, "window_start_ms": 60_000, "window_count": 1, "window_sum": 2.0, "last_event_ms": 61_000},
        {"key": 8, "count": 1, "sum": 5.0, "window_start_ms": 0, "window_count": 1, "window_sum": 5.0, "last_event_ms": 10},
    ]


# -- window semantics ----------------------------------------------------------------------------
def state_of(agg: KeyedWindowAggregate, key) -> dict:
    return next(r for r in agg.snapshot().to_pylist() if r["key"] == key)


def test_a_later_window_resets_the_window_features():
    agg = KeyedWindowAggregate(1000)
    agg.update(pa.array([1, 1]), pa.array([1.0, 2.0]), pa.array([100, 900]))
    assert state_of(agg, 1)["window_count"] == 2
    agg.update(pa.array([1]), pa.array([10.0]), pa.array([1500]))
    s = state_of(agg, 1)
    assert (s["window_start_ms"], s["window_count"], s["window_sum"]) == (1000, 1, 10.0)
    assert (s["count"], s["sum"], s["last_event_ms"]) == (3, 13.0, 1500)


def test_a_late_event_for_an_older_window_counts_only_all_time():
    agg = KeyedWindowAggregate(1000)
    agg.update(pa.array([1]), pa.array([5.0]), pa.array([2500]))
    agg.update(pa.array([1]), pa.array([7.0]), pa.array([100]))
    s = state_of(agg, 1)
    assert (s["count"], s["sum"]) == (2, 12.0)
    assert (s["window_start_ms"], s["window_count"], s["window_sum"]) == (2000, 1, 5.0)
    assert s["last_event_ms"] == 2500


def test_a_late_event_in_the_current_window_counts():
    agg = KeyedWindowAggregate(1000)
    agg.update(pa.array([1]), pa.array([5.0]), pa.array([2900]))
    agg.update(pa.array([1]), pa.array([7.0]), pa.array([2001]))
    s = state_of(agg, 1)
    assert (s["window_count"], s["window_sum"], s["last_event_ms"]) == (2, 12.0, 2900)


def test_window_boundaries_are_inclusive_at_the_start():
    agg = KeyedWindowAggregate(1000)
    agg.update(pa.array([1, 1]), pa.array([1.0, 2.0]), pa.array([999, 1000]))
    s = state_of(agg, 1)
    assert (s["window_start_ms"], s["window_count"], s["window_sum"]) == (1000, 1, 2.0)


def test_negative_event_times_floor_to_their_window():
    agg = KeyedWindowAggregate(1000)
    agg.update(pa.array([1, 1]), pa.array([1.0, 2.0]), pa.array([-1500, -1001]))
    s = state_of(agg, 1)
    assert (s["window_start_ms"], s["window_count"], s["window_sum"]) == (-2000, 2, 3.0)


def test_keys_are_independent():
    agg = KeyedWindowAggregate(10)
    agg.update(pa.array(["a", "b"]), pa.array([1.0, 2.0]), pa.array([5, 95]))
    agg.update(pa.array(["a"]), pa.array([3.0]), pa.array([105]))
    assert state_of(agg, "b") == {
        "key": "b", "count": 1, "sum": 2.0, "window_start_ms": 90, "window_count": 1, "window_sum": 2.0, "last_event_ms": 95,
    }
    assert state_of(agg, "a")["window_start_ms"] == 100


def test_update_returns_only_the_touched_keys():
    agg = KeyedWindowAggregate(10)
    agg.update(pa.array([1, 2, 3]), pa.array([1.0, 1.0, 1.0]), pa.array([1, 1, 1]))
    out = agg.update(pa.array([2, 2]), pa.array([1.0, 1.0]), pa.array([2, 3]))
    assert out.column("key").to_pylist() == [2]
    assert out.column("count").to_pylist() == [3]
    assert len(agg) == 3


def test_empty_update_changes_nothing():
    agg = KeyedWindowAggregate(10)
    agg.update(pa.array([1]), pa.array([1.0]), pa.array([1]))
    before = agg.snapshot()
    out = agg.update(pa.array([], pa.int64()), pa.array([], pa.float64()), pa.array([], pa.int64()))
    assert out.num_rows == 0
    assert out.column_names == list(KeyedWindowAggregate.COLUMNS)
    assert agg.snapshot().equals(before)


def test_many_keys_grow_the_state():
    agg = KeyedWindowAggregate(10)
    n = 5000  # beyond the initial capacity of 1024 rows
    agg.update(pa.array(range(n)), pa.array([1.0] * n), pa.array(range(n)))
    agg.update(pa.array(range(n)), pa.array([2.0] * n), pa.array(range(n)))
    snap = agg.snapshot()
    assert len(agg) == n and snap.num_rows == n
    assert set(snap["count"].to_pylist()) == {2}
    assert set(snap["sum"].to_pylist()) == {3.0}


# -- snapshot and restore ------------------------------------------------------------------------
@pytest.mark.parametrize("key_kind", ["int", "string"])
def test_snapshot_restore_round_trip(key_kind):
    rng = random.Random(5)
    events = random_events(rng, 300, key_kind, 100)
    key_type = pa.int64() if key_kind == "int" else pa.string()
    agg = KeyedWindowAggregate(100)
    first, second = events[:150], events[150:]
    feed(agg, first, key_type)
    snap = agg.snapshot()
    assert snap.column_names == list(KeyedWindowAggregate.COLUMNS)
    restored = KeyedWindowAggregate.restore(100, snap)
    assert restored.window_ms == 100
    assert len(restored) == len(agg)
    assert restored.snapshot().equals(snap)
    # and it keeps going exactly like the original
    out_a = feed(agg, second, key_type)
    out_b = feed(restored, second, key_type)
    assert out_a.equals(out_b)
    assert restored.snapshot().equals(agg.snapshot())
    assert_rows_match(restored.snapshot().to_pylist(), reference(events, 100))


def test_restore_of_an_empty_snapshot():
    snap = KeyedWindowAggregate(10).snapshot()
    assert snap.num_rows == 0
    restored = KeyedWindowAggregate.restore(10, snap)
    assert len(restored) == 0
    restored.update(pa.array([1]), pa.array([2.0]), pa.array([3]))
    assert state_of(restored, 1)["count"] == 1


def test_snapshot_is_a_copy():
    agg = KeyedWindowAggregate(10)
    agg.update(pa.array([1]), pa.array([1.0]), pa.array([1]))
    snap = agg.snapshot()
    agg.update(pa.array([1]), pa.array([1.0]), pa.array([2]))
    assert snap["count"].to_pylist() == [1]


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("window_ms", [0, -1, -60_000])
def test_window_ms_must_be_positive(window_ms):
    with pytest.raises(ValueError, match=f"window_ms must be positive; got {window_ms}"):
        KeyedWindowAggregate(window_ms)


def test_window_ms_of_one_makes_every_millisecond_a_window():
    agg = KeyedWindowAggregate(1)
    agg.update(pa.array([1, 1, 1]), pa.array([1.0, 2.0, 4.0]), pa.array([5, 6, 6]))
    s = state_of(agg, 1)
    assert (s["window_start_ms"], s["window_count"], s["window_sum"]) == (6, 2, 6.0)
