"""fabric_ray.streams.kafka against the in-process embedded broker (real Kafka protocol, no Ray)."""

from __future__ import annotations

import json
import math
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from fabric_ray.broker import EmbeddedBroker
from fabric_ray.demo.payments import expected_features, generate_events, payments_pipeline
from fabric_ray.streams.kafka import KafkaDeadLetterSink, KafkaPartitionSource, ensure_topic, make_producer, partition_count
from fabric_ray.streams.processor import PipelineProcessor
from fabric_ray.streams.records import DeadLetter
from fabric_ray.testing import CollectingSink


@pytest.fixture(scope="module")
def bootstrap():
    b = EmbeddedBroker()
    yield b.bootstrap_servers
    b.close()


@pytest.fixture
def topic(bootstrap) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    assert ensure_topic(bootstrap, name, use_admin=False) == 4
    return name


def produce(bootstrap: str, topic: str, messages) -> None:
    p = make_producer(bootstrap)
    for part, key, value in messages:
        p.produce(topic, key=key, value=value, partition=part)
    assert p.flush(10) == 0


def read_n(src: KafkaPartitionSource, n: int, timeout_s: float = 15) -> list[tuple]:
    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        b = src.read_batch(1000, 0.2)
        got += list(zip(b.partitions.tolist(), b.offsets.tolist(), b.keys, b.values))
    return got


def committed(bootstrap: str, topic: str, group: str, partitions, want: dict, timeout_s: float = 10) -> dict:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            got = {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in partitions], timeout=5)}
            if got == want or time.monotonic() > deadline:
                return got
            time.sleep(0.05)
    finally:
        c.close()


# -- topics --------------------------------------------------------------------------------------
def test_ensure_topic_without_admin_creates_and_is_idempotent(bootstrap):
    name = f"new-{uuid.uuid4().hex[:8]}"
    with pytest.raises(LookupError):
        partition_count(bootstrap, name)
    assert ensure_topic(bootstrap, name, use_admin=False) == 4
    assert ensure_topic(bootstrap, name, use_admin=False) == 4
    assert partition_count(bootstrap, name) == 4


def test_partition_count_of_a_missing_topic_names_it(bootstrap):
    with pytest.raises(LookupError, match=rf"topic 'missing-topic-x' does not exist on {bootstrap}"):
        partition_count(bootstrap, "missing-topic-x", timeout_s=5)


# -- the partition source -----------------------------------------------------------------------
def test_source_needs_partitions(bootstrap, topic):
    with pytest.raises(ValueError, match=f"source for topic {topic!r} owns no partitions"):
        KafkaPartitionSource(bootstrap, topic, [], group_id="g")


def test_read_batch_returns_only_owned_partitions(bootstrap, topic):
    msgs = [(p, f"k{p}-{i}".encode(), f"v{p}-{i}".encode()) for p in range(4) for i in range(5)]
    produce(bootstrap, topic, msgs)
    src = KafkaPartitionSource(bootstrap, topic, [2, 1], group_id="g-owned")
    try:
        assert src.partitions == [1, 2] and src.topic == topic
        got = read_n(src, 10)
        assert sorted(got) == sorted((p, i, f"k{p}-{i}".encode(), f"v{p}-{i}".encode()) for p in (1, 2) for i in range(5))
        time.sleep(0.3)
        assert len(src.read_batch(1000, 0.3)) == 0  # nothing more, and no error for end of partition
        assert src.high_watermarks() == {1: 5, 2: 5}
    finally:
        src.close()


def test_read_batch_respects_max_messages(bootstrap, topic):
    produce(bootstrap, topic, [(0, None, b"x")] * 30)
    src = KafkaPartitionSource(bootstrap, topic, [0], group_id="g-max")
    try:
        deadline = time.monotonic() + 10
        sizes = []
        while sum(sizes) < 30 and time.monotonic() < deadline:
            b = src.read_batch(7, 0.3)
            assert len(b) <= 7
            sizes.append(len(b))
            assert b.offsets.tolist() == list(range(sum(sizes) - len(b), sum(sizes)))
        assert sum(sizes) == 30
    finally:
        src.close()


