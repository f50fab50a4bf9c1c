"""Stage latencies: the ring buffers, the roll-up over owners, and what the processor records per batch."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

from fabric_ray.streams.assignment import OwnerStatus, summarize
from fabric_ray.streams.json_codec import JsonDecoder
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.processor import PipelineProcessor
from fabric_ray.streams.records import RawBatch
from fabric_ray.streams.stage_latency import StageLatencies
from fabric_ray.testing import CollectingSink, MemorySource


def test_ring_keeps_the_last_samples_only():
    lat = StageLatencies(keep=4)
    lat.record("x", np.array([1000.0, 1000.0, 1000.0]))
    lat.record("x", np.array([1.0, 2.0, 3.0, 4.0, 5.0]))  # wraps: only 2..5 remain
    summary = lat.summary()["x"]
    assert summary["max_ms"] == 5.0
    assert summary["p50_ms"] == 3.5
    assert summary["samples"] == 8


def test_empty_samples_are_ignored_and_keep_must_be_positive():
    lat = StageLatencies(keep=2)
    lat.record("x", np.array([]))
    assert lat.summary() == {}
    with pytest.raises(ValueError, match="keep must be at least 1"):
        StageLatencies(keep=0)


def test_summary_over_owners_takes_the_slowest_owner_per_stage():
    fast = {"queue": {"p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 2.0, "samples": 10}}
    slow = {"queue": {"p50_ms": 5.0, "p99_ms": 90.0, "max_ms": 95.0, "samples": 10},
            "sink:cache": {"p50_ms": 3.0, "p99_ms": 4.0, "max_ms": 4.0, "samples": 2}}
    rolled = summarize([OwnerStatus("a", (0,), lag={0: 0}, stages=fast), OwnerStatus("b", (1,), lag={1: 0}, stages=slow)])
    assert rolled["stages"]["queue"]["p99_ms"] == 90.0
    assert rolled["stages"]["sink:cache"]["p50_ms"] == 3.0


class _StampedSource(MemorySource):
    """A memory source whose messages carry a produce time 250 ms in the past."""

    def read_batch(self, max_messages, timeout_s):
        raw = super().read_batch(max_messages, timeout_s)
        stamps = np.full(len(raw), int(time.time() * 1000) - 250, np.int64)
        return RawBatch(raw.topic, raw.partitions, raw.offsets, raw.keys, raw.values, stamps)


def test_processor_records_every_stage_of_a_batch():
    schema = pa.schema([("x", pa.int64())])
    p = Pipeline("p").source("t").decode(JsonDecoder(schema, required=["x"])).sink("out")
    proc = PipelineProcessor(_StampedSource("t", {0: [b'{"x": 1}', b'{"x": 2}'], 1: [b'{"x": 3}']}), p, {"out": CollectingSink()}, CollectingSink())
    assert proc.next_batch() == 3
    stages = proc.stats.stages.summary()
    assert set(stages) == {"queue", "decode", "steps", "sink:out", "end_to_end"}
    assert stages["queue"]["samples"] == 3  # one per message
    assert stages["decode"]["samples"] == 2  # one per partition's part of the batch
    assert stages["sink:out"]["samples"] == 1  # one per batch and sink
    assert 250 <= stages["queue"]["p50_ms"] <= stages["end_to_end"]["p50_ms"]


def test_sources_without_timestamps_record_no_message_stages():
    schema = pa.schema([("x", pa.int64())])
    p = Pipeline("p").source("t").decode(JsonDecoder(schema, required=["x"])).sink("out")
    proc = PipelineProcessor(MemorySource("t", {0: [b'{"x": 1}']}), p, {"out": CollectingSink()}, CollectingSink())
    proc.next_batch()
    assert "queue" not in proc.stats.stages.summary() and "end_to_end" not in proc.stats.stages.summary()


def test_batches_an_idle_owner_waited_for_also_count_as_broker_time():
    class Waited(_StampedSource):
        last_read_waited = True

    schema = pa.schema([("x", pa.int64())])
    p = Pipeline("p").source("t").decode(JsonDecoder(schema, required=["x"])).sink("out")
    proc = PipelineProcessor(Waited("t", {0: [b'{"x": 1}']}), p, {"out": CollectingSink()}, CollectingSink())
    proc.next_batch()
    stages = proc.stats.stages.summary()
    assert stages["broker"]["samples"] == 1 and stages["broker"]["p50_ms"] >= 250
