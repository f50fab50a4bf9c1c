"""Kafka through confluent-kafka: an explicitly assigned partition source, producers, topic setup.

The same code path serves a real Kafka cluster and the embedded broker: only the bootstrap
address differs. ``client`` settings (security, SASL, SSL) pass through to every client.
"""

from __future__ import annotations

import concurrent.futures
import time
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fabric_ray.streams.records import DeadLetter, Produced, RawBatch

__all__ = ["KafkaDeadLetterSink", "KafkaPartitionSource", "TopicLog", "ensure_topic", "make_producer", "partition_count"]

METADATA_TTL_S = 30.0  # how long a TopicLog trusts the partition list it fetched


def _conf(bootstrap_servers: str, client: Mapping[str, str] | None, **extra: object) -> dict[str, object]:
    return {"bootstrap.servers": bootstrap_servers, **dict(client or {}), **extra}


def make_producer(bootstrap_servers: str, client: Mapping[str, str] | None = None, **settings: object) -> Producer:
    """A producer with the fabric's defaults: idempotent, batched, lz4-compressed.

    Compression matters beyond bandwidth: the embedded broker keeps only 5 MiB of (compressed)
    batches per partition, and lz4 fits several times more JSON events in that.
    """
    return Producer(
        _conf(
            bootstrap_servers,
            client,
            **{"enable.idempotence": True, "linger.ms": 5, "batch.num.messages": 10000, "compression.type": "lz4", **settings},
        )
    )


def partition_count(bootstrap_servers: str, topic: str, client: Mapping[str, str] | None = None, timeout_s: float = 10) -> int:
    """Number of partitions of ``topic``.

    Raises:
        LookupError: the topic does not exist.
    """
    consumer = Consumer(_conf(bootstrap_servers, client, **{"group.id": "fabric-metadata"}))
    try:
        md = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    finally:
        consumer.close()
    if md is None or md.error is not None or not md.partitions:
        raise LookupError(f"topic {topic!r} does not exist on {bootstrap_servers}")
    return len(md.partitions)


