"""fabric_ray.streams.confluent_codec: Confluent wire-format Avro, JSON Schema and raw payloads.

Schemas live in a real in-memory :class:`SchemaRegistry` read through ``LocalRegistrySource``.
Most Avro tests run twice: through the columnar reader and through the fastavro path, which
must agree row for row.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import pickle
import random
import struct
import uuid

import fastavro
import numpy as np
import pyarrow as pa
import pytest

from fabric_ray.governance.registry import SchemaRegistry
from fabric_ray.governance.registry_store import MemoryRegistryStore
from fabric_ray.streams import confluent_codec
from fabric_ray.streams.codec import Decoder
from fabric_ray.streams.confluent_codec import AvroDecoder, JsonSchemaDecoder, RawDecoder, split_wire_format
from fabric_ray.streams.json_codec import JsonDecoder
from fabric_ray.streams.aggregates import RunningTotals
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.processor import PipelineProcessor
from fabric_ray.streams.schema_source import LocalRegistrySource, RegistryHttpSource, RegistryUnavailable
from fabric_ray.testing import CollectingSink, MemorySource, run_local


def record(name, *fields, **extra):
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def fld(name, type_, **extra):
    return {"name": name, "type": type_, **extra}


def strip_logical(schema):
    if isinstance(schema, dict):
        return {k: strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical(v) for v in schema]
    return schema


def avro_body(schema, value) -> bytes:
    """Avro binary of ``value`` written with ``schema`` (logical types written as their stored values)."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(strip_logical(schema)), value)
    return out.getvalue()


