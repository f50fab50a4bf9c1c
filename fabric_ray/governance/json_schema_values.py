"""Validate one JSON value against a normalized JSON Schema view (``json_schema_views``).

The checker uses it for writers with a finite value set (``enum``/``const``): each value is
checked against the reader. Working on views keeps every draft's rules in one place. ``format``
is asserted where ``jsonschema`` knows the format, as validators that assert formats do.

Example:
    >>> from fabric_ray.governance.json_schema_views import Side
    >>> side = Side({"type": "string", "maxLength": 2}, "reader")
    >>> value_errors(side.view(side.root), side, "abc")
    ['maxLength 2 exceeded']
    >>> value_errors(side.view(side.root), side, "ab")
    []
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from fabric_ray.governance.json_schema_bounds import value_type
from fabric_ray.governance.json_schema_views import EXTERNAL, Side, declared_types, pattern_matches

__all__ = ["value_errors"]

_MAX_DEPTH = 200
_FORMATS = jsonschema.FormatChecker()


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _type_ok(types: frozenset[str] | None, value: Any) -> bool:
    if types is None:
        return True
    t = value_type(value)
    return t in types or (t == "integer" and "number" in types)


def value_errors(schema: Any, side: Side, value: Any, depth: int = 0) -> list[str]:
    """Why ``value`` is invalid under the view ``schema`` of ``side``; empty when valid."""
    if schema is True:
        return []
    if schema is False:
        return ["schema is false"]
    if isinstance(schema, EXTERNAL):
        return [f"external $ref {schema.uri}"]
    if depth > _MAX_DEPTH:
        return ["nested too deeply"]
    errors: list[str] = []

    def sub(node: Any, item: Any) -> list[str]:
        return value_errors(side.view(node), side, item, depth + 1)

    types = declared_types(schema)
    if side.draft == 4 and isinstance(value, float) and types is not None and "number" not in types:
        errors.append("draft-04 integers have no fraction part, not even .0")
    elif not _type_ok(types, value):
        errors.append(f"type {value_type(value)} not allowed")
    if "const" in schema and _canon(schema["const"]) != _canon(value):
        errors.append("not the const value")
    if "enum" in schema and _canon(value) not in {_canon(v) for v in schema["enum"]}:
        errors.append("not in enum")
    for kw in ("allOf", "anyOf", "oneOf"):
        if kw in schema:
            passing = sum(not sub(branch, value) for branch in schema[kw])
            if (kw == "allOf" and passing < len(schema[kw])) or (kw == "anyOf" and passing == 0) \
                    or (kw == "oneOf" and passing != 1):
                errors.append(f"{kw} not satisfied")
    if "not" in schema and not sub(schema["not"], value):
        errors.append("matches 'not'")
    if "if" in schema:
        branch = "then" if not sub(schema["if"], value) else "else"
        if branch in schema and sub(schema[branch], value):
            errors.append(f"'{branch}' not satisfied")
    if isinstance(value, str):
        errors += _string_errors(schema, value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        errors += _number_errors(schema, value)
    elif isinstance(value, list):
        errors += _array_errors(schema, value, sub)
    elif isinstance(value, dict):
        errors += _object_errors(schema, value, sub)
    return errors


def _string_errors(schema: dict[str, Any], value: str) -> list[str]:
    errors = []
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"minLength {schema['minLength']} not reached")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"maxLength {schema['maxLength']} exceeded")
    if "pattern" in schema and not pattern_matches(schema["pattern"], value):
        errors.append(f"pattern {schema['pattern']!r} not matched")
    if isinstance(schema.get("format"), str) and not _FORMATS.conforms(value, schema["format"]):
        errors.append(f"not a {schema['format']}")  # validators that assert formats (Confluent's do) reject it
    return errors


def _number_errors(schema: dict[str, Any], value: float) -> list[str]:
    errors = []
    if "minimum" in schema and value < schema["minimum"]:
        errors.append("below minimum")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        errors.append("not above exclusiveMinimum")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append("above maximum")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        errors.append("not below exclusiveMaximum")
    if "multipleOf" in schema:
        ratio = value / schema["multipleOf"]
        if abs(ratio - round(ratio)) > 1e-9:
            errors.append(f"not a multiple of {schema['multipleOf']}")
    return errors


def _array_errors(schema: dict[str, Any], value: list[Any], sub: Any) -> list[str]:
    errors = []
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append("too few items")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append("too many items")
    if schema.get("uniqueItems") and len({_canon(v) for v in value}) < len(value):
        errors.append("items not unique")
    prefix = schema.get("prefixItems", [])
    for i, item in enumerate(value):
        rule = prefix[i] if i < len(prefix) else schema.get("items", True)
        if sub(rule, item):
            errors.append(f"item {i} invalid")
    if "contains" in schema:
        count = sum(not sub(schema["contains"], item) for item in value)
        if count < schema.get("minContains", 1) or count > schema.get("maxContains", float("inf")):
            errors.append("contains not satisfied")
    return errors


def _object_errors(schema: dict[str, Any], value: dict[str, Any], sub: Any) -> list[str]:
    errors = []
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        errors.append("too few properties")
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append("too many properties")
    errors += [f"property {name!r} required" for name in schema.get("required", []) if name not in value]
    props, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
    for name, item in value.items():
        rules = ([props[name]] if name in props else []) + [s for p, s in patterns.items() if pattern_matches(p, name)]
        for rule in rules or [schema.get("additionalProperties", True)]:
            if sub(rule, item):
                errors.append(f"property {name!r} invalid")
        if "propertyNames" in schema and sub(schema["propertyNames"], name):
            errors.append(f"property name {name!r} invalid")
    for name, needed in schema.get("dependentRequired", {}).items():
        if name in value and any(n not in value for n in needed):
            errors.append(f"dependentRequired of {name!r} not met")
    for name, dep in schema.get("dependentSchemas", {}).items():
        if name in value and sub(dep, value):
            errors.append(f"dependentSchemas of {name!r} not met")
    return errors
