"""Protobuf end to end: confluent-kafka's ProtobufSerializer/Deserializer against the fabric's registry, then a
pipeline on Ray decodes the serializer's messages from the real broker into the Parquet archive.

The message classes are generated at test time with protoc (grpc_tools), as a user's build would. The schema file
declares a decoy message first, so the payments carry a non-trivial message-index array ([1]).
"""

from __future__ import annotations

import datetime as dt
import importlib
import struct
import subprocess
import sys
import time
import uuid

import pyarrow.parquet as pq
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from fabric_ray.storage import open_location
from fabric_ray.streams.archive import archived_files
from fabric_ray.streams.kafka import ensure_topic
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.protobuf_codec import ProtobufDecoder
from fabric_ray.streams.schema_source import RegistryHttpSource

from .kafka_helpers import produce_reported, read_topic

STEM = f"protostream{uuid.uuid4().hex[:6]}"  # file and package names unique in the process-wide descriptor pool
PACKAGE = f"fabric.{STEM}"
# Flat file names: the serializer registers an import under a subject named like the file, and the registry's
# REST routes do not take subjects containing "/" yet (docs/schema-compatibility.md).
MONEY_FILE = f"{STEM}_money.proto"
PAYMENTS_PROTO = f"""syntax = "proto3";
package {PACKAGE};

import "google/protobuf/timestamp.proto";

message Envelope {{ string note = 1; }}

message Payment {{
  string event_id = 1;
  int64 user_id = 2;
  double amount = 3;
  Currency currency = 4;
  google.protobuf.Timestamp event_ts = 5;
  optional string note = 6;
  repeated string tags = 7;
  Card card = 8;

  message Card {{
    string brand = 1;
    uint32 last4 = 2;
  }}
}}

enum Currency {{
  EUR = 0;
  USD = 1;
}}
"""
MONEY_PROTO = f"""syntax = "proto3";
package {PACKAGE}.fin;

message Money {{
  string currency = 1;
  int64 units = 2;
}}
"""
ORDER_PROTO = f"""syntax = "proto3";
package {PACKAGE}.shop;

import "{MONEY_FILE}";

message Order {{
  string order_id = 1;
  {PACKAGE}.fin.Money total = 2;
}}
"""
T0_MS = 1_795_660_000_000


@pytest.fixture(scope="module")
def protos(tmp_path_factory):
    """The generated ``*_pb2`` modules: ``(payments_pb2, order_pb2)``."""
    root = tmp_path_factory.mktemp("protos")
    (root / f"{STEM}_payments.proto").write_text(PAYMENTS_PROTO)
    (root / MONEY_FILE).write_text(MONEY_PROTO)
    (root / f"{STEM}_order.proto").write_text(ORDER_PROTO)
    names = [f"{STEM}_payments.proto", MONEY_FILE, f"{STEM}_order.proto"]
    done = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{root}", f"--python_out={root}", *names],
        capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
    sys.path.insert(0, str(root))
    try:
        return (importlib.import_module(f"{STEM}_payments_pb2"), importlib.import_module(f"{STEM}_order_pb2"))
    finally:
        sys.path.remove(str(root))


@pytest.fixture(scope="module")
def fabric(make_module_fabric):
    return make_module_fabric()


def _events(pb, n: int) -> list:
    out = []
    for i in range(n):
        e = pb.Payment(
            event_id=f"e{i}", user_id=i % 9, amount=round(i * 1.25, 2), currency=pb.USD if i % 4 == 0 else pb.EUR,
            tags=[f"t{j}" for j in range(i % 3)],
        )
        e.event_ts.FromMilliseconds(T0_MS + i * 1000)
        if i % 5 == 0:
            e.note = f"note {i}"
        if i % 2 == 0:
            e.card.brand, e.card.last4 = "visa", 1000 + i
        out.append(e)
    return out


def test_serializer_and_deserializer_round_trip_against_the_fabric_registry(fabric, protos):
    payments_pb2, order_pb2 = protos
    client = SchemaRegistryClient({"url": fabric.config.registry_url})
    topic = f"proto_rt_{uuid.uuid4().hex[:8]}"
    ctx = SerializationContext(topic, MessageField.VALUE)

    serialize = ProtobufSerializer(payments_pb2.Payment, client)  # auto-registers <topic>-value
    deserialize = ProtobufDeserializer(payments_pb2.Payment, {}, client)  # fetches the writer schema by id
    events = _events(payments_pb2, 20)
    framed = [serialize(e, ctx) for e in events]
    assert [deserialize(b, ctx) for b in framed] == events
    assert framed[0][5:7] == b"\x02\x02"  # message indexes [1]: Payment is the file's second message
    registered = client.get_latest_version(f"{topic}-value")
    assert registered.schema.schema_type == "PROTOBUF"
    assert registered.schema_id == struct.unpack(">I", framed[0][1:5])[0]
    # The serializer sent a base64 descriptor; the registry answers .proto text unless asked for format=serialized.
    text = client.get_schema(registered.schema_id).schema_str
    assert text.startswith('syntax = "proto3";\npackage ' + PACKAGE + ";") and "message Payment {" in text

    # A message importing another file: the serializer registers the import as a reference first.
    serialize_order = ProtobufSerializer(order_pb2.Order, client)
    deserialize_order = ProtobufDeserializer(order_pb2.Order, {}, client)
    order = order_pb2.Order(order_id="o1")
    order.total.currency, order.total.units = "EUR", 1250
    octx = SerializationContext(f"{topic}-orders", MessageField.VALUE)
    assert deserialize_order(serialize_order(order, octx), octx) == order
    refs = client.get_latest_version(f"{topic}-orders-value").schema.references
    assert [(r.name, r.subject, r.version) for r in refs] == [(MONEY_FILE, MONEY_FILE, 1)]
    # The stream decoder resolves the reference over REST too.
    out = ProtobufDecoder(RegistryHttpSource(fabric.config.registry_url, timeout_s=10)).decode([serialize_order(order, octx)])
    assert (out.rejected, out.table.to_pylist()) == ([], [{"order_id": "o1", "total": {"currency": "EUR", "units": 1250}}])

    # The registry enforces Confluent's Protobuf rules on what the serializer registers.
    changed = PAYMENTS_PROTO.replace("int64 user_id = 2;", "string user_id = 2;")
    assert client.test_compatibility(f"{topic}-value", Schema(changed, "PROTOBUF")) is False
    assert client.test_compatibility(
        f"{topic}-value", Schema(PAYMENTS_PROTO.replace("  Card card = 8;", "  Card card = 8;\n  bool ok = 9;"), "PROTOBUF")
    ) is True


