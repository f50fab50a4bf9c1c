"""fabric_ray.governance.arrow_schema: Avro and JSON Schema to Arrow schemas."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from fabric_ray.governance.arrow_schema import avro_to_arrow, avro_type_to_arrow, json_schema_to_arrow


def record(name, *fields, **extra):
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def fld(name, type_, **extra):
    return {"name": name, "type": type_, **extra}


def one(avro_type) -> pa.Field:
    return avro_to_arrow(record("R", fld("x", avro_type))).field("x")


# -- Avro -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "avro_type, arrow_type",
    [
        ("boolean", pa.bool_()),
        ("int", pa.int32()),
        ("long", pa.int64()),
        ("float", pa.float32()),
        ("double", pa.float64()),
        ("bytes", pa.binary()),
        ("string", pa.string()),
        ({"type": "fixed", "name": "MD5", "size": 16}, pa.binary(16)),
        ({"type": "enum", "name": "Suit", "symbols": ["H", "S"]}, pa.dictionary(pa.int32(), pa.string())),
        ({"type": "int", "logicalType": "date"}, pa.date32()),
        ({"type": "int", "logicalType": "time-millis"}, pa.time32("ms")),
        ({"type": "long", "logicalType": "time-micros"}, pa.time64("us")),
        ({"type": "long", "logicalType": "timestamp-millis"}, pa.timestamp("ms", tz="UTC")),
        ({"type": "long", "logicalType": "timestamp-micros"}, pa.timestamp("us", tz="UTC")),
        ({"type": "long", "logicalType": "local-timestamp-millis"}, pa.timestamp("ms")),
        ({"type": "long", "logicalType": "local-timestamp-micros"}, pa.timestamp("us")),
        ({"type": "long", "logicalType": "timestamp-nanos"}, pa.timestamp("ns", tz="UTC")),
        ({"type": "string", "logicalType": "uuid"}, pa.string()),
        ({"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}, pa.decimal128(10, 2)),
        ({"type": "bytes", "logicalType": "decimal", "precision": 50, "scale": 0}, pa.decimal256(50, 0)),
        ({"type": "fixed", "name": "D", "size": 8, "logicalType": "decimal", "precision": 18}, pa.decimal128(18, 0)),
    ],
)
def test_avro_types_map_to_arrow_and_are_not_nullable(avro_type, arrow_type):
    field = one(avro_type)
    assert field.type == arrow_type
    assert not field.nullable


@pytest.mark.parametrize(
    "avro_type",
    [
        {"type": "string", "logicalType": "date"},  # wrong underlying type
        {"type": "long", "logicalType": "no-such-thing"},
        {"type": "bytes", "logicalType": "decimal", "precision": 4, "scale": 9},  # scale > precision
        {"type": "fixed", "name": "F", "size": 2, "logicalType": "decimal", "precision": 9},  # 2 bytes hold 4 digits
    ],
)
def test_invalid_or_unknown_logical_types_fall_back_to_the_underlying_type(avro_type):
    underlying = {"string": pa.string(), "long": pa.int64(), "bytes": pa.binary(), "fixed": pa.binary(2)}
    assert one(avro_type).type == underlying[avro_type["type"]]


def test_nullable_unions_in_either_order_give_nullable_fields():
    schema = avro_to_arrow(record("R", fld("a", ["null", "long"]), fld("b", ["string", "null"]), fld("c", ["int"])))
    assert [(f.name, f.type, f.nullable) for f in schema] == [
        ("a", pa.int64(), True),
        ("b", pa.string(), True),
        ("c", pa.int32(), False),
    ]


def test_arrays_maps_and_nested_records():
    addr = record("Address", fld("city", "string"), fld("zip", ["null", "string"]))
    schema = avro_to_arrow(record(
        "R",
        fld("tags", {"type": "array", "items": "string"}),
        fld("attrs", {"type": "map", "values": ["null", "double"]}),
        fld("home", addr),
        fld("work", ["null", "Address"]),
    ))
    assert schema.field("tags").type == pa.list_(pa.field("item", pa.string(), nullable=False))
    attrs = schema.field("attrs").type
    assert isinstance(attrs, pa.MapType) and attrs.key_type == pa.string() and attrs.item_field.nullable
    home = schema.field("home").type
    assert pa.types.is_struct(home)
    assert [(f.name, f.nullable) for f in home] == [("city", False), ("zip", True)]
    assert schema.field("work").type == home and schema.field("work").nullable


def test_other_unions_are_refused_naming_the_field():
    nested = record("R", fld("pay", record("Pay", fld("amount", ["int", "string"]))))
    with pytest.raises(ValueError, match=r"field 'pay.amount': union\[int, string\] has no Arrow equivalent"):
        avro_to_arrow(nested)
    with pytest.raises(ValueError, match=r"field 'x': union\[null, int, string\]"):
        avro_to_arrow(record("R", fld("x", ["null", "int", "string"])))
    with pytest.raises(ValueError, match=r"field 'xs\[\]'"):
        avro_to_arrow(record("R", fld("xs", {"type": "array", "items": ["int", "string"]})))


def test_recursive_records_and_non_records_are_refused():
    linked = record("Node", fld("value", "long"), fld("next", ["null", "Node"]))
    with pytest.raises(ValueError, match="field 'next': recursive record 'Node'"):
        avro_to_arrow(linked)
    with pytest.raises(ValueError, match="top-level Avro schema must be a record; got long"):
        avro_to_arrow('"long"')


def test_accepts_text_dicts_and_type_helper():
    text = json.dumps(record("R", fld("n", "int")))
    assert avro_to_arrow(text) == avro_to_arrow(json.loads(text))
    assert avro_type_to_arrow(["null", "int"]) == (pa.int32(), True)


# -- JSON Schema ------------------------------------------------------------------------------


def obj(properties, required=(), **extra):
    return {"type": "object", "properties": properties, "required": list(required), **extra}


def test_json_scalars_and_required_decide_nullability():
    schema = json_schema_to_arrow(obj(
        {
            "id": {"type": "integer"},
            "amount": {"type": "number"},
            "note": {"type": "string"},
            "ok": {"type": "boolean"},
            "at": {"type": "string", "format": "date-time"},
            "maybe": {"type": ["integer", "null"]},
        },
        required=["id", "amount", "maybe"],
    ))
    assert [(f.name, f.type, f.nullable) for f in schema] == [
        ("id", pa.int64(), False),
        ("amount", pa.float64(), False),
        ("note", pa.string(), True),
        ("ok", pa.bool_(), True),
        ("at", pa.string(), True),
        ("maybe", pa.int64(), True),
    ]


def test_json_arrays_nested_objects_refs_enums_and_null_unions():
    schema = json_schema_to_arrow(obj(
        {
            "tags": {"type": "array", "items": {"type": "string"}},
            "address": {"$ref": "#/definitions/Address"},
            "kind": {"enum": ["a", "b"]},
            "n": {"type": ["integer", "number"]},
            "owner": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Owner"}]},
        },
        required=["address", "owner"],
        definitions={"Address": obj({"city": {"type": "string"}}, required=["city"])},
        **{"$defs": {"Owner": obj({"name": {"type": "string"}})}},
    ))
    assert schema.field("tags").type == pa.list_(pa.string())
    assert schema.field("address").type == pa.struct([pa.field("city", pa.string(), nullable=False)])
    assert not schema.field("address").nullable
    assert schema.field("kind").type == pa.string()
    assert schema.field("n").type == pa.float64()
    assert schema.field("owner").type == pa.struct([pa.field("name", pa.string())])
    assert schema.field("owner").nullable


@pytest.mark.parametrize(
    "prop, message",
    [
        ({"type": ["string", "integer"]}, r"property 'p': \['integer', 'string'\] has no single Arrow type"),
        ({"type": "object"}, "property 'p': an object without properties"),
        ({"type": "array"}, "property 'p': an array needs one 'items' schema"),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "property 'p': oneOf of 2 non-null schemas"),
        ({"$ref": "#/definitions/Nope"}, "property 'p': \\$ref '#/definitions/Nope' does not resolve"),
        ({"$ref": "other.json#/x"}, "property 'p': only local \\$ref"),
        ({}, "property 'p': a schema that accepts anything"),
    ],
)
def test_json_properties_without_one_arrow_type_are_refused_by_name(prop, message):
    with pytest.raises(ValueError, match=message):
        json_schema_to_arrow(obj({"p": prop}))


def test_json_recursive_refs_and_non_objects_are_refused():
    tree = obj({"child": {"$ref": "#"}})
    with pytest.raises(ValueError, match="property 'child': recursive \\$ref '#'"):
        json_schema_to_arrow(tree)
    with pytest.raises(ValueError, match="top-level JSON Schema must be an object with properties"):
        json_schema_to_arrow({"type": "string"})
    with pytest.raises(ValueError, match="not valid JSON"):
        json_schema_to_arrow("{nope")
    nested = obj({"a": obj({"b": {"type": ["string", "boolean"]}})})
    with pytest.raises(ValueError, match="property 'a.b'"):
        json_schema_to_arrow(nested)
