"""fabric_ray.features.routing: stable key-to-shard routing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pyarrow as pa
import pytest

from fabric_ray.features.routing import shard_of, split_by_shard

KEYS = [0, 1, 2, 42, 10**12, -7, "alice", "bob", "user-1", "", "é"]


def test_shard_is_in_range():
    for shards in (1, 2, 3, 7, 64):
        assert all(0 <= shard_of(k, shards) < shards for k in KEYS)


def test_one_shard_owns_everything():
    assert {shard_of(k, 1) for k in KEYS} == {0}


def test_int_and_its_text_route_alike():
    assert all(shard_of(k, 8) == shard_of(str(k), 8) for k in (0, 1, 42, 10**12, -7))


@pytest.mark.parametrize("hash_seed", ["0", "1", "12345"])
def test_stable_across_processes(hash_seed):
    """Python's hash() is salted per process; shard_of must not be."""
    code = (
        "import json, sys\n"
        "from fabric_ray.features.routing import shard_of\n"
        "keys = json.loads(sys.argv[1])\n"
        "print(json.dumps([[shard_of(k, n) for n in (2, 3, 7, 64)] for k in keys]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(KEYS)], capture_output=True, text=True, env=env, timeout=60, check=True)
    assert json.loads(out.stdout) == [[shard_of(k, n) for n in (2, 3, 7, 64)] for k in KEYS]


def test_keys_spread_over_shards():
    counts = [0] * 4
    for k in range(4000):
        counts[shard_of(k, 4)] += 1
    assert all(800 < c < 1200 for c in counts), counts


def test_split_by_shard_partitions_all_rows():
    t = pa.table({"k": list(range(500)), "v": [i * 2 for i in range(500)]})
    parts = split_by_shard(t, "k", 5)
    assert set(parts) <= set(range(5)) and len(parts) == 5
    assert sum(p.num_rows for p in parts.values()) == 500
    seen = []
    for shard, part in parts.items():
        assert part.schema == t.schema
        keys = part["k"].to_pylist()
        assert all(shard_of(k, 5) == shard for k in keys)
        assert keys == sorted(keys)  # order within a shard is kept
        assert part["v"].to_pylist() == [k * 2 for k in keys]
        seen += keys
    assert sorted(seen) == list(range(500))


def test_split_by_shard_only_returns_shards_with_rows():
    t = pa.table({"k": ["alice"]})
    parts = split_by_shard(t, "k", 16)
    assert list(parts) == [shard_of("alice", 16)]
    assert parts[shard_of("alice", 16)]["k"].to_pylist() == ["alice"]
    assert all(type(s) is int for s in parts)


def test_split_by_shard_of_an_empty_table():
    assert split_by_shard(pa.table({"k": pa.array([], pa.int64())}), "k", 4) == {}