def frame(schema_id: int, body: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + body


PAYMENT_V1 = record(
    "Payment",
    fld("user_id", "int"),
    fld("amount", "double"),
    fld("event_ts", {"type": "long", "logicalType": "timestamp-millis"}),
    fld("note", ["null", "string"], default=None),
    namespace="fabric.test",
)
PAYMENT_V2 = record(  # BACKWARD: int -> long, a defaulted field, a nullable field added
    "Payment",
    fld("user_id", "long"),
    fld("amount", "double"),
    fld("event_ts", {"type": "long", "logicalType": "timestamp-millis"}),
    fld("note", ["null", "string"], default=None),
    fld("currency", "string", default="EUR"),
    fld("channel", ["null", "string"], default=None),
    namespace="fabric.test",
)


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def v1(i: int, **changes) -> dict:
    base = {"user_id": i % 7, "amount": i * 0.5, "event_ts": 1_700_000_000_000 + i, "note": None if i % 3 else f"n{i}"}
    base.update(changes)
    return base


class Registry:
    """A registry and helpers to register schemas and frame messages."""

    def __init__(self) -> None:
        self.registry = SchemaRegistry(MemoryRegistryStore())
        self.source = LocalRegistrySource(self.registry)
        self._subjects = 0

    def register(self, schema, schema_type: str = "AVRO") -> int:
        self._subjects += 1  # a subject each: tests register deliberately incompatible schemas
        text = schema if isinstance(schema, str) else json.dumps(schema)
        return self.registry.register(f"s{self._subjects}-value", text, schema_type)


@pytest.fixture
def reg() -> Registry:
    return Registry()


@pytest.fixture(params=["columnar", "fastavro"])
def path(request, monkeypatch) -> str:
    """Run the test through each decoding path."""
    if request.param == "fastavro":
        monkeypatch.setattr(confluent_codec, "columnar_supported", lambda node: False)
    return request.param


# -- the happy path and every reason ----------------------------------------------------------


def test_decodes_good_messages_in_input_order(reg, path):
    sid = reg.register(PAYMENT_V1)
    rows = [v1(i) for i in range(50)]
    out = AvroDecoder(reg.source, PAYMENT_V1).decode([frame(sid, avro_body(PAYMENT_V1, r)) for r in rows])
    assert out.rejected == []
    assert out.kept.tolist() == list(range(50))
    got = out.table.to_pylist()
    assert [g["user_id"] for g in got] == [r["user_id"] for r in rows]
    assert [g["note"] for g in got] == [r["note"] for r in rows]
    assert got[5]["event_ts"] == EPOCH + dt.timedelta(milliseconds=rows[5]["event_ts"])
    assert out.table.schema.field("user_id").type == pa.int32()
    assert out.table.schema == AvroDecoder(reg.source, PAYMENT_V1).schema


def test_every_bad_message_gets_its_own_reason(reg, path):
    sid = reg.register(PAYMENT_V1)
    json_id = reg.register({"type": "object", "properties": {"a": {"type": "integer"}}}, "JSON")
    good = avro_body(PAYMENT_V1, v1(1))
    values = [
        frame(sid, good),                                   # 0 good
        b'{"user_id": 1, "amount": 2.0}',                   # 1 JSON on an Avro topic
        b"\x00\x00\x01",                                    # 2 too short
        frame(42, good),                                    # 3 unknown id
        frame(json_id, b'{"a": 1}'),                        # 4 a JSON Schema id
        frame(sid, good[:-2]),                              # 5 truncated
        frame(sid, good + b"\x01\x02\x03"),                 # 6 trailing bytes
        None,                                               # 7 tombstone
        b"",                                                # 8 empty (not a tombstone)
        frame(sid, avro_body(PAYMENT_V1, v1(9))),           # 9 good
    ]
    out = AvroDecoder(reg.source, PAYMENT_V1).decode(values)
    assert out.kept.tolist() == [0, 9]
    reasons = dict(out.rejected)
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert reasons[1] == "not Confluent wire format: magic byte 0x7b"
    assert reasons[2] == "message shorter than 5 bytes"
    assert reasons[3] == "unknown schema id 42"
    assert reasons[4] == f"schema id {json_id} is JSON, expected AVRO"
    assert reasons[5].startswith(f"Avro decode failed at schema id {sid}: ") and "truncated" in reasons[5]
    assert reasons[6] == f"Avro decode failed at schema id {sid}: 3 bytes left over after the record"
    assert reasons[7] == "empty payload (tombstone)"
    assert reasons[8] == "message shorter than 5 bytes"


def test_corrupt_values_are_rejected_by_the_columnar_reader(reg):
    schema = record(
        "R",
        fld("ok", "boolean"),
        fld("color", {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN"]}),
        fld("name", "string"),
        fld("n", "int"),
        fld("maybe", ["null", "long"]),
    )
    sid = reg.register(schema)
    good = avro_body(schema, {"ok": True, "color": "GREEN", "name": "ann", "n": 5, "maybe": 9})
    assert good[:3] == b"\x01\x02\x06"
    varint_5_bytes = b"\x80\x80\x80\x80\x10"  # zigzag 2**31: one past int's range
    values = [
        frame(sid, good),
        frame(sid, b"\x07" + good[1:]),                              # boolean byte 7
        frame(sid, b"\x01\x08" + good[2:]),                          # enum index 4
        frame(sid, b"\x01\x02\x06\xff\xfe\xfd" + good[6:]),          # invalid UTF-8
        frame(sid, good[:6] + varint_5_bytes + good[7:]),            # int out of range
        frame(sid, good[:7] + b"\x06" + good[8:]),                   # union branch 3
        frame(sid, good[:6] + b"\xff" * 11),                         # varint too long
        frame(sid, b"\x01\x02\x7f"),                                 # string length beyond the end
    ]
    out = AvroDecoder(reg.source, schema).decode(values)
    assert out.kept.tolist() == [0]
    prefix = f"Avro decode failed at schema id {sid}: "
    assert dict(out.rejected) == {
        1: prefix + "field 'ok': boolean byte 0x07 is not 0 or 1",
        2: prefix + "field 'color': 4 is not a symbol index (0..1)",
        3: prefix + "field 'name': string is not valid UTF-8",
        4: prefix + "field 'n': 2147483648 out of range for an Avro int",
        5: prefix + "field 'maybe': union branch 3 does not exist",
        6: prefix + "field 'n': varint longer than 10 bytes",
        7: prefix + "message truncated in field 'name'",
    }


def test_the_fastavro_path_rejects_corrupt_values_too(reg, monkeypatch):
    monkeypatch.setattr(confluent_codec, "columnar_supported", lambda node: False)
    schema = record("R", fld("n", "int"), fld("name", "string"))
    sid = reg.register(schema)
    good = avro_body(schema, {"n": 1, "name": "ann"})
    values = [frame(sid, good), frame(sid, good[:1] + b"\x06\xff\xfe\xfd"), frame(sid, b"\x80\x80\x80\x80\x10" + good[1:])]
    out = AvroDecoder(reg.source, schema).decode(values)
    assert out.kept.tolist() == [0]
    reasons = dict(out.rejected)
    assert reasons[1].startswith(f"Avro decode failed at schema id {sid}: UnicodeDecodeError")
    assert reasons[2].startswith(f"Avro decode failed at schema id {sid}: ") and "2147483648" in reasons[2]


def test_required_nullable_fields_are_checked_like_json(reg, path):
    sid = reg.register(PAYMENT_V1)
    decoder = AvroDecoder(reg.source, PAYMENT_V1, required=["note"])
    assert decoder.required == ("note", "user_id", "amount", "event_ts")
    out = decoder.decode([frame(sid, avro_body(PAYMENT_V1, v1(i))) for i in range(4)])
    assert out.kept.tolist() == [0, 3]
    assert out.rejected == [(1, "missing required field 'note'"), (2, "missing required field 'note'")]
    json_reason = JsonDecoder(pa.schema([("note", pa.string())]), required=["note"]).decode([b"{}"]).rejected[0][1]
    assert json_reason == "missing required field 'note'"
    with pytest.raises(ValueError, match=r"required fields \['nope'\] are not in the reader schema"):
        AvroDecoder(reg.source, PAYMENT_V1, required=["nope"])


def test_mixed_schema_ids_in_one_batch_keep_input_order(reg, path):
    v1_id, v2_id = reg.register(PAYMENT_V1), reg.register(PAYMENT_V2)
    v2_row = {**v1(0), "currency": "USD", "channel": "web"}
    values = [frame(v2_id if i % 2 else v1_id, avro_body(PAYMENT_V2 if i % 2 else PAYMENT_V1, v2_row if i % 2 else v1(i))) for i in range(10)]
    out = AvroDecoder(reg.source, PAYMENT_V2).decode(values)
    assert out.kept.tolist() == list(range(10))
    assert [r["currency"] for r in out.table.to_pylist()] == ["EUR", "USD"] * 5


# -- schema evolution -------------------------------------------------------------------------


def test_v1_data_read_as_v2_takes_defaults_and_promotes_int_to_long(reg, path):
    sid = reg.register(PAYMENT_V1)
    out = AvroDecoder(reg.source, PAYMENT_V2).decode([frame(sid, avro_body(PAYMENT_V1, v1(3)))])
    assert out.rejected == []
    assert out.table.schema.field("user_id").type == pa.int64()
    row = out.table.to_pylist()[0]
    assert row["user_id"] == 3 and row["currency"] == "EUR" and row["channel"] is None and row["note"] == "n3"


def test_v2_data_read_as_v1_drops_the_new_fields(reg, path):
    v2_id = reg.register(PAYMENT_V2)
    reader = {**PAYMENT_V1, "fields": [fld("user_id", "long"), *PAYMENT_V1["fields"][1:]]}
    body = avro_body(PAYMENT_V2, {**v1(4), "currency": "USD", "channel": "app"})
    out = AvroDecoder(reg.source, reader).decode([frame(v2_id, body)])
    assert out.table.column_names == ["user_id", "amount", "event_ts", "note"]
    assert out.table.to_pylist()[0]["user_id"] == 4


def test_enums_aliases_nested_records_and_promotions_resolve(reg, path):
    writer = record(
        "R",
        fld("kind", {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}),
        fld("amount", "int"),
        fld("ratio", "float"),
        fld("raw", "string"),
        fld("addr", record("Addr", fld("city", "string"), fld("zip", "int"))),
    )
    reader = record(
        "R",
        fld("kind", {"type": "enum", "name": "Kind", "symbols": ["C", "A"], "default": "A"}),
        fld("amount_total", "double", aliases=["amount"]),
        fld("ratio", "double"),
        fld("raw", "bytes"),
        fld("addr", record("Addr", fld("zip", ["null", "long"]), fld("country", "string", default="NL"))),
        fld("tags", {"type": "array", "items": "string"}, default=["x"]),
    )
    sid = reg.register(writer)
    bodies = [
        avro_body(writer, {"kind": k, "amount": i, "ratio": 0.5, "raw": "é", "addr": {"city": "Gouda", "zip": 2800 + i}})
        for i, k in enumerate(["A", "B", "C"])
    ]
    out = AvroDecoder(reg.source, reader).decode([frame(sid, b) for b in bodies])
    assert out.rejected == []
    rows = out.table.to_pylist()
    assert [r["kind"] for r in rows] == ["A", "A", "C"]  # B is unknown to the reader: its default
    assert out.table.column("kind").type == pa.dictionary(pa.int32(), pa.string())
    assert [r["amount_total"] for r in rows] == [0.0, 1.0, 2.0]
    assert rows[0]["ratio"] == 0.5 and rows[0]["raw"] == "é".encode()
    assert rows[2]["addr"] == {"zip": 2802, "country": "NL"}
    assert rows[0]["tags"] == ["x"]


def test_unreadable_writer_schemas_are_rejected_with_the_checker_reason(reg, path):
    writer = {**PAYMENT_V1, "fields": [fld("user_id", "string"), *PAYMENT_V1["fields"][1:]]}
    sid = reg.register(writer)
    out = AvroDecoder(reg.source, PAYMENT_V1).decode([frame(sid, avro_body(writer, v1(1, user_id="u1")))] * 2)
    expected = (
        f"writer schema id {sid} cannot be read as the reader schema: record 'fabric.test.Payment' field 'user_id': "
        "reader type int cannot read writer type string"
    )
    assert out.rejected == [(0, expected), (1, expected)]


def test_without_a_reader_schema_the_first_writer_schema_is_the_reader(reg, path):
    v1_id, v2_id = reg.register(PAYMENT_V1), reg.register(PAYMENT_V2)
    v1_plus = {**PAYMENT_V1, "fields": [*PAYMENT_V1["fields"], fld("currency", "string", default="EUR")]}
    plus_id = reg.register(v1_plus)
    other = reg.register(record("Other", fld("x", "string")))
    decoder = AvroDecoder(reg.source)
    with pytest.raises(LookupError, match="no reader schema yet"):
        decoder.schema
    assert decoder.decode([]).table.num_rows == 0
    out = decoder.decode([frame(v1_id, avro_body(PAYMENT_V1, v1(1)))])
    assert decoder.schema.names == ["user_id", "amount", "event_ts", "note"]
    assert decoder.required == ("user_id", "amount", "event_ts")
    assert out.kept.tolist() == [0]
    later = decoder.decode([
        frame(plus_id, avro_body(v1_plus, {**v1(2), "currency": "USD"})),
        frame(other, avro_body(record("Other", fld("x", "string")), {"x": "a"})),
        frame(v2_id, avro_body(PAYMENT_V2, {**v1(2), "currency": "USD", "channel": None})),
    ])
    assert later.table.to_pylist() == [v1(2, event_ts=EPOCH + dt.timedelta(milliseconds=v1(2)["event_ts"]))]
    assert [i for i, _ in later.rejected] == [1, 2]
    assert later.rejected[0][1].startswith(f"writer schema id {other} cannot be read as the reader schema: ")
    assert later.rejected[1][1].endswith("field 'user_id': reader type int cannot read writer type long")


def test_a_first_schema_without_arrow_equivalent_is_not_adopted(reg):
    odd = record("Odd", fld("x", ["int", "string"]))
    odd_id, good_id = reg.register(odd), reg.register(PAYMENT_V1)
    decoder = AvroDecoder(reg.source)
    out = decoder.decode([frame(odd_id, avro_body(odd, {"x": 1})), frame(good_id, avro_body(PAYMENT_V1, v1(0)))])
    assert out.rejected == [(0, f"schema id {odd_id} cannot be the reader schema: field 'x': union[int, string] has no Arrow "
                                "equivalent; only [\"null\", T] unions are supported")]
    assert out.kept.tolist() == [1]


# -- columnar and fastavro agree ----------------------------------------------------------------

COLOR = {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]}
ADDR = record("Addr", fld("city", "string"), fld("zip", ["null", "int"]))
RICH = record(
    "Rich",
    fld("b", "boolean"),
    fld("i", "int"),
    fld("l", "long"),
    fld("f", "float"),
    fld("d", "double"),
    fld("s", "string"),
    fld("by", "bytes"),
    fld("fx", {"type": "fixed", "name": "F4", "size": 4}),
    fld("e", COLOR),
    fld("ts", {"type": "long", "logicalType": "timestamp-millis"}),
    fld("tu", {"type": "long", "logicalType": "timestamp-micros"}),
    fld("dt", {"type": "int", "logicalType": "date"}),
    fld("tm", {"type": "int", "logicalType": "time-millis"}),
    fld("dec", {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 3}),
    fld("decf", {"type": "fixed", "name": "D8", "size": 8, "logicalType": "decimal", "precision": 18, "scale": 2}),
    fld("big", {"type": "bytes", "logicalType": "decimal", "precision": 50, "scale": 0}),
    fld("u", {"type": "string", "logicalType": "uuid"}),
    fld("ns", ["null", "string"]),
    fld("nl", ["long", "null"]),
    fld("addr", ADDR),
    fld("naddr", ["null", "Addr"]),
    fld("ne", ["null", "Color"]),
    fld("nothing", "null"),
)


def _twos(n: int, size: int | None = None) -> bytes:
    size = size or max(1, (n.bit_length() + 8) // 8) if n else (size or 0)
    return n.to_bytes(size, "big", signed=True)


def rich_row(rng: random.Random) -> dict:
    text = "".join(rng.choice("aé中🙂 ") for _ in range(rng.randrange(0, 12)))
    maybe = lambda v: v if rng.random() < 0.6 else None  # noqa: E731
    return {
        "b": rng.random() < 0.5,
        "i": rng.randint(-(2**31), 2**31 - 1),
        "l": rng.randint(-(2**63), 2**63 - 1),
        "f": rng.uniform(-1e6, 1e6),
        "d": rng.uniform(-1e300, 1e300),
        "s": text,
        "by": rng.randbytes(rng.randrange(0, 20)),
        "fx": rng.randbytes(4),
        "e": rng.choice(COLOR["symbols"]),
        "ts": rng.randint(0, 2**41),
        "tu": rng.randint(-(2**50), 2**50),
        "dt": rng.randint(-10_000, 40_000),
        "tm": rng.randint(0, 86_399_999),
        "dec": _twos(rng.randint(-(10**19), 10**19)),
        "decf": _twos(rng.randint(-(10**17), 10**17), 8),
        "big": _twos(rng.randint(-(10**49), 10**49)),
        "u": str(uuid.UUID(int=rng.getrandbits(128))),
        "ns": maybe(text),
        "nl": maybe(rng.randint(-5, 5)),
        "addr": {"city": text[:3], "zip": maybe(rng.randint(0, 99999))},
        "naddr": maybe({"city": "x", "zip": None}),
        "ne": maybe(rng.choice(COLOR["symbols"])),
        "nothing": None,
    }


def test_columnar_and_fastavro_paths_agree_on_every_supported_type(reg, monkeypatch):
    sid = reg.register(RICH)
    rng = random.Random(7)
    rows = [rich_row(rng) for _ in range(300)]
    rows[0]["dec"] = b""  # zero bytes: the decimal 0
    values = [frame(sid, avro_body(RICH, r)) for r in rows]
    values[10] = values[10][:-1]  # one truncated message among them
    columnar_decoder = AvroDecoder(reg.source, RICH)
    columnar = columnar_decoder.decode(values)
    assert [p.columnar for p in columnar_decoder._plans.values()] == [True]
    monkeypatch.setattr(confluent_codec, "columnar_supported", lambda node: False)
    fast = AvroDecoder(reg.source, RICH).decode(values)
    assert columnar.kept.tolist() == fast.kept.tolist() == [i for i in range(300) if i != 10]
    assert [i for i, _ in columnar.rejected] == [i for i, _ in fast.rejected] == [10]
    assert columnar.table.equals(fast.table)
    got = columnar.table.to_pylist()[1]
    want = rows[1]
    assert got["dec"] == decimal.Decimal(int.from_bytes(want["dec"], "big", signed=True)).scaleb(-3)
    assert got["decf"] == decimal.Decimal(int.from_bytes(want["decf"], "big", signed=True)).scaleb(-2)
    assert got["big"] == decimal.Decimal(int.from_bytes(want["big"], "big", signed=True))
    assert columnar.table.column("big").type == pa.decimal256(50, 0)
    assert columnar.table.to_pylist()[0]["dec"] == decimal.Decimal(0).scaleb(-3)
    assert got["u"] == want["u"] and got["s"] == want["s"] and got["by"] == want["by"]
    assert got["dt"] == dt.date(1970, 1, 1) + dt.timedelta(days=want["dt"])
    assert got["e"] == want["e"] and got["ne"] == want["ne"] and got["naddr"] == want["naddr"]
    assert got["l"] == want["l"] and got["i"] == want["i"] and got["nothing"] is None


def test_random_corruption_never_breaks_a_batch(reg, path):
    sid = reg.register(RICH)
    rng = random.Random(3)
    good = [frame(sid, avro_body(RICH, rich_row(rng))) for _ in range(40)]
    decoder = AvroDecoder(reg.source, RICH)
    for _ in range(40):
        values, intact = [], []
        for g in good:
            if rng.random() < 0.7:
                values.append(g)
                intact.append(len(values) - 1)
                continue
            b = bytearray(g)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(5, len(b))] = rng.randrange(256)
            if rng.random() < 0.3:
                b = b[: rng.randrange(5, len(b))]
            values.append(bytes(b) + rng.randbytes(rng.randrange(0, 3)))
        out = decoder.decode(values)
        assert sorted(out.kept.tolist() + [i for i, _ in out.rejected]) == list(range(len(values)))
        assert set(intact) <= set(out.kept.tolist())


def test_a_value_arrow_refuses_is_found_by_bisection_and_rejected_alone(reg, path):
    schema = record("R", fld("id", "int"), fld("dec", {"type": "bytes", "logicalType": "decimal", "precision": 20, "scale": 3}))
    sid = reg.register(schema)
    values = [frame(sid, avro_body(schema, {"id": i, "dec": _twos(i)})) for i in range(20)]
    values[13] = frame(sid, avro_body(schema, {"id": 13, "dec": _twos(2**130)}))  # 17 bytes: more than decimal128
    out = AvroDecoder(reg.source, schema).decode(values)
    assert out.kept.tolist() == [i for i in range(20) if i != 13]
    assert out.rejected == [(13, f"Avro decode failed at schema id {sid}: ValueError: a decimal of 17 bytes does not fit decimal128(20, 3)")]


def test_arrays_maps_and_other_unions_go_through_fastavro(reg):
    schema = record(
        "R",
        fld("tags", {"type": "array", "items": "string"}),
        fld("attrs", {"type": "map", "values": ["null", {"type": "int", "logicalType": "date"}]}),
        fld("n", ["int", "long"]),
        fld("colors", {"type": "array", "items": COLOR}),
    )
    reader = {**schema, "fields": [*schema["fields"][:2], fld("n", "long"), schema["fields"][3]]}
    sid = reg.register(schema)
    values = [
        frame(sid, avro_body(schema, {"tags": ["a", "b"], "attrs": {"k": 1, "z": None}, "n": 5, "colors": ["BLUE"]})),
        frame(sid, avro_body(schema, {"tags": [], "attrs": {}, "n": 2**40, "colors": []})[:-1]),
    ]
    out = AvroDecoder(reg.source, reader).decode(values)
    assert out.table.to_pylist() == [
        {"tags": ["a", "b"], "attrs": [("k", dt.date(1970, 1, 2)), ("z", None)], "n": 5, "colors": ["BLUE"]}
    ]
    assert out.rejected[0][0] == 1 and out.rejected[0][1].startswith(f"Avro decode failed at schema id {sid}: ")


# -- outages, pickling, the processor ------------------------------------------------------------


class FlakySource:
    """Fails with RegistryUnavailable ``failures`` times, then answers from ``inner``."""

    def __init__(self, inner, failures: int) -> None:
        self.inner, self.failures, self.calls = inner, failures, 0

    def schema(self, schema_id):
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise RegistryUnavailable("schema registry at http://sr unreachable: ConnectError")
        return self.inner.schema(schema_id)


def payment_pipeline(decoder) -> Pipeline:
    totals = RunningTotals("user_id", "amount", "event_ts", 60_000, {"key": "user_id", "count": "n", "sum": "total"})
    return Pipeline("payments").source("payments").decode(decoder).aggregate(totals).sink("features")


def test_a_registry_outage_raises_and_the_processor_retries_the_batch(reg):
    sid = reg.register(PAYMENT_V1)
    source = FlakySource(reg.source, failures=2)
    decoder = AvroDecoder(source, PAYMENT_V1)
    values = [frame(sid, avro_body(PAYMENT_V1, v1(i))) for i in range(6)] + [b"junk"]
    with pytest.raises(RegistryUnavailable):
        decoder.decode(values)
    src = MemorySource("payments", {0: values})
    features, dead = CollectingSink(), CollectingSink()
    proc = PipelineProcessor(src, payment_pipeline(decoder), {"features": features}, dead, poll_timeout_s=0, checkpoint_interval_s=0)
    with pytest.raises(RegistryUnavailable):
        proc.next_batch()
    assert dead.items == [] and proc.stats.read == 0 and src.committed == {}
    assert proc.next_batch() == 7  # the same batch, decoded now
    assert proc.stats.processed == 6 and [d.offset for d in dead.items] == [6]
    assert src.committed == {0: 7}
    assert proc.next_batch() == 0


def test_avro_decoder_drives_a_pipeline(reg):
    sid = reg.register(PAYMENT_V1)
    decoder: Decoder = AvroDecoder(reg.source, PAYMENT_V1)
    values = [frame(sid, avro_body(PAYMENT_V1, v1(i, user_id=i % 2))) for i in range(10)] + [b'{"user_id": 1}']
    run = run_local(payment_pipeline(decoder), {0: values})
    dead = run.dead_letters
    latest = run.latest("features", "user_id")
    assert latest[0]["n"] == 5 and latest[0]["total"] == sum(i * 0.5 for i in range(0, 10, 2))
    assert [d.reason for d in dead.items] == ["not Confluent wire format: magic byte 0x7b"]
    nullable_key = record("P", fld("user_id", ["null", "long"]), fld("amount", "double"), fld("event_ts", "long"))
    nid = reg.register(nullable_key)
    rows = [{"user_id": None, "amount": 1.0, "event_ts": 1}, {"user_id": 3, "amount": 2.0, "event_ts": 2}]
    run = run_local(payment_pipeline(AvroDecoder(reg.source, nullable_key)), {0: [frame(nid, avro_body(nullable_key, r)) for r in rows]})
    assert [d.reason for d in run.dead_letters.items] == ["aggregate: column 'user_id' is null"]
    assert run.latest("features", "user_id")[3]["n"] == 1


def test_decoders_pickle_for_ray_actors(reg):
    sid = reg.register(PAYMENT_V1)
    decoder = AvroDecoder(RegistryHttpSource("http://127.0.0.1:1/sr"), PAYMENT_V1)
    copy = pickle.loads(pickle.dumps(decoder))
    assert copy.schema == decoder.schema and copy.required == decoder.required
    local = AvroDecoder(reg.source, PAYMENT_V1)
    local.decode([frame(sid, avro_body(PAYMENT_V1, v1(1)))])
    local.source = decoder.source  # an in-process registry does not travel; an HTTP source does
    again = pickle.loads(pickle.dumps(local))
    assert again._plans == {} and again.schema == local.schema


def test_reader_schema_errors_name_the_problem(reg):
    with pytest.raises(ValueError, match="top-level Avro schema must be a record"):
        AvroDecoder(reg.source, '"long"')
    with pytest.raises(ValueError, match="field 'x': union"):
        AvroDecoder(reg.source, record("R", fld("x", ["int", "string"])))


# -- wire format -------------------------------------------------------------------------------


def test_split_wire_format_reads_ids_and_groups():
    values = [frame(300, b"a"), frame(7, b"bc"), frame(300, b""), b"\x01\x00\x00\x00\x07x"]
    frames = split_wire_format(values)
    assert frames.schema_ids.tolist() == [300, 7, 300, -1]
    assert [(sid, rows.tolist()) for sid, rows in frames.groups()] == [(7, [1]), (300, [0, 2])]
    assert frames.rejected == [(3, "not Confluent wire format: magic byte 0x01")]
    assert frames.data[frames.starts[1] : frames.ends[1]] == values[1]


# -- JSON Schema -------------------------------------------------------------------------------

PAYMENT_JSON = {
    "type": "object",
    "required": ["user_id", "amount"],
    "properties": {
        "user_id": {"type": "integer"},
        "amount": {"type": "number", "minimum": 0},
        "currency": {"type": "string"},
        "address": {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}},
    },
}


def test_json_schema_decoder_strips_the_header_and_learns_the_schema(reg):
    jid = reg.register(PAYMENT_JSON, "JSON")
    avro_id = reg.register(PAYMENT_V1)
    decoder = JsonSchemaDecoder(reg.source)
    values = [
        frame(jid, b'{"user_id": 1, "amount": 2.5, "currency": "EUR", "address": {"city": "Delft"}}'),
        frame(jid, b'{"user_id": 2}'),
        frame(jid, b"not json"),
        frame(avro_id, b"\x02"),
        frame(99, b"{}"),
        b'{"user_id": 3, "amount": 1}',
        None,
        frame(jid, b'{"user_id": 4, "amount": -1}'),  # violates minimum: only validate=True sees it
    ]
    out = decoder.decode(values)
    assert decoder.schema.names == ["user_id", "amount", "currency", "address"]
    assert all(f.nullable for f in decoder.schema)
    assert decoder.required == ("user_id", "amount")
    assert out.kept.tolist() == [0, 7]
    assert out.table.to_pylist()[0] == {"user_id": 1, "amount": 2.5, "currency": "EUR", "address": {"city": "Delft"}}
    assert out.rejected == [
        (1, "missing required field 'amount'"),
        (2, "not valid JSON: Expecting value at char 0"),
        (3, f"schema id {avro_id} is AVRO, expected JSON"),
        (4, "unknown schema id 99"),
        (5, "not Confluent wire format: magic byte 0x7b"),
        (6, "empty payload (tombstone)"),
    ]


def test_json_schema_validation_is_opt_in(reg):
    jid = reg.register(PAYMENT_JSON, "JSON")
    values = [frame(jid, b'{"user_id": 4, "amount": -1}'), frame(jid, b'{"user_id": 5, "amount": 1, "address": {}}'),
              frame(jid, b'{"user_id": 6, "amount": 1}'), frame(jid, b"{oops")]
    out = JsonSchemaDecoder(reg.source, validate=True).decode(values)
    assert out.kept.tolist() == [2]
    assert out.rejected == [
        (0, f"JSON Schema validation failed at schema id {jid}: #/amount: -1 is less than the minimum of 0"),
        (1, f"JSON Schema validation failed at schema id {jid}: #/address: 'city' is a required property"),
        (3, "not valid JSON: Expecting property name enclosed in double quotes at char 1"),
    ]


def test_json_schema_decoder_with_a_given_schema(reg):
    jid = reg.register(PAYMENT_JSON, "JSON")
    schema = pa.schema([("user_id", pa.int64()), ("amount", pa.float64())])
    decoder = JsonSchemaDecoder(reg.source, schema, required=["user_id"])
    assert decoder.schema == schema and decoder.required == ("user_id",)
    out = decoder.decode([frame(jid, b'{"user_id": 1, "amount": 2, "currency": "x"}')])
    assert out.table.to_pylist() == [{"user_id": 1, "amount": 2.0}]
    with pytest.raises(LookupError, match="no schema yet"):
        JsonSchemaDecoder(reg.source).schema


def test_json_schema_decoder_outage_raises(reg):
    jid = reg.register(PAYMENT_JSON, "JSON")
    with pytest.raises(RegistryUnavailable):
        JsonSchemaDecoder(FlakySource(reg.source, 1)).decode([frame(jid, b"{}")])


# -- raw ---------------------------------------------------------------------------------------


def test_raw_decoder_keeps_bytes_and_rejects_tombstones():
    out = RawDecoder().decode([b"\x00abc", None, b"", b"{}"])
    assert out.table.schema == RawDecoder.schema
    assert out.table.column("value").to_pylist() == [b"\x00abc", b"", b"{}"]
    assert out.kept.tolist() == [0, 2, 3] and out.rejected == [(1, "empty payload (tombstone)")]
    assert RawDecoder().decode([b"x"]).kept.tolist() == [0]
    assert isinstance(RawDecoder().decode([]).kept, np.ndarray)
