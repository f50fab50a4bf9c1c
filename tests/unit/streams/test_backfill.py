"""Backfill a new pipeline version from the archive, then switch over to the live stream: same as a full run."""

import json

import pyarrow as pa
import pytest

from fabric_ray.storage import open_location
from fabric_ray.streams.archive import ParquetArchive
from fabric_ray.streams.backfill import backfill_from_archive
from fabric_ray.streams.checkpoint import CheckpointStore
from fabric_ray.streams.json_codec import JsonDecoder
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.processor import PipelineProcessor
from fabric_ray.streams.windows import Tumbling
from fabric_ray.testing import CollectingSink, MemorySource

SCHEMA = pa.schema([("user_id", pa.int64()), ("amount", pa.float64()), ("ts", pa.int64())])


def events(partition: int, start: int, n: int) -> list[bytes]:
    return [json.dumps({"user_id": partition * 100 + i % 9, "amount": float(i % 5), "ts": (start + i) * 10_000}).encode() for i in range(n)]


def base(name: str) -> Pipeline:
    decoded = Pipeline(name).source("t").decode(JsonDecoder(SCHEMA, required=["user_id", "ts"]))
    return decoded.sink("archive", to="archive", time_column="ts").key_by("user_id")


V1 = base("v1").window(Tumbling(60_000), {"n": ("count", None)}, time="ts").sink("out")
V2 = base("v2").window(Tumbling(300_000), {"n": ("count", None), "total": ("sum", "amount")}, time="ts", allowed_lateness_ms=10**9).sink("out")


def run(pipeline, source, root, **kw):
    loc = open_location(root)
    stores = lambda p: CheckpointStore(loc.child("checkpoints"), pipeline.name, "t", p)  # noqa: E731
    sinks = {"archive": ParquetArchive(loc.child("archive"), "t", time_column="ts"), "out": CollectingSink()}
    proc = PipelineProcessor(source, pipeline, sinks, CollectingSink(), checkpoints=stores, checkpoint_interval_s=0, batch_size=50, poll_timeout_s=0, **kw)
    while proc.next_batch():
        pass
    proc.close()
    return proc


def test_backfilled_version_switches_over_and_matches_a_full_run(tmp_path):
    first = {0: events(0, 0, 300), 1: events(1, 0, 200)}
    src = MemorySource("t", first)
    run(V1, src, f"file://{tmp_path}/live")  # v1 archives everything it sees
    live = open_location(f"file://{tmp_path}/live")

    # v2 gets its state from the archive, with checkpoints where the archive ends ...
    stores = lambda p: CheckpointStore(live.child("checkpoints"), "v2", "t", p)  # noqa: E731
    out = CollectingSink()
    report = backfill_from_archive(V2, live.child("archive"), sinks={"out": out}, checkpoints=stores)
    assert report.rows == 500 and {p: b.next_offset for p, b in report.partitions.items()} == {0: 300, 1: 200}
    assert out.items  # the backfill delivered window rows to the sink

    # ... then takes over the live stream, which has moved on meanwhile
    src.append(0, events(0, 300, 120))
    src.append(1, events(1, 200, 80))
    took_over = run(V2, MemorySource("t", {p: v for p, v in src._data.items()}), f"file://{tmp_path}/live")
    assert took_over.stats.restored_from == {0: 300, 1: 200}

    full = run(V2, MemorySource("t", {p: v for p, v in src._data.items()}), f"file://{tmp_path}/full")
    for p in (0, 1):
        assert took_over.runtime(p).window("window").read().to_pylist() == full.runtime(p).window("window").read().to_pylist()


def test_a_time_range_backfills_only_those_events(tmp_path):
    run(V1, MemorySource("t", {0: events(0, 0, 100)}), f"file://{tmp_path}")
    loc = open_location(f"file://{tmp_path}")
    out = CollectingSink()
    report = backfill_from_archive(V2, loc.child("archive"), sinks={"out": out}, start_ms=200_000, end_ms=500_000)
    assert report.rows == 30  # ts 200,000 .. 490,000 in steps of 10,000
    assert report.partitions[0].next_offset == 100  # the switch-over point is still the archive's end


def test_a_pipeline_without_an_archive_sink_cannot_be_backfilled(tmp_path):
    p = Pipeline("p").source("t").decode(JsonDecoder(SCHEMA)).sink("out")
    with pytest.raises(ValueError, match="has no archive sink to backfill from"):
        backfill_from_archive(p, open_location(f"file://{tmp_path}"), sinks={})


def test_start_offsets_apply_only_where_there_is_no_checkpoint(tmp_path):
    data = {0: events(0, 0, 40), 1: events(1, 0, 40)}
    p = base("replay").sink("out")
    proc = run(p, MemorySource("t", data), f"file://{tmp_path}", start_offsets={0: 30})
    assert proc.stats.processed == 10 + 40  # partition 0 from offset 30, partition 1 from the start
    again = run(p, MemorySource("t", data), f"file://{tmp_path}", start_offsets={0: 0})
    assert again.stats.restored_from == {0: 40, 1: 40}  # the checkpoints win over start_offsets