def test_protobuf_topic_through_a_pipeline_to_the_parquet_archive(fabric, protos):
    payments_pb2, _ = protos
    url = fabric.config.registry_url
    bootstrap = fabric.bootstrap_servers
    topic = f"proto_{uuid.uuid4().hex[:8]}"
    ensure_topic(bootstrap, topic, use_admin=False)
    client = SchemaRegistryClient({"url": url})
    ctx = SerializationContext(topic, MessageField.VALUE)
    serialize = ProtobufSerializer(payments_pb2.Payment, client)
    events = _events(payments_pb2, 300)
    good = [serialize(e, ctx) for e in events]
    proto_id = struct.unpack(">I", good[0][1:5])[0]
    avro_id = client.register_schema(f"{topic}-avro-value", Schema('"string"', "AVRO"))
    bad = {
        b'{"event_id": "j1"}': "not Confluent wire format: magic byte 0x7b",
        b"\x00" + struct.pack(">I", 987654) + good[1][5:]: "unknown schema id 987654",
        b"\x00" + struct.pack(">I", avro_id) + b"\x00\x02a": f"schema id {avro_id} is AVRO, expected PROTOBUF",
        good[2][:-3]: f"Protobuf decode failed at schema id {proto_id}: ",
        good[3][:5] + b"\x02\x0a" + good[3][7:]: f"Protobuf message indexes at schema id {proto_id}: no message at index [5]",
        good[4][:5] + b"\x02\x00" + good[4][7:]: f"schema id {proto_id}: the message is {PACKAGE}.Envelope",
        b"\x00\x00": "message shorter than 5 bytes",
    }
    messages = [(str(e.user_id).encode(), v) for e, v in zip(events, good)]
    for j, payload in enumerate(bad):
        messages.insert(37 * (j + 1), (b"bad", payload))
    produce_reported(bootstrap, topic, messages)

    decoder = ProtobufDecoder(RegistryHttpSource(url, timeout_s=10), PAYMENTS_PROTO, message=f"{PACKAGE}.Payment")
    name = f"proto-{uuid.uuid4().hex[:6]}"
    pipeline = Pipeline(name).source(topic).decode(decoder).sink("archive", to="archive", time_column="event_ts")
    fabric.run_pipeline(pipeline)
    try:
        deadline = time.monotonic() + 180
        while True:
            s = fabric.pipeline_status(name)["summary"]
            if s["processed"] + s["dead_lettered"] >= len(messages) and s["caught_up"]:
                break
            assert time.monotonic() < deadline, f"{name}: {s}"
            time.sleep(0.2)
        assert (s["processed"], s["dead_lettered"]) == (len(events), len(bad))
    finally:
        fabric.stop_pipeline(name)  # drains: the archive is flushed and checkpointed

    archive = open_location(fabric.config.storage_root, fabric.config.storage).child("archive", name, topic)
    rows = [r for path, *_ in archived_files(archive) for r in pq.read_table(archive.fs.open(path, "rb")).to_pylist()]
    by_id = {r["event_id"]: r for r in rows}
    assert len(rows) == len(by_id) == len(events)
    for e in events:
        r = by_id[e.event_id]
        assert (r["user_id"], r["amount"], r["currency"], r["tags"]) == (
            e.user_id, e.amount, payments_pb2.Currency.Name(e.currency), list(e.tags))
        assert r["event_ts"] == dt.datetime.fromtimestamp(e.event_ts.ToMilliseconds() / 1000, dt.timezone.utc)
        assert r["note"] == (e.note if e.HasField("note") else None)
        assert r["card"] == ({"brand": e.card.brand, "last4": e.card.last4} if e.HasField("card") else None)

    letters = read_topic(bootstrap, pipeline.dead_letters)
    reasons = {m.value(): dict((k, v.decode()) for k, v in m.headers() or [])["fabric.reason"] for m in letters}
    assert len(letters) == len(bad)
    for payload, reason in bad.items():
        assert reasons[payload].startswith(reason), (payload, reasons[payload])