def ensure_topic(
    bootstrap_servers: str,
    topic: str,
    partitions: int = 4,
    client: Mapping[str, str] | None = None,
    *,
    use_admin: bool = True,
    timeout_s: float = 10,
) -> int:
    """Create ``topic`` if it is missing and return its partition count.

    Args:
        use_admin: create with the CreateTopics admin API and ``partitions``; ``False`` (the
            embedded broker, which has no such API) creates it by a producer's metadata
            request instead, with the broker's default partition count.

    Raises:
        KafkaException: the broker refused to create the topic.
        TimeoutError: the broker did not answer the CreateTopics request.
        LookupError: the topic still does not exist after ``timeout_s``.
    """
    try:
        return partition_count(bootstrap_servers, topic, client)
    except LookupError:
        pass
    if use_admin:
        admin = AdminClient(_conf(bootstrap_servers, client))
        future = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic]
        try:
            future.result(timeout=timeout_s)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"{bootstrap_servers} did not answer CreateTopics for {topic!r} within {timeout_s}s; for a broker "
                "without the admin API (like the embedded one) set kafka.topic_creation: metadata"
            ) from None
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise
    else:
        Producer(_conf(bootstrap_servers, client)).list_topics(topic, timeout=timeout_s)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return partition_count(bootstrap_servers, topic, client)
        except LookupError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class KafkaPartitionSource:
    """Read explicitly assigned partitions of one topic (no consumer-group rebalancing).

    Offsets are committed to ``group_id`` for outside tools, but the source itself starts
    where it is told (``start_offsets``, default: the beginning of each partition).

    Args:
        bootstrap_servers: Kafka address.
        topic: topic to read.
        partitions: partition ids this source owns.
        group_id: consumer group to commit progress to.
        client: extra librdkafka settings (security and the like).
        start_offsets: first offset to read per partition.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        partitions: Iterable[int],
        *,
        group_id: str,
        client: Mapping[str, str] | None = None,
        start_offsets: Mapping[int, int] | None = None,
    ) -> None:
        self.topic = topic
        self.partitions = sorted(int(p) for p in partitions)
        if not self.partitions:
            raise ValueError(f"source for topic {topic!r} owns no partitions")
        self._consumer = Consumer(
            _conf(
                bootstrap_servers,
                client,
                **{
                    "group.id": group_id,
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "fetch.wait.max.ms": 10,
                    # If the broker no longer has the next offset (retention), go on from the
                    # oldest it has; the skipped messages are counted in offset_gaps.
                    "auto.offset.reset": "earliest",
                    "queued.max.messages.kbytes": 65536,
                },
            )
        )
        starts = dict(start_offsets or {})
        self._expected = {p: starts.get(p, 0) for p in self.partitions}
        self.offset_gaps = 0
        self.last_read_waited = False
        self._consumer.assign(
            [TopicPartition(topic, p, starts.get(p, OFFSET_BEGINNING)) for p in self.partitions]
        )

    def offsets_for_timestamp(self, timestamp_ms: int, timeout_s: float = 10) -> dict[int, int]:
        """Per owned partition, the first offset whose message timestamp is at or after ``timestamp_ms``
        (the end of the partition when none is).
        """
        asked = [TopicPartition(self.topic, p, int(timestamp_ms)) for p in self.partitions]
        found = self._consumer.offsets_for_times(asked, timeout=timeout_s)
        highs = self.high_watermarks()
        return {tp.partition: (tp.offset if tp.offset >= 0 else highs[tp.partition]) for tp in found}

    def seek(self, next_offsets: Mapping[int, int]) -> None:
        """Continue the named partitions from the given offsets (a restored checkpoint's)."""
        starts = {p: self._expected[p] for p in self.partitions}
        starts.update({int(p): int(o) for p, o in next_offsets.items() if int(p) in starts})
        self._expected = dict(starts)
        self._consumer.assign([TopicPartition(self.topic, p, o) for p, o in starts.items()])

    def read_batch(self, max_messages: int, timeout_s: float) -> RawBatch:
        """Up to ``max_messages`` messages, returning as soon as any are there.

        Whatever the client has already fetched is taken without waiting; only when that is
        nothing does it wait, at most ``timeout_s``, for the first message (``consume`` alone
        would wait for a full batch, which at low rates adds the whole timeout to latency).
        Partition errors such as end-of-partition are skipped.
        """
        msgs = self._consumer.consume(num_messages=max_messages, timeout=0)
        self.last_read_waited = not msgs  # the owner was idle: these messages waited for no one
        if not msgs:
            msgs = self._consumer.consume(num_messages=1, timeout=timeout_s)
            if msgs and max_messages > 1:
                msgs += self._consumer.consume(num_messages=max_messages - 1, timeout=0)
        good = []
        for m in msgs:
            err = m.error()
            if err is None:
                good.append(m)
            elif err.code() != KafkaError._PARTITION_EOF and err.fatal():
                raise KafkaException(err)
        batch = RawBatch(
            topic=self.topic,
            partitions=np.fromiter((m.partition() for m in good), dtype=np.int32, count=len(good)),
            offsets=np.fromiter((m.offset() for m in good), dtype=np.int64, count=len(good)),
            keys=[m.key() for m in good],
            values=[m.value() for m in good],
            timestamps_ms=np.fromiter((m.timestamp()[1] for m in good), dtype=np.int64, count=len(good)),
        )
        self._count_gaps(batch)
        return batch

    def _count_gaps(self, batch: RawBatch) -> None:
        # Offsets missing between what we expected and what arrived: messages deleted by
        # retention before they were read (or, on a real cluster, transaction markers and
        # compacted records, which also occupy offsets).
        for p in np.unique(batch.partitions).tolist():
            offs = batch.offsets[batch.partitions == p]
            expected = self._expected.get(p, 0)
            self.offset_gaps += int(offs[0] - expected) + int(np.sum(np.diff(offs) - 1))
            self._expected[p] = int(offs[-1]) + 1

    def high_watermarks(self) -> dict[int, int]:
        """Offset after the last message, per owned partition, asked of the broker."""
        return {p: self._high(p, cached=False) for p in self.partitions}

    def cached_high_watermarks(self) -> dict[int, int]:
        """Like :meth:`high_watermarks`, from the client's last fetch responses (no broker round
        trip, so the owner's loop can ask often); partitions not fetched yet are asked of the broker."""
        return {p: self._high(p, cached=True) for p in self.partitions}

    def _high(self, partition: int, *, cached: bool) -> int:
        tp = TopicPartition(self.topic, partition)
        high = self._consumer.get_watermark_offsets(tp, cached=True)[1] if cached else -1
        if high < 0:  # not asked for, or not fetched yet
            high = self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)[1]
        return int(high)

    def commit(self, next_offsets: Mapping[int, int]) -> None:
        """Commit ``next_offsets`` to the consumer group without waiting."""
        if next_offsets:
            self._consumer.commit(
                offsets=[TopicPartition(self.topic, p, o) for p, o in next_offsets.items()], asynchronous=True
            )

    def close(self) -> None:
        """Leave the broker."""
        self._consumer.close()


