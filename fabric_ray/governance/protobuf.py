"""Protobuf schema compatibility, ported from Confluent Schema Registry's ``protobuf/diff/*.java``.

:func:`compare` lists the :class:`Difference` s between an original (older, the writer) and an
update (newer, the reader) schema, as Confluent's ``SchemaDiff.compare`` does: same types, same
paths (``#/Message/Nested/3``, ``#/Message/oneof_name/3``, ``#/Enum/1``), same walk. Schemas are
compiled by ``protoc`` first (:func:`~fabric_ray.governance.protobuf_parse.parse_protobuf`), so
type names arrive fully resolved; Confluent resolves them itself on the parsed text, with the
same result for every schema ``protoc`` accepts.

Compatible changes (everything else is incompatible), Confluent's ``COMPATIBLE_CHANGES``:
``MESSAGE_ADDED``, ``MESSAGE_MOVED``, ``ENUM_ADDED``, ``ENUM_REMOVED``, ``ENUM_CONST_ADDED``,
``ENUM_CONST_CHANGED``, ``ENUM_CONST_REMOVED``, ``FIELD_ADDED``, ``FIELD_REMOVED``,
``FIELD_NAME_CHANGED``, ``FIELD_STRING_OR_BYTES_LABEL_CHANGED``, ``ONEOF_ADDED``,
``ONEOF_REMOVED``, ``ONEOF_FIELD_ADDED``, ``ONEOF_FIELD_MOVED_TO_TOP_LEVEL``.

The rules, in short: fields match by number; a field's kind (scalar, message, map) must stay;
scalars stay within their wire-compatible group (``int32 int64 uint32 uint64 bool`` and enums;
``sint32 sint64``; ``string bytes``; ``fixed32 sfixed32``; ``fixed64 sfixed64``; ``float``;
``double``); a numeric field may not change between optional/repeated/required; a message-typed
field keeps its type's name (without the package), and a type from a referenced schema of another
subject or version is compared member by member; required fields may not be added or removed;
removing a message or changing the package is incompatible; a oneof may not gain a member that
was independent of its other members; a oneof member may not be dropped unless the whole oneof
goes.

Example:
    >>> from fabric_ray.governance.protobuf_parse import parse_protobuf
    >>> v1 = parse_protobuf('syntax = "proto3"; message Pay { int32 cents = 1; string note = 2; }')
    >>> v2 = parse_protobuf('syntax = "proto3"; message Pay { int64 cents = 1; bytes note = 2; bool ok = 3; }')
    >>> [str(d) for d in compare(v1, v2)]
    ['FIELD_ADDED #/Pay/3']
    >>> v3 = parse_protobuf('syntax = "proto3"; message Pay { string cents = 1; }')
    >>> check_compatibility(v3, v1)
    ["FIELD_SCALAR_KIND_CHANGED #/Pay/1: field 'cents' (line 1 of the new schema): its scalar kind changed, from int32 to string, which is not wire-compatible"]
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from google.protobuf import descriptor_pb2

from fabric_ray.governance.protobuf_parse import ProtobufSchemaError, ProtoSchema, is_builtin, parse_protobuf

__all__ = [
    "COMPATIBLE_CHANGES", "Difference", "ProtoSchema", "ProtobufSchemaError", "check_compatibility", "compare",
    "is_builtin", "parse_protobuf",
]

F = descriptor_pb2.FieldDescriptorProto

COMPATIBLE_CHANGES = frozenset({
    "MESSAGE_ADDED", "MESSAGE_MOVED", "ENUM_ADDED", "ENUM_REMOVED", "ENUM_CONST_ADDED", "ENUM_CONST_CHANGED",
    "ENUM_CONST_REMOVED", "FIELD_ADDED", "FIELD_REMOVED", "FIELD_NAME_CHANGED", "FIELD_STRING_OR_BYTES_LABEL_CHANGED",
    "ONEOF_ADDED", "ONEOF_REMOVED", "ONEOF_FIELD_ADDED", "ONEOF_FIELD_MOVED_TO_TOP_LEVEL",
})

_DESCRIPTIONS = {
    "PACKAGE_CHANGED": "the package changed",
    "MESSAGE_REMOVED": "the message was removed",
    "FIELD_KIND_CHANGED": "its kind (scalar, message or map) changed",
    "FIELD_SCALAR_KIND_CHANGED": "its scalar kind changed",
    "FIELD_NAMED_TYPE_CHANGED": "its message type changed",
    "FIELD_NUMERIC_LABEL_CHANGED": "the label (optional, repeated, required) of a numeric field changed",
    "REQUIRED_FIELD_ADDED": "a required field was added",
    "REQUIRED_FIELD_REMOVED": "a required field was removed",
    "ONEOF_FIELD_REMOVED": "a oneof member was removed while its oneof stays",
    "MULTIPLE_FIELDS_MOVED_TO_ONEOF": "several independent fields were moved into one oneof",
    "FIELD_MOVED_TO_EXISTING_ONEOF": "a field was moved into a oneof with members it was independent of",
}

_SCALAR_NAMES = {
    F.TYPE_DOUBLE: "double", F.TYPE_FLOAT: "float", F.TYPE_INT64: "int64", F.TYPE_UINT64: "uint64",
    F.TYPE_INT32: "int32", F.TYPE_FIXED64: "fixed64", F.TYPE_FIXED32: "fixed32", F.TYPE_BOOL: "bool",
    F.TYPE_STRING: "string", F.TYPE_BYTES: "bytes", F.TYPE_UINT32: "uint32", F.TYPE_SFIXED32: "sfixed32",
    F.TYPE_SFIXED64: "sfixed64", F.TYPE_SINT32: "sint32", F.TYPE_SINT64: "sint64",
}
# Wire-compatible groups, see https://protobuf.dev/programming-guides/proto3/#updating
_SCALAR_KINDS = {
    "int32": "GENERAL_NUMBER", "int64": "GENERAL_NUMBER", "uint32": "GENERAL_NUMBER", "uint64": "GENERAL_NUMBER",
    "bool": "GENERAL_NUMBER", "sint32": "SIGNED_NUMBER", "sint64": "SIGNED_NUMBER", "string": "STRING_OR_BYTES",
    "bytes": "STRING_OR_BYTES", "fixed32": "FIXED32", "sfixed32": "FIXED32", "fixed64": "FIXED64",
    "sfixed64": "FIXED64", "float": "FLOAT", "double": "DOUBLE",
}
_NUMERIC = {"GENERAL_NUMBER", "SIGNED_NUMBER", "FIXED32", "FIXED64", "FLOAT", "DOUBLE"}
_LOCAL = ("", "", -1)  # Confluent's dummy reference for the schema's own types


@dataclass(frozen=True)
class Difference:
    """One change between two schemas: Confluent's type and path, and where it is, in words.

    ``str(d)`` is ``"TYPE #/path"``, the form Confluent's own tests compare.
    """

    type: str
    path: str
    detail: str = ""

    @property
    def compatible(self) -> bool:
        """Whether Confluent counts this change as backward compatible."""
        return self.type in COMPATIBLE_CHANGES

    def message(self) -> str:
        """``TYPE #/path: <which element>: <what changed>``, for an error message."""
        what = _DESCRIPTIONS.get(self.type, self.type.lower().replace("_", " "))
        if ": " in self.detail:
            return f"{self}: {self.detail}"
        return f"{self}: {self.detail}: {what}" if self.detail else f"{self}: {what}"

    def __str__(self) -> str:
        return f"{self.type} {self.path}"


