"""Small Kafka and fabric helpers shared by the integration tests (real broker, no mocks)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from fabric_ray.demo.payments import USER_PAYMENTS

FEATURES = [f"{USER_PAYMENTS.name}:{name}" for name in USER_PAYMENTS.feature_names]


@dataclass(frozen=True)
class Delivered:
    """Where the broker stored one produced message."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def produce_reported(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes | None]],
    *,
    partition: int | None = None,
) -> list[Delivered]:
    """Produce ``(key, value)`` pairs and return each one's delivery report, in produce order.

    ``partition`` forces every message into one partition (default: by key).
    """
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    reports: list[Delivered | None] = []
    errors: list[str] = []

    def on_delivery(i: int):
        def cb(err, msg) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                reports[i] = Delivered(msg.partition(), msg.offset(), msg.key(), msg.value())

        return cb

    for i, (key, value) in enumerate(messages):
        reports.append(None)
        kwargs = {} if partition is None else {"partition": partition}
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery(i), **kwargs)
        producer.poll(0)
    left = producer.flush(30)
    assert left == 0 and not errors, f"{left} unacknowledged, errors {errors[:3]}"
    assert all(r is not None for r in reports)
    return reports  # type: ignore[return-value]


def read_topic(bootstrap: str, topic: str, partitions: Sequence[int] = (0, 1, 2, 3), timeout_s: float = 30) -> list:
    """Every message of ``topic`` up to the high watermarks now, by explicit assignment from the beginning."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.time_ns()}", "enable.auto.commit": False})
    try:
        highs = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        out: list = []
        done = {p for p, h in highs.items() if h <= 0}
        deadline = time.monotonic() + timeout_s
        while len(done) < len(partitions):
            assert time.monotonic() < deadline, f"read {len(out)} messages of {topic} in {timeout_s}s; highs {highs}"
            for m in consumer.consume(500, timeout=0.5):
                if m.error() is not None:
                    continue
                out.append(m)
                if m.offset() + 1 >= highs[m.partition()]:
                    done.add(m.partition())
        return out
    finally:
        consumer.close()


def high_watermarks(bootstrap: str, topic: str, partitions: Sequence[int] = (0, 1, 2, 3)) -> dict[int, int]:
    """The broker's high watermark of each partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "hw-reader"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1] for p in partitions}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: Sequence[int] = (0, 1, 2, 3)) -> dict[int, int]:
    """Offsets committed by consumer group ``group`` (negative: none committed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        consumer.close()


def served_features(fabric, users: Sequence[int], chunk: int = 500) -> dict[int, dict[str, object]]:
    """``{user: {feature: value}}`` for PRESENT values, read through the fabric's Python handle."""
    out: dict[int, dict[str, object]] = {}
    for i in range(0, len(users), chunk):
        part = list(users[i : i + chunk])
        body = fabric.get_online_features(FEATURES, {"user_id": part})
        names = body["metadata"]["feature_names"]
        for j, uid in enumerate(part):
            out[uid] = {
                name: res["values"][j]
                for name, res in zip(names[1:], body["results"][1:])
                if res["statuses"][j] == "PRESENT"
            }
    return out


def feature_mismatches(expected: dict[int, dict[str, float]], served: dict[int, dict[str, object]]) -> list[str]:
    """Readable lines for every served value that differs from the expected one."""
    bad = []
    for uid, want in expected.items():
        have = served.get(uid, {})
        for name, value in want.items():
            got = have.get(name)
            if got is None or not math.isclose(got, value, rel_tol=1e-9, abs_tol=1e-6):
                bad.append(f"user {uid}: {name} served {got!r}, expected {value!r}")
    return bad
