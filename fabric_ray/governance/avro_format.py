"""Avro as a registry format: Confluent's schema text, ``normalize=true`` and the reference compatibility checker.

* **Text and identity.** Confluent stores, returns and identifies an Avro schema by
  ``AvroSchema.canonicalString()``, which is Avro Java's ``Schema.toString()``: compact JSON with the
  keys in Avro Java's order (``type``, ``name``, ``namespace`` when it differs from the enclosing
  one, ``doc``, ``fields``/``symbols``/``size``, then other properties in the order given, then
  ``aliases``), every ``logicalType``, default, ``doc``, alias and custom property kept, whitespace
  and key order of the request dropped. :meth:`AvroFormat.text` writes the same text.
* **Normalization** (Confluent's ``AvroSchemaUtils.toNormalizedString`` then ``toString``):
  properties sorted (a valid ``logicalType`` and decimal ``precision``/``scale`` first), aliases
  sorted and qualified, defaults converted to the field's type (``1`` for a ``double`` becomes
  ``1.0``).
* **Compatibility** is decided by Apache Avro's reference implementation,
  ``avro.compatibility.ReaderWriterCompatibilityChecker`` (the Python port of the Avro Java
  ``SchemaCompatibility`` Confluent calls). Messages come from :func:`fabric_ray.governance.avro.check_compatibility`,
  which names the record and field, followed by the reference checker's incompatibility types
  (Confluent's ``errorType``, e.g. ``READER_FIELD_MISSING_DEFAULT_VALUE``) and locations. One
  deliberate addition: where both sides carry a logical type, a changed decimal scale (or a smaller
  reader precision) or a changed time unit is incompatible, though Avro's resolution ignores
  logical types and would let a reader decode the values as other numbers or instants.

Example:
    >>> fmt = AvroFormat()
    >>> p = fmt.parse('{"fields": [{"type": "string", "name": "f1", "default": "x"}], "name": "r", "type": "record"}', [])
    >>> fmt.text(p)
    '{"type":"record","name":"r","fields":[{"name":"f1","type":"string","default":"x"}]}'
    >>> old = fmt.parse('{"type": "record", "name": "r", "fields": []}', [])
    >>> fmt.check(old, p)
    []
    >>> fmt.check(p, fmt.parse('{"type": "record", "name": "r", "fields": [{"name": "f1", "type": "int"}]}', []))
    ["record 'r' field 'f1': reader type string cannot read writer type int (TYPE_MISMATCH at /fields/0/type)"]
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import avro.compatibility as avro_compat
import avro.errors
import avro.name
import avro.schema
import numpy as np

from fabric_ray.governance import avro as avro_rules
from fabric_ray.governance.formats import Resolved, SchemaFormatError, jackson_dumps

__all__ = ["AvroFormat", "ParsedAvro", "FORMAT"]

PRIMITIVES = avro_rules.PRIMITIVES
_NAMED = ("record", "error", "enum", "fixed")
# Avro Java's reserved attributes: anything else on a schema or field is a property, written back.
_SCHEMA_RESERVED = frozenset({"doc", "fields", "items", "name", "namespace", "size", "symbols", "values", "type", "aliases"})
_ENUM_RESERVED = _SCHEMA_RESERVED | {"default"}
_FIELD_RESERVED = frozenset({"default", "doc", "name", "order", "type", "aliases"})
# Type names that must stay qualified when written as a reference (Avro Java's Name.shouldWriteFull).
_TYPE_NAMES = PRIMITIVES | {"record", "enum", "array", "map", "union", "fixed"}
# Logical types Avro Java recognises, with the base types they may annotate.
_LOGICAL = {
    "decimal": {"bytes", "fixed"}, "big-decimal": {"bytes"}, "uuid": {"string", "fixed"}, "date": {"int"},
    "time-millis": {"int"}, "time-micros": {"long"}, "timestamp-millis": {"long"}, "timestamp-micros": {"long"},
    "timestamp-nanos": {"long"}, "local-timestamp-millis": {"long"}, "local-timestamp-micros": {"long"},
    "local-timestamp-nanos": {"long"}, "duration": {"fixed"},
}


class ParsedAvro:
    """A validated Avro schema: its JSON, our tree, and the JSON of the schemas it references."""

    def __init__(self, raw: Any, tree: avro_rules.AvroSchema, referenced: list[Any]) -> None:
        self.raw = raw
        self.tree = tree
        self.referenced = referenced
        self._reference: avro.schema.Schema | None = None

    @property
    def reference(self) -> avro.schema.Schema:
        """The schema parsed by Apache Avro's Python package (as Avro Java reads it, see :func:`_for_reference`).

        Raises:
            avro.errors.AvroException: a schema the Python package cannot read though Avro Java can,
                e.g. names with non-ASCII letters.
        """
        if self._reference is None:
            names = avro.name.Names()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # IgnoredLogicalType and friends
                for raw in self.referenced:
                    avro.schema.make_avsc_object(_for_reference(raw, None), names, validate_names=False)
                self._reference = avro.schema.make_avsc_object(
                    _for_reference(self.raw, None), names, validate_names=False
                )
        return self._reference


class AvroFormat:
    """The :class:`~fabric_ray.governance.formats.SchemaFormat` for ``AVRO``."""

    schema_type = "AVRO"
    references_supported = True

    def parse(self, text: str, resolved: list[Resolved], validate: bool = True) -> ParsedAvro:
        """Validate ``text`` with the named types of ``resolved`` known; ``validate=False`` skips default checks."""
        parser = avro_rules._Parser(check_defaults=validate)
        referenced = []
        try:
            for ref in resolved:
                if ref.schema_type != "AVRO":
                    raise SchemaFormatError(
                        f"reference {ref.name!r} is {ref.schema_type}; an AVRO schema can only reference AVRO"
                    )
                raw_ref = _json(ref.text)
                # Referenced schemas were validated when registered; their defaults are not ours to judge.
                parser.check_defaults = False
                parser.parse_root(raw_ref)
                referenced.append(raw_ref)
            parser.check_defaults = validate
            parser.pending_defaults = []
            raw = _json(text)
            tree = parser.parse_root(raw)
        except avro_rules.AvroSchemaError as exc:
            raise SchemaFormatError(str(exc)) from None
        return ParsedAvro(raw, tree, referenced)

    def text(self, parsed: ParsedAvro) -> str:
        """Avro Java's ``Schema.toString(references)``: each referenced schema's own type by name."""
        return jackson_dumps(_JavaWriter(parsed.referenced, _top_names(parsed.referenced)).write(parsed.raw, None))

    def normalized(self, parsed: ParsedAvro) -> str:
        """Confluent's normalized text: :meth:`text` of ``AvroSchemaUtils.toNormalizedString``."""
        normal = _Normalizer(parsed.referenced).build(parsed.raw, None)
        return jackson_dumps(_JavaWriter(parsed.referenced, _top_names(parsed.referenced)).write(normal, None))

    def resolved(self, parsed: ParsedAvro) -> str:
        """The text with every referenced type written in full (Confluent's ``?format=resolved``).

        A schema sent with its references inlined has this text; the registry finds it as the
        version that references them (Confluent's ``canLookup``).

        Example:
            >>> money = Resolved("Money", "AVRO", '{"type":"fixed","name":"Money","size":8}')
            >>> p = FORMAT.parse('{"type":"record","name":"P","fields":[{"name":"m","type":"Money"}]}', [money])
            >>> FORMAT.text(p)
            '{"type":"record","name":"P","fields":[{"name":"m","type":"Money"}]}'
            >>> FORMAT.resolved(p)
            '{"type":"record","name":"P","fields":[{"name":"m","type":{"type":"fixed","name":"Money","size":8}}]}'
        """
        return jackson_dumps(_JavaWriter(parsed.referenced, set()).write(parsed.raw, None))

    def check(self, reader: ParsedAvro, writer: ParsedAvro) -> list[str]:
        """Problems reading ``writer`` data with ``reader``; the verdict is the reference checker's.

        Where Apache Avro's Python package cannot read one of the schemas (non-ASCII names, which Avro
        Java 1.12 and Confluent accept), our resolver decides alone; it agrees with the reference on
        every case the tests run through both.
        """
        ours = avro_rules.check_compatibility(reader.tree, writer.tree)
        try:
            result = avro_compat.ReaderWriterCompatibilityChecker().get_compatibility(
                reader.reference, writer.reference
            )
        except avro.errors.AvroException:
            return ours
        if result.compatibility is not avro_compat.SchemaCompatibilityType.incompatible:
            # Deliberately stricter than Avro and Confluent: a changed decimal scale or time unit.
            return [p for p in ours if "logical type" in p]
        kinds = list(dict.fromkeys(t.name.upper() for t in result.incompatibilities))
        locations = sorted(result.locations - {"/"}) or ["/"]
        if len(ours) == 1 and len(kinds) == 1:  # one problem: name Confluent's errorType and its path inline
            return [f"{ours[0]} ({kinds[0]} at {locations[0]})"]
        summary = f"Avro reference check: {', '.join(kinds)} at {', '.join(locations)}"
        if ours:
            return ours + [summary]
        return [f"{summary}: {'; '.join(sorted(result.messages))}"]


