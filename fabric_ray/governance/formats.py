"""Schema formats of the registry: one small interface per schema type, dispatched by ``schemaType``.

The registry knows nothing about Avro, JSON Schema or Protobuf; it asks the format of a schema's
type (:func:`get_format`) for four things, as Confluent's ``SchemaProvider``/``ParsedSchema`` do:

``parse(text, resolved, validate=True) -> parsed``
    Validate ``text`` and return an opaque parsed object. ``resolved`` lists the referenced schemas
    as :class:`Resolved` ``(name, schema_type, text)``, dependencies first (Avro: their named
    types are known; Protobuf: ``name`` is the import path). ``validate=False`` is Confluent's
    ``validateNewSchemas=false``: the checks Confluent makes only on new schemas (Avro: defaults)
    are skipped. Raise :class:`SchemaFormatError` naming the problem.
``text(parsed) -> str``
    The schema's text as the registry stores and returns it, and its identity: Confluent's
    ``canonicalString()`` (Avro: Avro Java's ``Schema.toString()``; JSON: the document, compact,
    key order kept). Two schemas get the same id exactly when type, text and references agree.
``normalized(parsed) -> str``
    The text under ``normalize=true`` (Confluent's ``normalize()``): equal for schemas that differ
    only in ways the format deems irrelevant (JSON: key order; Avro: order of properties and aliases).
``check(reader, writer) -> list[str]``
    Why data written with ``writer`` cannot be read with ``reader`` (both parsed); empty when it can.
    Each message names the field or path.

plus the attribute ``schema_type`` and ``references_supported`` (False: the registry refuses a
non-empty reference list with 422/42201).

Formats are found by module path, imported on first use, so adding a schema type is one module
exposing ``FORMAT`` and one line in :data:`FORMAT_MODULES`.

Example:
    >>> avro_format = get_format("avro")
    >>> parsed = avro_format.parse('{"type": "long", "logicalType": "timestamp-millis"}', [])
    >>> avro_format.text(parsed)
    '{"type":"long","logicalType":"timestamp-millis"}'
    >>> json_format = get_format("JSON")
    >>> json_format.text(json_format.parse('{"type": "object", "title": "P"}', []))
    '{"type":"object","title":"P"}'
    >>> json_format.normalized(json_format.parse('{"type": "object", "title": "P"}', []))
    '{"title":"P","type":"object"}'
    >>> get_format("XML")
    Traceback (most recent call last):
    ...
    fabric_ray.governance.formats.SchemaFormatError: unknown schema type 'XML'; expected one of AVRO, JSON, PROTOBUF
"""

from __future__ import annotations

import importlib
import json
import math
from decimal import Decimal
from typing import Any, NamedTuple, Protocol

__all__ = [
    "FORMAT_MODULES",
    "Resolved",
    "SchemaFormat",
    "SchemaFormatError",
    "get_format",
    "jackson_dumps",
    "java_double",
    "schema_types",
]

# schemaType -> module exposing ``FORMAT``; one line per schema type.
FORMAT_MODULES: dict[str, str] = {
    "AVRO": "fabric_ray.governance.avro_format",
    "JSON": "fabric_ray.governance.formats",
    "PROTOBUF": "fabric_ray.governance.protobuf_format",
}


class SchemaFormatError(ValueError):
    """A schema (or schema type) the format refuses; the message names where and why."""


class Resolved(NamedTuple):
    """A referenced schema as a format sees it: the reference's ``name``, its type and its stored text."""

    name: str
    schema_type: str
    text: str


class SchemaFormat(Protocol):
    """What the registry needs from a schema type (see the module docstring)."""

    schema_type: str
    references_supported: bool

    def parse(self, text: str, resolved: list[Resolved], validate: bool = True) -> Any:
        """Validate ``text`` (referenced schemas ``resolved``, dependencies first) and return it parsed."""

    def text(self, parsed: Any) -> str:
        """The stored text, which is also the schema's identity."""

    def normalized(self, parsed: Any) -> str:
        """The stored text under ``normalize=true``."""

    def check(self, reader: Any, writer: Any) -> list[str]:
        """Why ``reader`` cannot read data written with ``writer``; empty when it can."""


