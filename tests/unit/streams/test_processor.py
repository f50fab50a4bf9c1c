"""PipelineProcessor: per-partition runtimes, checkpoints, restart without loss or duplicates."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fabric_ray.storage import open_location
from fabric_ray.streams.archive import ParquetArchive, archived_files
from fabric_ray.streams.checkpoint import CheckpointStore
from fabric_ray.streams.json_codec import JsonDecoder
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.processor import PipelineProcessor
from fabric_ray.testing import CollectingSink, MemorySource

SCHEMA = pa.schema([("user_id", pa.int64()), ("amount", pa.float64()), ("ts", pa.int64())])
PIPE = Pipeline("arch").source("t").decode(JsonDecoder(SCHEMA, required=["user_id", "ts"])).sink("archive")


def events(partition: int, n: int, bad_every: int = 0) -> list[bytes]:
    out = []
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            out.append(b"not json")
        else:
            out.append(json.dumps({"user_id": partition * 1000 + i, "amount": 1.0, "ts": i * 3_600_000}).encode())
    return out


DATA = {0: events(0, 300, bad_every=50), 1: events(1, 200, bad_every=40)}


class CrashingStore(CheckpointStore):
    """Fails its next save: the owner 'dies' after the archive flushed but before the checkpoint."""

    crash = False

    def save(self, *a, **kw):
        if CrashingStore.crash:
            raise OSError("simulated crash before the checkpoint was written")
        return super().save(*a, **kw)


def make(root, source, dlq, store_cls=CheckpointStore, batch_size=37, storage=None):
    loc = open_location(root, storage)
    archive = ParquetArchive(loc.child("archive"), "t", time_column="ts")
    return PipelineProcessor(
        source,
        PIPE,
        {"archive": archive},
        dlq,
        checkpoints=lambda p: store_cls(loc.child("checkpoints"), PIPE.name, "t", p),
        checkpoint_interval_s=0,
        batch_size=batch_size,
        poll_timeout_s=0,
    ), loc


def archived_ids(loc) -> list[int]:
    files = archived_files(loc.child("archive", "t"))
    return sorted(i for path, *_ in files for i in pq.read_table(loc.fs.open(path, "rb"))["user_id"].to_pylist())


def expected_ids() -> list[int]:
    return sorted(json.loads(v)["user_id"] for vals in DATA.values() for v in vals if v != b"not json")


@pytest.fixture(params=["file", "s3"])
def root(request, tmp_path):
    """``(uri, StorageConfig or None)``: a local folder, or a prefix on the real S3 endpoint."""
    if request.param == "file":
        return f"file://{tmp_path}", None
    from fabric_ray.config import StorageConfig

    s3 = request.getfixturevalue("s3_endpoint")
    cfg = StorageConfig(endpoint_url=s3["endpoint_url"], access_key_id=s3["access_key_id"], secret_access_key=s3["secret_access_key"])
    return f"s3://{s3['bucket']}/{tmp_path.name}", cfg


def test_restart_after_crash_between_flush_and_checkpoint_archives_each_event_once(root):
    uri, storage = root
    dlq = CollectingSink()
    src = MemorySource("t", DATA)
    proc, loc = make(uri, src, dlq, store_cls=CrashingStore, storage=storage)
    for _ in range(5):
        proc.next_batch()
    CrashingStore.crash = True
    try:
        with pytest.raises(OSError, match="simulated crash"):
            proc.next_batch()  # archive files written, checkpoint not: the orphan case
    finally:
        CrashingStore.crash = False
    orphaned = proc.stats.processed
    assert len(archived_ids(loc)) == orphaned  # the dead incarnation's last files are on storage
    # a new incarnation on a fresh source (the broker still has everything)
    src2 = MemorySource("t", DATA)
    proc2, _ = make(uri, src2, dlq, batch_size=53, storage=storage)
    assert proc2.stats.restored_from  # it resumed from checkpoints ...
    assert proc2.stats.processed < orphaned  # ... older than those files, which it removed
    assert len(archived_ids(loc)) == proc2.stats.processed
    while proc2.next_batch():
        pass
    proc2.close()
    assert archived_ids(loc) == expected_ids()
    st = proc2.stats
    assert st.processed == len(expected_ids())
    assert st.processed + st.dead_lettered == sum(len(v) for v in DATA.values())
    assert st.reasons == {"not valid JSON": 6 + 5}
    assert st.next_offsets == {0: 300, 1: 200}
    assert src2.committed == {0: 300, 1: 200}


def test_restored_counters_and_offsets_continue_exactly(tmp_path):
    dlq = CollectingSink()
    proc, loc = make(f"file://{tmp_path}", MemorySource("t", DATA), dlq)
    for _ in range(4):
        proc.next_batch()
    proc.checkpoint()
    seen = dict(proc.stats.next_offsets)
    proc2, _ = make(f"file://{tmp_path}", MemorySource("t", DATA), dlq)
    assert proc2.stats.next_offsets == seen and proc2.stats.restored_from == seen
    while proc2.next_batch():
        pass
    proc2.close()
    assert proc2.stats.processed + proc2.stats.dead_lettered == 500
    assert archived_ids(loc) == expected_ids()


class FlakySink(CollectingSink):
    def __init__(self):
        super().__init__()
        self.fail = 1

    def write(self, table):
        if self.fail:
            self.fail -= 1
            raise ConnectionError("cache shard unavailable")
        super().write(table)


def test_failing_sink_is_retried_without_loss_or_double_counting():
    p = Pipeline("p").source("t").decode(JsonDecoder(SCHEMA, required=["user_id"])).sink("out")
    out, dlq = FlakySink(), CollectingSink()
    proc = PipelineProcessor(MemorySource("t", {0: events(0, 10, bad_every=5)}), p, {"out": out}, dlq, batch_size=100, poll_timeout_s=0)
    with pytest.raises(ConnectionError):
        proc.next_batch()
    assert len(dlq.items) == 2 and proc.stats.processed == 0
    assert proc.next_batch() == 10  # the retry delivers the kept outputs, not a new batch
    assert len(dlq.items) == 2 and len(out.rows()) == 8
    assert proc.stats.processed == 8 and proc.stats.dead_lettered == 2
    assert proc.next_batch() == 0


def test_missing_sink_is_refused():
    with pytest.raises(ValueError, match=r"no sink given for sink steps \['archive'\]"):
        PipelineProcessor(MemorySource("t", DATA), PIPE, {}, CollectingSink())


def test_checkpoint_ahead_of_the_log_is_ignored(tmp_path):
    """A recreated topic (or a fresh embedded broker) must not inherit another log's state."""
    proc, loc = make(f"file://{tmp_path}", MemorySource("t", DATA), CollectingSink())
    while proc.next_batch():
        pass
    proc.close()
    shorter = {0: events(0, 10), 1: events(1, 10)}
    proc2, _ = make(f"file://{tmp_path}", MemorySource("t", shorter), CollectingSink())
    assert proc2.stats.discarded_checkpoints == {0: 300, 1: 200}
    assert proc2.stats.restored_from == {} and proc2.stats.processed == 0
    while proc2.next_batch():
        pass
    assert proc2.stats.processed == 20


