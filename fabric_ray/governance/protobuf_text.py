"""Print a compiled Protobuf schema back as ``.proto`` text.

The registry stores a schema registered as a base64 ``FileDescriptorProto`` (what confluent-kafka's
serializer sends) as this text, as Confluent stores the ``.proto`` text it prints, and uses it as the
normalized form (``normalize=true``): whitespace, comments and how type names were qualified no
longer matter. Type names are written fully qualified (``.shop.Money``), options (custom ones too)
with their values, ``json_name`` only where it is not the default. The printed text compiles back
to the same descriptor (checked by the tests for every Confluent case).

Example:
    >>> from fabric_ray.governance.protobuf_parse import parse_protobuf
    >>> s = parse_protobuf('syntax = "proto3"; package shop; // a comment\\n'
    ...     'message Order { int64 id = 1; map<string, Line> lines = 2; message Line { optional int32 qty = 1; } }')
    >>> print(proto_text(s))
    syntax = "proto3";
    package shop;
    <BLANKLINE>
    message Order {
      int64 id = 1;
      map<string, .shop.Order.Line> lines = 2;
    <BLANKLINE>
      message Line {
        optional int32 qty = 1;
      }
    }
    <BLANKLINE>
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import descriptor_pb2, message_factory, text_encoding, text_format

from fabric_ray.governance.protobuf_parse import ProtoSchema

__all__ = ["proto_text"]

F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    F.TYPE_DOUBLE: "double", F.TYPE_FLOAT: "float", F.TYPE_INT64: "int64", F.TYPE_UINT64: "uint64",
    F.TYPE_INT32: "int32", F.TYPE_FIXED64: "fixed64", F.TYPE_FIXED32: "fixed32", F.TYPE_BOOL: "bool",
    F.TYPE_STRING: "string", F.TYPE_BYTES: "bytes", F.TYPE_UINT32: "uint32", F.TYPE_SFIXED32: "sfixed32",
    F.TYPE_SFIXED64: "sfixed64", F.TYPE_SINT32: "sint32", F.TYPE_SINT64: "sint64",
}
_MAX_FIELD = 536_870_911


def proto_text(schema: ProtoSchema, normalize: bool = False) -> str:
    """The schema's own file as ``.proto`` text (see the module docstring).

    ``normalize`` orders what Confluent's ``normalize()`` orders: imports by name, options by name,
    fields and extensions by number (the oneofs after the other fields, ordered by their lowest
    number), enum constants by number then name, reserved ranges and names; messages and enums keep
    their order (message indexes depend on it).

    Example:
        >>> from fabric_ray.governance.protobuf_parse import parse_protobuf
        >>> a = parse_protobuf('syntax = "proto3"; message M { oneof o { int32 y = 3; } int32 b = 2; int32 a = 1; }')
        >>> print(proto_text(a, normalize=True))
        syntax = "proto3";
        <BLANKLINE>
        message M {
          int32 a = 1;
          int32 b = 2;
          oneof o {
            int32 y = 3;
          }
        }
        <BLANKLINE>
    """
    return _Printer(schema, normalize).file()


class _Printer:
    def __init__(self, schema: ProtoSchema, normalize: bool = False) -> None:
        self.schema = schema
        self.normalize = normalize
        self.proto = schema.file
        self.syntax = self.proto.syntax or "proto2"
        self.lines: list[str] = []

    def out(self, depth: int, text: str) -> None:
        self.lines.append("  " * depth + text if text else "")

    def file(self) -> str:
        p = self.proto
        if self.syntax == "editions":
            self.out(0, f'edition = "{_edition(p.edition)}";')
        else:
            self.out(0, f'syntax = "{self.syntax}";')
        if p.package:
            self.out(0, f"package {p.package};")
        if p.dependency:
            self.out(0, "")
            imports = []
            for i, dep in enumerate(p.dependency):
                kind = "public " if i in p.public_dependency else "weak " if i in p.weak_dependency else ""
                imports.append((dep, f'import {kind}"{dep}";'))
            for _, line in sorted(imports) if self.normalize else imports:
                self.out(0, line)
        self.options(0, "google.protobuf.FileOptions", p.options, blank=True)
        for m in p.message_type:
            self.out(0, "")
            self.message(0, m, p.package)
        for e in p.enum_type:
            self.out(0, "")
            self.enum(0, e)
        self.extensions(0, p.extension, p.package)
        for s in p.service:
            self.out(0, "")
            self.service(s)
        return "\n".join(self.lines) + "\n"

    # -- options ----------------------------------------------------------------------------------

    def option_items(self, options_type: str, options: Any) -> list[str]:
        """``name = value`` of every set option, custom ones (extensions) as ``(full.name)``."""
        if not options.ByteSize():  # custom options are unknown fields until read in the schema's own pool
            return []
        try:
            cls = message_factory.GetMessageClass(self.schema.pool.FindMessageTypeByName(options_type))
            options = cls.FromString(options.SerializeToString())
        except KeyError:  # descriptor.proto is not in the pool: no custom options possible
            pass
        items = []
        for field, value in options.ListFields():
            name = f"({field.full_name})" if field.is_extension else field.name
            for v in value if field.is_repeated else [value]:
                items.append(f"{name} = {_value(field, v)}")
        return sorted(items, key=_option_name) if self.normalize else items

    def options(self, depth: int, options_type: str, options: Any, blank: bool = False) -> None:
        items = self.option_items(options_type, options)
        if items and blank:
            self.out(depth, "")
        for item in items:
            self.out(depth, f"option {item};")

    # -- messages ---------------------------------------------------------------------------------

    def message(self, depth: int, m: descriptor_pb2.DescriptorProto, scope: str, header: str | None = None) -> None:
        """Print message ``m`` declared in ``scope`` (the package or the enclosing message's full name)."""
        full = f"{scope}.{m.name}" if scope else m.name
        self.out(depth, header or f"message {m.name} {{")
        inner = depth + 1
        self.options(inner, "google.protobuf.MessageOptions", m.options)
        self.reserved(inner, [(r.start, r.end) for r in m.reserved_range], m.reserved_name)
        for r in m.extension_range:
            opts = self.option_items("google.protobuf.ExtensionRangeOptions", r.options)
            self.out(inner, f"extensions {_range(r.start, r.end)}" + (f" [{', '.join(opts)}]" if opts else "") + ";")
        nested = {f".{full}.{n.name}": n for n in m.nested_type}
        entries = {k: n for k, n in nested.items() if n.options.map_entry}
        groups = {f.type_name for f in m.field if f.type == F.TYPE_GROUP}
        if self.normalize:
            self._normalized_fields(inner, m, entries, nested, full)
        printed_oneofs: set[int] = set()
        for f in ([] if self.normalize else m.field):
            if f.HasField("oneof_index") and not f.proto3_optional:
                if f.oneof_index in printed_oneofs:
                    continue
                printed_oneofs.add(f.oneof_index)
                decl = m.oneof_decl[f.oneof_index]
                self.out(inner, f"oneof {decl.name} {{")
                self.options(inner + 1, "google.protobuf.OneofOptions", decl.options)
                for member in m.field:
                    if member.HasField("oneof_index") and member.oneof_index == f.oneof_index:
                        self.field(inner + 1, member, entries, nested, full, in_oneof=True)
                self.out(inner, "}")
            else:
                self.field(inner, f, entries, nested, full, in_oneof=False)
        for key, n in nested.items():
            if n.options.map_entry or key in groups:
                continue
            self.out(inner, "")
            self.message(inner, n, full)
        for e in m.enum_type:
            self.out(inner, "")
            self.enum(inner, e)
        self.extensions(inner, m.extension, full)
        self.out(depth, "}")

    def _normalized_fields(self, depth: int, m: Any, entries: dict, nested: dict, scope: str) -> None:
        """Fields by number, then each oneof (by its lowest number) with its members by number."""
        members: dict[int, list[Any]] = {}
        for f in sorted(m.field, key=lambda f: f.number):
            if f.HasField("oneof_index") and not f.proto3_optional:
                members.setdefault(f.oneof_index, []).append(f)
            else:
                self.field(depth, f, entries, nested, scope, in_oneof=False)
        for index, fields in sorted(members.items(), key=lambda kv: kv[1][0].number):
            decl = m.oneof_decl[index]
            self.out(depth, f"oneof {decl.name} {{")
            self.options(depth + 1, "google.protobuf.OneofOptions", decl.options)
            for f in fields:
                self.field(depth + 1, f, entries, nested, scope, in_oneof=True)
            self.out(depth, "}")

    def field(self, depth: int, f: Any, entries: dict, nested: dict, scope: str, in_oneof: bool) -> None:
        label = ""
        if f.label == F.LABEL_REPEATED and f.type_name not in entries:
            label = "repeated "
        elif f.label == F.LABEL_REQUIRED:
            label = "required "
        elif f.proto3_optional or (self.syntax == "proto2" and not in_oneof and f.type_name not in entries):
            label = "optional "
        opts = self.option_items("google.protobuf.FieldOptions", f.options)
        if f.HasField("default_value"):
            opts.insert(0, f"default = {_default(f)}")
        if f.HasField("json_name") and f.json_name != _json_name(f.name):
            opts.append(f'json_name = "{f.json_name}"')
        if self.normalize:
            opts.sort(key=_option_name)
        suffix = f" [{', '.join(opts)}]" if opts else ""
        if f.type == F.TYPE_GROUP and f.type_name in nested:
            body = nested[f.type_name]
            self.message(depth, body, scope, header=f"{label}group {body.name} = {f.number}{suffix} {{")
            return
        if f.type_name in entries:
            entry = entries[f.type_name]
            key, value = entry.field[0], entry.field[1]
            kind = f"map<{_type(key)}, {_type(value)}>"
        else:
            kind = _type(f)
        self.out(depth, f"{label}{kind} {f.name} = {f.number}{suffix};")

    def reserved(self, depth: int, ranges: list[tuple[int, int]], names: Any, exclusive_end: bool = True) -> None:
        if self.normalize:
            ranges, names = sorted(ranges), sorted(names)
        if ranges:
            self.out(depth, "reserved " + ", ".join(_range(a, b if exclusive_end else b + 1) for a, b in ranges) + ";")
        if names:
            self.out(depth, "reserved " + ", ".join(f'"{n}"' for n in names) + ";")

    def extensions(self, depth: int, fields: Any, scope: str) -> None:
        by_extendee: dict[str, list[Any]] = {}
        for f in sorted(fields, key=lambda f: f.number) if self.normalize else fields:
            by_extendee.setdefault(f.extendee, []).append(f)
        for extendee, members in sorted(by_extendee.items()) if self.normalize else by_extendee.items():
            self.out(depth, "")
            self.out(depth, f"extend {extendee} {{")
            for f in members:
                self.field(depth + 1, f, {}, {}, scope, in_oneof=False)
            self.out(depth, "}")

    def enum(self, depth: int, e: descriptor_pb2.EnumDescriptorProto) -> None:
        self.out(depth, f"enum {e.name} {{")
        self.options(depth + 1, "google.protobuf.EnumOptions", e.options)
        self.reserved(depth + 1, [(r.start, r.end) for r in e.reserved_range], e.reserved_name, exclusive_end=False)
        values = sorted(e.value, key=lambda v: (v.number, v.name)) if self.normalize else e.value
        for v in values:
            opts = self.option_items("google.protobuf.EnumValueOptions", v.options)
            self.out(depth + 1, f"{v.name} = {v.number}" + (f" [{', '.join(opts)}]" if opts else "") + ";")
        self.out(depth, "}")

    def service(self, s: descriptor_pb2.ServiceDescriptorProto) -> None:
        self.out(0, f"service {s.name} {{")
        self.options(1, "google.protobuf.ServiceOptions", s.options)
        for m in s.method:
            arg = ("stream " if m.client_streaming else "") + m.input_type
            ret = ("stream " if m.server_streaming else "") + m.output_type
            opts = self.option_items("google.protobuf.MethodOptions", m.options)
            if opts:
                self.out(1, f"rpc {m.name} ({arg}) returns ({ret}) {{")
                for item in opts:
                    self.out(2, f"option {item};")
                self.out(1, "}")
            else:
                self.out(1, f"rpc {m.name} ({arg}) returns ({ret});")
        self.out(0, "}")


def _option_name(item: str) -> str:
    return item.split(" = ", 1)[0].strip("()")


def _type(f: Any) -> str:
    return _SCALARS.get(f.type) or f.type_name


def _range(start: int, end_exclusive: int) -> str:
    end = end_exclusive - 1
    if end == start:
        return str(start)
    return f"{start} to {'max' if end >= _MAX_FIELD else end}"


def _json_name(name: str) -> str:
    """protoc's default ``json_name``: lowerCamelCase at underscores."""
    out, upper = [], False
    for ch in name:
        if ch == "_":
            upper = True
        else:
            out.append(ch.upper() if upper else ch)
            upper = False
    return "".join(out)


def _quote(text: str | bytes) -> str:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return '"' + text_encoding.CEscape(raw, as_utf8=isinstance(text, str)) + '"'


def _default(f: Any) -> str:
    if f.type == F.TYPE_STRING:
        return _quote(f.default_value)
    if f.type == F.TYPE_BYTES:
        return f'"{f.default_value}"'  # already C-escaped in the descriptor
    return f.default_value  # numbers, bool, enum names, inf/nan: as protoc wrote them


def _value(field: Any, value: Any) -> str:
    if field.message_type is not None:
        return "{ " + text_format.MessageToString(value, as_one_line=True) + " }"
    if field.enum_type is not None:
        found = field.enum_type.values_by_number.get(value)
        return found.name if found is not None else str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, bytes)):
        return _quote(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return str(value)


def _edition(number: int) -> str:
    name = descriptor_pb2.Edition.Name(number)
    return name.removeprefix("EDITION_")
