"""ProtobufDecoder: Confluent framing with message indexes, columns of every kind, evolution, dead-letter reasons."""

from __future__ import annotations

import datetime as dt
import pickle

import pyarrow as pa
import pytest
from google.protobuf import message_factory

from fabric_ray.governance.protobuf import parse_protobuf
from fabric_ray.governance.registry import SchemaRegistry
from fabric_ray.governance.registry_store import MemoryRegistryStore
from fabric_ray.streams.protobuf_codec import ProtobufDecoder, message_indexes, protobuf_to_arrow
from fabric_ray.streams.schema_source import LocalRegistrySource, RegisteredSchema

PAYMENT = """syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
import "google/protobuf/wrappers.proto";

message Payment {
  string event_id = 1;
  int64 user_id = 2;
  double amount = 3;
  Currency currency = 4;
  google.protobuf.Timestamp event_ts = 5;
  optional string note = 6;
  repeated string tags = 7;
  Card card = 8;
  map<string, int32> counts = 9;
  google.protobuf.Int64Value limit = 10;
  repeated Card history = 11;
  message Card { string brand = 1; uint32 last4 = 2; }
}
enum Currency { EUR = 0; USD = 1; }
"""


def _frame(schema_id: int, body: bytes, indexes: bytes = b"\x00") -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + indexes + body


@pytest.fixture
def registry():
    return SchemaRegistry(MemoryRegistryStore())


def _cls(text: str, name: str):
    return message_factory.GetMessageClass(parse_protobuf(text).pool.FindMessageTypeByName(name))


def test_every_kind_of_field_becomes_its_column(registry):
    sid = registry.register("pay-value", PAYMENT, "PROTOBUF")
    Payment = _cls(PAYMENT, "shop.Payment")
    full = Payment(
        event_id="e1", user_id=7, amount=2.5, currency=1, note="hi", tags=["a", "b"],
        card=Payment.Card(brand="visa", last4=4242), counts={"x": 3}, history=[Payment.Card(brand="amex", last4=1)],
    )
    full.event_ts.FromMilliseconds(1_795_660_000_123)
    full.limit.value = 50
    empty = Payment(event_id="e2")
    decoder = ProtobufDecoder(LocalRegistrySource(registry), PAYMENT)
    out = decoder.decode([_frame(sid, full.SerializeToString()), _frame(sid, empty.SerializeToString())])
    assert out.rejected == [] and out.kept.tolist() == [0, 1]
    assert out.table.schema == decoder.schema
    rows = out.table.to_pylist()
    assert rows[0] == {
        "event_id": "e1", "user_id": 7, "amount": 2.5, "currency": "USD",
        "event_ts": dt.datetime.fromtimestamp(1_795_660_000.123, tz=dt.timezone.utc), "note": "hi",
        "tags": ["a", "b"], "card": {"brand": "visa", "last4": 4242}, "counts": [("x", 3)], "limit": 50,
        "history": [{"brand": "amex", "last4": 1}],
    }
    assert rows[1] == {
        "event_id": "e2", "user_id": 0, "amount": 0.0, "currency": "EUR", "event_ts": None, "note": None,
        "tags": [], "card": None, "counts": [], "limit": None, "history": [],
    }
    assert decoder.required == ("event_id", "user_id", "amount", "currency", "tags", "counts", "history")


def test_arrow_types():
    schema = protobuf_to_arrow(parse_protobuf(PAYMENT).pool.FindMessageTypeByName("shop.Payment"))
    assert schema.field("currency").type == pa.string()
    assert schema.field("event_ts").type == pa.timestamp("us", tz="UTC")
    assert schema.field("card").type == pa.struct([pa.field("brand", pa.string(), False), pa.field("last4", pa.uint32(), False)])
    assert schema.field("counts").type == pa.map_(pa.string(), pa.int32())
    assert schema.field("limit").type == pa.int64() and schema.field("limit").nullable


