"""JSON Schema parsing and reader/writer compatibility, after Confluent Schema Registry.

``check_compatibility(reader, writer)`` answers: is every document valid under ``writer`` also
valid under ``reader``?  It returns messages that name the JSON pointer (``#/properties/a``) of
each problem; an empty list means compatible.  The checker is conservative: where it cannot
prove compatibility it says so instead of passing silently.

Rules implemented:

* types: narrowing is incompatible, widening (``integer`` -> ``number``, adding a type to a
  type list, dropping ``type``) is compatible;
* ``enum``/``const``: the reader must accept every writer value; a writer with a finite value
  set is checked value by value against the reader (exact);
* bounds: ``minLength``/``maxLength``, ``minimum``/``maximum`` and their exclusive variants,
  ``multipleOf``, ``minItems``/``maxItems``, ``minProperties``/``maxProperties`` must be at
  least as loose in the reader;
* objects: properties compared recursively; a writer property the reader's closed model
  (``additionalProperties: false``) does not declare is incompatible, an open reader takes it;
  a property added to the reader is incompatible when the writer's open content model could
  hold it with another value, and compatible when the writer model is closed; a property the
  reader requires but the writer does not is incompatible; ``additionalProperties`` compared;
  ``patternProperties`` used for matching names when the reader's equal the writer's;
* arrays: ``items`` (schema or tuple form), ``additionalItems``, ``prefixItems`` recursively; a
  reader ``uniqueItems: true`` needs the same in the writer;
* ``$ref`` to a local JSON pointer (``#/definitions/...``, ``#/$defs/...``) resolved inside its
  own schema, recursive schemas terminate (a pair already under comparison is assumed
  compatible); draft 7 ignores ``$ref`` siblings, 2020-12 applies them;
* boolean schemas ``true``/``false``;
* combinators, sound cases only: writer ``anyOf``/``oneOf`` compatible when every branch is;
  writer ``allOf`` when one member is; reader ``allOf`` when every member is; reader ``anyOf``
  when one branch takes the whole writer (a writer type list is tried type by type); reader
  ``oneOf`` when one branch takes the writer and the other branches' types are disjoint from
  it.  Otherwise "cannot prove compatibility of combined schemas (reader anyOf)" is reported.

Not implemented (reported as "cannot prove" when the reader has them and they differ from the
writer's): ``not``, ``if``/``then``/``else``, ``pattern``, ``format``, ``contains``,
``propertyNames``, ``dependencies``/``dependentRequired``/``dependentSchemas``,
``unevaluated*``, differing ``patternProperties``, external ``$ref`` (other documents or
``$anchor``/``$id`` names).  Writer-only constraints are ignored, which is sound: they only
shrink the writer's documents.  Known imprecision (always on the strict side): writer
``allOf`` members are not merged, and integer-only writers get no credit for integer gaps
(``exclusiveMinimum: 0`` vs ``minimum: 1``).

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

__all__ = ["JsonSchemaError", "backward", "check_compatibility", "parse_json_schema"]

Schema = dict[str, Any] | bool

_DRAFTS = {
    "http://json-schema.org/draft-07/schema": jsonschema.Draft7Validator,
    "https://json-schema.org/draft/2020-12/schema": jsonschema.Draft202012Validator,
}
_ALL_TYPES = frozenset({"null", "boolean", "object", "array", "number", "string"})
# Keywords that never reject a document.
_ANNOTATIONS = frozenset({
    "$schema", "$id", "$anchor", "$dynamicAnchor", "$comment", "$vocabulary", "title",
    "description", "default", "examples", "readOnly", "writeOnly", "deprecated", "definitions",
    "$defs", "contentMediaType", "contentEncoding", "contentSchema",
})
# Keywords the checker understands; any other reader keyword must equal the writer's.
_HANDLED = frozenset({
    "$ref", "type", "enum", "const", "allOf", "anyOf", "oneOf", "minLength", "maxLength",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems",
    "maxItems", "items", "additionalItems", "prefixItems", "uniqueItems", "properties",
    "required", "additionalProperties", "patternProperties", "minProperties", "maxProperties",
})


class JsonSchemaError(ValueError):
    """A schema that is not valid JSON Schema, or a ``$ref`` that cannot be resolved."""


def parse_json_schema(schema: str | dict[str, Any] | bool) -> Schema:
    """Parse and validate a JSON Schema against its draft's metaschema.

    Args:
        schema: JSON text, or an already decoded object or boolean.

    Returns:
        The decoded schema (a dict, or ``True``/``False``).

    Raises:
        JsonSchemaError: bad JSON, a value that is not an object or boolean, an unknown
            ``$schema``, a metaschema violation or a local ``$ref`` that does not resolve;
            the message names the JSON pointer of the problem.

    Example:
        >>> parse_json_schema('{"type": "string", "maxLength": 3}')
        {'type': 'string', 'maxLength': 3}
        >>> parse_json_schema({"type": "strin"})
        Traceback (most recent call last):
        ...
        fabric_ray.governance.json_schema.JsonSchemaError: invalid JSON Schema at #/type: ...
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
    validator_cls = _validator_class(schema)
    try:
        validator_cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = _pointer([str(part) for part in exc.absolute_path])
        raise JsonSchemaError(f"invalid JSON Schema at {where}: {exc.message}") from exc
    _check_refs(schema, schema, "")
    return schema


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
    return _Checker(reader, writer).compare(reader, writer, "")