def test_unavailable_decoder_keeps_the_batch_and_retries_only_what_did_not_run():
    from fabric_ray.streams.codec import DecoderUnavailable

    class Flaky(JsonDecoder):
        outage = 1

        def decode(self, values):
            if b'"user_id": 1000' in values[0] and Flaky.outage:  # partition 1's first batch, once
                Flaky.outage -= 1
                raise DecoderUnavailable("schema registry unreachable")
            return super().decode(values)

    p = Pipeline("p").source("t").decode(Flaky(SCHEMA, required=["user_id", "ts"])).sink("out")
    data = {0: events(0, 5), 1: events(1, 5)}
    out, dlq = CollectingSink(), CollectingSink()
    proc = PipelineProcessor(MemorySource("t", data), p, {"out": out}, dlq, batch_size=100, poll_timeout_s=0)
    with pytest.raises(DecoderUnavailable):
        proc.next_batch()
    assert out.rows() == [] and dlq.items == [] and proc.stats.processed == 0
    assert proc.next_batch() == 10  # the same batch; partition 0 is not run twice
    assert sorted(r["user_id"] for r in out.rows()) == [0, 1, 2, 3, 4, 1000, 1001, 1002, 1003, 1004]
    assert proc.stats.processed == 10 and dlq.items == []


