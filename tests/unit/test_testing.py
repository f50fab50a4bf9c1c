"""fabric_ray.testing: the in-memory source and the collecting sink."""

from __future__ import annotations

import pyarrow as pa

from fabric_ray.streams.records import DeadLetter
from fabric_ray.testing import CollectingSink, MemorySource


def test_memory_source_reads_in_partition_order_up_to_the_limit():
    src = MemorySource("t", {1: [b"c", b"d"], 0: [b"a", b"b"]})
    b = src.read_batch(3, 0)
    assert b.topic == "t"
    assert list(zip(b.partitions.tolist(), b.offsets.tolist(), b.values)) == [(0, 0, b"a"), (0, 1, b"b"), (1, 0, b"c")]
    assert b.keys == [None, None, None]
    b = src.read_batch(3, 0)
    assert list(zip(b.partitions.tolist(), b.offsets.tolist(), b.values)) == [(1, 1, b"d")]
    assert len(src.read_batch(3, 0)) == 0


def test_memory_source_start_offsets_skip_messages():
    src = MemorySource("t", {0: [b"a", b"b", b"c"], 1: [b"x"]}, start_offsets={0: 2})
    b = src.read_batch(10, 0)
    assert list(zip(b.partitions.tolist(), b.offsets.tolist(), b.values)) == [(0, 2, b"c"), (1, 0, b"x")]
    assert src.high_watermarks() == {0: 3, 1: 1}


def test_memory_source_append_and_new_partition():
    src = MemorySource("t", {0: [b"a"]})
    src.read_batch(10, 0)
    src.append(0, [b"b"])
    src.append(5, [b"z", None])
    b = src.read_batch(10, 0)
    assert list(zip(b.partitions.tolist(), b.offsets.tolist(), b.values)) == [(0, 1, b"b"), (5, 0, b"z"), (5, 1, None)]
    assert src.high_watermarks() == {0: 2, 5: 2}


def test_memory_source_commit_and_close():
    src = MemorySource("t", {0: []})
    src.commit({0: 3})
    src.commit({1: 4})
    src.commit({0: 5})
    assert src.committed == {0: 5, 1: 4}
    assert not src.closed
    src.close()
    assert src.closed


def test_memory_source_does_not_share_the_callers_lists():
    data = {0: [b"a"]}
    src = MemorySource("t", data)
    data[0].append(b"b")
    assert src.high_watermarks() == {0: 1}


def test_collecting_sink_rows_and_latest():
    sink = CollectingSink()
    sink.write(pa.table({"k": [1, 2], "v": [10, 20]}))
    sink.send([DeadLetter("t", 0, 0, None, b"x", "r")])
    sink.write(pa.table({"k": [1], "v": [11]}))
    assert sink.rows() == [{"k": 1, "v": 10}, {"k": 2, "v": 20}, {"k": 1, "v": 11}]
    assert sink.latest("k") == {1: {"k": 1, "v": 11}, 2: {"k": 2, "v": 20}}
    assert len(sink.items) == 3
    assert isinstance(sink.items[1], DeadLetter)