@dataclass
class _TypeInfo:
    package: str
    ref: tuple[str, str, int] | None
    proto: Any  # DescriptorProto or EnumDescriptorProto
    syntax: str
    key: Any = None  # map entry key and value fields
    value: Any = None

    @property
    def is_map(self) -> bool:
        return self.key is not None

    @property
    def is_enum(self) -> bool:
        return isinstance(self.proto, descriptor_pb2.EnumDescriptorProto)


class _Context:
    """Confluent's ``diff/Context.java``: the type tables of both schemas, the path and the differences."""

    def __init__(self) -> None:
        self.types: tuple[dict[str, _TypeInfo], dict[str, _TypeInfo]] = ({}, {})
        self.packages = ["", ""]
        self.syntax = ["proto2", "proto2"]
        self.path: list[str] = []
        self.schemas: set[str] = set()  # full names of the original messages being compared
        self.diffs: list[Difference] = []
        self.lines: tuple[dict[tuple[str, int], int], dict[tuple[str, int], int]] = ({}, {})
        self.scope = ["", ""]  # full names of the messages being compared

    def subcontext(self) -> _Context:
        sub = _Context()
        sub.types, sub.lines = self.types, self.lines
        sub.packages, sub.syntax = list(self.packages), list(self.syntax)
        sub.path = list(self.path)
        sub.schemas = set(self.schemas)
        return sub

    def collect(self, schema: ProtoSchema, side: int) -> None:
        """Every message and enum of the schema and its imports, by full name (``collectTypeInfo``)."""
        for proto in schema.files:
            if proto.name == schema.name:
                ref = _LOCAL
            elif proto.name in schema.references:
                r = schema.references[proto.name]
                ref = (proto.name, str(r.get("subject", "")), int(r.get("version", 0) or 0))
            else:
                ref = None  # built-in or transitive: always compared, as in Confluent
            syntax = proto.syntax or "proto2"
            prefix = f"{proto.package}." if proto.package else ""
            self._collect(ref, proto.package, syntax, proto.message_type, proto.enum_type, prefix, side)
        self.packages[side] = schema.file.package
        self.syntax[side] = schema.file.syntax or "proto2"
        self.lines[side].update(_lines(schema.file))
        self.scope[side] = schema.file.package

    def _collect(self, ref, package, syntax, messages, enums, prefix, side) -> None:
        for m in messages:
            info = _TypeInfo(package, ref, m, syntax)
            if m.options.map_entry:
                info.key = next(f for f in m.field if f.name == "key")
                info.value = next(f for f in m.field if f.name == "value")
            self.types[side][prefix + m.name] = info
            self._collect(ref, package, syntax, m.nested_type, m.enum_type, f"{prefix}{m.name}.", side)
        for e in enums:
            self.types[side][prefix + e.name] = _TypeInfo(package, ref, e, syntax)

    def type(self, full_name: str, side: int) -> _TypeInfo | None:
        return self.types[side].get(full_name.lstrip("."))

    @contextmanager
    def enter(self, name: str) -> Iterator[None]:
        self.path.append(name)
        try:
            yield
        finally:
            self.path.pop()

    def add(self, kind: str, detail: str = "") -> None:
        self.diffs.append(Difference(kind, "#/" + "/".join(self.path), detail))

    def compatible(self) -> bool:
        return all(d.compatible for d in self.diffs)


