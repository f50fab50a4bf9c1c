"""StorageShard on both storage kinds: buffering, flush triggers, reads over storage + buffer, crash recovery."""

from __future__ import annotations

import threading
import uuid

import numpy as np
import pyarrow as pa
import pytest

from fabric_ray.storage.dataset import Dataset, DatasetSpec
from fabric_ray.storage.fs import open_location
from fabric_ray.storage.partitioning import Composite, HashBuckets, KeyRanges, TimePartitioning, Unpartitioned
from fabric_ray.storage.shard import ShardError, ShardFencedError, StorageShard, owner_shards, wal_segment_name
from fabric_ray.storage.timeseries import latest_per_key
from tests.unit.storage_shard.test_timeseries import _pandas_downsample, _rows, _same

SCHEMA = pa.schema([("sensor", pa.string()), ("ts", pa.int64()), ("value", pa.float64())])
SENSORS = [f"s{i:02d}" for i in range(24)]


class Clock:
    """Monotonic seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Crash(BaseException):
    """A process death at a chosen point: not an Exception, so no cleanup handler runs."""


def make_dataset(storage_root, partitioning=None) -> Dataset:
    loc = open_location(storage_root.uri, storage_root.config).child(f"ds-{uuid.uuid4().hex[:8]}")
    spec = DatasetSpec("temps", SCHEMA, partitioning or HashBuckets("sensor", 8), key=("sensor",), time_column="ts")
    return Dataset.create(loc, spec)


def rows(n: int, seed: int = 0, sensors=SENSORS, t0: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "sensor": pa.array(rng.choice(sensors, n), pa.string()),
            "ts": pa.array(t0 + rng.integers(0, 600_000, n), pa.int64()),
            "value": pa.array(rng.normal(size=n).round(3), pa.float64()),
        }
    )


def owned(table: pa.Table, ds: Dataset, shard: int, shards: int) -> pa.Table:
    return table.filter(pa.array(owner_shards(table, ds.spec.partitioning, shards) == shard))


def row_set(table: pa.Table) -> list[tuple]:
    return sorted(zip(*table.select(["sensor", "ts", "value"]).to_pydict().values()))


def wal_names(ds: Dataset, shard: int) -> list[str]:
    return ds.location.list(f"_shards/{shard}")


# -- buffering and flushing ------------------------------------------------------------------------


def test_flush_is_due_by_rows_bytes_or_age_and_publishes_one_commit(storage_root):
    ds = make_dataset(storage_root)
    clock = Clock()
    shard = StorageShard(ds, 0, 1, flush_rows=10, flush_bytes=10**9, flush_age_s=30, clock=clock)
    assert not shard.flush_due() and shard.flush() is None
    shard.write(rows(4, 1))
    assert not shard.flush_due()
    clock.now += 29.9
    assert not shard.flush_due()
    clock.now += 0.1
    assert shard.flush_due()  # age
    shard.write(rows(6, 2))
    assert shard.stats()["rows_buffered"] == 10 and shard.stats()["wal_segments"] == 2
    assert len(wal_names(ds, 0)) == 2
    commit = shard.flush()
    assert commit.metadata == {"shard": 0, "shards": 1, "wal_through": 1}
    assert not shard.flush_due() and wal_names(ds, 0) == []
    assert row_set(ds.read()) == row_set(pa.concat_tables([rows(4, 1), rows(6, 2)]))
    st = shard.stats()
    assert (st["rows_buffered"], st["flushes"], st["rows_flushed"], st["wal_segments"]) == (0, 1, 10, 0)

    by_rows = StorageShard(ds, 0, 1, flush_rows=10, flush_bytes=10**9, flush_age_s=30, clock=clock)
    by_rows.write(rows(9, 3))
    assert not by_rows.flush_due()
    by_rows.write(rows(1, 4))
    assert by_rows.flush_due()

    by_bytes = StorageShard(ds, 0, 1, flush_rows=10**6, flush_bytes=rows(50).nbytes, flush_age_s=30, clock=clock)
    by_bytes.write(rows(40, 5))
    assert by_bytes.flush_due() is (by_bytes.stats()["bytes_buffered"] >= rows(50).nbytes)
    by_bytes.write(rows(20, 6))
    assert by_bytes.flush_due()


@pytest.mark.parametrize("kind", ["hash", "ranges", "none", "composite"])
def test_reads_combine_storage_and_the_unflushed_buffer(storage_root, kind):
    partitioning = {
        "hash": HashBuckets("sensor", 8),
        "ranges": KeyRanges("sensor", ("s05", "s10", "s15", "s20")),
        "none": Unpartitioned(),
        "composite": Composite([TimePartitioning("ts"), HashBuckets("sensor", 4)]),
    }[kind]
    ds = make_dataset(storage_root, partitioning)
    shards = 1 if kind == "none" else 2
    first, second = rows(300, 7), rows(200, 8, t0=300_000)
    mine = pa.concat_tables([owned(first, ds, 1 % shards, shards), owned(second, ds, 1 % shards, shards)])
    shard = StorageShard(ds, 1 % shards, shards, flush_rows=10**6)
    shard.write(owned(first, ds, 1 % shards, shards))
    shard.flush()
    shard.write(owned(second, ds, 1 % shards, shards))  # stays buffered
    keys = sorted(set(mine["sensor"].to_pylist()))[:5]

    def check() -> None:
        want_latest = latest_per_key(mine, "sensor", "ts")
        assert _rows(shard.latest()) == _rows(want_latest)
        got = shard.get(keys)
        assert got["sensor"].to_pylist() == keys
        assert _rows(got) == [r for r in _rows(want_latest) if r[0] in keys]
        assert _rows(shard.get(keys, columns=["value"])) == [(r[2],) for r in _rows(want_latest) if r[0] in keys]
        scan = shard.scan(100_000, 400_000)
        want = sorted(r for r in row_set(mine) if 100_000 <= r[1] < 400_000)
        assert row_set(scan) == want
        assert [(r[0], r[1]) for r in _rows(scan)] == sorted((r[0], r[1]) for r in want)  # sorted by key, time
        assert row_set(shard.scan(None, None, keys=keys[:2])) == sorted(r for r in row_set(mine) if r[0] in keys[:2])
        aggs = {"value": ["count", "sum", "mean", "min", "max", "first", "last"]}
        _same(_rows(shard.downsample(0, 900_000, 60_000, aggs)), _pandas_downsample(mine, 60_000, aggs, key="sensor"))

    check()
    assert shard.stats()["rows_buffered"] == owned(second, ds, 1 % shards, shards).num_rows
    shard.flush()
    check()
    assert shard.stats()["reads"] >= 12


def test_a_newer_buffered_row_beats_a_stored_one_and_equal_times_prefer_the_later_write(storage_root):
    ds = make_dataset(storage_root)
    shard = StorageShard(ds, 0, 1)
    shard.write(pa.table({"sensor": ["a", "b"], "ts": [10, 10], "value": [1.0, 1.0]}))
    shard.flush()
    shard.write(pa.table({"sensor": ["a", "b"], "ts": [11, 10], "value": [2.0, 3.0]}))
    assert shard.get(["a", "b", "zz"])["value"].to_pylist() == [2.0, 3.0]


def test_a_write_into_a_buffer_twice_over_the_limit_flushes_first(storage_root):
    ds = make_dataset(storage_root)
    shard = StorageShard(ds, 0, 1, flush_rows=10, flush_age_s=3600)
    shard.write(rows(19, 30))
    assert shard.stats()["flushes"] == 0
    shard.write(rows(1, 31))  # 20 buffered: due, but the owner's flusher has not run
    assert shard.stats()["flushes"] == 0 and shard.flush_due()
    shard.write(rows(3, 32))  # finds 2x flush_rows buffered: flushes before taking more
    st = shard.stats()
    assert (st["flushes"], st["rows_flushed"], st["rows_buffered"]) == (1, 20, 3)


# -- ownership -------------------------------------------------------------------------------------


@pytest.mark.parametrize("partitioning", [HashBuckets("sensor", 8), KeyRanges("sensor", ("s05", "s10", "s15"))], ids=["hash", "ranges"])
def test_each_key_has_exactly_one_owner_and_foreign_rows_are_refused(storage_root, partitioning):
    ds = make_dataset(storage_root, partitioning)
    table = rows(400, 9)
    owners = owner_shards(table, partitioning, 4)
    values = partitioning.values(table).column(0).cast(pa.int64()).to_numpy()
    assert (owners == values % 4).all()
    shard = StorageShard(ds, 0, 4)
    foreign = table.filter(pa.array(owners != 0)).slice(0, 1)
    key, owner = foreign["sensor"][0].as_py(), int(owner_shards(foreign, partitioning, 4)[0])
    with pytest.raises(ShardError, match=rf"sensor='{key}' belongs to shard {owner} of 4, not to shard 0"):
        shard.write(pa.concat_tables([owned(table, ds, 0, 4), foreign]))
    assert wal_names(ds, 0) == [] and shard.stats()["rows_buffered"] == 0  # nothing acknowledged
    with pytest.raises(ShardError, match=f"requested key sensor='{key}'"):
        shard.get([key])
    assert shard.write(owned(table, ds, 0, 4)) == int((owners == 0).sum())


def test_unpartitioned_datasets_belong_to_shard_zero(storage_root):
    ds = make_dataset(storage_root, Unpartitioned())
    assert StorageShard(ds, 0, 3).write(rows(10)) == 10
    assert StorageShard.restore(ds, 0, 3).stats()["rows_buffered"] == 10
    with pytest.raises(ShardError, match="shard 0 of 3 owns all of it, not shard 2"):
        StorageShard(ds, 2, 3).write(rows(1))


def test_bad_rows_are_refused_before_they_are_acknowledged(storage_root):
    ds = make_dataset(storage_root)
    shard = StorageShard(ds, 0, 1)
    with pytest.raises(ShardError, match="column 'extra' is not in its schema"):
        shard.write(rows(2).append_column("extra", pa.array([1, 2])))
    with pytest.raises(ShardError, match="column 'value' of type string does not fit double"):
        shard.write(rows(1).set_column(2, "value", pa.array(["x"])))
    with pytest.raises(ShardError, match="shard_id must be in"):
        StorageShard(ds, 3, 2)
    with pytest.raises(ShardError, match="partition column 'sensor' holds 1 null"):
        shard.write(pa.table({"sensor": ["a", None], "ts": [1, 2], "value": [1.0, 2.0]}))
    assert wal_names(ds, 0) == []
    # missing nullable columns are filled with nulls
    assert shard.write(pa.table({"sensor": ["a"], "ts": [1]})) == 1
    assert shard.get(["a"])["value"].to_pylist() == [None]


# -- crashes and restore ---------------------------------------------------------------------------


def test_restore_after_a_crash_before_the_flush_reloads_every_acknowledged_row(storage_root):
    ds = make_dataset(storage_root)
    first = StorageShard(ds, 0, 1)
    acked = [rows(50, 10), rows(30, 11)]
    for t in acked:
        first.write(t)
    del first  # crash: nothing flushed
    second = StorageShard.restore(ds, 0, 1)
    st = second.stats()
    assert (st["restored_segments_loaded"], st["restored_rows_loaded"], st["rows_buffered"]) == (2, 80, 80)
    assert row_set(second.scan(None, None)) == row_set(pa.concat_tables(acked))
    second.write(rows(5, 12))
    assert st["next_seq"] == 2 and wal_names(ds, 0)[-1] == "wal-000000000002.arrow"
    second.flush()
    assert row_set(ds.read()) == row_set(pa.concat_tables([*acked, rows(5, 12)]))


def test_a_crash_between_commit_and_wal_delete_leaves_no_duplicates(storage_root):
    class CrashBeforeDelete(StorageShard):
        def _delete_segments(self, seqs):
            raise Crash

    ds = make_dataset(storage_root)
    shard = CrashBeforeDelete(ds, 0, 1)
    shard.write(rows(40, 13))
    shard.write(rows(20, 14))
    with pytest.raises(Crash):
        shard.flush()
    assert len(wal_names(ds, 0)) == 2 and ds.read().num_rows == 60  # committed, segments left behind
    restored = StorageShard.restore(ds, 0, 1)
    st = restored.stats()
    assert (st["restored_segments_skipped"], st["rows_buffered"]) == (2, 0)
    assert wal_names(ds, 0) == []
    assert row_set(restored.scan(None, None)) == row_set(pa.concat_tables([rows(40, 13), rows(20, 14)]))
    restored.write(rows(3, 15))  # a new segment must not reuse a committed sequence number
    assert wal_names(ds, 0) == ["wal-000000000002.arrow"]
    again = StorageShard.restore(ds, 0, 1)
    assert again.stats()["rows_buffered"] == 3 and again.scan(None, None).num_rows == 63


def test_a_crash_after_staging_before_commit_leaves_an_invisible_orphan(storage_root):
    class CrashBeforeCommit(StorageShard):
        def _commit(self, staged, through):
            self.staged = staged
            raise Crash

    ds = make_dataset(storage_root)
    shard = CrashBeforeCommit(ds, 0, 1)
    shard.write(rows(40, 16))
    with pytest.raises(Crash):
        shard.flush()
    assert shard.staged and all(ds.location.exists(f.path) for f in shard.staged)  # the orphan is on storage
    assert ds.read().num_rows == 0  # ... and no reader sees it
    restored = StorageShard.restore(ds, 0, 1)
    assert restored.stats()["rows_buffered"] == 40
    assert restored.scan(None, None).num_rows == 40
    restored.flush()
    assert row_set(ds.read()) == row_set(rows(40, 16))
    assert restored.scan(None, None).num_rows == 40


def test_a_failed_flush_keeps_the_rows_buffered_and_the_next_one_publishes_them(storage_root):
    class FailOnce(StorageShard):
        failed = False

        def _commit(self, staged, through):
            if not self.failed:
                self.failed = True
                self.staged = staged
                raise RuntimeError("commit refused")
            return super()._commit(staged, through)

    ds = make_dataset(storage_root)
    shard = FailOnce(ds, 0, 1)
    shard.write(rows(25, 17))
    with pytest.raises(RuntimeError, match="commit refused"):
        shard.flush()
    assert not any(ds.location.exists(f.path) for f in shard.staged)  # aborted
    assert shard.stats()["rows_buffered"] == 25 and shard.stats()["flush_errors"] == 1
    shard.write(rows(5, 18))
    assert shard.flush().metadata["wal_through"] == 1
    assert row_set(ds.read()) == row_set(pa.concat_tables([rows(25, 17), rows(5, 18)]))


def test_a_second_live_owner_is_fenced_at_its_first_write(storage_root):
    ds = make_dataset(storage_root)
    a, b = StorageShard(ds, 0, 1), StorageShard(ds, 0, 1)
    a.write(rows(3, 19))
    with pytest.raises(ShardFencedError, match="another owner of shard 0 is alive"):
        b.write(rows(3, 20))
    with pytest.raises(ShardFencedError):
        b.write(rows(1, 21))
    assert ds.location.exists(wal_segment_name(0, 0)) and StorageShard.restore(ds, 0, 1).stats()["rows_buffered"] == 3


def test_close_drains_and_refuses_later_writes(storage_root):
    ds = make_dataset(storage_root)
    shard = StorageShard(ds, 0, 1)
    shard.write(rows(7, 22))
    assert shard.close() is not None and ds.read().num_rows == 7
    with pytest.raises(ShardError, match="is closed"):
        shard.write(rows(1))


def test_reads_during_concurrent_flushes_see_every_acknowledged_row_once(storage_root):
    ds = make_dataset(storage_root, Unpartitioned())
    shard = StorageShard(ds, 0, 1, flush_rows=1)
    acked: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for i in range(8):
                shard.write(pa.table({"sensor": [f"k{i}"] * 5, "ts": list(range(i * 5, i * 5 + 5)), "value": [float(i)] * 5}))
                acked.append(i)
                shard.flush()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    checks = 0
    while not done.is_set() or checks < 3:
        before = len(acked)
        got = shard.scan(None, None)["ts"].to_pylist()
        assert len(got) == len(set(got)), "a row was read twice"
        assert set(range(before * 5)) <= set(got), "an acknowledged row was missing"
        checks += 1
    thread.join()
    assert not errors
    assert sorted(shard.scan(None, None)["ts"].to_pylist()) == list(range(40))


def test_a_shard_compacts_only_the_partitions_it_owns_and_readers_see_the_same_rows(storage_root):
    ds = make_dataset(storage_root, HashBuckets("sensor", 4))
    shards = [StorageShard(ds, i, 2, flush_rows=10**6, flush_age_s=3600) for i in range(2)]
    everything = []
    for seed in range(5):  # five flushes: five small files in every bucket
        batch = rows(200, seed)
        everything.append(batch)
        for i, shard in enumerate(shards):
            shard.write(owned(batch, ds, i, 2))
            shard.flush()
    before = {f.path for f in ds.snapshot().files}
    commit = shards[1].compact(min_files=4)
    assert commit is not None and commit.operation == "compact"
    removed = {p for p in before if p not in {f.path for f in ds.snapshot().files}}
    buckets = {path.split("/")[0] for path in removed}
    assert buckets == {"sensor_bucket=1", "sensor_bucket=3"}  # shard 1 of 2 owns the odd buckets
    assert row_set(ds.read()) == row_set(pa.concat_tables(everything))
    assert shards[1].stats()["compactions"] == 1
    assert shards[1].compact(min_files=4) is None  # nothing small left in its buckets
    assert shards[0].compact(min_files=4) is not None