def test_recursive_message_is_refused_when_the_decoder_is_made(registry):
    tree = 'syntax = "proto3"; message Node { string name = 1; repeated Node children = 2; }'
    with pytest.raises(ValueError, match="field 'Node.children': message Node is recursive"):
        ProtobufDecoder(LocalRegistrySource(registry), tree)


def test_message_indexes_pick_a_nested_message(registry):
    text = 'syntax = "proto3"; message A { int32 a = 1; } message B { message Inner { string s = 1; } int32 b = 1; }'
    sid = registry.register("b-value", text, "PROTOBUF")
    Inner = _cls(text, "B.Inner")
    decoder = ProtobufDecoder(LocalRegistrySource(registry), text, message="B.Inner")
    # indexes [1, 0] as zig-zag varints: count 2 -> 0x04, 1 -> 0x02, 0 -> 0x00
    good = _frame(sid, Inner(s="deep").SerializeToString(), b"\x04\x02\x00")
    first = _frame(sid, b"\x08\x01", b"\x00")  # message A
    missing = _frame(sid, b"", b"\x02\x0a")  # [5]: no such message
    truncated = _frame(sid, b"", b"\x04\x02")
    out = decoder.decode([good, first, missing, truncated])
    assert out.table.to_pylist() == [{"s": "deep"}]
    assert out.rejected == [
        (1, f"schema id {sid}: the message is A, the decoder reads B.Inner"),
        (2, f"Protobuf message indexes at schema id {sid}: no message at index [5] (level 0 has 2)"),
        (3, f"Protobuf message indexes at schema id {sid}: message indexes truncated"),
    ]


def test_message_indexes():
    assert message_indexes(b"\x00", 0, 1) == ([0], 1)
    assert message_indexes(b"\x06\x02\x04\x06", 0, 4) == ([1, 2, 3], 4)
    with pytest.raises(ValueError, match="truncated"):
        message_indexes(b"\x06\x02", 0, 2)


def test_evolution_by_field_number_and_incompatible_writers_rejected(registry):
    v1 = 'syntax = "proto3"; message P { int64 id = 1; string sku = 2; }'
    v2 = 'syntax = "proto3"; message P { int64 id = 1; string product = 2; double price = 3; }'
    bad = 'syntax = "proto3"; message P { string id = 1; }'
    registry.set_config("NONE", "p-value")
    ids = [registry.register("p-value", t, "PROTOBUF") for t in (v1, v2, bad)]
    P1, P2, Bad = _cls(v1, "P"), _cls(v2, "P"), _cls(bad, "P")
    decoder = ProtobufDecoder(LocalRegistrySource(registry), v2)
    out = decoder.decode([
        _frame(ids[0], P1(id=1, sku="a").SerializeToString()),
        _frame(ids[1], P2(id=2, product="b", price=9.5).SerializeToString()),
        _frame(ids[2], Bad(id="x").SerializeToString()),
    ])
    assert out.table.to_pylist() == [{"id": 1, "product": "a", "price": 0.0}, {"id": 2, "product": "b", "price": 9.5}]
    assert out.rejected == [(2, (
        f"writer schema id {ids[2]} cannot be read as the reader schema: FIELD_SCALAR_KIND_CHANGED #/P/1: field 'id' "
        "(line 1 of the new schema): its scalar kind changed, from string to int64, which is not wire-compatible"
    ))]


def test_without_reader_schema_the_first_writer_is_adopted(registry):
    text = 'syntax = "proto3"; message P { int64 id = 1; }'
    sid = registry.register("p-value", text, "PROTOBUF")
    decoder = ProtobufDecoder(LocalRegistrySource(registry))
    with pytest.raises(LookupError):
        decoder.schema
    out = decoder.decode([_frame(sid, _cls(text, "P")(id=3).SerializeToString())])
    assert out.table.to_pylist() == [{"id": 3}]
    assert decoder.schema.names == ["id"]