def _lines(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[str, int], int]:
    """(message full name, field number) -> 1-based line, from source info (none for base64 schemas)."""
    spans = {tuple(loc.path): loc.span[0] + 1 for loc in file.source_code_info.location}
    out: dict[tuple[str, int], int] = {}

    def walk(messages, path: tuple[int, ...], prefix: str) -> None:
        for i, m in enumerate(messages):
            here = path + (i,)
            for j, f in enumerate(m.field):
                if here + (2, j) in spans:
                    out[(prefix + m.name, f.number)] = spans[here + (2, j)]
            walk(m.nested_type, here + (3,), f"{prefix}{m.name}.")

    if spans:
        walk(file.message_type, (4,), f"{file.package}." if file.package else "")
    return out


def compare(original: ProtoSchema, update: ProtoSchema) -> list[Difference]:
    """Every difference from ``original`` to ``update`` (Confluent's ``SchemaDiff.compare``).

    Example:
        >>> from fabric_ray.governance.protobuf_parse import parse_protobuf
        >>> a = parse_protobuf('syntax = "proto3"; package a; message M { oneof o { int32 x = 1; } }')
        >>> b = parse_protobuf('syntax = "proto3"; package b; message M { int32 x = 1; }')
        >>> [str(d) for d in compare(a, b)]
        ['PACKAGE_CHANGED #/', 'ONEOF_REMOVED #/M/o', 'ONEOF_FIELD_MOVED_TO_TOP_LEVEL #/M/1']
    """
    ctx = _Context()
    ctx.collect(original, 0)
    ctx.collect(update, 1)
    if original.file.package != update.file.package:
        ctx.add("PACKAGE_CHANGED")
    _compare_types(ctx, original.file.message_type, original.file.enum_type, update.file.message_type,
                   update.file.enum_type)
    return ctx.diffs


