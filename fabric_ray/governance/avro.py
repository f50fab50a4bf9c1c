"""Avro schemas: validation, Parsing Canonical Form and schema-evolution compatibility.

Follows the Avro 1.11 specification. ``parse_avro`` validates a schema and returns an
:class:`AvroSchema` tree; ``canonical_form`` gives the Parsing Canonical Form (equal for
schemas that read data alike; the registry identifies schemas by their text, see ``avro_format``); ``check_compatibility`` applies Avro schema resolution (can data written with
one schema be read with another?); ``check_mode`` applies Confluent's compatibility modes
(BACKWARD, FORWARD, FULL and their transitive forms) over a schema history, with any pair
checker so other schema languages can reuse it.

Example:
    >>> writer = {"type": "record", "name": "Payment", "fields": [{"name": "amount", "type": "int"}]}
    >>> reader = {"type": "record", "name": "Payment", "fields": [
    ...     {"name": "amount", "type": "long"},
    ...     {"name": "currency", "type": "string", "default": "EUR"}]}
    >>> check_compatibility(reader, writer)
    []
    >>> check_mode("FORWARD", reader, [writer])
    ["FORWARD: version 0 cannot read the new schema: record 'Payment' field 'amount': reader type int cannot read writer type long"]
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Sequence

__all__ = [
    "AvroField",
    "AvroSchema",
    "AvroSchemaError",
    "Compatibility",
    "canonical_form",
    "check_compatibility",
    "check_mode",
    "parse_avro",
]

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = frozenset({"record", "error", "enum", "fixed"})
COMPLEX = NAMED | {"array", "map"}

# (writer type, reader type) pairs that schema resolution promotes.
PROMOTIONS = frozenset({
    ("int", "long"), ("int", "float"), ("int", "double"),
    ("long", "float"), ("long", "double"),
    ("float", "double"),
    ("string", "bytes"), ("bytes", "string"),
})

# Letters, digits and underscores, not starting with a digit; Unicode letters count (Avro Java 1.12's
# strict name validator uses Character.isLetter, and Confluent accepts names such as "Café").
_NAME = re.compile(r"[^\W\d]\w*\Z")
_NO_DEFAULT = object()
_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


class AvroSchemaError(ValueError):
    """An Avro schema is invalid; the message names where and why."""


@dataclass(eq=False, repr=False)
class AvroField:
    """One field of a record; ``default`` is ``None``-able, so use :attr:`has_default`."""

    name: str
    type: AvroSchema
    default: Any = _NO_DEFAULT
    aliases: tuple[str, ...] = ()

    @property
    def has_default(self) -> bool:
        return self.default is not _NO_DEFAULT

    def __repr__(self) -> str:
        return f"AvroField({self.name!r}, {describe(self.type)})"


@dataclass(eq=False, repr=False)
class AvroSchema:
    """A validated Avro schema node. Compared by identity; use :func:`canonical_form` for equality.

    ``type`` is a primitive name or ``record``/``enum``/``fixed``/``array``/``map``/``union``.
    Named types carry their full ``name``; ``aliases`` are full names too. Named types may be
    recursive, so walk them with care (the helpers here track what they have seen).

    Example:
        >>> s = parse_avro({"type": "array", "items": {"type": "long", "logicalType": "timestamp-millis"}})
        >>> s.type, s.items.type, s.items.logical_type
        ('array', 'long', 'timestamp-millis')
    """

    type: str
    name: str | None = None
    aliases: tuple[str, ...] = ()
    fields: tuple[AvroField, ...] = ()
    symbols: tuple[str, ...] = ()
    enum_default: str | None = None
    size: int | None = None
    items: AvroSchema | None = None
    values: AvroSchema | None = None
    branches: tuple[AvroSchema, ...] = ()
    logical_type: str | None = None
    props: dict[str, Any] = field(default_factory=dict)

    @property
    def short_name(self) -> str | None:
        """The name without its namespace (``None`` for unnamed types)."""
        return None if self.name is None else self.name.rpartition(".")[2]

    def __repr__(self) -> str:
        return f"AvroSchema({canonical_form(self)})"


def _inner(schema: AvroSchema) -> AvroSchema:
    """The items of an array or the values of a map."""
    inner = schema.items if schema.type == "array" else schema.values
    if inner is None:
        raise AssertionError(f"{schema.type} without items or values")
    return inner


def describe(schema: AvroSchema) -> str:
    """A short human-readable name for a schema node, e.g. ``int``, ``record 'Payment'``, ``array<string>``."""
    if schema.name is not None:
        return f"{schema.type} {schema.name!r}"
    if schema.type == "array":
        return f"array<{describe(_inner(schema))}>"
    if schema.type == "map":
        return f"map<{describe(_inner(schema))}>"
    if schema.type == "union":
        return "union[" + ", ".join(describe(b) for b in schema.branches) + "]"
    return schema.type


def _where(path: tuple[str, ...]) -> str:
    return " ".join(path) if path else "schema"


# ---------------------------------------------------------------------------------------------
# Parsing and validation


def parse_avro(schema: str | dict | list | AvroSchema) -> AvroSchema:
    """Validate an Avro schema given as JSON text, a parsed JSON value, or an :class:`AvroSchema`.

    Args:
        schema: JSON text (``'"int"'``, ``'{"type": "record", ...}'``), a bare type name
            (``"int"``), a dict (complex type) or a list (union).

    Returns:
        The validated schema tree.

    Raises:
        AvroSchemaError: naming the path and problem, e.g.
            ``record 'Payment' field 'amount': unknown type 'dobule'``.

    Example:
        >>> parse_avro('{"type": "enum", "name": "Suit", "symbols": ["HEARTS", "SPADES"]}').symbols
        ('HEARTS', 'SPADES')
        >>> parse_avro({"type": "record", "name": "Payment", "fields": [{"name": "amount", "type": "dobule"}]})
        Traceback (most recent call last):
        ...
        fabric_ray.governance.avro.AvroSchemaError: record 'Payment' field 'amount': unknown type 'dobule'
    """
    if isinstance(schema, AvroSchema):
        return schema
    if isinstance(schema, str):
        text = schema.strip()
        if text[:1] in ('"', "{", "["):
            try:
                schema = json.loads(text)
            except json.JSONDecodeError as exc:
                raise AvroSchemaError(f"schema: not valid JSON ({exc})") from None
    return _Parser().parse_root(schema)


class _Parser:
    """One parse: the named types defined so far and the defaults still to check."""

    def __init__(self, check_defaults: bool = True) -> None:
        self.check_defaults = check_defaults  # False: Confluent's validateNewSchemas=false
        self.names: dict[str, AvroSchema] = {}
        # Defaults are checked once the whole tree exists, so recursive types can be walked.
        self.pending_defaults: list[tuple[tuple[str, ...], AvroSchema, Any]] = []

    def parse_root(self, raw: Any) -> AvroSchema:
        root = self.parse(raw, (), None)
        for path, schema, value in self.pending_defaults:
            if not _default_ok(schema, value):
                if schema.type == "union":
                    problem = f"default {value!r} does not match the first union branch {describe(schema.branches[0])}"
                else:
                    problem = f"default {value!r} does not match type {describe(schema)}"
                raise AvroSchemaError(f"{_where(path)}: {problem}")
        return root

    def parse(self, raw: Any, path: tuple[str, ...], namespace: str | None) -> AvroSchema:
        if isinstance(raw, str):
            return self._by_name(raw, path, namespace)
        if isinstance(raw, list):
            return self._union(raw, path, namespace)
        if not isinstance(raw, dict):
            raise AvroSchemaError(f"{_where(path)}: expected a type name, object or list; got {raw!r}")
        if "type" not in raw:
            raise AvroSchemaError(f"{_where(path)}: object has no 'type'")
        kind = raw["type"]
        if isinstance(kind, (dict, list)):
            return self.parse(kind, path, namespace)
        if not isinstance(kind, str):
            raise AvroSchemaError(f"{_where(path)}: 'type' must be a string, object or list; got {kind!r}")
        if kind in PRIMITIVES:
            props = {k: v for k, v in raw.items() if k not in ("type", "logicalType")}
            return AvroSchema(kind, logical_type=_logical_type(raw, path), props=props)
        if kind in NAMED:
            return self._named(kind, raw, path, namespace)
        if kind == "array":
            return self._container(raw, "items", path, namespace)
        if kind == "map":
            return self._container(raw, "values", path, namespace)
        return self._by_name(kind, path, namespace)

    def _by_name(self, name: str, path: tuple[str, ...], namespace: str | None) -> AvroSchema:
        if name in PRIMITIVES:
            return AvroSchema(name)
        if name in COMPLEX:
            raise AvroSchemaError(f"{_where(path)}: type {name!r} must be written as an object with its attributes")
        candidates = [name] if "." in name or not namespace else [f"{namespace}.{name}", name]
        for candidate in candidates:
            if candidate in self.names:
                return self.names[candidate]
        raise AvroSchemaError(f"{_where(path)}: unknown type {name!r}")

    def _union(self, raw: list, path: tuple[str, ...], namespace: str | None) -> AvroSchema:
        if not raw:
            raise AvroSchemaError(f"{_where(path)}: union has no branches")
        branches: list[AvroSchema] = []
        seen: set[str] = set()
        for i, item in enumerate(raw):
            branch = self.parse(item, path + (f"union branch {i}",), namespace)
            if branch.type == "union":
                raise AvroSchemaError(f"{_where(path)}: union branch {i} is itself a union; unions may not nest")
            key = branch.name or branch.type
            if key in seen:
                raise AvroSchemaError(f"{_where(path)}: union has duplicate branch {key!r}")
            seen.add(key)
            branches.append(branch)
        return AvroSchema("union", branches=tuple(branches))

    def _container(self, raw: dict, key: str, path: tuple[str, ...], namespace: str | None) -> AvroSchema:
        kind = raw["type"]
        if key not in raw:
            raise AvroSchemaError(f"{_where(path)}: {kind} has no {key!r}")
        inner = self.parse(raw[key], path + (key,), namespace)
        props = {k: v for k, v in raw.items() if k not in ("type", key, "logicalType")}
        logical = _logical_type(raw, path)
        if kind == "array":
            return AvroSchema(kind, items=inner, logical_type=logical, props=props)
        return AvroSchema(kind, values=inner, logical_type=logical, props=props)

    def _named(self, kind: str, raw: dict, path: tuple[str, ...], namespace: str | None) -> AvroSchema:
        if kind == "error":
            kind = "record"
        fullname, own_ns = _full_name(kind, raw, path, namespace)
        if fullname.rpartition(".")[2] in PRIMITIVES:
            raise AvroSchemaError(f"{_where(path)}: {kind} may not be named after primitive type {fullname!r}")
        if fullname in self.names:
            raise AvroSchemaError(f"{_where(path)}: {kind} name {fullname!r} is already defined")
        here = path + (f"{kind} {fullname!r}",)
        aliases = tuple(_qualify(a, own_ns) for a in _name_list(raw.get("aliases", []), "aliases", here))
        known = {"type", "name", "namespace", "aliases", "fields", "symbols", "default", "size", "logicalType"}
        props = {k: v for k, v in raw.items() if k not in known}
        schema = AvroSchema(kind, name=fullname, aliases=aliases, logical_type=_logical_type(raw, here), props=props)
        # Register before the body so fields can refer back to this type (recursion).
        self.names[fullname] = schema
        if kind == "record":
            schema.fields = self._fields(raw, here, own_ns)
        elif kind == "enum":
            schema.symbols, schema.enum_default = _enum_body(raw, here)
        else:
            size = raw.get("size")
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise AvroSchemaError(f"{_where(here)}: 'size' must be a non-negative integer; got {size!r}")
            schema.size = size
        return schema

    def _fields(self, raw: dict, path: tuple[str, ...], namespace: str | None) -> tuple[AvroField, ...]:
        fields_raw = raw.get("fields")
        if not isinstance(fields_raw, list):
            raise AvroSchemaError(f"{_where(path)}: 'fields' must be a list; got {fields_raw!r}")
        fields: list[AvroField] = []
        seen: set[str] = set()
        for i, f in enumerate(fields_raw):
            if not isinstance(f, dict):
                raise AvroSchemaError(f"{_where(path)}: field {i} must be an object; got {f!r}")
            name = f.get("name")
            if not isinstance(name, str) or not _NAME.match(name):
                raise AvroSchemaError(f"{_where(path)}: field {i} has an invalid or missing name {name!r}")
            if name in seen:
                raise AvroSchemaError(f"{_where(path)}: duplicate field {name!r}")
            seen.add(name)
            here = path + (f"field {name!r}",)
            if "type" not in f:
                raise AvroSchemaError(f"{_where(here)}: field has no 'type'")
            if f.get("order", "ascending") not in ("ascending", "descending", "ignore"):
                raise AvroSchemaError(f"{_where(here)}: 'order' must be ascending, descending or ignore; got {f['order']!r}")
            ftype = self.parse(f["type"], here, namespace)
            aliases = tuple(_name_list(f.get("aliases", []), "aliases", here))
            default = f.get("default", _NO_DEFAULT)
            if default is not _NO_DEFAULT and self.check_defaults:
                self.pending_defaults.append((here, ftype, default))
            fields.append(AvroField(name, ftype, default, aliases))
        return tuple(fields)


def _logical_type(raw: dict, path: tuple[str, ...]) -> str | None:
    logical = raw.get("logicalType")
    if logical is not None and not isinstance(logical, str):
        raise AvroSchemaError(f"{_where(path)}: 'logicalType' must be a string; got {logical!r}")
    return logical


def _full_name(kind: str, raw: dict, path: tuple[str, ...], namespace: str | None) -> tuple[str, str | None]:
    """The full name of a named type and the namespace its children inherit."""
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise AvroSchemaError(f"{_where(path)}: {kind} has no 'name'")
    if "." in name:
        own_ns: str | None = name.rpartition(".")[0]
        fullname = name
    else:
        own_ns = raw.get("namespace", namespace)
        if own_ns is not None and not isinstance(own_ns, str):
            raise AvroSchemaError(f"{_where(path)}: {kind} {name!r} 'namespace' must be a string; got {own_ns!r}")
        own_ns = own_ns or None
        fullname = f"{own_ns}.{name}" if own_ns else name
    if not all(_NAME.match(part) for part in fullname.split(".")):
        raise AvroSchemaError(f"{_where(path)}: {kind} name {fullname!r} is not a valid Avro name")
    return fullname, own_ns


def _qualify(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _name_list(value: Any, what: str, path: tuple[str, ...]) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AvroSchemaError(f"{_where(path)}: {what!r} must be a list of strings; got {value!r}")
    for v in value:
        if not all(_NAME.match(part) for part in v.split(".")):
            raise AvroSchemaError(f"{_where(path)}: {what} entry {v!r} is not a valid Avro name")
    return value


def _enum_body(raw: dict, path: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
    symbols = raw.get("symbols")
    if not isinstance(symbols, list):
        raise AvroSchemaError(f"{_where(path)}: 'symbols' must be a list; got {symbols!r}")
    seen: set[str] = set()
    for s in symbols:
        if not isinstance(s, str) or not _NAME.match(s):
            raise AvroSchemaError(f"{_where(path)}: symbol {s!r} is not a valid Avro name")
        if s in seen:
            raise AvroSchemaError(f"{_where(path)}: duplicate symbol {s!r}")
        seen.add(s)
    default = raw.get("default")
    if default is not None and default not in seen:
        raise AvroSchemaError(f"{_where(path)}: default {default!r} is not one of the symbols")
    return tuple(symbols), default


def _default_ok(schema: AvroSchema, value: Any) -> bool:
    """Whether a JSON default value fits a schema (spec: "Complex Types" / field defaults)."""
    t = schema.type
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t in _INT_RANGE:
        low, high = _INT_RANGE[t]
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if t in ("float", "double"):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t in ("string", "bytes"):
        return isinstance(value, str)
    if t == "fixed":
        return isinstance(value, str) and len(value) == schema.size
    if t == "enum":
        return value in schema.symbols
    if t == "array":
        return isinstance(value, list) and all(_default_ok(_inner(schema), v) for v in value)
    if t == "map":
        return isinstance(value, dict) and all(_default_ok(_inner(schema), v) for v in value.values())
    if t == "union":
        return _default_ok(schema.branches[0], value)
    if t == "record":
        if not isinstance(value, dict):
            return False
        return all(
            _default_ok(f.type, value[f.name]) if f.name in value else f.has_default for f in schema.fields
        )
    return False


# ---------------------------------------------------------------------------------------------
# Parsing Canonical Form


def canonical_form(schema: str | dict | list | AvroSchema) -> str:
    """Avro's Parsing Canonical Form: the text two schemas share exactly when they read data alike.

    Keeps only ``type``, ``name`` (full), ``fields``, ``symbols``, ``items``, ``values`` and
    ``size``, in that order, with no whitespace; primitives become bare strings and a named type
    is written out once, then referred to by full name.

    Example:
        >>> canonical_form({"type": "int"}) == canonical_form("int") == '"int"'
        True
        >>> canonical_form({"type": "fixed", "name": "MD5", "namespace": "x", "size": 16, "doc": "hash"})
        '{"name":"x.MD5","type":"fixed","size":16}'
    """
    return _canonical(parse_avro(schema), set())


def _canonical(s: AvroSchema, seen: set[str]) -> str:
    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    if s.type in PRIMITIVES:
        return dump(s.type)
    if s.type == "union":
        return "[" + ",".join(_canonical(b, seen) for b in s.branches) + "]"
    if s.type == "array":
        return '{"type":"array","items":' + _canonical(_inner(s), seen) + "}"
    if s.type == "map":
        return '{"type":"map","values":' + _canonical(_inner(s), seen) + "}"
    name = s.name or ""  # named types always have one
    if name in seen:
        return dump(name)
    seen.add(name)
    head = '{"name":' + dump(name) + ',"type":' + dump(s.type)
    if s.type == "record":
        fields = ",".join(
            '{"name":' + dump(f.name) + ',"type":' + _canonical(f.type, seen) + "}" for f in s.fields
        )
        return head + ',"fields":[' + fields + "]}"
    if s.type == "enum":
        return head + ',"symbols":' + dump(list(s.symbols)) + "}"
    return head + ',"size":' + str(s.size) + "}"


# ---------------------------------------------------------------------------------------------
# Schema resolution


def check_compatibility(reader: Any, writer: Any) -> list[str]:
    """Avro schema resolution: can data written with ``writer`` be read with ``reader``?

    Args:
        reader: the schema the consumer reads with (anything :func:`parse_avro` takes).
        writer: the schema the data was written with.

    Returns:
        One message per incompatibility, each naming its path; empty when compatible.

    Raises:
        AvroSchemaError: if either schema is invalid.

    Example:
        >>> check_compatibility("long", "int")
        []
        >>> check_compatibility("int", "long")
        ['schema: reader type int cannot read writer type long']
    """
    return _Resolver().check(parse_avro(reader), parse_avro(writer), ())


class _Resolver:
    """One compatibility check; remembers the (reader, writer) pairs being checked."""

    def __init__(self) -> None:
        # A pair met again while still being checked is a recursive type: assume it resolves,
        # since any real problem is reported where the recursion started.
        self.active: set[tuple[int, int]] = set()

    def check(self, r: AvroSchema, w: AvroSchema, path: tuple[str, ...]) -> list[str]:
        key = (id(r), id(w))
        if key in self.active:
            return []
        self.active.add(key)
        try:
            return self._check(r, w, path)
        finally:
            self.active.discard(key)

    def _check(self, r: AvroSchema, w: AvroSchema, path: tuple[str, ...]) -> list[str]:
        if w.type == "union":
            problems: list[str] = []
            for branch in w.branches:
                problems += self.check(r, branch, path + (f"writer branch {describe(branch)}",))
            return problems
        if r.type == "union":
            return self._reader_union(r, w, path)
        if r.type != w.type:
            if (w.type, r.type) in PROMOTIONS:
                return []
            return [f"{_where(path)}: reader type {describe(r)} cannot read writer type {describe(w)}"]
        if r.type in ("array", "map"):
            return self.check(_inner(r), _inner(w), path + ("items" if r.type == "array" else "values",))
        if r.name is None:
            return _logical_conflict(r, w, path)  # same primitive
        if not _names_match(r, w):
            return [f"{_where(path)}: {r.type} name {r.name!r} (reader) does not match {w.name!r} (writer)"]
        here = path + (f"{r.type} {r.name!r}",)
        if r.type == "record":
            return self._record(r, w, here)
        if r.type == "enum":
            missing = [s for s in w.symbols if s not in r.symbols]
            if missing and r.enum_default is None:
                return [f"{_where(here)}: writer symbols {missing} are missing from the reader, which has no default"]
            return []
        if r.size != w.size:
            return [f"{_where(here)}: fixed size {r.size} (reader) does not match {w.size} (writer)"]
        return _logical_conflict(r, w, here)

    def _reader_union(self, r: AvroSchema, w: AvroSchema, path: tuple[str, ...]) -> list[str]:
        for branch in r.branches:
            if not self.check(branch, w, path):
                return []
        # Report why the closest branch (same kind and name) failed, if there is one.
        for branch in r.branches:
            if branch.type == w.type and (w.name is None or _names_match(branch, w)):
                return self.check(branch, w, path)
        return [f"{_where(path)}: writer type {describe(w)} matches no branch of reader {describe(r)}"]

    def _record(self, r: AvroSchema, w: AvroSchema, path: tuple[str, ...]) -> list[str]:
        by_name = {f.name: f for f in w.fields}
        problems: list[str] = []
        for rf in r.fields:
            here = path + (f"field {rf.name!r}",)
            wf = next((by_name[n] for n in (rf.name, *rf.aliases) if n in by_name), None)
            if wf is not None:
                problems += self.check(rf.type, wf.type, here)
            elif not rf.has_default:
                problems.append(f"{_where(here)}: reader field is missing from the writer and has no default")
        return problems


# Logical types over the same underlying type that read each other's values as different values.
_TIME_UNITS = {
    "int": {"date", "time-millis"},
    "long": {"time-micros", "timestamp-millis", "timestamp-micros", "timestamp-nanos", "local-timestamp-millis",
             "local-timestamp-micros", "local-timestamp-nanos"},
}


def _logical_conflict(r: AvroSchema, w: AvroSchema, path: tuple[str, ...]) -> list[str]:
    """Where both sides carry a logical type and a reader would decode the writer's values wrongly.

    Avro's schema resolution (and Confluent) ignore logical types; this is stricter, so a decimal
    whose scale changes or a timestamp whose unit changes is never judged compatible. A logical type
    on one side only is fine: the other reads the underlying type.
    """
    rl, wl = r.logical_type, w.logical_type
    if rl is None or wl is None:
        return []
    if rl == wl == "decimal":
        rs, ws = r.props.get("scale", 0), w.props.get("scale", 0)
        rp, wp = r.props.get("precision"), w.props.get("precision")
        if rs != ws:
            return [f"{_where(path)}: decimal logical type scale {rs} (reader) does not match {ws} (writer)"]
        if isinstance(rp, int) and isinstance(wp, int) and rp < wp:
            return [f"{_where(path)}: decimal logical type precision {rp} (reader) is less than {wp} (writer)"]
        return []
    if rl != wl and {rl, wl} <= _TIME_UNITS.get(r.type, set()):
        return [f"{_where(path)}: logical type {rl} (reader) reads {wl} (writer) values as other instants"]
    return []


def _names_match(r: AvroSchema, w: AvroSchema) -> bool:
    """Named types match on unqualified name (spec 1.11, as Avro Java does) or a reader alias."""
    return r.short_name == w.short_name or w.name in r.aliases


# ---------------------------------------------------------------------------------------------
# Compatibility modes


class Compatibility(str, Enum):
    """Confluent Schema Registry compatibility modes."""

    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"


PairChecker = Callable[[Any, Any], list[str]]
"""``checker(reader, writer) -> problems``, e.g. :func:`check_compatibility`."""


def check_mode(
    mode: Compatibility | str,
    new_schema: Any,
    previous_schemas: Sequence[Any],
    checker: PairChecker = check_compatibility,
) -> list[str]:
    """Check a new schema against a history under a Confluent compatibility mode.

    BACKWARD: the new schema can read data written with the latest previous one. FORWARD: the
    latest previous schema can read data written with the new one. FULL: both. The
    ``*_TRANSITIVE`` modes check against every previous schema, not only the latest. NONE: no check.

    Args:
        mode: a :class:`Compatibility` or its name.
        new_schema: the candidate schema.
        previous_schemas: registered schemas, oldest first.
        checker: ``checker(reader, writer) -> problems``; any schema language can plug in here.

    Returns:
        Problems, each prefixed with the direction and the previous version's index (0 = oldest).

    Raises:
        ValueError: if ``mode`` is not a known mode.

    Example:
        >>> v1 = {"type": "record", "name": "P", "fields": []}
        >>> v2 = {"type": "record", "name": "P", "fields": [{"name": "x", "type": "int"}]}
        >>> check_mode(Compatibility.FORWARD, v2, [v1])
        []
        >>> check_mode("BACKWARD", v2, [v1])
        ["BACKWARD: new schema cannot read version 0: record 'P' field 'x': reader field is missing from the writer and has no default"]
    """
    try:
        mode = Compatibility(mode)
    except ValueError:
        known = ", ".join(m.value for m in Compatibility)
        raise ValueError(f"unknown compatibility mode {mode!r}; expected one of {known}") from None
    if mode is Compatibility.NONE or not previous_schemas:
        return []
    last = len(previous_schemas) - 1
    versions = range(last + 1) if mode.value.endswith("_TRANSITIVE") else [last]
    backward = mode.value.startswith(("BACKWARD", "FULL"))
    forward = mode.value.startswith(("FORWARD", "FULL"))
    problems: list[str] = []
    for i in versions:
        old = previous_schemas[i]
        if backward:
            problems += [f"BACKWARD: new schema cannot read version {i}: {p}" for p in checker(new_schema, old)]
        if forward:
            problems += [f"FORWARD: version {i} cannot read the new schema: {p}" for p in checker(old, new_schema)]
    return problems
