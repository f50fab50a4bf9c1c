"""Arrow schemas from the schema languages the registry holds: Avro and JSON Schema.

``avro_to_arrow`` maps an Avro record to the Arrow schema its decoded rows have;
``json_schema_to_arrow`` does the same for a JSON Schema ``object``. Both refuse what has no
faithful Arrow equivalent with a ``ValueError`` that names the field, instead of guessing.

Avro mapping (logical types follow the Avro 1.11 specification):

=============================  ==================================================
Avro                           Arrow
=============================  ==================================================
boolean, int, long             bool, int32, int64
float, double                  float32, float64
bytes, string, fixed(n)        binary, string, fixed_size_binary(n)
enum                           dictionary<int32, string> (the symbols, in order)
record                         struct (a top-level record: the schema's fields)
array, map                     list, map<string, ...>
["null", T] (either order)     T, nullable; every other field is not nullable
date, time-millis/micros       date32, time32[ms], time64[us]
timestamp-millis/micros/nanos  timestamp[ms|us|ns, UTC]
local-timestamp-*              timestamp[ms|us|ns] (no time zone)
decimal(p, s)                  decimal128(p, s) (decimal256 above 38 digits)
uuid                           string
=============================  ==================================================

Other unions (``["int", "string"]``, three branches) and recursive records raise.
Unknown logical types are ignored, as the specification asks.

Example:
    >>> avro_to_arrow({"type": "record", "name": "P", "fields": [
    ...     {"name": "id", "type": "long"},
    ...     {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    ...     {"name": "note", "type": ["null", "string"], "default": None}]})
    id: int64 not null
    ts: timestamp[ms, tz=UTC] not null
    note: string
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from fabric_ray.governance.avro import AvroSchema, describe, parse_avro

__all__ = ["avro_to_arrow", "avro_type_to_arrow", "json_schema_to_arrow", "nullable_branch"]

ENUM_TYPE = pa.dictionary(pa.int32(), pa.string())

_PRIMITIVE = {
    "null": pa.null(),
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.string(),
}
# (logical type, underlying Avro type) -> Arrow type
_LOGICAL = {
    ("date", "int"): pa.date32(),
    ("time-millis", "int"): pa.time32("ms"),
    ("time-micros", "long"): pa.time64("us"),
    ("timestamp-millis", "long"): pa.timestamp("ms", tz="UTC"),
    ("timestamp-micros", "long"): pa.timestamp("us", tz="UTC"),
    ("local-timestamp-millis", "long"): pa.timestamp("ms"),
    ("local-timestamp-micros", "long"): pa.timestamp("us"),
    ("timestamp-nanos", "long"): pa.timestamp("ns", tz="UTC"),
    ("local-timestamp-nanos", "long"): pa.timestamp("ns"),
    ("uuid", "string"): pa.string(),
}


def nullable_branch(schema: AvroSchema) -> AvroSchema | None:
    """The ``T`` of a union ``["null", T]`` or ``[T, "null"]``; ``None`` for any other schema.

    Example:
        >>> nullable_branch(parse_avro(["null", "long"])).type, nullable_branch(parse_avro("long"))
        ('long', None)
    """
    if schema.type != "union" or len(schema.branches) != 2:
        return None
    kinds = [b.type for b in schema.branches]
    if kinds.count("null") != 1:
        return None
    return schema.branches[1 - kinds.index("null")]


def avro_to_arrow(schema: Any) -> pa.Schema:
    """The Arrow schema of rows decoded with an Avro record schema.

    Args:
        schema: a record schema as JSON text, a dict, or a parsed
            :class:`~fabric_ray.governance.avro.AvroSchema`.

    Returns:
        One field per record field; ``["null", T]`` fields are nullable, all others are not.

    Raises:
        ValueError: the schema is not a record, or a field has no Arrow equivalent (the message
            names the field, e.g. ``field 'pay.amount': union[int, string] ...``).
        fabric_ray.governance.avro.AvroSchemaError: the schema is not valid Avro.

    Example:
        >>> avro_to_arrow('{"type": "record", "name": "R", "fields": [{"name": "x", "type": ["int", "string"]}]}')
        Traceback (most recent call last):
        ...
        ValueError: field 'x': union[int, string] has no Arrow equivalent; only ["null", T] unions are supported
    """
    root = parse_avro(schema)
    if root.type != "record":
        raise ValueError(f"top-level Avro schema must be a record; got {describe(root)}")
    return pa.schema([_avro_field(f.name, f.type, f.name, {root.name}) for f in root.fields])


def avro_type_to_arrow(schema: Any) -> tuple[pa.DataType, bool]:
    """``(Arrow type, nullable)`` of any Avro schema node (see the module table).

    Example:
        >>> avro_type_to_arrow({"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 2})
        (Decimal128Type(decimal128(9, 2)), False)
    """
    node = parse_avro(schema)
    field = _avro_field("value", node, "value", set())
    return field.type, field.nullable


def _avro_field(name: str, node: AvroSchema, path: str, records: set[str | None]) -> pa.Field:
    if node.type == "union":
        inner = nullable_branch(node)
        if inner is not None:
            return pa.field(name, _avro_type(inner, path, records), nullable=True)
        if len(node.branches) == 1:
            return _avro_field(name, node.branches[0], path, records)
        if [b.type for b in node.branches] == ["null"]:
            return pa.field(name, pa.null())
        raise ValueError(
            f"field {path!r}: {describe(node)} has no Arrow equivalent; only [\"null\", T] unions are supported"
        )
    return pa.field(name, _avro_type(node, path, records), nullable=node.type == "null")


def _avro_type(node: AvroSchema, path: str, records: set[str | None]) -> pa.DataType:
    logical = _logical(node, path)
    if logical is not None:
        return logical
    if node.type in _PRIMITIVE:
        return _PRIMITIVE[node.type]
    if node.type == "fixed":
        return pa.binary(node.size)
    if node.type == "enum":
        return ENUM_TYPE
    if node.type == "array" and node.items is not None:
        return pa.list_(_avro_field("item", node.items, f"{path}[]", records))
    if node.type == "map" and node.values is not None:
        value = _avro_field("value", node.values, f"{path}{{}}", records)
        return pa.map_(pa.field("key", pa.string(), nullable=False), value)
    if node.type == "record":
        if node.name in records:
            raise ValueError(f"field {path!r}: recursive record {node.name!r} has no Arrow equivalent")
        inner = records | {node.name}
        return pa.struct([_avro_field(f.name, f.type, f"{path}.{f.name}", inner) for f in node.fields])
    # A union nested directly in a container: arrays and maps route through _avro_field.
    raise ValueError(f"field {path!r}: {describe(node)} has no Arrow equivalent")


def _logical(node: AvroSchema, path: str) -> pa.DataType | None:
    if node.logical_type is None:
        return None
    if node.logical_type == "decimal" and node.type in ("bytes", "fixed"):
        precision, scale = node.props.get("precision"), node.props.get("scale", 0)
        if not isinstance(precision, int) or not isinstance(scale, int) or not 0 <= scale <= precision or precision < 1:
            return None  # the spec says an invalid logical type is ignored: read the underlying type
        if node.type == "fixed" and precision > _max_digits(node.size or 0):
            return None
        if precision <= 38:
            return pa.decimal128(precision, scale)
        if precision <= 76:
            return pa.decimal256(precision, scale)
        raise ValueError(f"field {path!r}: decimal precision {precision} exceeds Arrow's 76 digits")
    return _LOGICAL.get((node.logical_type, node.type))


def _max_digits(size: int) -> int:
    """Most decimal digits a two's-complement integer of ``size`` bytes always holds."""
    return len(str(2 ** (8 * size - 1))) - 1 if size else 0


# ---------------------------------------------------------------------------------------------
# JSON Schema

_JSON_SCALARS = {"integer": pa.int64(), "number": pa.float64(), "string": pa.string(), "boolean": pa.bool_()}


def json_schema_to_arrow(schema: Any) -> pa.Schema:
    """The Arrow schema of JSON documents valid under a JSON Schema ``object``.

    ``integer`` is int64, ``number`` float64, ``boolean`` bool and ``string`` (any ``format``,
    ``date-time`` included) string: JSON carries dates as text, and keeping them text means the
    JSON decoder judges every message the same way. Arrays become lists, objects with
    ``properties`` structs. A property is nullable unless it is ``required`` and its type
    excludes ``"null"``. ``enum``/``const`` without a ``type`` take the type of their values.
    Local ``$ref`` (``#/definitions/...``, ``#/$defs/...``) are followed; ``anyOf``/``oneOf``
    of ``{"type": "null"}`` and one schema count as that schema, nullable.

    Args:
        schema: the JSON Schema as text or a dict; its top level must be an object with properties.

    Raises:
        ValueError: the top level is not an object with properties, or a property has no single
            Arrow type (a type list like ``["string", "integer"]``, an object without
            ``properties``, a recursive ``$ref``); the message names the property.

    Example:
        >>> json_schema_to_arrow({"type": "object", "required": ["id"], "properties": {
        ...     "id": {"type": "integer"},
        ...     "tags": {"type": "array", "items": {"type": "string"}},
        ...     "at": {"type": ["string", "null"], "format": "date-time"}}})
        id: int64 not null
        tags: list<item: string>
          child 0, item: string
        at: string
    """
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise ValueError(f"JSON Schema is not valid JSON: {exc}") from None
    if not isinstance(schema, dict):
        raise ValueError(f"JSON Schema must be an object; got {type(schema).__name__}")
    node, _ = _JsonMapper(schema).resolve(schema, "$", ())
    if _json_types(node, "$") != {"object"} or not isinstance(node.get("properties"), dict):
        raise ValueError(f"top-level JSON Schema must be an object with properties; got {_short(node)}")
    return pa.schema(_JsonMapper(schema).fields(node, "", ("#",)))


class _JsonMapper:
    """One mapping: the root document, for ``$ref`` lookups."""

    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root

    def resolve(self, node: Any, path: str, refs: tuple[str, ...]) -> tuple[dict[str, Any], tuple[str, ...]]:
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str) or not ref.startswith("#"):
                raise ValueError(f"property {path!r}: only local $ref are supported; got {ref!r}")
            if ref in refs:
                raise ValueError(f"property {path!r}: recursive $ref {ref!r} has no Arrow equivalent")
            refs = refs + (ref,)
            node = self._lookup(ref, path)
        if node is True or node == {}:
            raise ValueError(f"property {path!r}: a schema that accepts anything has no Arrow type")
        if not isinstance(node, dict):
            raise ValueError(f"property {path!r}: expected a schema object; got {node!r}")
        return node, refs

    def _lookup(self, ref: str, path: str) -> Any:
        node: Any = self.root
        for raw in ref[2:].split("/") if ref != "#" else []:
            part = raw.replace("~1", "/").replace("~0", "~")
            if not isinstance(node, dict) or part not in node:
                raise ValueError(f"property {path!r}: $ref {ref!r} does not resolve")
            node = node[part]
        return node

    def fields(self, node: dict[str, Any], prefix: str, refs: tuple[str, ...]) -> list[pa.Field]:
        required = set(node.get("required", []))
        out = []
        for name, sub in node["properties"].items():
            path = f"{prefix}{name}"
            arrow_type, nullable = self.type_of(sub, path, refs)
            out.append(pa.field(name, arrow_type, nullable=nullable or name not in required))
        return out

    def type_of(self, node: Any, path: str, refs: tuple[str, ...]) -> tuple[pa.DataType, bool]:
        node, refs = self.resolve(node, path, refs)
        for key in ("anyOf", "oneOf"):
            if key in node:
                branches = [self.resolve(b, path, refs)[0] for b in node[key]]
                real = [b for b in branches if _json_types(b, path) != {"null"}]
                if len(real) != 1:
                    raise ValueError(f"property {path!r}: {key} of {len(real)} non-null schemas has no single Arrow type")
                inner, nullable = self.type_of(real[0], path, refs)
                return inner, nullable or len(real) < len(branches)
        types = _json_types(node, path)
        nullable = "null" in types
        types.discard("null")
        if types == {"integer", "number"}:
            types = {"number"}
        if len(types) != 1:
            shown = sorted(types) if types else "no type"
            raise ValueError(f"property {path!r}: {shown} has no single Arrow type; give it exactly one type besides null")
        kind = types.pop()
        if kind in _JSON_SCALARS:
            return _JSON_SCALARS[kind], nullable
        if kind == "array":
            items = node.get("items")
            if not isinstance(items, (dict, bool)) or items is True:
                raise ValueError(f"property {path!r}: an array needs one 'items' schema to have an Arrow type")
            item_type, _ = self.type_of(items, f"{path}[]", refs)
            return pa.list_(item_type), nullable
        if not isinstance(node.get("properties"), dict) or not node["properties"]:
            raise ValueError(f"property {path!r}: an object without properties has no fixed Arrow type")
        return pa.struct(self.fields(node, f"{path}.", refs)), nullable


def _json_types(node: dict[str, Any], path: str) -> set[str]:
    """The JSON types a schema node allows, from ``type`` or, failing that, ``enum``/``const`` or ``properties``."""
    declared = node.get("type")
    if isinstance(declared, str):
        return {declared}
    if isinstance(declared, list):
        return set(declared)
    values = node.get("enum", [node["const"]] if "const" in node else None)
    if isinstance(values, list) and values:
        return {_value_type(v) for v in values}
    if "properties" in node:
        return {"object"}
    if "items" in node:
        return {"array"}
    raise ValueError(f"property {path!r}: no 'type' given, so no Arrow type can be chosen")


def _value_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _short(node: dict[str, Any]) -> str:
    text = json.dumps(node, sort_keys=True)
    return text if len(text) <= 80 else text[:77] + "..."