def check_compatibility(reader: ProtoSchema, writer: ProtoSchema) -> list[str]:
    """Why ``reader`` (the newer schema) cannot read data written with ``writer``; empty when it can.

    The incompatible differences of ``compare(writer, reader)``, as Confluent's
    ``ProtobufSchema.isBackwardCompatible`` finds them.
    """
    return [d.message() for d in compare(writer, reader) if not d.compatible]


# -- SchemaDiff.compareTypeElements ---------------------------------------------------------------


def _java_hash(key: str | int) -> int:
    """Java's ``HashMap.hash``: ``String.hashCode`` (or an ``Integer``'s value) with its high bits folded in."""
    if isinstance(key, int):
        h = key & 0xFFFFFFFF
    else:
        h = 0
        for unit in key.encode("utf-16-be").hex(" ", 2).split():
            h = (31 * h + int(unit, 16)) & 0xFFFFFFFF
    return h ^ (h >> 16)


def _java_capacity(size: int, capacity: int = 16) -> int:
    """The table size of a Java ``HashMap`` of ``capacity`` after ``size`` insertions (load factor 0.75)."""
    while size > capacity * 0.75:
        capacity *= 2
    return capacity


def _java_order(keys: list, capacity: int = 16) -> list:
    """``keys`` (distinct, in insertion order) in the iteration order of a Java ``HashMap`` filled with them.

    Buckets in index order, each in insertion order (a resize splits buckets keeping their order).
    Confluent walks messages, enums and enum constants in this order, so its difference lists do.
    """
    cap = _java_capacity(len(keys), capacity)
    return [k for _, k in sorted(enumerate(keys), key=lambda e: (_java_hash(e[1]) & (cap - 1), e[0]))]


def _java_union(first: list, second: list) -> list:
    """Iteration order of ``new HashSet<>(first)`` after ``addAll(second)`` (both in their own map's order)."""
    start = 1
    while start < max(int(len(first) / 0.75) + 1, 16):
        start *= 2
    keys = list(dict.fromkeys([*first, *second]))
    return _java_order(keys, start)


def _compare_types(ctx: _Context, o_messages, o_enums, u_messages, u_enums) -> None:
    o_msgs = {m.name: (i, m) for i, m in enumerate(m for m in o_messages if not m.options.map_entry)}
    u_msgs = {m.name: (i, m) for i, m in enumerate(m for m in u_messages if not m.options.map_entry)}
    for name in _java_union(_java_order(list(o_msgs)), _java_order(list(u_msgs))):
        with ctx.enter(name):
            if name not in u_msgs:
                ctx.add("MESSAGE_REMOVED")
            elif name not in o_msgs:
                ctx.add("MESSAGE_ADDED")
            else:
                _compare_message(ctx, o_msgs[name][1], u_msgs[name][1])
                if o_msgs[name][0] != u_msgs[name][0]:
                    # Moving a message is compatible: message indexes are relative to the writer's schema.
                    ctx.add("MESSAGE_MOVED")
    o_en = {e.name: e for e in o_enums}
    u_en = {e.name: e for e in u_enums}
    for name in _java_union(_java_order(list(o_en)), _java_order(list(u_en))):
        with ctx.enter(name):
            if name not in u_en:
                ctx.add("ENUM_REMOVED")
            elif name not in o_en:
                ctx.add("ENUM_ADDED")
            else:
                _compare_enum(ctx, o_en[name], u_en[name])


