"""Datasets on both storage kinds: atomic commits, concurrency, compaction, time travel, schemas, bad input."""

from __future__ import annotations

import pickle
import threading
import uuid

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from fabric_ray.storage import (
    Composite,
    CommitConflict,
    DataFile,
    Dataset,
    DatasetError,
    DatasetSpec,
    HashBuckets,
    KeyRanges,
    SchemaEvolutionError,
    StorageLocation,
    TimePartitioning,
    Unpartitioned,
)
from fabric_ray.storage.commit_log import CHECKPOINT_EVERY
from fabric_ray.features.routing import shard_of
from tests.unit.storage.conftest import Counting

DAY = 86_400_000
SCHEMA = pa.schema([pa.field("user", pa.int64(), nullable=False), ("ts", pa.timestamp("ms", tz="UTC")), ("amount", pa.float64())])
SPEC = DatasetSpec("payments", SCHEMA, Composite([TimePartitioning("ts"), HashBuckets("user", 4)]), key=("user",))


def rows(n: int, start: int = 0, day: int = 0, users: int = 10) -> pa.Table:
    ids = list(range(start, start + n))
    return pa.table({"user": pa.array([i % users for i in ids], pa.int64()),
                     "ts": pa.array([day * DAY + i * 60_000 for i in ids], pa.timestamp("ms", tz="UTC")),
                     "amount": pa.array([float(i) for i in ids])}, schema=SCHEMA)


def ordered(t: pa.Table) -> pa.Table:
    return t.sort_by([(c, "ascending") for c in t.column_names])


@pytest.fixture
def ds(loc) -> Dataset:
    return Dataset.create(loc, SPEC)


def test_write_read_layout_and_reopen(ds, loc):
    c = ds.write(rows(30), metadata={"run": "r1"})
    ds.write(rows(20, start=100, day=1))
    assert c.version == 1 and c.operation == "append" and c.metadata == {"run": "r1"} and ds.version == 2
    again = Dataset.open(loc)
    assert again.spec == SPEC and again.version == 2
    assert ordered(again.read()).equals(ordered(pa.concat_tables([rows(30), rows(20, start=100, day=1)])))
    for f in again.snapshot().files:  # hive folders, stats of key and time
        assert f.path.startswith(f"date={f.partition['date']}/user_bucket={f.partition['user_bucket']}/part-")
        lo, hi = f.stats["user"]
        assert 0 <= lo <= hi < 10 and f.stats["ts"][0] <= f.stats["ts"][1]
    assert {p.split("/", 1)[0] for p in loc.list()} >= {"_log", "date=1970-01-01", "date=1970-01-02"}
    assert [c.version for c in again.history()] == [0, 1, 2]


def test_open_without_dataset_names_the_uri(loc):
    with pytest.raises(DatasetError, match=f"no dataset at {loc.uri}"):
        Dataset.open(loc)


def test_create_twice(ds, loc):
    with pytest.raises(DatasetError, match="already exists"):
        Dataset.create(loc, SPEC)
    assert Dataset.create(loc, SPEC, exist_ok=True).version == 0
    other = DatasetSpec("payments", SCHEMA, HashBuckets("user", 8), key=("user",), time_column="ts")
    with pytest.raises(DatasetError, match="partitioning"):
        Dataset.create(loc, other, exist_ok=True)


def test_pruned_reads_by_key_and_time(ds):
    ds.write(pa.concat_tables([rows(200, day=d) for d in range(3)]))
    all_rows = ds.read()
    got = ds.read(keys=[3, 4], start_ms=DAY, end_ms=2 * DAY)
    ts = pc.cast(all_rows["ts"], pa.int64())
    want = all_rows.filter(pc.and_(pc.is_in(all_rows["user"], pa.array([3, 4])), pc.and_(pc.greater_equal(ts, DAY), pc.less(ts, 2 * DAY))))
    assert got.num_rows > 0 and ordered(got).equals(ordered(want))
    paths = ds.file_paths(keys=[3, 4], start_ms=DAY, end_ms=2 * DAY)
    assert 0 < len(paths) < len(ds.snapshot().files)
    assert all("date=1970-01-02" in p for p in paths)
    assert {f"user_bucket={shard_of(3, 4)}" in p or f"user_bucket={shard_of(4, 4)}" in p for p in paths} == {True}
    afs = ds.location.arrow_filesystem()  # the paths are for pyarrow / Ray Data with that file system
    assert sum(pq.read_metadata(p, filesystem=afs).num_rows for p in paths) >= got.num_rows
    assert ds.read(columns=["amount"], filter=pc.field("amount") >= 590.0).column_names == ["amount"]
    assert ds.read(columns=["amount"], filter=pc.field("amount") >= 195.0).num_rows == 15


