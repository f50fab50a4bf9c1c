"""The stream engine decodes Confluent wire-format Avro from a topic whose schema lives in the fabric's registry.

Confluent's own AvroSerializer registers the schema in OUR registry and frames the messages;
the partition processor reads them from the real broker and fetches the writer schema over
the registry's REST API (RegistryHttpSource's happy path).
"""

from __future__ import annotations

import json
import struct
import time
import uuid

import pyarrow as pa
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from fabric_ray.streams.confluent_codec import AvroDecoder
from fabric_ray.streams.kafka import KafkaPartitionSource, ensure_topic
from fabric_ray.streams.aggregates import RunningTotals
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.processor import PipelineProcessor
from fabric_ray.streams.schema_source import RegistryHttpSource
from fabric_ray.testing import CollectingSink

from .kafka_helpers import produce_reported

PAYMENT = {
    "type": "record",
    "name": "Payment",
    "namespace": "fabric.avro_stream",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "user_id", "type": "long"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": {"type": "enum", "name": "Currency", "symbols": ["EUR", "USD"]}},
        {"name": "event_ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
T0_MS = 1_795_660_000_000


class Recording:
    """A decoder that keeps every table it decoded (to check each event's values)."""

    def __init__(self, inner: AvroDecoder) -> None:
        self.inner = inner
        self.tables: list[pa.Table] = []

    @property
    def schema(self) -> pa.Schema:
        return self.inner.schema

    @property
    def required(self) -> tuple[str, ...]:
        return self.inner.required

    def decode(self, values):
        out = self.inner.decode(values)
        self.tables.append(out.table)
        return out


@pytest.fixture(scope="module")
def fabric(make_module_fabric):
    return make_module_fabric()


def test_avro_topic_is_decoded_with_schemas_from_the_fabric_registry(fabric):
    url = fabric.config.registry_url
    bootstrap = fabric.bootstrap_servers
    topic = f"avro_{uuid.uuid4().hex[:8]}"
    partitions = ensure_topic(bootstrap, topic, use_admin=False)

    client = SchemaRegistryClient({"url": url})
    serialize = AvroSerializer(client, json.dumps(PAYMENT))  # auto-registers under <topic>-value
    ctx = SerializationContext(topic, MessageField.VALUE)
    events = [
        {
            "event_id": f"e{i}",
            "user_id": i % 9,
            "amount": round(i * 1.25, 2),
            "currency": "EUR" if i % 4 else "USD",
            "event_ts": T0_MS + i * 1000,
            "note": None if i % 5 else f"note {i}",
        }
        for i in range(300)
    ]
    good = [serialize(e, ctx) for e in events]
    avro_id = struct.unpack(">I", good[0][1:5])[0]
    assert client.get_latest_version(f"{topic}-value").schema_id == avro_id
    json_id = client.register_schema(f"{topic}-json-value", Schema(json.dumps({"type": "object"}), "JSON"))
    bad = {
        b'{"event_id": "j1", "user_id": 1}': "not Confluent wire format: magic byte 0x7b",
        b"\x00" + struct.pack(">I", 987654) + good[1][5:]: "unknown schema id 987654",
        b"\x00" + struct.pack(">I", json_id) + b"{}": f"schema id {json_id} is JSON, expected AVRO",
        good[2][:-4]: f"Avro decode failed at schema id {avro_id}: message truncated",
        b"\x00\x00": "message shorter than 5 bytes",
    }
    messages = [(str(e["user_id"]).encode(), v) for e, v in zip(events, good)]
    for j, payload in enumerate(bad):
        messages.insert(40 * (j + 1), (b"bad", payload))
    produce_reported(bootstrap, topic, messages)

    decoder = Recording(AvroDecoder(RegistryHttpSource(url, timeout_s=10), json.dumps(PAYMENT)))
    totals = RunningTotals("user_id", "amount", "event_ts", 60_000, {"key": "user_id", "count": "n", "sum": "total"})
    pipeline = Pipeline("avro-payments").source(topic).decode(decoder).aggregate(totals).sink("features")
    source = KafkaPartitionSource(bootstrap, topic, range(partitions), group_id=f"avro-{topic}")
    features, dead = CollectingSink(), CollectingSink()
    proc = PipelineProcessor(source, pipeline, {"features": features}, dead, batch_size=100, poll_timeout_s=0.2)
    try:
        highs = source.high_watermarks()
        assert sum(highs.values()) == len(messages)
        deadline = time.monotonic() + 60
        while any(proc.stats.next_offsets.get(p, 0) < h for p, h in highs.items()):
            assert time.monotonic() < deadline, f"processed up to {proc.stats.next_offsets} of {highs}"
            proc.next_batch()
    finally:
        proc.close()

    decoded = pa.concat_tables(decoder.tables).to_pylist()
    by_id = {row["event_id"]: row for row in decoded}
    assert len(decoded) == len(by_id) == len(events)
    for e in events:
        row = by_id[e["event_id"]]
        assert (row["user_id"], row["amount"], row["currency"], row["note"]) == (
            e["user_id"], e["amount"], e["currency"], e["note"]
        )
        assert int(row["event_ts"].timestamp() * 1000) == e["event_ts"]

    reasons = {letter.value: letter.reason for letter in dead.items}
    assert len(dead.items) == len(bad)
    for payload, reason in bad.items():
        assert reasons[payload].startswith(reason), (payload, reasons[payload])

    latest = features.latest("user_id")
    for user in range(9):
        mine = [e for e in events if e["user_id"] == user]
        assert latest[user]["n"] == len(mine)
        assert latest[user]["total"] == pytest.approx(sum(e["amount"] for e in mine))