FORMAT = AvroFormat()


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    stripped = text.strip()
    if stripped[:1] not in ('"', "{", "["):
        return stripped  # a bare type name such as int
    try:
        return json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise avro_rules.AvroSchemaError(f"schema: not valid JSON ({exc})") from None


def _top_names(referenced: list[Any]) -> set[str]:
    """Full names of the referenced schemas' own (top-level) types."""
    names = set()
    for raw in referenced:
        while isinstance(raw, dict) and isinstance(raw.get("type"), dict):
            raw = raw["type"]
        if isinstance(raw, dict) and raw.get("type") in _NAMED and isinstance(raw.get("name"), str):
            names.add(_split(raw["name"], raw, None)[0])
    return names


def _split(name: str, raw: dict, ns: str | None) -> tuple[str, str, str | None]:
    """(full name, short name, namespace) of a named type definition, as Avro Java resolves them."""
    if "." in name:
        space, _, short = name.rpartition(".")
        return name, short, space
    space = raw.get("namespace", ns)
    space = space if isinstance(space, str) and space else None
    return (f"{space}.{name}" if space else name), name, space


def _qualify(name: str, space: str | None) -> str:
    return name if "." in name or not space else f"{space}.{name}"


def _for_reference(raw: Any, ns: str | None) -> Any:
    """``raw`` as Avro Java reads it, for the Python reference checker: aliases as full names (Java's
    ``getAliases()``), ``error`` as the record it is, a type object inside ``type`` as that type."""
    if isinstance(raw, list):
        return [_for_reference(b, ns) for b in raw]
    if not isinstance(raw, dict):
        return raw
    kind = raw.get("type")
    if isinstance(kind, (dict, list)):
        return _for_reference(kind, ns)
    out = dict(raw)
    if kind in _NAMED and isinstance(raw.get("name"), str):
        _, _, space = _split(raw["name"], raw, ns)
        if isinstance(raw.get("aliases"), list):
            out["aliases"] = [_qualify(a, space) for a in raw["aliases"]]
        if kind in ("record", "error"):
            out["type"] = "record"
            out["fields"] = [
                {**f, "type": _for_reference(f.get("type"), space)} if isinstance(f, dict) else f
                for f in raw.get("fields", [])
            ]
        return out
    for key in ("items", "values"):
        if key in raw:
            out[key] = _for_reference(raw[key], ns)
    return out


