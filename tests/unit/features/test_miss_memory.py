"""MissMemory: keys a read-through did not find, remembered for a while, bounded in size."""

from __future__ import annotations

import pytest

from fabric_ray.features.miss_memory import MissMemory


def test_misses_expire_and_views_are_separate():
    m = MissMemory(ttl_ms=100)
    m.remember("a", [1], now_ms=0)
    assert m.absent("a", [1], now_ms=99) == [True]
    assert m.absent("b", [1], now_ms=50) == [False]
    assert m.absent("a", [1], now_ms=100) == [False]


def test_remembering_again_extends_the_time():
    m = MissMemory(ttl_ms=100)
    m.remember("a", [1], now_ms=0)
    m.remember("a", [1], now_ms=80)
    assert m.absent("a", [1], now_ms=150) == [True]


def test_a_full_memory_drops_expired_then_oldest_keys():
    m = MissMemory(ttl_ms=100, max_keys=4)
    m.remember("a", [1, 2], now_ms=0)
    m.remember("a", [3, 4], now_ms=50)
    m.remember("a", [5], now_ms=120)  # 1 and 2 expired at 100: dropped, 3, 4, 5 stay
    assert m.size("a") == 3 and m.absent("a", [3, 4, 5], now_ms=125) == [True, True, True]
    m.remember("a", [6, 7], now_ms=130)  # 5 keys, none expired: the oldest are dropped, down to max/2
    assert m.size("a") == 2 and m.absent("a", [6, 7], now_ms=131) == [True, True]


def test_zero_ttl_remembers_nothing_and_bad_settings_are_refused():
    m = MissMemory(ttl_ms=0)
    m.remember("a", [1], now_ms=0)
    assert not m and m.size("a") == 0
    with pytest.raises(ValueError, match="must not be negative"):
        MissMemory(ttl_ms=-1)
    with pytest.raises(ValueError, match="max_keys must be at least 1"):
        MissMemory(ttl_ms=1, max_keys=0)