@pytest.mark.parametrize("seed", range(3))
def test_stats_pruning_never_drops_a_matching_file(loc, seed):
    import random

    r = random.Random(seed)
    spec = DatasetSpec("r", pa.schema({"k": pa.int64(), "t": pa.int64()}), KeyRanges("k", (0, 50)), key=("k",), time_column="t")
    ds = Dataset.create(loc, spec)
    for _ in range(6):
        n = r.randint(1, 30)
        ds.write(pa.table({"k": [r.randint(-20, 80) for _ in range(n)], "t": [r.randint(0, 10 * DAY) for _ in range(n)]}))
    contents = {ds.location.join(f.path): ds._read_file(f, spec.schema).to_pydict() for f in ds.snapshot().files}
    full = ds.read()
    pruned_some = False
    for _ in range(15):
        keys = [r.randint(-25, 85) for _ in range(r.randint(1, 3))]
        start = r.randint(0, 10 * DAY)
        end = start + r.randint(0, 3 * DAY)
        kept = set(ds.file_paths(keys=keys, start_ms=start, end_ms=end))
        pruned_some |= len(kept) < len(contents)
        for path, t in contents.items():
            if any(k in keys and start <= ts < end for k, ts in zip(t["k"], t["t"])):
                assert path in kept
        want = [(k, ts) for k, ts in zip(full["k"].to_pylist(), full["t"].to_pylist()) if k in keys and start <= ts < end]
        got = ds.read(keys=keys, start_ms=start, end_ms=end)
        assert sorted(zip(got["k"].to_pylist(), got["t"].to_pylist())) == sorted(want)
    assert pruned_some


def test_staged_files_are_invisible_until_commit(ds, loc):
    ds.write(rows(10))
    staged = ds.stage(rows(5, start=50))
    reader = Dataset.open(loc)
    assert all(loc.exists(f.path) for f in staged)  # on storage...
    assert reader.version == 1 and reader.read().num_rows == 10  # ...but not in any version
    ds.commit(staged)
    assert reader.version == 2 and reader.read().num_rows == 15
    assert reader.read(version=1).num_rows == 10  # a reader pinned to the old version still sees it


def test_crash_after_stage_leaves_nothing_visible_and_vacuum_removes_it(ds, loc):
    ds.write(rows(10))
    crashed = pickle.loads(pickle.dumps(ds))  # another process: stages, then dies before committing
    orphans = crashed.stage(rows(7, start=70))
    del crashed
    fresh = Dataset.open(loc)
    assert fresh.version == 1 and fresh.read().num_rows == 10
    assert fresh.vacuum(older_than_s=3600) == []  # too young: might be a writer about to commit
    removed = fresh.vacuum(older_than_s=0)
    assert sorted(removed) == sorted(f.path for f in orphans)
    assert not any(loc.exists(f.path) for f in orphans) and fresh.read().num_rows == 10


def test_abort_deletes_staged_files_only(ds, loc):
    ds.write(rows(10))
    staged = ds.stage(rows(5, start=50))
    ds.abort(staged)
    assert not any(loc.exists(f.path) for f in staged)
    committed = ds.snapshot().files
    with pytest.raises(DatasetError, match="cannot abort committed"):
        ds.abort(committed)
    assert all(loc.exists(f.path) for f in committed) and ds.read().num_rows == 10


def test_concurrent_appenders_lose_nothing_and_versions_are_dense(ds, loc):
    writers, appends = 4, 5
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers)

    def writer(w: int) -> None:
        mine = Dataset.open(loc) if w % 2 else ds  # own objects and one shared object
        barrier.wait()
        try:
            for i in range(appends):
                mine.write(rows(3, start=1000 * w + 10 * i), metadata={"writer": w, "i": i})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    history = Dataset.open(loc).history()
    assert [c.version for c in history] == list(range(writers * appends + 1))
    assert sorted((c.metadata["writer"], c.metadata["i"]) for c in history[1:]) == [(w, i) for w in range(writers) for i in range(appends)]
    got = ds.read()
    assert got.num_rows == writers * appends * 3
    assert sorted(got["amount"].to_pylist()) == sorted(float(1000 * w + 10 * i + j) for w in range(writers) for i in range(appends) for j in range(3))


