"""Partition assignment and pruning: properties over random tables, and the edge cases of time."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabric_ray.features.routing import shard_of
from fabric_ray.storage.partitioning import (
    Composite,
    HashBuckets,
    KeyRanges,
    PartitioningError,
    crc32_text,
    TimePartitioning,
    Unpartitioned,
    epoch_ms,
    parse_partition_path,
    parse_partitioning,
    path_of,
)

MS = st.integers(min_value=-3 * 86_400_000, max_value=40 * 86_400_000)
KEYS = st.integers(min_value=-50, max_value=50)
PARTITIONINGS = st.sampled_from([
    Unpartitioned(),
    TimePartitioning("ts"),
    TimePartitioning("ts", "hour"),
    HashBuckets("k", 5),
    KeyRanges("k", (-10, 0, 7)),
    Composite([TimePartitioning("ts"), HashBuckets("k", 3)]),
    Composite([KeyRanges("k", (0,)), TimePartitioning("ts", "hour"), HashBuckets("k", 2)]),
])


def rows_table(ks: list[int], ts: list[int]) -> pa.Table:
    return pa.table({"k": pa.array(ks, pa.int64()), "ts": pa.array(ts, pa.int64()), "row": pa.array(range(len(ks)), pa.int64())})


@settings(max_examples=150, deadline=None)
@given(PARTITIONINGS, st.lists(st.tuples(KEYS, MS), min_size=1, max_size=60))
def test_every_row_lands_in_exactly_one_partition(p, rows):
    table = rows_table([r[0] for r in rows], [r[1] for r in rows])
    parts = p.split(table)
    seen = np.concatenate([t["row"].to_numpy() for _, t in parts])
    assert sorted(seen.tolist()) == list(range(len(rows)))  # each row once
    assert len({path_of(part) for part, _ in parts}) == len(parts)  # partitions distinct
    for part, t in parts:
        assert list(part) == list(p.fields)
        vals = p.values(t)
        for f in p.fields:  # every row of a group computes to the group's values
            assert set(vals[f].to_pylist()) == {part[f]}
        assert parse_partition_path(path_of(part) + "/file.parquet") == part
        assert t["row"].to_pylist() == sorted(t["row"].to_pylist())  # order kept within a group


@settings(max_examples=150, deadline=None)
@given(PARTITIONINGS, st.lists(st.tuples(KEYS, MS), min_size=1, max_size=60), st.lists(KEYS, max_size=4) | st.none(),
       MS | st.none(), st.integers(0, 5 * 86_400_000) | st.none())
def test_pruning_never_drops_a_partition_with_a_matching_row(p, rows, keys, start, span):
    end = None if start is None or span is None else start + span
    table = rows_table([r[0] for r in rows], [r[1] for r in rows])
    for part, t in p.split(table):
        matching = [
            (k, ts) for k, ts in zip(t["k"].to_pylist(), t["ts"].to_pylist())
            if (keys is None or k in keys) and (start is None or ts >= start) and (end is None or ts < end)
        ]
        kept = p.may_contain(part, keys=keys, start_ms=start, end_ms=end)
        kept_by_map = p.may_contain(part, keys=None if keys is None else {"k": keys}, start_ms=start, end_ms=end)
        if matching:
            assert kept and kept_by_map, (part, matching)


def test_pruning_prunes():
    p = Composite([TimePartitioning("ts", "hour"), HashBuckets("k", 8)])
    part = {"date": "1970-01-02", "hour": "03", "k_bucket": str(shard_of(5, 8))}
    start = 86_400_000 + 3 * 3_600_000
    assert p.may_contain(part, keys=[5], start_ms=start, end_ms=start + 1)
    assert not p.may_contain(part, keys=[5], start_ms=start + 3_600_000)  # after the hour
    assert not p.may_contain(part, end_ms=start)  # end is exclusive
    other = next(k for k in range(100) if shard_of(k, 8) != shard_of(5, 8))
    assert not p.may_contain(part, keys=[other])
    assert p.may_contain(part, keys={"unrelated": [other]})  # keys of another column do not prune
    assert not KeyRanges("name", ("m",)).may_contain({"name_range": "0"}, keys=["x", "z"])


def test_hash_buckets_match_routing_and_work_on_strings():
    t = pa.table({"user": pa.array(["a", "b", "a", "zz", None][:4]), "n": [1, 2, 3, 4]})
    got = HashBuckets("user", 7).values(t)["user_bucket"].to_pylist()
    assert got == [str(shard_of(u, 7)) for u in ["a", "b", "a", "zz"]]
    ints = pa.table({"k": pa.array([10**12, -3, 0])})
    assert HashBuckets("k", 16).values(ints)["k_bucket"].to_pylist() == [str(shard_of(k, 16)) for k in [10**12, -3, 0]]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=30) | st.lists(st.text(max_size=12), max_size=30),
       st.integers(1, 50), st.integers(0, 3))
def test_vectorised_hash_equals_shard_of(keys, buckets, cut):
    arr = pa.array(keys, pa.int64() if keys and isinstance(keys[0], int) else pa.string())
    sliced = arr.slice(min(cut, len(keys)))  # offsets into shared buffers
    assert crc32_text(sliced) is not None
    got = HashBuckets("k", buckets).values(pa.table({"k": sliced}))["k_bucket"].to_pylist()
    assert got == [str(shard_of(k, buckets)) for k in keys[min(cut, len(keys)):]]
    assert crc32_text(pa.array([1.5])) is None and crc32_text(pa.array(["x" * 300])) is None


def test_key_ranges_on_strings_and_bounds():
    p = KeyRanges("name", ("g", "p"))
    t = pa.table({"name": ["apple", "g", "kiwi", "p", "zebra"]})
    assert p.values(t)["name_range"].to_pylist() == ["0", "1", "1", "2", "2"]
    with pytest.raises(PartitioningError, match="strictly increasing"):
        KeyRanges("k", (3, 1))
    with pytest.raises(PartitioningError, match="all numbers or all strings"):
        KeyRanges("k", (1, "a"))
    with pytest.raises(PartitioningError, match="cannot be compared"):
        KeyRanges("k", (1,)).values(pa.table({"k": ["x"]}))


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
@pytest.mark.parametrize("tz", [None, "UTC", "Asia/Kolkata"])
def test_time_values_for_every_timestamp_unit_and_zone(unit, tz):
    instants = [dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=dt.timezone.utc), dt.datetime(2024, 2, 29, 23, 0, 0, tzinfo=dt.timezone.utc),
                dt.datetime(2024, 3, 1, 0, 0, 1, tzinfo=dt.timezone.utc)]
    arr = pa.array([i if tz else i.replace(tzinfo=None) for i in instants], pa.timestamp(unit, tz=tz))
    vals = TimePartitioning("ts", "hour").values(pa.table({"ts": arr}))
    assert vals["date"].to_pylist() == ["1969-12-31", "2024-02-29", "2024-03-01"]  # UTC, whatever the zone
    assert vals["hour"].to_pylist() == ["23", "23", "00"]
    assert epoch_ms(arr).to_pylist() == [int(i.timestamp() * 1000) for i in instants]


def test_sub_millisecond_times_floor():
    arr = pa.array([-1, 999_999, 1_000_000], pa.timestamp("ns"))
    assert epoch_ms(arr).to_pylist() == [-1, 0, 1]
    assert TimePartitioning("ts").values(pa.table({"ts": arr}))["date"].to_pylist() == ["1969-12-31", "1970-01-01", "1970-01-01"]
    assert epoch_ms(pa.array([1, None], pa.date32())).to_pylist() == [86_400_000, None]


def test_bad_partition_columns_are_named():
    with pytest.raises(PartitioningError, match="'ts' holds 1 null"):
        TimePartitioning("ts").values(pa.table({"ts": pa.array([1, None], pa.int64())}))
    with pytest.raises(PartitioningError, match="column 'ts': a time column must be a timestamp"):
        TimePartitioning("ts").values(pa.table({"ts": ["2024-01-01"]}))
    with pytest.raises(PartitioningError, match="'k' is missing"):
        HashBuckets("k", 2).values(pa.table({"x": [1]}))
    with pytest.raises(PartitioningError, match="appear twice"):
        Composite([HashBuckets("k", 2), HashBuckets("k", 3)])
    with pytest.raises(PartitioningError, match="granularity"):
        TimePartitioning("ts", "minute")


@pytest.mark.parametrize("p", [Unpartitioned(), TimePartitioning("ts", "hour"), HashBuckets("k", 4), KeyRanges("k", (1.5, 2)),
                               Composite([TimePartitioning("ts"), KeyRanges("k", ("a", "b"))])])
def test_dict_round_trip(p):
    assert parse_partitioning(p.to_dict()) == p
    assert parse_partitioning(None) == Unpartitioned()


def test_parse_errors_name_the_problem():
    with pytest.raises(PartitioningError, match="'daily' is unknown"):
        parse_partitioning({"type": "daily", "column": "ts"})
    with pytest.raises(PartitioningError, match="hash"):
        parse_partitioning({"type": "hash", "column": "k", "bucket": 4})
    assert parse_partitioning([{"type": "time", "column": "ts"}, {"type": "hash", "column": "k", "buckets": 2}]).fields == ("date", "k_bucket")
