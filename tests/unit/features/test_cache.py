"""fabric_ray.features.cache: last write wins by event time; Feast statuses."""

from __future__ import annotations

import pyarrow as pa
import pytest

from fabric_ray.features.cache import NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE, PRESENT, FeatureCache, Lookup
from fabric_ray.features.definitions import Entity, Feature, FeatureView

USER = Entity("user", "user_id")
VIEW = FeatureView("pay", USER, (Feature("n", "int64"), Feature("total", "float64")))
TTL_VIEW = FeatureView("fresh", USER, (Feature("n", "int64"),), ttl_s=10)
NAMED = FeatureView("named", Entity("merchant", "merchant", "string"), (Feature("label", "string"),))


def rows(keys, n, total, ts, key="user_id") -> pa.Table:
    return pa.table({key: keys, "n": n, "total": total, "event_ts_ms": ts})


@pytest.fixture
def cache() -> FeatureCache:
    return FeatureCache([VIEW, TTL_VIEW, NAMED])


def test_statuses_are_feasts():
    assert (PRESENT, NOT_FOUND, NULL_VALUE, OUTSIDE_MAX_AGE) == ("PRESENT", "NOT_FOUND", "NULL_VALUE", "OUTSIDE_MAX_AGE")


def test_put_then_get(cache):
    assert cache.put("pay", rows([1, 2], [3, 4], [1.5, 2.5], [100, 200])) == 2
    got = cache.get("pay", [2, 1], ["total", "n"], now_ms=300)
    assert isinstance(got, Lookup)
    assert got.values == {"total": [2.5, 1.5], "n": [4, 3]}
    assert got.statuses == {"total": [PRESENT, PRESENT], "n": [PRESENT, PRESENT]}
    assert got.event_ms == [200, 100]
    assert cache.size("pay") == 2


def test_unknown_key_is_not_found(cache):
    cache.put("pay", rows([1], [3], [1.5], [100]))
    got = cache.get("pay", [1, 99, 1], ["n"], now_ms=0)
    assert got.values == {"n": [3, None, 3]}
    assert got.statuses == {"n": [PRESENT, NOT_FOUND, PRESENT]}
    assert got.event_ms == [100, None, 100]


def test_newer_row_replaces_older(cache):
    cache.put("pay", rows([1], [3], [1.5], [100]))
    assert cache.put("pay", rows([1], [4], [2.5], [101])) == 1
    assert cache.get("pay", [1], ["n", "total"]).values == {"n": [4], "total": [2.5]}


def test_older_row_is_ignored(cache):
    cache.put("pay", rows([1], [3], [1.5], [100]))
    assert cache.put("pay", rows([1], [2], [0.5], [99])) == 0
    got = cache.get("pay", [1], ["n"])
    assert got.values == {"n": [3]} and got.event_ms == [100]


def test_equal_event_time_last_write_wins(cache):
    cache.put("pay", rows([1], [3], [1.5], [100]))
    assert cache.put("pay", rows([1], [5], [5.5], [100])) == 1
    assert cache.get("pay", [1], ["n"]).values == {"n": [5]}


def test_within_one_table_the_newest_row_wins_whatever_its_position(cache):
    stored = cache.put("pay", rows([1, 1, 1], [1, 3, 2], [1.0, 3.0, 2.0], [10, 30, 20]))
    assert stored == 2  # the third row (ts 20) is older than the second (ts 30)
    assert cache.get("pay", [1], ["n"]).values == {"n": [3]}
    assert cache.size("pay") == 1


def test_replay_cannot_move_a_value_backwards(cache):
    history = [rows([1, 2], [i, i], [float(i)] * 2, [i * 10] * 2) for i in range(1, 6)]
    for t in history:
        cache.put("pay", t)
    for t in history:  # replay from the start
        assert cache.put("pay", t) == (2 if t is history[-1] else 0)
    assert cache.get("pay", [1, 2], ["n"]).values == {"n": [5, 5]}


def test_null_feature_value_is_null_value(cache):
    cache.put("pay", pa.table({"user_id": [1], "n": pa.array([None], pa.int64()), "total": [1.0], "event_ts_ms": [5]}))
    got = cache.get("pay", [1], ["n", "total"], now_ms=5)
    assert got.values == {"n": [None], "total": [1.0]}
    assert got.statuses == {"n": [NULL_VALUE], "total": [PRESENT]}


def test_ttl_outside_max_age(cache):
    cache.put("fresh", pa.table({"user_id": [1, 2], "n": [1, 2], "event_ts_ms": [0, 5_000]}))
    got = cache.get("fresh", [1, 2, 3], ["n"], now_ms=12_000)
    assert got.statuses == {"n": [OUTSIDE_MAX_AGE, PRESENT, NOT_FOUND]}
    assert got.values == {"n": [1, 2, None]}  # the stale value is still returned


def test_ttl_boundary_is_still_fresh(cache):
    cache.put("fresh", pa.table({"user_id": [1], "n": [1], "event_ts_ms": [0]}))
    assert cache.get("fresh", [1], ["n"], now_ms=10_000).statuses == {"n": [PRESENT]}
    assert cache.get("fresh", [1], ["n"], now_ms=10_001).statuses == {"n": [OUTSIDE_MAX_AGE]}


def test_no_ttl_never_ages(cache):
    cache.put("pay", rows([1], [3], [1.5], [0]))
    assert cache.get("pay", [1], ["n"], now_ms=10**15).statuses == {"n": [PRESENT]}


def test_now_defaults_to_the_wall_clock(cache):
    import time

    now = int(time.time() * 1000)
    cache.put("fresh", pa.table({"user_id": [1, 2], "n": [1, 2], "event_ts_ms": [now, now - 3_600_000]}))
    assert cache.get("fresh", [1, 2], ["n"]).statuses == {"n": [PRESENT, OUTSIDE_MAX_AGE]}


def test_string_keys_and_extra_columns(cache):
    t = pa.table({"merchant": ["m1", "m2"], "label": ["a", "b"], "event_ts_ms": [1, 2], "ignored": [0, 0]})
    assert cache.put("named", t) == 2
    assert cache.get("named", ["m2", "m1", "m3"], ["label"]).values == {"label": ["b", "a", None]}


def test_views_are_separate(cache):
    cache.put("pay", rows([1], [3], [1.5], [100]))
    assert cache.size("fresh") == 0
    assert cache.get("fresh", [1], ["n"]).statuses == {"n": [NOT_FOUND]}


def test_missing_columns_are_named(cache):
    with pytest.raises(ValueError, match=r"rows for view 'pay' lack columns \['total', 'event_ts_ms'\]"):
        cache.put("pay", pa.table({"user_id": [1], "n": [1]}))


def test_unknown_view_errors_name_it_and_list_the_known(cache):
    for call in (
        lambda: cache.put("nope", rows([1], [1], [1.0], [1])),
        lambda: cache.get("nope", [1], ["n"]),
        lambda: cache.size("nope"),
    ):
        with pytest.raises(KeyError, match=r"unknown feature view 'nope'; known: \['fresh', 'named', 'pay'\]"):
            call()


def test_unknown_feature_errors_name_it(cache):
    with pytest.raises(KeyError, match=r"feature view 'pay' has no features \['avg'\]; it has \['n', 'total'\]"):
        cache.get("pay", [1], ["n", "avg"])


def test_empty_get(cache):
    got = cache.get("pay", [], ["n"])
    assert got.values == {"n": []} and got.statuses == {"n": []} and got.event_ms == []