def backward(new: Schema, old: Schema) -> list[str]:
    """Can consumers on ``new`` read data written with ``old``? Same as ``check_compatibility(new, old)``.

    Example:
        >>> backward({"type": "object", "required": ["id"]}, {"type": "object"})
        ["#: reader requires property 'id' that the writer does not require"]
    """
    return check_compatibility(reader=new, writer=old)


def _validator_class(schema: dict[str, Any]) -> type[Any]:
    uri = schema.get("$schema", "http://json-schema.org/draft-07/schema")
    cls = _DRAFTS.get(str(uri).rstrip("#"))
    if cls is None:
        raise JsonSchemaError(f"unsupported $schema {uri!r}; use draft-07 or 2020-12")
    return cls


def _pointer(parts: list[str]) -> str:
    return "#" + "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def _join(path: str, *parts: Any) -> str:
    return path + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _check_refs(root: Any, node: Any, path: str) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#"):
            _resolve(root, node, path)
        for key, value in node.items():
            if key not in ("enum", "const", "default", "examples"):
                _check_refs(root, value, _join(path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            _check_refs(root, value, _join(path, index))


def _lookup(root: Any, ref: str, path: str) -> Any:
    node = root
    for raw in ref[1:].split("/")[1:] if ref != "#" else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise JsonSchemaError(f"$ref {ref!r} at #{path} does not resolve")
    return node


def _resolve(root: Any, node: Any, path: str) -> Any:
    """Follow a chain of local ``$ref``; return the target, or None for an external ref."""
    seen: set[str] = set()
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#") or (ref != "#" and not ref.startswith("#/")):
            return None
        if ref in seen:
            raise JsonSchemaError(f"$ref {ref!r} at #{path} is circular")
        seen.add(ref)
        target = _lookup(root, ref, path)
        siblings = {k: v for k, v in node.items() if k != "$ref" and k not in _ANNOTATIONS}
        if siblings and _validator_class(root if isinstance(root, dict) else {}) is not jsonschema.Draft7Validator:
            return {"allOf": [target, siblings]}
        node = target
    return node


def _value_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"
    if isinstance(value, float):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names[type(value)]


def _covers(types: frozenset[str] | None, t: str) -> bool:
    return types is None or t in types or (t == "integer" and "number" in types)


def _declared_types(schema: dict[str, Any]) -> frozenset[str] | None:
    declared = schema.get("type")
    if declared is None:
        return None
    return frozenset([declared] if isinstance(declared, str) else declared)


def _values(schema: dict[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    return list(schema["enum"]) if "enum" in schema else None


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _has_ref(schema: Any) -> bool:
    return '"$ref"' in json.dumps(schema)


def _without(schema: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in keys}


def _constrains(schema: Schema) -> bool:
    if isinstance(schema, bool):
        return not schema
    return any(key not in _ANNOTATIONS for key in schema)


class _Checker:
    """Compares sub-schemas of one reader root with sub-schemas of one writer root."""

    def __init__(self, reader: Schema, writer: Schema) -> None:
        self.reader_root = reader
        self.writer_root = writer
        self.active: set[tuple[int, int]] = set()

    def compare(self, reader: Schema, writer: Schema, path: str) -> list[str]:
        key = (id(reader), id(writer))
        if key in self.active:
            return []  # recursive schema: assume the pair holds while proving it
        self.active.add(key)
        try:
            return self._compare(reader, writer, path)
        finally:
            self.active.discard(key)

    def _compare(self, reader: Schema, writer: Schema, path: str) -> list[str]:
        where = "#" + path
        if reader == writer and not _has_ref(reader):
            return []
        r = _resolve(self.reader_root, reader, path)
        w = _resolve(self.writer_root, writer, path)
        if r is None or w is None:
            return [f"{where}: cannot resolve external $ref; cannot prove compatibility"]
        if w is False or r is True or not _constrains(r):
            return []
        if r is False:
            return [f"{where}: reader schema is false and rejects every document"]
        w = {} if w is True else w
        for combinator in ("anyOf", "oneOf", "allOf"):
            if combinator in w:
                return self._writer_combined(r, w, combinator, path)
        for combinator in ("allOf", "anyOf", "oneOf"):
            if combinator in r:
                return self._reader_combined(r, w, combinator, path)
        return self._compare_plain(r, w, path)

    def _writer_combined(self, r: dict[str, Any], w: dict[str, Any], kw: str, path: str) -> list[str]:
        rest = _without(w, kw)
        if _constrains(rest) and not self.compare(r, rest, path):
            return []  # the writer's own keywords already satisfy the reader
        branch_msgs = [self.compare(r, branch, path) for branch in w[kw]]
        if kw == "allOf":
            if any(not msgs for msgs in branch_msgs):
                return []
            return [f"#{path}: cannot prove compatibility of combined schemas (writer allOf)"]
        return [msg for msgs in branch_msgs for msg in msgs]

    def _reader_combined(self, r: dict[str, Any], w: dict[str, Any], kw: str, path: str) -> list[str]:
        msgs = self.compare(_without(r, kw), w, path)
        branch_msgs = [self.compare(branch, w, _join(path, kw, i)) for i, branch in enumerate(r[kw])]
        if kw == "allOf":
            return msgs + [msg for each in branch_msgs for msg in each]
        fits = [i for i, each in enumerate(branch_msgs) if not each]
        if kw == "anyOf" and fits:
            return msgs
        types = w.get("type")
        if kw == "anyOf" and isinstance(types, list) and len(types) > 1:
            # A nullable writer (["string", "null"]) may match a different branch per type.
            return msgs + [m for t in types for m in self.compare(r, {**w, "type": t}, path)]
        if kw == "oneOf" and len(fits) == 1 and self._disjoint_others(r["oneOf"], fits[0], w):
            return msgs
        return msgs + [f"#{path}: cannot prove compatibility of combined schemas (reader {kw})"]

    def _disjoint_others(self, branches: list[Schema], chosen: int, w: dict[str, Any]) -> bool:
        writer_types = self._writer_types(w)
        for i, branch in enumerate(branches):
            if i == chosen:
                continue
            target = _resolve(self.reader_root, branch, "")
            if not isinstance(target, dict) or _declared_types(target) is None:
                return False
            if any(_covers(_declared_types(target), t) for t in writer_types):
                return False
        return True

    @staticmethod
    def _writer_types(w: dict[str, Any]) -> set[str]:
        declared = _declared_types(w)
        values = _values(w)
        if values is not None:
            return {t for t in map(_value_type, values) if _covers(declared, t)}
        types = set(declared if declared is not None else _ALL_TYPES)
        if "number" in types:
            types.add("integer")
        return types

    def _compare_plain(self, r: dict[str, Any], w: dict[str, Any], path: str) -> list[str]:
        where = "#" + path
        values = _values(w)
        if values is not None:
            return self._check_values(r, values, path)
        msgs: list[str] = []
        reader_types = _declared_types(r)
        writer_types = self._writer_types(w)
        lost = sorted(t for t in writer_types if not _covers(reader_types, t))
        if "number" in lost and "integer" in lost and "integer" in writer_types:
            lost.remove("integer")
        if lost:
            shown = sorted(_declared_types(w) or _ALL_TYPES)
            accepted = sorted(reader_types or ())
            msgs.append(f"{where}: type narrowed: writer allows {shown}, reader accepts only {accepted}")
        if _values(r) is not None:
            msgs.append(f"{where}: reader restricts values to an enum/const but the writer does not")
        for keyword in sorted(set(r) - _HANDLED - _ANNOTATIONS):
            if _canon(r[keyword]) != _canon(w.get(keyword)):
                msgs.append(f"{where}: reader keyword {keyword!r} differs from the writer's; "
                            "cannot prove compatibility")
        kept = {t for t in writer_types if _covers(reader_types, t)}
        if "string" in kept:
            msgs += _bounds(r, w, where, "minLength", "maxLength")
        if kept & {"number", "integer"}:
            msgs += _numeric_bounds(r, w, where)
        if "array" in kept:
            msgs += _bounds(r, w, where, "minItems", "maxItems")
            if r.get("uniqueItems") and not w.get("uniqueItems"):
                msgs.append(f"{where}: reader requires uniqueItems but the writer does not")
            msgs += self._compare_items(r, w, path)
        if "object" in kept:
            msgs += _bounds(r, w, where, "minProperties", "maxProperties")
            msgs += self._compare_object(r, w, path)
        return msgs

    def _check_values(self, r: dict[str, Any], values: list[Any], path: str) -> list[str]:
        msgs = []
        allowed = _values(r)
        root = self.reader_root if isinstance(self.reader_root, dict) else {}
        validator = _validator_class(root)(root).evolve(schema=r)
        for value in values:
            if allowed is not None and _canon(value) not in set(map(_canon, allowed)):
                msgs.append(f"#{path}: writer value {value!r} is not in the reader's enum")
                continue
            error = jsonschema.exceptions.best_match(validator.iter_errors(value))
            if error is not None:
                msgs.append(f"#{path}: writer value {value!r} is rejected by the reader: {error.message}")
        return msgs

    def _compare_items(self, r: dict[str, Any], w: dict[str, Any], path: str) -> list[str]:
        r_prefix, r_rest, r_kw = _item_schemas(r)
        w_prefix, w_rest, _ = _item_schemas(w)
        msgs = []
        for i in range(max(len(r_prefix), len(w_prefix))):
            reader_item = r_prefix[i] if i < len(r_prefix) else r_rest
            writer_item = w_prefix[i] if i < len(w_prefix) else w_rest
            if i < len(r_prefix):
                at = _join(path, "prefixItems" if "prefixItems" in r else "items", i)
            else:
                at = _join(path, r_kw)
            msgs += self.compare(reader_item, writer_item, at)
        return msgs + self.compare(r_rest, w_rest, _join(path, r_kw))

    def _compare_object(self, r: dict[str, Any], w: dict[str, Any], path: str) -> list[str]:
        where = "#" + path
        msgs = []
        for name in r.get("required", []):
            if name not in w.get("required", []):
                msgs.append(f"{where}: reader requires property {name!r} that the writer does not require")
        r_props, w_props = r.get("properties", {}), w.get("properties", {})
        r_add, w_add = r.get("additionalProperties", True), w.get("additionalProperties", True)
        r_patterns, w_patterns = r.get("patternProperties", {}), w.get("patternProperties", {})
        if r_patterns and _canon(r_patterns) != _canon(w_patterns):
            msgs.append(f"{where}: reader patternProperties differ from the writer's; cannot prove compatibility")
        for name in sorted(set(r_props) | set(w_props)):
            at = _join(path, "properties", name)
            if name in r_props and name in w_props:
                msgs += self.compare(r_props[name], w_props[name], at)
            elif name in w_props:
                matching = [s for p, s in r_patterns.items() if re.search(p, name)]
                if not matching and _resolve(self.reader_root, r_add, at) is False:
                    msgs.append(f"#{at}: writer property {name!r} is not allowed by the reader's closed content model")
                    continue
                for schema in matching or [r_add]:
                    msgs += self.compare(schema, w_props[name], at)
            else:
                matching = [s for p, s in w_patterns.items() if re.search(p, name)]
                writer_schema = matching[0] if matching else w_add
                if _resolve(self.writer_root, writer_schema, at) is not False and not _constrains(writer_schema) \
                        and _constrains(r_props[name]):
                    msgs.append(f"#{at}: property {name!r} added to the reader, but the writer's open content "
                                f"model allows it with any value")
                else:
                    msgs += self.compare(r_props[name], writer_schema, at)
        at = _join(path, "additionalProperties")
        for writer_schema in [w_add, *([] if r_patterns else w_patterns.values())]:
            extra = self.compare(r_add, writer_schema, at)
            if extra and _resolve(self.reader_root, r_add, at) is False:
                extra = [f"#{at}: reader's closed content model rejects additional properties the writer allows"]
            msgs += extra
        return msgs


def _item_schemas(schema: dict[str, Any]) -> tuple[list[Schema], Schema, str]:
    """Split array item rules into (positional schemas, schema for the rest, its keyword)."""
    if "prefixItems" in schema:
        return list(schema["prefixItems"]), schema.get("items", True), "items"
    items = schema.get("items", True)
    if isinstance(items, list):
        return items, schema.get("additionalItems", True), "additionalItems"
    return [], items, "items"


def _bounds(r: dict[str, Any], w: dict[str, Any], where: str, low: str, high: str) -> list[str]:
    msgs = []
    if low in r and r[low] > w.get(low, 0):
        msgs.append(f"{where}: {low} tightened: reader {r[low]}, writer {w.get(low, 'unbounded')}")
    if high in r and (high not in w or r[high] < w[high]):
        msgs.append(f"{where}: {high} tightened: reader {r[high]}, writer {w.get(high, 'unbounded')}")
    return msgs


def _lower(schema: dict[str, Any]) -> tuple[float, bool] | None:
    """The tightest lower bound as (value, exclusive), or None."""
    options = [(schema["minimum"], False)] if "minimum" in schema else []
    if isinstance(schema.get("exclusiveMinimum"), (int, float)) and not isinstance(schema["exclusiveMinimum"], bool):
        options.append((schema["exclusiveMinimum"], True))
    return max(options, default=None)


def _upper(schema: dict[str, Any]) -> tuple[float, bool] | None:
    options = [(schema["maximum"], False)] if "maximum" in schema else []
    if isinstance(schema.get("exclusiveMaximum"), (int, float)) and not isinstance(schema["exclusiveMaximum"], bool):
        options.append((schema["exclusiveMaximum"], True))
    return min(options, key=lambda bound: (bound[0], not bound[1]), default=None)


def _numeric_bounds(r: dict[str, Any], w: dict[str, Any], where: str) -> list[str]:
    msgs = []
    r_low, w_low = _lower(r), _lower(w)
    if _tightened(r_low, w_low, sign=1):
        msgs.append(f"{where}: lower bound tightened: reader {_show(r_low, '>')}, writer {_show(w_low, '>')}")
    r_high, w_high = _upper(r), _upper(w)
    if _tightened(r_high, w_high, sign=-1):
        msgs.append(f"{where}: upper bound tightened: reader {_show(r_high, '<')}, writer {_show(w_high, '<')}")
    if "multipleOf" in r and ("multipleOf" not in w or (w["multipleOf"] / r["multipleOf"]) % 1 != 0):
        msgs.append(f"{where}: multipleOf tightened: reader {r['multipleOf']}, writer {w.get('multipleOf', 'none')}")
    return msgs


def _tightened(reader: tuple[float, bool] | None, writer: tuple[float, bool] | None, sign: int) -> bool:
    """Whether the reader's bound cuts off writer values; sign 1 for lower bounds, -1 for upper."""
    if reader is None:
        return False
    if writer is None:
        return True
    if writer[0] != reader[0]:
        return sign * writer[0] < sign * reader[0]
    return reader[1] and not writer[1]


def _show(bound: tuple[float, bool] | None, op: str) -> str:
    if bound is None:
        return "unbounded"
    return f"{op} {bound[0]}" if bound[1] else f"{op}= {bound[0]}"