def _compare_enum(ctx: _Context, original, update) -> None:
    """``EnumSchemaDiff``: constants by number."""
    o = {v.number: v for v in original.value}
    u = {v.number: v for v in update.value}
    for tag in _java_union(_java_order(list(o)), _java_order(list(u))):
        with ctx.enter(str(tag)):
            if tag not in u:
                ctx.add("ENUM_CONST_REMOVED")
            elif tag not in o:
                ctx.add("ENUM_CONST_ADDED")
            elif o[tag].name != u[tag].name:
                ctx.add("ENUM_CONST_CHANGED")


# -- MessageSchemaDiff ------------------------------------------------------------------------------


def _fields(message) -> tuple[dict[int, Any], dict[int, str], dict[str, list[Any]]]:
    """Fields by number, the real oneof (not proto3 ``optional``'s synthetic one) of each, oneof members."""
    real = [i for i, _ in enumerate(message.oneof_decl)
            if not any(f.proto3_optional for f in message.field if f.HasField("oneof_index") and f.oneof_index == i)]
    by_tag = {f.number: f for f in message.field}
    tag_oneof: dict[int, str] = {}
    oneofs: dict[str, list[Any]] = {message.oneof_decl[i].name: [] for i in real}
    for f in message.field:
        if f.HasField("oneof_index") and f.oneof_index in real:
            name = message.oneof_decl[f.oneof_index].name
            tag_oneof[f.number] = name
            oneofs[name].append(f)
    return by_tag, tag_oneof, oneofs


def _compare_message(ctx: _Context, original, update) -> None:
    outer = list(ctx.scope)
    ctx.scope = [_join(outer[0], original.name), _join(outer[1], update.name)]
    try:
        if ctx.scope[0] not in ctx.schemas:  # a recursive type: its fields are being compared already
            ctx.schemas.add(ctx.scope[0])
            try:
                _compare_fields(ctx, original, update)
            finally:
                ctx.schemas.discard(ctx.scope[0])
        _compare_types(ctx, original.nested_type, original.enum_type, update.nested_type, update.enum_type)
    finally:
        ctx.scope = outer


def _join(scope: str, name: str) -> str:
    return f"{scope}.{name}" if scope else name