class _Names:
    """Named types met so far (full name -> definition), with Avro Java's lookup of a type name."""

    def __init__(self, referenced: list[Any]) -> None:
        self.defs: dict[str, Any] = {}
        for raw in referenced:
            self._collect(raw, None)

    def _collect(self, raw: Any, ns: str | None) -> None:
        if isinstance(raw, list):
            for branch in raw:
                self._collect(branch, ns)
        elif isinstance(raw, dict):
            kind = raw.get("type")
            if isinstance(kind, (dict, list)):
                self._collect(kind, ns)
            elif kind in _NAMED and isinstance(raw.get("name"), str):
                full, _, space = _split(raw["name"], raw, ns)
                self.defs[full] = (raw, space)
                for f in raw.get("fields", []) if kind in ("record", "error") else []:
                    self._collect(f.get("type"), space)
            else:
                for key in ("items", "values"):
                    if key in raw:
                        self._collect(raw[key], ns)

    def resolve(self, name: str, ns: str | None) -> str:
        if "." not in name and ns and f"{ns}.{name}" in self.defs:
            return f"{ns}.{name}"
        return name


def _reference(full: str, ns: str | None) -> str:
    """How Avro Java writes a reference to ``full`` inside namespace ``ns`` (``Name.getQualified``)."""
    space, _, short = full.rpartition(".")
    if space and space == ns and short not in _TYPE_NAMES:
        return short
    return full


