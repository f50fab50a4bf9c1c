"""JSON Schema parsing and reader/writer compatibility, after Confluent Schema Registry.

``check_compatibility(reader, writer)`` answers: is every document valid under ``writer`` also
valid under ``reader``?  It returns messages that name the JSON pointer (``#/properties/a``) of
each problem; an empty list means compatible.  The answer is sound: where the checker cannot
prove compatibility it says so instead of passing.  The one rule taken from Confluent beyond
validation is that a reader property with a ``default`` may become required (the reader
supplies the default).

Drafts 04, 06, 07, 2019-09 and 2020-12 are read (``$schema``; draft-07 when absent, as in
Confluent) into one vocabulary (``json_schema_views``), then compared (``json_schema_checker``,
``json_schema_structure``, ``json_schema_bounds``, ``json_schema_values``):

* types: narrowing is incompatible, widening (``integer`` -> ``number``, adding a type to a
  type list, dropping ``type``) is compatible;
* ``enum``/``const``: a writer with a finite value set is checked value by value;
* bounds (lengths, sizes, numbers, ``multipleOf``) must be at least as loose in the reader;
  integer-only writers get credit for integer gaps (``exclusiveMinimum: 0`` is ``minimum: 1``);
* objects: ``properties``, ``patternProperties``, ``additionalProperties`` and
  ``unevaluatedProperties`` by the names each applies to; a closed reader
  (``additionalProperties``/``unevaluatedProperties: false``) rejects writer properties it does
  not declare unless the writer's schema for them is ``false``; a property added to the reader
  while the writer's model is open is incompatible unless unconstrained; ``required``,
  ``dependentRequired``/``dependentSchemas`` (``dependencies``), ``propertyNames``;
* arrays: ``prefixItems``/``items`` (and the draft-07 tuple form), ``unevaluatedItems``,
  ``contains`` with ``minContains``/``maxContains``, ``uniqueItems``;
* ``not``: the reader may exclude less than the writer (``not number`` -> ``not integer``);
* ``$ref`` (pointers, ``$id``, ``$anchor``, ``$recursiveRef``, ``$dynamicRef``): from 2019-09 its
  siblings are merged with the target; recursive schemas are compared per pair of definitions,
  to a fixed point;
* combinators: writer ``anyOf``/``oneOf`` branch by branch, ``allOf`` merged (or one member
  suffices), reader ``allOf`` member by member, reader ``anyOf`` when one branch takes the
  writer, reader ``oneOf`` when the other branches are provably disjoint from the writer or
  narrower than another writer ``oneOf`` branch; ``if``/``then``/``else`` when equal or implied.

Not proved (reported as "cannot prove"): differing ``pattern`` or ``format``, external
``$ref`` to other documents (equal ones pass), combinations beyond the ones above.

Example:
    >>> old = parse_json_schema('{"type": "object", "properties": {"n": {"type": "integer"}}}')
    >>> new = {"type": "object", "properties": {"n": {"type": "number"}}}
    >>> backward(new, old)
    []
    >>> backward(old, new)
    ["#/properties/n: type narrowed: writer allows ['number'], reader accepts only ['integer']"]
"""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

from fabric_ray.governance.json_schema_checker import Checker
from fabric_ray.governance.json_schema_views import JsonSchemaError, Side, draft_of

__all__ = ["JsonSchemaError", "backward", "check_compatibility", "parse_json_schema", "schema_draft"]

Schema = dict[str, Any] | bool


def parse_json_schema(schema: str | dict[str, Any] | bool) -> Schema:
    """Parse and validate a JSON Schema against its draft's metaschema.

    Args:
        schema: JSON text, or an already decoded object or boolean.

    Returns:
        The decoded schema (a dict, or ``True``/``False``).

    Raises:
        JsonSchemaError: bad JSON, a value that is not an object or boolean, an unknown
            ``$schema``, a metaschema violation, a regular expression Python cannot compile, or a
            local ``$ref`` that does not resolve or only loops; the message names the JSON pointer.

    Example:
        >>> parse_json_schema('{"type": "string", "maxLength": 3}')
        {'type': 'string', 'maxLength': 3}
        >>> parse_json_schema({"type": "strin"})
        Traceback (most recent call last):
        ...
        fabric_ray.governance.json_schema_views.JsonSchemaError: invalid JSON Schema at #/type: ...
    """
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except json.JSONDecodeError as exc:
            raise JsonSchemaError(f"schema is not JSON: {exc}") from exc
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, dict):
        raise JsonSchemaError(f"schema must be a JSON object or boolean; got {type(schema).__name__}")
    _, validator_cls = draft_of(schema)
    try:
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = _pointer([str(part) for part in exc.absolute_path])
        raise JsonSchemaError(f"invalid JSON Schema at {where}: {exc.message}") from exc
    _check_nodes(Side(schema, "reader"), schema, "")
    return schema


def schema_draft(schema: Schema) -> int:
    """The draft a schema is read under: 4, 6, 7, 2019 (2019-09) or 2020 (2020-12).

    Example:
        >>> schema_draft({"$schema": "http://json-schema.org/draft-04/schema#"})
        4
        >>> schema_draft({})
        7
    """
    return draft_of(schema)[0]


def check_compatibility(reader: Schema, writer: Schema) -> list[str]:
    """List why some document valid under ``writer`` may be rejected by ``reader``.

    Args:
        reader: The schema documents are validated against (already parsed).
        writer: The schema documents were produced under (already parsed).

    Returns:
        Incompatibility messages, each starting with a JSON pointer; empty when compatible.

    Raises:
        JsonSchemaError: a local ``$ref`` that does not resolve.

    Example:
        >>> check_compatibility({"type": "string"}, {"enum": ["a", "b"]})
        []
        >>> check_compatibility({"enum": ["a"]}, {"enum": ["a", "b"]})
        ["#: writer value 'b' is not in the reader's enum"]
    """
    return Checker(reader, writer).run()


def backward(new: Schema, old: Schema) -> list[str]:
    """Can consumers on ``new`` read data written with ``old``? Same as ``check_compatibility(new, old)``.

    Example:
        >>> backward({"type": "object", "required": ["id"]}, {"type": "object"})
        ["#: reader requires property 'id' that the writer does not require"]
    """
    return check_compatibility(reader=new, writer=old)


def _pointer(parts: list[str]) -> str:
    return "#" + "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _check_nodes(side: Side, node: Any, path: str) -> None:
    """Every local ``$ref`` resolves and every regular expression compiles."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            side.ref_chain_ends(node, "#" + path)
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                _compile(value, f"#{path}/pattern")
            elif key == "patternProperties" and isinstance(value, dict):
                for pattern in value:
                    _compile(pattern, f"#{path}/patternProperties")
            if key not in ("enum", "const", "default", "examples"):
                _check_nodes(side, value, path + "/" + str(key).replace("~", "~0").replace("/", "~1"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_nodes(side, value, f"{path}/{index}")


def _compile(pattern: str, where: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise JsonSchemaError(f"regular expression {pattern!r} at {where} does not compile: {exc}") from None