def test_compaction_keeps_rows_and_old_versions_until_vacuum(loc):
    spec = DatasetSpec("c", SCHEMA, TimePartitioning("ts"), key=("user",))
    ds = Dataset.create(loc, spec)
    for i in range(6):
        ds.write(pa.concat_tables([rows(5, start=10 * i), rows(5, start=10 * i, day=1)]))
    before, v_before = ds.read(), ds.version
    assert len(ds.snapshot().files) == 12
    commit = ds.compact(target_file_bytes=1 << 20, min_files=4)
    assert commit.operation == "compact" and len(commit.removed) == 12 and len(commit.added) == 2
    assert ordered(ds.read()).equals(ordered(before)) and len(ds.snapshot().files) == 2
    assert ds.compact(target_file_bytes=1 << 20, min_files=4) is None  # nothing small left
    assert ordered(ds.read(version=v_before)).equals(ordered(before))  # old version still readable
    assert ds.vacuum(older_than_s=3600) == []  # removed inside the window: kept
    deleted = ds.vacuum(older_than_s=0)
    assert sorted(deleted) == sorted(commit.removed)
    with pytest.raises(DatasetError, match="missing"):
        ds.read(version=v_before)
    assert ordered(ds.read()).equals(ordered(before))


def test_compaction_packs_files_up_to_the_target(loc):
    ds = Dataset.create(loc, DatasetSpec("p", pa.schema({"x": pa.int64()})))
    for i in range(9):
        ds.write(pa.table({"x": [i]}))
    size = ds.snapshot().files[0].bytes
    c = ds.compact(target_file_bytes=3 * size + size // 2, min_files=2)  # three files fit in one
    assert len(c.added) == 3 and len(c.removed) == 9 and c.metadata == {"files_in": 9, "files_out": 3}
    assert sorted(ds.read()["x"].to_pylist()) == list(range(9))


def test_compaction_racing_an_append_keeps_the_append(ds, loc):
    for i in range(4):
        ds.write(rows(4, start=10 * i, users=1))
    other = Dataset.open(loc)
    files = ds.snapshot().files
    merged = pa.concat_tables([ds._read_file(f, SCHEMA) for f in files])
    staged = ds.stage(merged)  # a compaction, staged against version 4
    other.write(rows(4, start=500, users=1))  # an append wins version 5 meanwhile
    c = ds.commit(staged, [f.path for f in files], operation="compact")
    assert c.version == 6  # rebased over the append
    assert sorted(ds.read()["amount"].to_pylist()) == sorted(merged["amount"].to_pylist() + [500.0, 501.0, 502.0, 503.0])


def test_compaction_running_beside_an_appender_loses_nothing(ds, loc):
    done, compacted = threading.Event(), threading.Event()
    compactions: list[int] = []
    errors: list[BaseException] = []

    def compactor() -> None:
        mine = Dataset.open(loc)
        try:
            while not done.is_set():
                c = mine.compact(target_file_bytes=1 << 20, min_files=2)
                if c is not None:
                    compactions.append(c.version)
                    compacted.set()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
            compacted.set()

    thread = threading.Thread(target=compactor)
    try:
        for i in range(12):
            ds.write(rows(2, start=10 * i, users=2))
            if i == 3:  # enough small files: let the compactor loose and keep appending while it works
                thread.start()
            if i == 7:
                assert compacted.wait(60)
    finally:
        done.set()
        if thread.is_alive():
            thread.join()
    assert not errors and compactions  # it did compact while rows were coming in
    if ds.compact(target_file_bytes=1 << 20, min_files=2) is not None:
        compactions.append(ds.version)
    assert sorted(ds.read()["amount"].to_pylist()) == sorted(float(10 * i + j) for i in range(12) for j in range(2))
    assert [c.version for c in ds.history()] == list(range(ds.version + 1))


def test_stage_sees_a_schema_evolved_by_another_writer(ds, loc):
    stale = Dataset.open(loc)
    ds.evolve(SCHEMA.append(pa.field("note", pa.string())))
    stale.write(rows(1).append_column("note", pa.array(["hi"])))
    assert ds.read()["note"].to_pylist() == ["hi"]


def test_compaction_racing_a_compaction_conflicts(ds, loc):
    for i in range(4):
        ds.write(rows(4, start=10 * i, users=1))
    other = Dataset.open(loc)
    files = ds.snapshot().files
    staged = ds.stage(pa.concat_tables([ds._read_file(f, SCHEMA) for f in files]))
    assert other.compact(target_file_bytes=1 << 20, min_files=2) is not None  # the other one wins
    with pytest.raises(CommitConflict, match="no longer in version"):
        ds.commit(staged, [f.path for f in files], operation="compact")
    assert ds.read().num_rows == 16


def test_overwrite_replaces_what_it_saw(ds):
    ds.write(rows(10))
    c = ds.write(rows(3, start=40), mode="overwrite")
    assert c.operation == "overwrite" and sorted(ds.read()["amount"].to_pylist()) == [40.0, 41.0, 42.0]
    assert ds.read(version=1).num_rows == 10


def test_time_travel_by_version(ds):
    for i in range(3):
        ds.write(rows(2, start=10 * i))
    assert [ds.read(version=v).num_rows for v in range(4)] == [0, 2, 4, 6]
    assert ds.snapshot(version=2).rows == 4 and ds.snapshot(version=2).version == 2
    with pytest.raises(DatasetError, match="version 9 does not exist"):
        ds.read(version=9)


def test_open_reads_a_constant_number_of_log_files(loc):
    """Opening reads the newest checkpoint and the entries after it, not the whole history."""
    spec = DatasetSpec("small", pa.schema({"x": pa.int64()}))
    ds = Dataset.create(loc, spec)
    reads = []
    for target in (CHECKPOINT_EVERY + 3, CHECKPOINT_EVERY * 2 + 3):
        while ds.version < target:
            ds.write(pa.table({"x": [ds.version]}))
        counting = Counting(loc.fs)
        opened = Dataset.open(StorageLocation(counting, loc.path, loc.scheme, loc.storage))
        assert opened.version == target and opened.read().num_rows == target
        reads.append(counting.calls.get("cat_file", 0))  # data files are read through pyarrow, not counted here
    assert reads[0] == reads[1] == 1 + 1 + 3  # hint + checkpoint + 3 entries, however long the history
    loc.delete([n for n in loc.list("_checkpoints")])  # checkpoints lost: replay from the start still works
    assert Dataset.open(loc).read().num_rows == CHECKPOINT_EVERY * 2 + 3


def test_schema_evolution_adds_nullable_columns(ds, loc):
    ds.write(rows(4))
    new = SCHEMA.append(pa.field("currency", pa.string()))
    c = ds.evolve(new)
    assert c.operation == "evolve" and Dataset.open(loc).spec.schema == new
    ds.write(rows(2, start=9).append_column("currency", pa.array(["EUR", "USD"])))
    got = ds.read().sort_by("amount")
    assert got.schema == new and got["currency"].to_pylist() == [None] * 4 + ["EUR", "USD"]
    assert ds.read(version=1).schema == SCHEMA  # the old version keeps its schema


@pytest.mark.parametrize("change, column", [
    (lambda s: s.set(2, pa.field("amount", pa.int64())), "amount"),  # type change
    (lambda s: s.remove(2), "amount"),  # drop
    (lambda s: s.append(pa.field("extra", pa.int64(), nullable=False)), "extra"),  # non-nullable addition
    (lambda s: s.set(2, pa.field("amt", pa.float64())), "amount"),  # rename
    (lambda s: s.set(0, pa.field("user", pa.int64())), "user"),  # nullability change
])
def test_incompatible_schema_changes_are_refused(ds, change, column):
    with pytest.raises(SchemaEvolutionError, match=f"'{column}'"):
        ds.evolve(change(SCHEMA))
    assert ds.version == 0


@pytest.mark.parametrize("table, message", [
    (lambda: rows(2).set_column(2, "amount", pa.array(["1", "2"])), "column 'amount' is string in the table but double in the dataset"),
    (lambda: rows(2).append_column("zzz", pa.array([1, 2])), "column 'zzz' (int64) is not in the dataset's schema"),
    (lambda: rows(2).drop_columns(["user"]), "column 'user' (int64 not null) is missing"),
    (lambda: rows(2).set_column(0, pa.field("user", pa.int64()), pa.array([1, None], pa.int64())), "column 'user' is not nullable but holds 1 null"),
    (lambda: rows(2).set_column(1, "ts", pa.array([None, 1], pa.timestamp("ms", tz="UTC"))), "partition column 'ts' holds 1 null"),
    (lambda: rows(2).set_column(1, "ts", pa.array([0, 1], pa.timestamp("ms"))), "column 'ts' is timestamp[ms] in the table but timestamp[ms, tz=UTC]"),
])
def test_mismatched_tables_are_refused_naming_the_column(ds, loc, table, message):
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        ds.write(table())
    assert ds.version == 0 and [n for n in loc.list() if not n.startswith(("_log", "_checkpoints"))] == []


def test_a_corrupt_committed_file_is_named(ds, loc):
    ds.write(rows(20))
    victim = ds.snapshot().files[0]
    loc.write_bytes(victim.path, loc.read_bytes(victim.path)[: victim.bytes // 2])  # truncated
    with pytest.raises(DatasetError) as err:
        ds.read()
    assert loc.uri_of(victim.path) in str(err.value) and "cannot be read as Parquet" in str(err.value)
    assert "Traceback" not in str(err.value)


def test_a_foreign_file_is_named(ds, loc):
    ds.write(rows(2))
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"user": [1, 2], "amount": ["a", "b"]}), sink)
    loc.write_bytes("foreign/x.parquet", sink.getvalue().to_pybytes())
    ds.commit([DataFile("foreign/x.parquet", {}, 2, 100, {})], operation="import")
    with pytest.raises(DatasetError) as err:
        ds.read()
    assert loc.uri_of("foreign/x.parquet") in str(err.value) and "'amount' is string in the file but double" in str(err.value)