class _JavaWriter:
    """Avro Java's ``Schema.toJson`` over schema JSON, as ordered Python values.

    ``known`` are the full names written by reference from the start (Avro Java's ``knownNames``:
    the top-level type of each referenced schema); any other named type is written in full where it
    first appears, referenced types included, and by reference after that.
    """

    def __init__(self, referenced: list[Any], known: set[str]) -> None:
        self.names = _Names(referenced)
        self.written = set(known)

    def write(self, raw: Any, ns: str | None) -> Any:
        if isinstance(raw, str):
            if raw in PRIMITIVES:
                return raw
            full = self.names.resolve(raw, ns)
            if full not in self.written and full in self.names.defs:  # a referenced type, first met here
                definition, space = self.names.defs[full]
                return self._named(definition["type"], definition, ns, (full, full.rpartition(".")[2], space))
            return _reference(full, ns)
        if isinstance(raw, list):
            return [self.write(b, ns) for b in raw]
        kind = raw["type"]
        if isinstance(kind, (dict, list)):
            return self.write(kind, ns)
        if kind in PRIMITIVES:
            props = {k: v for k, v in raw.items() if k not in _SCHEMA_RESERVED}
            return {"type": kind, **props} if props else kind
        if kind in _NAMED:
            return self._named(kind, raw, ns)
        if kind in ("array", "map"):
            inner = "items" if kind == "array" else "values"
            out = {"type": kind, inner: self.write(raw[inner], ns)}
            out.update({k: v for k, v in raw.items() if k not in _SCHEMA_RESERVED})
            return out
        return self.write(kind, ns)  # a named type referred to in object form

    def _named(self, kind: str, raw: dict, ns: str | None, where: tuple | None = None) -> dict:
        full, short, space = where or _split(raw["name"], raw, ns)
        self.names.defs[full] = (raw, space)
        self.written.add(full)
        out: dict[str, Any] = {"type": kind, "name": short}
        if space is not None and space != ns:
            out["namespace"] = space
        elif space is None and ns is not None:
            out["namespace"] = ""
        if isinstance(raw.get("doc"), str):
            out["doc"] = raw["doc"]
        if kind in ("record", "error"):
            out["fields"] = [self._field(f, space) for f in raw["fields"]]
        elif kind == "enum":
            out["symbols"] = list(raw["symbols"])
            if isinstance(raw.get("default"), str):
                out["default"] = raw["default"]
        else:
            out["size"] = raw["size"]
        reserved = _ENUM_RESERVED if kind == "enum" else _SCHEMA_RESERVED
        out.update({k: v for k, v in raw.items() if k not in reserved})
        aliases = raw.get("aliases") or []
        if aliases:
            out["aliases"] = list(dict.fromkeys(_reference(_qualify(a, space), space) for a in aliases))
        return out

    def _field(self, f: dict, space: str | None) -> dict:
        out: dict[str, Any] = {"name": f["name"], "type": self.write(f["type"], space)}
        if isinstance(f.get("doc"), str):
            out["doc"] = f["doc"]
        if "default" in f:
            out["default"] = f["default"]
        order = str(f.get("order", "ascending")).lower()
        if order != "ascending":
            out["order"] = order
        if f.get("aliases"):
            out["aliases"] = list(dict.fromkeys(f["aliases"]))
        out.update({k: v for k, v in f.items() if k not in _FIELD_RESERVED})
        return out


def _logical(kind: str, props: dict) -> dict:
    """The logical-type attributes Avro Java recognises on ``kind`` (empty when none or invalid)."""
    name = props.get("logicalType")
    if not isinstance(name, str) or kind not in _LOGICAL.get(name, ()):
        return {}
    if name != "decimal":
        return {"logicalType": name}
    precision, scale = props.get("precision"), props.get("scale", 0)
    if not isinstance(precision, int) or precision <= 0 or not isinstance(scale, int) or not 0 <= scale <= precision:
        return {}
    return {"logicalType": name, "precision": precision, **({"scale": scale} if scale else {})}


def _with_sorted(out: dict, logical: dict, props: dict) -> dict:
    """``out`` plus the logical attributes, then the other properties sorted by key (first position wins)."""
    out.update(logical)
    for key in sorted(props):
        out.setdefault(key, props[key])
    return out