def _compare_fields(ctx: _Context, original, update) -> None:
    o_tags, o_oneof, o_oneofs = _fields(original)
    u_tags, u_oneof, u_oneofs = _fields(update)
    # A oneof removed by name none of whose members survive anywhere is a whole deletion.
    deleted = {n for n, members in o_oneofs.items() if n not in u_oneofs and not any(f.number in u_tags for f in members)}
    # Newly mutual exclusion: pre-existing members of an update oneof from more than one origin group.
    for name, members in u_oneofs.items():
        with ctx.enter(name):
            groups: set[str] = set()
            moved_in = 0
            for f in members:
                if f.number in o_oneof:
                    groups.add("oneof:" + o_oneof[f.number])
                elif f.number in o_tags:
                    groups.add(f"field:{f.number}")
                    moved_in += 1
            if len(groups) > 1:
                ctx.add("MULTIPLE_FIELDS_MOVED_TO_ONEOF" if moved_in > 1 else "FIELD_MOVED_TO_EXISTING_ONEOF")
    for name in sorted(set(o_oneofs) | set(u_oneofs)):
        with ctx.enter(name):
            if name not in u_oneofs:
                ctx.add("ONEOF_REMOVED")
            elif name not in o_oneofs:
                ctx.add("ONEOF_ADDED")
    for tag in sorted(set(o_tags) | set(u_tags)):
        of, uf = o_tags.get(tag), u_tags.get(tag)
        o_group, u_group = o_oneof.get(tag), u_oneof.get(tag)
        if uf is None:
            if o_group is not None:
                if o_group not in deleted:
                    with ctx.enter(o_group), ctx.enter(str(tag)):
                        ctx.add("ONEOF_FIELD_REMOVED", _where(ctx, of, 0))
            else:
                with ctx.enter(str(tag)):
                    removed = "REQUIRED_FIELD_REMOVED" if of.label == F.LABEL_REQUIRED else "FIELD_REMOVED"
                    ctx.add(removed, _where(ctx, of, 0))
        elif of is None:
            if u_group is not None:
                with ctx.enter(u_group), ctx.enter(str(tag)):
                    ctx.add("ONEOF_FIELD_ADDED", _where(ctx, uf, 1))
            else:
                with ctx.enter(str(tag)):
                    ctx.add("REQUIRED_FIELD_ADDED" if uf.label == F.LABEL_REQUIRED else "FIELD_ADDED", _where(ctx, uf, 1))
        else:
            if o_group is not None and u_group is None:
                with ctx.enter(str(tag)):
                    ctx.add("ONEOF_FIELD_MOVED_TO_TOP_LEVEL", _where(ctx, uf, 1))
            if u_group is not None:
                with ctx.enter(u_group), ctx.enter(str(tag)):
                    _compare_field(ctx, of, uf, o_group, u_group)
            else:
                with ctx.enter(str(tag)):
                    _compare_field(ctx, of, uf, o_group, u_group)


def _where(ctx: _Context, field, side: int) -> str:
    line = ctx.lines[side].get((ctx.scope[side], field.number))
    schema = "new" if side else "old"
    return f"field {field.name!r}" + (f" (line {line} of the {schema} schema)" if line else "")


# -- FieldSchemaDiff --------------------------------------------------------------------------------


def _label(ctx: _Context, field, oneof: str | None, side: int) -> str | None:
    """The label as Confluent's parser (Wire) sees it: none for proto3 singular fields and oneof members."""
    if oneof is not None:
        return None
    if field.label == F.LABEL_REPEATED:
        return "REPEATED"
    if field.label == F.LABEL_REQUIRED:
        return "REQUIRED"
    if ctx.syntax[side] == "proto2" or field.proto3_optional:
        return "OPTIONAL"
    return None


def _type(ctx: _Context, field, side: int) -> tuple:
    """A field's type: ``("scalar", name)``, ``("named", full name)`` or ``("map", key, value)``."""
    if field.type in _SCALAR_NAMES:
        return ("scalar", _SCALAR_NAMES[field.type])
    full = field.type_name.lstrip(".")
    info = ctx.type(full, side)
    if info is not None and info.is_map:
        return ("map", _type(ctx, info.key, side), _type(ctx, info.value, side))
    return ("named", full)


def _compare_field(ctx: _Context, original, update, o_group, u_group) -> None:
    where = _where(ctx, update, 1)
    if original.name != update.name:
        ctx.add("FIELD_NAME_CHANGED", f"{where}: renamed from {original.name!r}")
    o_label = None if _is_map_field(ctx, original, 0) else _label(ctx, original, o_group, 0)
    u_label = None if _is_map_field(ctx, update, 1) else _label(ctx, update, u_group, 1)
    _labels_and_types(ctx, o_label, u_label, _type(ctx, original, 0), _type(ctx, update, 1), where)


def _is_map_field(ctx: _Context, field, side: int) -> bool:
    info = ctx.type(field.type_name, side) if field.type_name else None
    return info is not None and info.is_map