def test_start_offsets_pick_where_reading_begins(bootstrap, topic):
    produce(bootstrap, topic, [(0, None, f"a{i}".encode()) for i in range(6)] + [(3, None, b"b0"), (3, None, b"b1")])
    src = KafkaPartitionSource(bootstrap, topic, [0, 3], group_id="g-start", start_offsets={0: 4})
    try:
        got = read_n(src, 4)
        assert sorted((p, o, v) for p, o, _, v in got) == [(0, 4, b"a4"), (0, 5, b"a5"), (3, 0, b"b0"), (3, 1, b"b1")]
    finally:
        src.close()


def test_high_watermarks_of_empty_partitions(bootstrap, topic):
    src = KafkaPartitionSource(bootstrap, topic, [0, 1, 2, 3], group_id="g-hw")
    try:
        assert src.high_watermarks() == {0: 0, 1: 0, 2: 0, 3: 0}
        produce(bootstrap, topic, [(3, None, b"x")] * 3)
        assert src.high_watermarks() == {0: 0, 1: 0, 2: 0, 3: 3}
    finally:
        src.close()


def test_cached_high_watermarks_follow_the_fetches_and_carry_produce_times(bootstrap, topic):
    src = KafkaPartitionSource(bootstrap, topic, [0, 1], group_id="g-cached")
    try:
        assert src.cached_high_watermarks() == {0: 0, 1: 0}  # nothing fetched yet: asked of the broker
        before_ms = int(time.time() * 1000)
        produce(bootstrap, topic, [(0, None, b"x")] * 4 + [(1, None, b"y")])
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 5 and time.monotonic() < deadline:
            batch = src.read_batch(100, 0.3)
            got += list(batch.timestamps_ms)
        assert len(got) == 5 and all(before_ms - 1000 <= t <= time.time() * 1000 for t in got)
        deadline = time.monotonic() + 10
        while src.cached_high_watermarks() != {0: 4, 1: 1} and time.monotonic() < deadline:
            src.read_batch(100, 0.05)  # the fetch responses carry the watermarks
        assert src.cached_high_watermarks() == src.high_watermarks() == {0: 4, 1: 1}
    finally:
        src.close()


def test_commit_is_visible_to_the_consumer_group(bootstrap, topic):
    produce(bootstrap, topic, [(0, None, b"x")] * 3 + [(1, None, b"y")] * 2)
    group = f"g-{uuid.uuid4().hex[:6]}"
    src = KafkaPartitionSource(bootstrap, topic, [0, 1], group_id=group)
    try:
        read_n(src, 5)
        src.commit({0: 3, 1: 2})
        assert committed(bootstrap, topic, group, [0, 1], {0: 3, 1: 2}) == {0: 3, 1: 2}
        src.commit({})  # nothing to commit is fine
        src.commit({1: 1})
        assert committed(bootstrap, topic, group, [1], {1: 1}) == {1: 1}
    finally:
        src.close()


# -- the dead-letter sink -----------------------------------------------------------------------
def test_dead_letter_sink_delivers_unchanged_with_headers(bootstrap, topic):
    sink = KafkaDeadLetterSink(bootstrap, topic)
    letters = [
        DeadLetter("payments", 2, 41, b"user-7", b'{"amount": "twelve"}', "field 'amount': expected double, got 'twelve'"),
        DeadLetter("payments", 0, 9, None, b"\xff\x00raw", "not valid JSON: not UTF-8", headers={"fabric.actor": "a0"}),
    ]
    sink.send(letters)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "dlq-reader"})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(4)])
        got = []
        deadline = time.monotonic() + 15
        while len(got) < 2 and time.monotonic() < deadline:
            got += [m for m in c.consume(10, 0.3) if m.error() is None]
    finally:
        c.close()
    by_value = {m.value(): m for m in got}
    assert set(by_value) == {b'{"amount": "twelve"}', b"\xff\x00raw"}
    first = by_value[b'{"amount": "twelve"}']
    assert first.key() == b"user-7"
    assert dict(first.headers()) == {
        "fabric.reason": b"field 'amount': expected double, got 'twelve'",
        "fabric.source.topic": b"payments",
        "fabric.source.partition": b"2",
        "fabric.source.offset": b"41",
    }
    second = by_value[b"\xff\x00raw"]
    assert second.key() is None
    assert dict(second.headers())["fabric.actor"] == b"a0"
    assert dict(second.headers())["fabric.reason"] == b"not valid JSON: not UTF-8"