class _Normalizer:
    """Confluent's ``AvroSchemaUtils.toNormalizedString``, producing schema JSON for :class:`_JavaWriter`."""

    def __init__(self, referenced: list[Any]) -> None:
        self.names = _Names(referenced)
        self.done: set[str] = _top_names(referenced)  # Confluent's env: the referenced schemas' own types

    def build(self, raw: Any, ns: str | None) -> Any:
        if isinstance(raw, str):
            if raw in PRIMITIVES:
                return raw
            full = self.names.resolve(raw, ns)
            if full not in self.done and full in self.names.defs:  # a type nested in a referenced schema
                definition, space = self.names.defs[full]
                return self.build({**definition, "name": full}, None)
            return full
        if isinstance(raw, list):
            return [self.build(b, ns) for b in raw]
        kind = raw["type"]
        if isinstance(kind, (dict, list)):
            return self.build(kind, ns)
        props = {k: v for k, v in raw.items() if k not in (_ENUM_RESERVED if kind == "enum" else _SCHEMA_RESERVED)}
        logical = _logical(kind, props)
        if kind in PRIMITIVES:
            return _with_sorted({"type": kind}, logical, props) if props else kind
        if kind in ("array", "map"):
            inner = "items" if kind == "array" else "values"
            return _with_sorted({"type": kind, inner: self.build(raw[inner], ns)}, logical, props)
        if kind not in _NAMED:
            return self.build(kind, ns)
        full, _, space = _split(raw["name"], raw, ns)
        if full in self.done:
            return full
        self.done.add(full)
        self.names.defs[full] = (raw, space)
        out: dict[str, Any] = {"name": full, "type": "record" if kind == "error" else kind}
        if kind == "enum":
            out["symbols"] = list(raw["symbols"])
        elif kind == "fixed":
            out["size"] = raw["size"]
        else:
            out["fields"] = [self._field(f, space) for f in raw["fields"]]
        out.update(logical)
        if isinstance(raw.get("doc"), str) and raw["doc"]:
            out["doc"] = raw["doc"]
        if raw.get("aliases"):
            out["aliases"] = sorted({_qualify(a, space) for a in raw["aliases"]})
        if kind == "enum" and isinstance(raw.get("default"), str):
            out["default"] = raw["default"]
        for key in sorted(props):
            out.setdefault(key, props[key])
        return out

    def _field(self, f: dict, space: str | None) -> dict:
        out: dict[str, Any] = {"name": f["name"], "type": self.build(f["type"], space)}
        order = str(f.get("order", "ascending")).lower()
        if order != "ascending":
            out["order"] = order
        if isinstance(f.get("doc"), str):
            out["doc"] = f["doc"]
        if f.get("aliases"):
            out["aliases"] = sorted(set(f["aliases"]))
        if "default" in f:
            value = self._typed(f["default"], f["type"], space)
            if value is not _NONE:
                out["default"] = value
        for key in sorted(k for k in f if k not in _FIELD_RESERVED):
            out.setdefault(key, f[key])
        return out

    def _typed(self, value: Any, schema: Any, ns: str | None) -> Any:
        """Avro Java's ``JacksonUtils.toObject(default, schema)`` and back: the default in the field's type."""
        kind, schema, ns = self._kind(schema, ns)
        if kind == "union":
            return self._typed(value, schema[0], ns)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            if kind == "float":
                return float(str(np.float32(value)))  # Float.toString, read back as a double
            if kind == "double" or (isinstance(value, float) and kind is None):
                return float(value)
            if isinstance(value, int) and kind in (None, "int", "long"):
                return value
            return _NONE
        if isinstance(value, str):
            return value if kind in (None, "string", "enum", "bytes", "fixed") else _NONE
        if isinstance(value, list):
            items = schema.get("items") if kind == "array" else None
            return [v for v in (self._typed(x, items, ns) for x in value) if v is not _NONE]
        if isinstance(value, dict):
            out = {}
            for key, v in value.items():
                sub = None
                if kind == "map":
                    sub = schema.get("values")
                elif kind in ("record", "error"):
                    sub = next((f.get("type") for f in schema.get("fields", []) if f.get("name") == key), None)
                typed = self._typed(v, sub, ns)
                if typed is not _NONE:
                    out[key] = typed
            return out
        return _NONE

    def _kind(self, schema: Any, ns: str | None) -> tuple[str | None, Any, str | None]:
        """(type name, definition, namespace) of a field type, following named references."""
        if schema is None:
            return None, None, ns
        if isinstance(schema, list):
            return "union", schema, ns
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return schema, schema, ns
            found = self.names.defs.get(self.names.resolve(schema, ns))
            if found is None:
                return None, None, ns
            raw, space = found
            return raw["type"], raw, space
        kind = schema.get("type")
        if isinstance(kind, (dict, list)):
            return self._kind(kind, ns)
        if kind in _NAMED:
            _, _, space = _split(schema["name"], schema, ns)
            return kind, schema, space
        if kind in PRIMITIVES or kind in ("array", "map"):
            return kind, schema, ns
        return self._kind(kind, ns)


_NONE = object()  # a default Avro Java's conversion drops
