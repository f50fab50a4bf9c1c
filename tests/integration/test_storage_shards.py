"""Storage shard actors on the session's Ray cluster and the S3 endpoint: routing, crash and restore."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pyarrow as pa
import pytest
import ray

from actors.storage import PartialWriteError, StorageShards, storage_shard_name
from fabric_ray.storage.dataset import Dataset, DatasetSpec
from fabric_ray.storage.fs import open_location
from fabric_ray.storage.partitioning import HashBuckets
from fabric_ray.storage.shard import owner_shards
from fabric_ray.storage.timeseries import downsample, latest_per_key
from tests.conftest import s3_storage_config

SCHEMA = pa.schema([("sensor", pa.string()), ("ts", pa.int64()), ("value", pa.float64())])


def _dataset(s3_endpoint, name: str) -> Dataset:
    config = s3_storage_config(s3_endpoint)
    spec = DatasetSpec(name, SCHEMA, HashBuckets("sensor", 16), key=("sensor",), time_column="ts")
    return Dataset.create(open_location(config.root, config).child(name), spec)


def _batch(n: int, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "sensor": pa.array([f"s{i:03d}" for i in rng.integers(0, 200, n)]),
            "ts": pa.array(seed * 1_000_000 + np.arange(n, dtype=np.int64) * 7),  # unique: rows are identifiable
            "value": pa.array(rng.normal(size=n)),
        }
    )


@ray.remote(num_cpus=0.05)
def _write_via(router: StorageShards, table: pa.Table) -> int:
    return router.write(table)


def test_a_killed_shard_actor_is_recreated_without_losing_or_duplicating_acknowledged_rows(ray_cluster, s3_endpoint):
    name = f"temps_{uuid.uuid4().hex[:8]}"
    ds = _dataset(s3_endpoint, name)
    router = StorageShards.start(ds, 4, flush_rows=10**6, flush_age_s=3600)  # flushes only when told
    try:
        flushed, buffered = _batch(2_000, 1), _batch(1_500, 2)
        assert router.write(flushed) == 2_000
        commits = router.flush()
        assert sorted(c.metadata["shard"] for c in commits) == [0, 1, 2, 3]
        assert ray.get(_write_via.remote(router, buffered)) == 1_500  # the router is picklable
        victim = 2
        victim_rows = int((owner_shards(buffered, ds.spec.partitioning, 4) == victim).sum())
        assert victim_rows > 0 and router.stats()[victim]["rows_buffered"] == victim_rows

        ray.kill(router.handles[victim], no_restart=True)  # dies before it flushes
        with pytest.raises(ray.exceptions.RayActorError):
            for _ in range(600):  # ray.kill is asynchronous: wait until calls fail
                ray.get(router.handles[victim].ping.remote())
                time.sleep(0.05)
        during = _batch(400, 3)  # written while the victim is down: its part is not acknowledged
        with pytest.raises(PartialWriteError, match=r"shard\(s\) \[2\] did not acknowledge") as failed:
            router.write(during)
        mine = owner_shards(during, ds.spec.partitioning, 4) == victim
        assert failed.value.acknowledged == int((~mine).sum())
        assert sorted(failed.value.unacknowledged["ts"].to_pylist()) == sorted(during.filter(pa.array(mine))["ts"].to_pylist())
        assert router.revive() == [victim]
        assert router.write(failed.value.unacknowledged) == int(mine.sum())  # the retry: each row once
        assert ray.get_actor(storage_shard_name(name, victim)) is not None
        stats = router.stats()[victim]
        assert stats["restored_rows_loaded"] == victim_rows
        assert stats["rows_buffered"] == victim_rows + int(mine.sum())

        everything = pa.concat_tables([flushed, buffered, during])
        scanned = router.scan(None, None)
        assert scanned.num_rows == everything.num_rows
        assert sorted(scanned["ts"].to_pylist()) == sorted(everything["ts"].to_pylist())  # each row exactly once

        keys = sorted(set(buffered["sensor"].to_pylist()))[:20]
        got = router.get(keys)
        want = latest_per_key(everything, "sensor", "ts")
        want = want.filter(pa.array([k in set(keys) for k in want["sensor"].to_pylist()]))
        assert list(zip(got["sensor"].to_pylist(), got["ts"].to_pylist())) == list(zip(want["sensor"].to_pylist(), want["ts"].to_pylist()))
        aggs = {"value": ["count", "max", "last"]}
        down = router.downsample(None, None, 500_000, aggs)
        ref = downsample(everything, "sensor", "ts", 500_000, aggs)
        order = [("sensor", "ascending"), ("ts", "ascending")]
        assert down.to_pydict() == ref.sort_by(order).to_pydict()
        assert router.latest().num_rows == len(set(everything["sensor"].to_pylist()))
        assert router.latest(keys[:3])["sensor"].to_pylist() == sorted(keys[:3])

        with pytest.raises(ValueError, match=r"runs shard 0 of 4, not 0 of 2; stop the running shards"):
            StorageShards.start(ds, 2)  # the running actors are found by name
        final = router.stop(drain=True)  # drain: every buffered row is committed
        assert sum(s["rows_buffered"] for s in final) == 0
        stored = Dataset.open(ds.location).read()
        assert sorted(stored["ts"].to_pylist()) == sorted(everything["ts"].to_pylist())
        assert ds.location.list("_shards") == []
    finally:
        for h in router.handles:
            ray.kill(h, no_restart=True)


def test_the_background_flusher_commits_by_age(ray_cluster, s3_endpoint):
    ds = _dataset(s3_endpoint, f"aged_{uuid.uuid4().hex[:8]}")
    router = StorageShards.start(ds, 2, flush_rows=10**6, flush_age_s=0.2)
    try:
        assert router.write(_batch(300, 3)) == 300
        deadline = time.monotonic() + 30  # a wait for the event, not a timing assertion
        while sum(s["flushes"] for s in router.stats()) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [s["rows_buffered"] for s in router.stats()] == [0, 0]
        assert Dataset.open(ds.location).read().num_rows == 300
    finally:
        router.stop(drain=False)


def test_shards_compact_their_own_small_files_in_the_background(ray_cluster, s3_endpoint):
    ds = _dataset(s3_endpoint, f"compacted_{uuid.uuid4().hex[:8]}")
    router = StorageShards.start(ds, 2, flush_rows=10**6, flush_age_s=0.05, compact_every_flushes=2)
    try:
        written = [_batch(200, seed) for seed in range(10, 16)]
        for batch in written:
            router.write(batch)
            deadline = time.monotonic() + 30  # wait for each batch's flush, so there are many small files
            while sum(s["rows_buffered"] for s in router.stats()) and time.monotonic() < deadline:
                time.sleep(0.05)
        deadline = time.monotonic() + 30
        while sum(s.get("compactions", 0) for s in router.stats()) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert sum(s.get("compactions", 0) for s in router.stats()) >= 1
        assert [s["last_error"] for s in router.stats()] == [None, None]
        history = Dataset.open(ds.location).history()
        assert any(c.operation == "compact" for c in history)
        everything = pa.concat_tables(written)
        stored = Dataset.open(ds.location).read()
        assert sorted(stored["ts"].to_pylist()) == sorted(everything["ts"].to_pylist())
    finally:
        router.stop(drain=False)
