"""The embedded broker deletes the oldest batches past 5 MiB per partition; a source must say what it skipped."""

import confluent_kafka as ck
import pytest

from fabric_ray.broker import EmbeddedBroker
from fabric_ray.streams.kafka import KafkaPartitionSource, make_producer


@pytest.fixture(scope="module")
def broker():
    b = EmbeddedBroker()
    yield b
    b.close()


def _produce(bootstrap: str, topic: str, n: int, **settings) -> None:
    producer = make_producer(bootstrap, **settings)
    pad = b"x" * 200
    for i in range(n):
        payload = b'{"event_id": "%08d", "pad": "%s"}' % (i, pad)
        while True:
            try:
                producer.produce(topic, partition=0, value=payload)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(30) == 0


def _drain(source: KafkaPartitionSource, high: int) -> int:
    read = 0
    for _ in range(200):
        batch = source.read_batch(10_000, 0.5)
        read += len(batch)
        if len(batch) and batch.offsets[-1] + 1 >= high:
            break
    return read


def test_uncompressed_overflow_is_counted_as_offset_gaps(broker):
    _produce(broker.bootstrap_servers, "retention_plain", 40_000, **{"compression.type": "none"})
    probe = ck.Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "probe"})
    low, high = probe.get_watermark_offsets(ck.TopicPartition("retention_plain", 0), timeout=10)
    probe.close()
    assert high == 40_000 and low > 0, "expected the broker to have deleted the head of the partition"
    source = KafkaPartitionSource(broker.bootstrap_servers, "retention_plain", [0], group_id="g1")
    read = _drain(source, high)
    source.close()
    assert read == high - low
    assert source.offset_gaps == low


def test_lz4_default_keeps_the_same_events(broker):
    _produce(broker.bootstrap_servers, "retention_lz4", 40_000)
    source = KafkaPartitionSource(broker.bootstrap_servers, "retention_lz4", [0], group_id="g2")
    read = _drain(source, 40_000)
    source.close()
    assert read == 40_000
    assert source.offset_gaps == 0