def test_bad_messages_each_get_a_reason(registry):
    sid = registry.register("pay-value", PAYMENT, "PROTOBUF")
    json_id = registry.register("j-value", '{"type": "object"}', "JSON")
    avro_id = registry.register("a-value", '"string"')
    Payment = _cls(PAYMENT, "shop.Payment")
    good = Payment(event_id="ok", card=Payment.Card(brand="v")).SerializeToString()
    decoder = ProtobufDecoder(LocalRegistrySource(registry), PAYMENT, required=["card"])
    out = decoder.decode([
        None, b'{"a": 1}', b"\x00\x00", _frame(json_id, b"{}"), _frame(avro_id, b"\x02a"), _frame(sid, good),
        _frame(sid, good[:-2]), _frame(sid, Payment(event_id="no card").SerializeToString()), _frame(777, good),
    ])
    assert out.kept.tolist() == [5]
    reasons = dict(out.rejected)
    assert reasons == {
        0: "empty payload (tombstone)",
        1: "not Confluent wire format: magic byte 0x7b",
        2: "message shorter than 5 bytes",
        3: f"schema id {json_id} is JSON, expected PROTOBUF",
        4: f"schema id {avro_id} is AVRO, expected PROTOBUF",
        6: reasons[6],
        7: "missing required field 'card'",
        8: "unknown schema id 777",
    }
    assert reasons[6].startswith(f"Protobuf decode failed at schema id {sid}: Error parsing message")


def test_schema_references_are_resolved_through_the_source(registry):
    money = 'syntax = "proto3"; package fin; message Money { int64 units = 1; }'
    registry.register("money", money, "PROTOBUF")
    text = 'syntax = "proto3"; import "fin/money.proto"; message P { fin.Money m = 1; string id = 2; }'
    refs = [{"name": "fin/money.proto", "subject": "money", "version": 1}]
    sid = registry.register("p-value", text, "PROTOBUF", refs)
    P = message_factory.GetMessageClass(parse_protobuf(text, {"fin/money.proto": money}).pool.FindMessageTypeByName("P"))
    body = P(id="x", m={"units": 12}).SerializeToString()
    out = ProtobufDecoder(LocalRegistrySource(registry)).decode([_frame(sid, body)])
    assert out.table.to_pylist() == [{"m": {"units": 12}, "id": "x"}]
    # A reader schema with imports of its own; it still does after a trip through pickle (to a Ray actor).
    reader = ProtobufDecoder(_Fixed({sid: LocalRegistrySource(registry).schema(sid)}), text, imports={"fin/money.proto": money})
    assert reader.schema.field("m").type == pa.struct([pa.field("units", pa.int64(), False)])
    assert pickle.loads(pickle.dumps(reader)).schema == reader.schema
    # A source without reference look-ups rejects, naming why.
    plain = _Fixed({sid: LocalRegistrySource(registry).schema(sid)})
    out = ProtobufDecoder(plain).decode([_frame(sid, body)])
    assert out.rejected == [(0, f"schema id {sid} has a reference the registry cannot resolve: the schema source _Fixed "
                                "cannot look references up")]


class _Fixed:
    """A picklable source of fixed schemas (a registry's lock does not pickle; RegistryHttpSource does)."""

    def __init__(self, schemas: dict[int, RegisteredSchema]) -> None:
        self.schemas = schemas

    def schema(self, schema_id: int) -> RegisteredSchema:
        return self.schemas[schema_id]


def test_decoder_pickles_for_ray():
    sid = 3
    source = _Fixed({sid: RegisteredSchema(sid, "PROTOBUF", PAYMENT)})
    decoder = pickle.loads(pickle.dumps(ProtobufDecoder(source, PAYMENT, required=["card"])))
    Payment = decoder.message_class
    out = decoder.decode([_frame(sid, Payment(event_id="p", card=Payment.Card(last4=1)).SerializeToString())])
    assert out.table.column("card").to_pylist() == [{"brand": "", "last4": 1}]
    assert "card" in decoder.required