def _kind(ctx: _Context, t: tuple, side: int) -> str:
    if t[0] == "scalar":
        return "SCALAR"
    if t[0] == "map":
        return "MAP"
    info = ctx.type(t[1], side)
    return "SCALAR" if info is not None and info.is_enum else "MESSAGE"


def _scalar_kind(ctx: _Context, t: tuple, side: int) -> str:
    if t[0] == "named":
        return "GENERAL_NUMBER"  # an enum
    return _SCALAR_KINDS[t[1]]


def _show(t: tuple) -> str:
    if t[0] == "map":
        return f"map<{_show(t[1])}, {_show(t[2])}>"
    return t[1]


def _labels_and_types(ctx: _Context, o_label, u_label, o_type: tuple, u_type: tuple, where: str) -> None:
    o_kind, u_kind = _kind(ctx, o_type, 0), _kind(ctx, u_type, 1)
    if o_kind != u_kind:
        ctx.add("FIELD_KIND_CHANGED", f"{where}: its kind changed, from {_show(o_type)} ({o_kind.lower()}) to "
                f"{_show(u_type)} ({u_kind.lower()})")
    elif o_kind == "SCALAR":
        o_sk, u_sk = _scalar_kind(ctx, o_type, 0), _scalar_kind(ctx, u_type, 1)
        if o_sk != u_sk:
            ctx.add("FIELD_SCALAR_KIND_CHANGED", f"{where}: its scalar kind changed, from {_show(o_type)} to "
                    f"{_show(u_type)}, which is not wire-compatible")
        elif o_label is not None and u_label is not None and o_label != u_label:
            change = f"{where}: its label changed from {o_label.lower()} to {u_label.lower()}"
            if o_sk in _NUMERIC:
                ctx.add("FIELD_NUMERIC_LABEL_CHANGED", change)
            elif o_sk == "STRING_OR_BYTES":
                ctx.add("FIELD_STRING_OR_BYTES_LABEL_CHANGED", change)
    elif o_kind == "MESSAGE":
        _compare_message_types(ctx, o_type[1], u_type[1], where)
    elif o_kind == "MAP":
        _labels_and_types(ctx, None, None, o_type[1], u_type[1], where + " (map key)")
        _labels_and_types(ctx, None, None, o_type[2], u_type[2], where + " (map value)")


def _compare_message_types(ctx: _Context, o_full: str, u_full: str, where: str) -> None:
    o_info, u_info = ctx.type(o_full, 0), ctx.type(u_full, 1)
    if o_info is None or u_info is None:
        if o_full != u_full:
            ctx.add("FIELD_NAMED_TYPE_CHANGED", f"{where}: its type changed from {o_full} to {u_full}")
        return
    o_local = o_full[len(o_info.package) + 1:] if o_info.package and o_full.startswith(o_info.package + ".") else o_full
    u_local = u_full[len(u_info.package) + 1:] if u_info.package and u_full.startswith(u_info.package + ".") else u_full
    if o_local != u_local:
        ctx.add("FIELD_NAMED_TYPE_CHANGED", f"{where}: its type changed from {o_full} to {u_full}")
        return
    o_ref, u_ref = o_info.ref, u_info.ref
    # Both local, or the same subject and version: compared elsewhere, or the same thing.
    if o_ref is not None and u_ref is not None and o_ref[1:] == u_ref[1:]:
        return
    sub = ctx.subcontext()
    sub.packages = [o_info.package, u_info.package]
    sub.syntax = [o_info.syntax, u_info.syntax]
    sub.path = o_local.split(".")
    sub.scope = [o_full.rpartition(".")[0], u_full.rpartition(".")[0]]
    _compare_message(sub, o_info.proto, u_info.proto)
    ctx.diffs.extend(sub.diffs)
    if not sub.compatible():
        ctx.add("FIELD_NAMED_TYPE_CHANGED", f"{where}: its type {u_full} changed incompatibly")