_LOADED: dict[str, SchemaFormat] = {}


def schema_types() -> tuple[str, ...]:
    """The schema types the registry accepts, e.g. ``('AVRO', 'JSON')``."""
    return tuple(FORMAT_MODULES)


def get_format(schema_type: str) -> SchemaFormat:
    """The format for ``schema_type`` (case-insensitive); :class:`SchemaFormatError` for an unknown one."""
    key = schema_type.upper() if isinstance(schema_type, str) else schema_type
    if key not in FORMAT_MODULES:
        raise SchemaFormatError(f"unknown schema type {schema_type!r}; expected one of {', '.join(FORMAT_MODULES)}")
    if key not in _LOADED:
        _LOADED[key] = importlib.import_module(FORMAT_MODULES[key]).FORMAT  # type: ignore[attr-defined]
    return _LOADED[key]


# -- Jackson-compatible JSON text -----------------------------------------------------------------


def java_double(x: float) -> str:
    """``x`` as Java's ``Double.toString`` (and so Jackson) writes it.

    Example:
        >>> [java_double(v) for v in (1.0, 12.3, 1e7, 0.001, 1e-4, -0.0, 123456.5)]
        ['1.0', '12.3', '1.0E7', '0.001', '1.0E-4', '-0.0', '123456.5']
    """
    if math.isnan(x):
        return '"NaN"'  # Jackson quotes non-numeric numbers by default
    if math.isinf(x):
        return '"Infinity"' if x > 0 else '"-Infinity"'
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    sign, digits, exp = Decimal(repr(x)).normalize().as_tuple()
    text = "".join(map(str, digits))
    magnitude = len(text) - 1 + int(exp)
    prefix = "-" if sign else ""
    if -3 <= magnitude < 7:
        plain = format(Decimal(repr(abs(x))).normalize(), "f")
        return prefix + (plain if "." in plain else plain + ".0")
    return f"{prefix}{text[0]}.{text[1:] or '0'}E{magnitude}"


def jackson_dumps(value: Any) -> str:
    """Compact JSON as Jackson writes a tree: key order kept, non-ASCII as is, doubles as Java does.

    Example:
        >>> jackson_dumps({"b": [1, 2.0, None, True], "a": "é"})
        '{"b":[1,2.0,null,true],"a":"é"}'
    """
    if isinstance(value, dict):
        return "{" + ",".join(jackson_dumps(str(k)) + ":" + jackson_dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(jackson_dumps(v) for v in value) + "]"
    if isinstance(value, float):
        return java_double(value)
    return json.dumps(value, ensure_ascii=False)


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


# -- JSON Schema ------------------------------------------------------------------------------------


class JsonSchemaFormat:
    """JSON Schema over :mod:`fabric_ray.governance.json_schema`.

    The text is the document compact with its key order (Confluent's Jackson ``toString``), so
    schemas differing only in property order are different schemas; ``normalized`` sorts keys
    (Confluent's ``normalize()``). ``validate`` has no effect: every schema is checked against its
    draft's metaschema.
    """

    schema_type = "JSON"
    references_supported = False

    def parse(self, text: str, resolved: list[Resolved], validate: bool = True) -> Any:
        from fabric_ray.governance import json_schema

        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaFormatError(f"schema is not JSON: {exc}") from None
        try:
            json_schema.parse_json_schema(raw)
        except json_schema.JsonSchemaError as exc:
            raise SchemaFormatError(str(exc)) from None
        return raw

    def text(self, parsed: Any) -> str:
        return jackson_dumps(parsed)

    def normalized(self, parsed: Any) -> str:
        return jackson_dumps(_sorted_keys(parsed))

    def check(self, reader: Any, writer: Any) -> list[str]:
        from fabric_ray.governance import json_schema

        return json_schema.check_compatibility(reader, writer)


FORMAT = JsonSchemaFormat()