def test_int_epoch_ms_time_column_and_multi_column_keys(loc):
    spec = DatasetSpec("m", pa.schema({"a": pa.string(), "b": pa.int32(), "t": pa.int64()}), TimePartitioning("t", "hour"), key=("a", "b"))
    ds = Dataset.create(loc, spec)
    ds.write(pa.table({"a": ["x", "x", "y", "y"], "b": pa.array([1, 2, 1, 2], pa.int32()), "t": [0, 3_600_000, 7_200_000, 1]}))
    assert {f.partition["hour"] for f in ds.snapshot().files} == {"00", "01", "02"}
    got = ds.read(keys=[("x", 2), ("y", 1)])
    assert sorted(zip(got["a"].to_pylist(), got["b"].to_pylist())) == [("x", 2), ("y", 1)]
    assert ds.read(start_ms=1, end_ms=3_600_001)["t"].to_pylist() == [3_600_000, 1] or sorted(ds.read(start_ms=1, end_ms=3_600_001)["t"].to_pylist()) == [1, 3_600_000]
    with pytest.raises(DatasetError, match="keys are tuples"):
        ds.read(keys=["x"])


def test_spec_round_trip_and_validation():
    assert DatasetSpec.from_dict(SPEC.to_dict()) == SPEC
    assert SPEC.to_dict()["schema"] == {"user": "int64 not null", "ts": "timestamp[ms, tz=UTC]", "amount": "double"}
    assert SPEC.time_column == "ts"  # taken from the time partitioning
    with pytest.raises(DatasetError, match="key column 'nope'"):
        DatasetSpec("x", SCHEMA, key=("nope",))
    with pytest.raises(DatasetError, match="time partitioning is on 'ts' but time_column is 'amount'"):
        DatasetSpec("x", SCHEMA, TimePartitioning("ts"), time_column="amount")
    with pytest.raises(DatasetError, match="unknown field"):
        DatasetSpec.from_dict({**SPEC.to_dict(), "colour": "red"})


def test_a_pickled_dataset_stages_for_the_original_to_commit(ds):
    worker = pickle.loads(pickle.dumps(ds))  # what a Ray task receives
    staged = worker.stage(rows(6))
    ds.commit(staged)
    assert worker.read().num_rows == 6 and worker.version == 1


def test_unpartitioned_dataset_at_the_root(loc):
    ds = Dataset.create(loc.child(uuid.uuid4().hex), DatasetSpec("u", pa.schema({"x": pa.int64()}), Unpartitioned()))
    ds.write(pa.table({"x": [1, 2]}))
    assert [f.path.count("/") for f in ds.snapshot().files] == [0]
    assert ds.read()["x"].to_pylist() == [1, 2]