class AckedProducer:
    """A producer whose :meth:`send_all` returns only once the broker acknowledged every message.

    Args:
        bootstrap_servers: Kafka address.
        topic: the topic written to.
        client: librdkafka settings.
        what: how errors name the topic (``"dead-letter topic"``, ``"output topic"``).
    """

    def __init__(self, bootstrap_servers: str, topic: str, client: Mapping[str, str] | None = None, what: str = "topic") -> None:
        self.topic = topic
        self.what = what
        self._producer = make_producer(bootstrap_servers, client)
        self._failures: list[str] = []

    def _on_delivery(self, err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            self._failures.append(str(err))

    def send_all(self, messages: Iterable[tuple[bytes | None, bytes | None, list | None]]) -> None:
        """Produce ``(key, value, headers)`` triples and wait for every acknowledgement.

        Raises:
            KafkaException: a message could not be delivered; the message names the topic.
        """
        for key, value, headers in messages:
            self._producer.produce(self.topic, key=key, value=value, headers=headers, on_delivery=self._on_delivery)
            self._producer.poll(0)
        remaining = self._producer.flush(30)
        if remaining or self._failures:
            failures, self._failures = self._failures, []
            raise KafkaException(
                KafkaError(KafkaError._MSG_TIMED_OUT, f"{self.what} {self.topic!r}: {remaining} undelivered; {failures[:3]}")
            )


class TopicLog:
    """What was produced to a topic, read back: its high watermarks and bounded ranges of it.

    The output guard (:mod:`.output_guard`) reads an output topic's watermarks at every
    checkpoint and, after a restart, the messages produced since. Partitions are assigned
    explicitly (no consumer group rebalancing, nothing committed); the consumer is made on
    first use.

    Args:
        bootstrap_servers: Kafka address.
        topic: the topic.
        client: librdkafka settings (security and the like).
    """

    def __init__(self, bootstrap_servers: str, topic: str, client: Mapping[str, str] | None = None) -> None:
        self.topic = topic
        self._partitions: list[int] = []
        self._partitions_until = 0.0
        self._conf = _conf(
            bootstrap_servers,
            client,
            **{
                "group.id": "fabric-output-guard",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 10,
            },
        )
        self._consumer: Consumer | None = None

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(self._conf)
        return self._consumer

    def high_watermarks(self, timeout_s: float = 10) -> dict[int, int]:
        """Offset after the last message of every partition; ``{}`` while the topic does not exist.

        Raises:
            KafkaException: the broker did not answer, or answered with another error.
        """
        consumer = self._client()
        partitions = self._partitions if time.monotonic() < self._partitions_until else None
        if partitions is None:
            md = consumer.list_topics(self.topic, timeout=timeout_s).topics.get(self.topic)
            if md is None or (md.error is not None and md.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
                return {}
            if md.error is not None:
                raise KafkaException(md.error)
            # A metadata request costs more than the watermarks: keep the partition list a while.
            # (A partition added meanwhile has no mark yet, so a read-back starts it at 0: safe.)
            partitions = self._partitions = sorted(md.partitions)
            self._partitions_until = time.monotonic() + METADATA_TTL_S
        out = {}
        for p in partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=timeout_s, cached=False)
            out[int(p)] = int(high)
        return out

    def read_back(self, start: Mapping[int, int], end: Mapping[int, int], timeout_s: float = 60) -> Iterator[Produced]:
        """The messages from ``start`` (default 0) up to ``end`` (exclusive) of each partition in ``end``.

        Raises:
            TimeoutError: the range was not read within ``timeout_s``, naming the topic and partitions.
            KafkaException: a fatal consumer error.
        """
        todo = {int(p): int(e) for p, e in end.items() if int(e) > int(start.get(p, 0))}
        if not todo:
            return
        consumer = self._client()
        consumer.assign([TopicPartition(self.topic, p, int(start.get(p, 0)) or OFFSET_BEGINNING) for p in todo])
        deadline = time.monotonic() + timeout_s
        try:
            while todo:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"topic {self.topic!r}: could not read back partitions {sorted(todo)} up to {todo} in {timeout_s}s")
                for m in consumer.consume(num_messages=10_000, timeout=0.2):
                    p, err = m.partition(), m.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            todo.pop(p, None)
                        elif err.fatal():
                            raise KafkaException(err)
                        continue
                    offset, stop = m.offset(), todo.get(p)
                    if stop is None or offset >= stop:  # past the range: written after it was asked for
                        todo.pop(p, None)
                        continue
                    if offset == stop - 1:
                        todo.pop(p)
                    headers = {k: (v.decode("utf-8", "replace") if v is not None else "") for k, v in (m.headers() or [])}
                    yield Produced(p, offset, m.key(), m.value(), headers)
        finally:
            consumer.unassign()

    def close(self) -> None:
        """Leave the broker."""
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None


class KafkaDeadLetterSink:
    """Send rejected messages, unchanged, to a dead-letter topic with the reason in headers.

    ``send`` returns only once the broker has acknowledged every letter, so a message is never
    both un-processed and un-dead-lettered. ``log`` reads the topic back (for the output guard).
    """

    def __init__(self, bootstrap_servers: str, topic: str, client: Mapping[str, str] | None = None) -> None:
        self.topic = topic
        self._out = AckedProducer(bootstrap_servers, topic, client, what="dead-letter topic")
        self.log = TopicLog(bootstrap_servers, topic, client)

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Produce ``letters`` and wait for the acknowledgements.

        Raises:
            KafkaException: a letter could not be delivered.
        """
        self._out.send_all((letter.key, letter.value, letter.kafka_headers()) for letter in letters)
