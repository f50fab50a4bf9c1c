"""The stream processor flushes sinks that buffer (``flush()`` without ``write_from``, such as the
cache writer with write-behind) before it commits offsets, so a commit implies durable rows."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from fabric_ray.features.cache_settings import CacheSettings
from fabric_ray.features.cache_shard import ShardCore
from fabric_ray.features.definitions import Entity, Feature, FeatureView
from fabric_ray.streams.json_codec import JsonDecoder
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.processor import PipelineProcessor
from fabric_ray.testing import CollectingSink, MemorySource

from tests.unit.features.test_cache_shard import MemoryStore

SCHEMA = pa.schema([("user_id", pa.int64()), ("n", pa.int64()), ("total", pa.float64()), ("event_ts_ms", pa.int64())])
VIEW = FeatureView("pay", Entity("user", "user_id"), (Feature("n", "int64"), Feature("total", "float64")))
PIPE = Pipeline("p").source("t").decode(JsonDecoder(SCHEMA, required=["user_id"])).sink("out")


class BufferingWriter:
    """A cache sink over a ShardCore with write-behind: write() caches, flush() makes durable."""

    def __init__(self, core: ShardCore, log: list) -> None:
        self.core, self.log = core, log

    def write(self, table: pa.Table) -> None:
        self.core.put("pay", table)

    def flush(self) -> int:
        self.log.append(("flush", self.core.stats()["write_behind_pending"]))
        return self.core.flush()


class LoggingSource(MemorySource):
    def __init__(self, log: list, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.log = log

    def commit(self, next_offsets) -> None:
        self.log.append(("commit", dict(next_offsets)))
        super().commit(next_offsets)


def events(n: int) -> list[bytes]:
    return [json.dumps({"user_id": i % 5, "n": i, "total": float(i), "event_ts_ms": i}).encode() for i in range(n)]


@pytest.mark.parametrize("background", [False, True])
def test_buffered_rows_are_durable_before_offsets_commit(background):
    log: list = []
    store = MemoryStore()
    core = ShardCore([VIEW], CacheSettings(write_mode="behind", write_behind_interval_s=3600), lambda: store)
    proc = PipelineProcessor(
        LoggingSource(log, "t", {0: events(20)}), PIPE, {"out": BufferingWriter(core, log)}, CollectingSink(),
        batch_size=100, poll_timeout_s=0, checkpoint_interval_s=0 if background else 3600,
        background_checkpoints=background,
    )
    assert proc.next_batch() == 20  # with background checkpoints: one starts on its own thread here
    if not background:
        assert "pay" not in store.rows  # buffered
        proc.checkpoint()
    proc.close()  # waits for a background checkpoint
    assert log[:2] == [("flush", 20), ("commit", {0: 20})]
    assert {k: r["n"] for k, r in store.rows["pay"].items()} == {0: 15, 1: 16, 2: 17, 3: 18, 4: 19}


def test_a_failed_flush_does_not_commit():
    log: list = []
    store = MemoryStore()
    core = ShardCore([VIEW], CacheSettings(write_mode="behind", write_behind_interval_s=3600), lambda: store)
    source = LoggingSource(log, "t", {0: events(5)})
    proc = PipelineProcessor(source, PIPE, {"out": BufferingWriter(core, log)}, CollectingSink(), batch_size=100, poll_timeout_s=0)
    proc.next_batch()
    store.fail_writes = 1
    with pytest.raises(ConnectionError):
        proc.checkpoint()
    assert source.committed == {}
    proc.checkpoint()  # the retry flushes, then commits
    assert source.committed == {0: 5} and len(store.rows["pay"]) == 5
    proc.close()