def test_window_state_restored_from_a_checkpoint_continues_exactly(tmp_path):
    from fabric_ray.streams.windows import Sliding

    p = (
        Pipeline("win").source("t").decode(JsonDecoder(SCHEMA, required=["user_id", "ts"]))
        .key_by("user_id")
        .window(Sliding(4 * 3_600_000, 3_600_000), {"n": ("count", None), "mean": ("mean", "amount")}, time="ts", allowed_lateness_ms=10**9)
        .sink("out")
    )
    data = {0: [json.dumps({"user_id": i % 7, "amount": float(i), "ts": i * 600_000}).encode() for i in range(400)]}
    loc = open_location(f"file://{tmp_path}")
    stores = lambda part: CheckpointStore(loc.child("checkpoints"), p.name, "t", part)  # noqa: E731

    def proc_on(source):
        return PipelineProcessor(source, p, {"out": CollectingSink()}, CollectingSink(), checkpoints=stores, checkpoint_interval_s=3600, batch_size=33, poll_timeout_s=0)

    whole = proc_on(MemorySource("t", data))
    while whole.next_batch():
        pass
    first = proc_on(MemorySource("t", data))
    for _ in range(5):
        first.next_batch()
    first.checkpoint()
    for _ in range(3):  # processed after the checkpoint, then lost with the crash
        first.next_batch()
    second = proc_on(MemorySource("t", data))
    assert second.stats.restored_from == {0: 5 * 33}
    while second.next_batch():
        pass
    assert second.runtime(0).window("window").read().to_pylist() == whole.runtime(0).window("window").read().to_pylist()
    assert second.stats.processed == whole.stats.processed == 400


class FlakyArchive(ParquetArchive):
    """Its first write of detached rows fails (storage briefly away)."""

    failures = 1

    def write_detached(self, detached):
        if FlakyArchive.failures:
            FlakyArchive.failures -= 1
            raise OSError("storage briefly unavailable")
        return super().write_detached(detached)


def test_background_checkpoints_lose_nothing_when_a_write_fails(tmp_path):
    loc = open_location(f"file://{tmp_path}")
    archive = FlakyArchive(loc.child("archive"), "t", time_column="ts")
    proc = PipelineProcessor(
        MemorySource("t", DATA),
        PIPE,
        {"archive": archive},
        CollectingSink(),
        checkpoints=lambda p: CheckpointStore(loc.child("checkpoints"), PIPE.name, "t", p),
        checkpoint_interval_s=0,
        batch_size=37,
        poll_timeout_s=0,
        background_checkpoints=True,
    )
    errors = 0
    while True:
        try:
            if proc.next_batch() == 0 and proc._writer is None and not proc._dirty:
                break
        except OSError:
            errors += 1
    proc.close()
    assert errors == 1  # reported once, by the loop thread
    assert archived_ids(loc) == expected_ids()  # the failed write's rows were written later, once
    assert proc.stats.checkpoints > 1
    restored = make(f"file://{tmp_path}", MemorySource("t", DATA), CollectingSink())[0]
    assert restored.stats.restored_from == {0: 300, 1: 200}