def test_dead_letter_sink_with_nothing_to_send(bootstrap, topic):
    KafkaDeadLetterSink(bootstrap, topic).send([])  # returns without error or wait


# -- the processor over Kafka -------------------------------------------------------------------
def test_processor_over_kafka_matches_expected_features(bootstrap, topic):
    dlq_topic = f"{topic}.dlq"
    ensure_topic(bootstrap, dlq_topic, use_admin=False)
    ev = generate_events(3000, users=80, bad_fraction=0.01)
    messages = [(int(k) % 4, k, v) for k, v in zip(ev.keys, ev.payloads)]
    produce(bootstrap, topic, messages)
    at: dict[tuple[int, int], bytes] = {}  # (partition, offset) -> payload, as the broker numbers them
    next_offset = {p: 0 for p in range(4)}
    for part, _, value in messages:
        at[(part, next_offset[part])] = value
        next_offset[part] += 1
    group = f"g-{uuid.uuid4().hex[:6]}"
    src = KafkaPartitionSource(bootstrap, topic, range(4), group_id=group)
    feats = CollectingSink()
    sinks = {"features": feats, "archive": CollectingSink()}
    dlq = KafkaDeadLetterSink(bootstrap, dlq_topic)
    proc = PipelineProcessor(src, payments_pipeline(topic), sinks, dlq, batch_size=500, poll_timeout_s=0.2, checkpoint_interval_s=0)
    try:
        deadline = time.monotonic() + 30
        while proc.stats.read < len(ev) and time.monotonic() < deadline:
            proc.next_batch()
        assert proc.stats.processed == ev.table.num_rows
        assert proc.stats.dead_lettered == ev.bad == 30
        assert proc.lag() == {0: 0, 1: 0, 2: 0, 3: 0}
        highs = src.high_watermarks()
        assert all(highs.values()) and sum(highs.values()) == len(ev)
        assert proc.stats.next_offsets == highs
        assert committed(bootstrap, topic, group, range(4), highs) == highs
    finally:
        proc.close()
    expected = expected_features(ev.table)
    got = feats.latest("user_id")
    assert got.keys() == expected.keys()
    for user, exp in expected.items():
        assert got[user]["txn_count"] == exp["txn_count"]
        assert got[user]["txn_count_1m"] == exp["txn_count_1m"]
        assert math.isclose(got[user]["amount_sum"], exp["amount_sum"], rel_tol=1e-9)
        assert math.isclose(got[user]["amount_sum_1m"], exp["amount_sum_1m"], rel_tol=1e-9)
    # the dead letters reached their topic with the key and the reason
    assert partition_count(bootstrap, dlq_topic) == 4
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "dlq-check"})
    try:
        c.assign([TopicPartition(dlq_topic, p, 0) for p in range(4)])
        letters = []
        deadline = time.monotonic() + 15
        while len(letters) < ev.bad and time.monotonic() < deadline:
            letters += [m for m in c.consume(100, 0.3) if m.error() is None]
    finally:
        c.close()
    assert len(letters) == ev.bad
    good = {json.dumps(r, separators=(",", ":")).encode() for r in ev.table.to_pylist()}
    origins = set()
    for m in letters:
        h = dict(m.headers())
        assert h["fabric.source.topic"] == topic.encode()
        origin = (int(h["fabric.source.partition"]), int(h["fabric.source.offset"]))
        origins.add(origin)
        assert m.value() == at[origin]  # the original bytes of the message at that position
        assert m.value() not in good
        assert int(m.key()) % 4 == origin[0]
        assert h["fabric.reason"]
    assert len(origins) == ev.bad
