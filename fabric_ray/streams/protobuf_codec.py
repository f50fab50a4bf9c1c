"""Decode Confluent wire-format Protobuf into Arrow batches.

Confluent's Protobuf framing is the usual magic byte ``0`` and four-byte schema id, then the
**message indexes**: which message of the schema's ``.proto`` file this is, as a zig-zag varint
count followed by that many zig-zag varint indexes (``[1, 0]``: the first message nested in the
file's second message); a single ``0`` byte stands for ``[0]``, the first message. Then the
Protobuf message itself.

:class:`ProtobufDecoder` decodes a batch in two passes: every message is parsed with the reader
message's class (upb, in C), then each column is built for the whole batch at once. Nested
messages become structs, repeated fields lists, maps Arrow maps, enums their symbol names (a number
the schema does not name stays as its decimal text), ``google.protobuf.Timestamp``
``timestamp[us, UTC]`` (nanoseconds below a microsecond are dropped), the ``google.protobuf.*Value``
wrappers their nullable value. A message field that is not set is null; a proto3 scalar without
``optional`` is never null (it reads as its default, as Protobuf defines).

Schema evolution is Protobuf's own: bytes written with the writer schema are parsed with the reader
message (fields match by number), once the writer schema passed Confluent's compatibility rules
against the reader (:func:`fabric_ray.governance.protobuf.check_compatibility`), per writer id.
Every bad message is rejected with its own reason (see ``docs/codecs.md``), never dropped.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pyarrow as pa
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

from fabric_ray.governance.protobuf import ProtobufSchemaError, ProtoSchema, check_compatibility, parse_protobuf
from fabric_ray.streams.confluent_codec import HEADER_BYTES, check_required, split_wire_format
from fabric_ray.streams.json_codec import Decoded
from fabric_ray.streams.schema_source import SchemaSource, UnknownReference, UnknownSchemaId

__all__ = ["ProtobufDecoder", "message_indexes", "protobuf_to_arrow"]

_FD = FieldDescriptor
_SCALARS = {
    _FD.TYPE_DOUBLE: pa.float64(), _FD.TYPE_FLOAT: pa.float32(), _FD.TYPE_INT64: pa.int64(),
    _FD.TYPE_SINT64: pa.int64(), _FD.TYPE_SFIXED64: pa.int64(), _FD.TYPE_UINT64: pa.uint64(),
    _FD.TYPE_FIXED64: pa.uint64(), _FD.TYPE_INT32: pa.int32(), _FD.TYPE_SINT32: pa.int32(),
    _FD.TYPE_SFIXED32: pa.int32(), _FD.TYPE_UINT32: pa.uint32(), _FD.TYPE_FIXED32: pa.uint32(),
    _FD.TYPE_BOOL: pa.bool_(), _FD.TYPE_STRING: pa.string(), _FD.TYPE_BYTES: pa.binary(),
}
TIMESTAMP = "google.protobuf.Timestamp"
_WRAPPERS = {
    f"google.protobuf.{n}Value": t for n, t in [
        ("Double", pa.float64()), ("Float", pa.float32()), ("Int64", pa.int64()), ("UInt64", pa.uint64()),
        ("Int32", pa.int32()), ("UInt32", pa.uint32()), ("Bool", pa.bool_()), ("String", pa.string()),
        ("Bytes", pa.binary()),
    ]
}


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _is_repeated(field: FieldDescriptor) -> bool:
    return field.is_repeated


def _nullable(field: FieldDescriptor) -> bool:
    return not _is_repeated(field) and (field.message_type is not None or field.has_presence)


def protobuf_to_arrow(message: Descriptor) -> pa.Schema:
    """The Arrow schema :class:`ProtobufDecoder` gives a message (see the module docstring).

    Raises:
        ValueError: a recursive message (``google.protobuf.Struct`` too): Arrow has no recursive type.

    Example:
        >>> s = parse_protobuf('syntax = "proto3"; import "google/protobuf/timestamp.proto";'
        ...     ' message P { int64 id = 1; repeated string tags = 2; google.protobuf.Timestamp at = 3;'
        ...     ' enum K { A = 0; } K kind = 4; optional double x = 5; }')
        >>> protobuf_to_arrow(s.pool.FindMessageTypeByName("P"))
        id: int64 not null
        tags: list<item: string> not null
          child 0, item: string
        at: timestamp[us, tz=UTC]
        kind: string not null
        x: double
    """
    return pa.schema([_arrow_field(f, (message.full_name,)) for f in message.fields])


def _arrow_field(field: FieldDescriptor, seen: tuple[str, ...]) -> pa.Field:
    return pa.field(field.name, _arrow_type(field, seen), nullable=_nullable(field))


def _arrow_type(field: FieldDescriptor, seen: tuple[str, ...]) -> pa.DataType:
    if _is_map(field):
        key, value = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        return pa.map_(_element_type(key, seen), _element_type(value, seen))
    element = _element_type(field, seen)
    return pa.list_(element) if _is_repeated(field) else element


def _element_type(field: FieldDescriptor, seen: tuple[str, ...]) -> pa.DataType:
    if field.type == _FD.TYPE_ENUM:
        return pa.string()
    if field.message_type is None:
        return _SCALARS[field.type]
    name = field.message_type.full_name
    if name == TIMESTAMP:
        return pa.timestamp("us", tz="UTC")
    if name in _WRAPPERS:
        return _WRAPPERS[name]
    if name in seen:
        raise ValueError(f"field {field.full_name!r}: message {name} is recursive, which Arrow cannot hold")
    return pa.struct([_arrow_field(f, seen + (name,)) for f in field.message_type.fields])


# -- columns ------------------------------------------------------------------------------------


def _columns(message: Descriptor, messages: list[Any]) -> list[pa.Array]:
    return [_column(f, messages) for f in message.fields]


def _column(field: FieldDescriptor, messages: list[Any]) -> pa.Array:
    name = field.name
    if _is_map(field):
        entries = [list(getattr(m, name).items()) for m in messages]
        offsets = pa.array(np.concatenate([[0], np.cumsum([len(e) for e in entries])]).astype(np.int32))
        flat = [kv for e in entries for kv in e]
        entry = field.message_type
        keys = _values(entry.fields_by_name["key"], [k for k, _ in flat], None)
        values = _values(entry.fields_by_name["value"], [v for _, v in flat], None)
        return pa.MapArray.from_arrays(offsets, keys, values)
    if _is_repeated(field):
        lists = [getattr(m, name) for m in messages]
        offsets = pa.array(np.concatenate([[0], np.cumsum([len(v) for v in lists])]).astype(np.int32))
        return pa.ListArray.from_arrays(offsets, _values(field, [x for v in lists for x in v], None))
    present = None
    if field.message_type is not None or field.has_presence:
        present = np.fromiter((m.HasField(name) for m in messages), dtype=bool, count=len(messages))
    return _values(field, [getattr(m, name) for m in messages], present)


def _values(field: FieldDescriptor, values: list[Any], present: np.ndarray | None) -> pa.Array:
    """One Arrow array of the (non-repeated) values of ``field``; null where ``present`` is False."""
    mask = None if present is None or present.all() else ~present
    if field.type == _FD.TYPE_ENUM:
        names = {v.number: v.name for v in field.enum_type.values}
        return pa.array([names.get(v, str(v)) for v in values], pa.string(), mask=mask)
    if field.message_type is None:
        return pa.array(values, _SCALARS[field.type], mask=mask)
    full = field.message_type.full_name
    if full == TIMESTAMP:
        micros = np.fromiter((v.seconds * 1_000_000 + v.nanos // 1000 for v in values), dtype=np.int64, count=len(values))
        return pa.array(micros, pa.timestamp("us", tz="UTC"), mask=mask)
    if full in _WRAPPERS:
        return pa.array([v.value for v in values], _WRAPPERS[full], mask=mask)
    children = _columns(field.message_type, values)
    fields = [_arrow_field(f, (full,)) for f in field.message_type.fields]
    if not fields:
        return pa.array([{}] * len(values), pa.struct([]), mask=mask)
    return pa.StructArray.from_arrays(children, fields=fields, mask=pa.array(mask) if mask is not None else None)


# -- framing --------------------------------------------------------------------------------------


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end:
            raise ValueError("message indexes truncated")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("message index varint longer than 10 bytes")


def message_indexes(data: bytes, pos: int, end: int) -> tuple[list[int], int]:
    """The message-index array at ``data[pos:end]`` and where the message starts.

    Example:
        >>> message_indexes(b"\\x00rest", 0, 5), message_indexes(b"\\x04\\x02\\x00rest", 0, 7)
        (([0], 1), ([1, 0], 3))
    """
    count, pos = _varint(data, pos, end)
    if count == 0:
        return [0], pos
    if count < 0 or count > 100:
        raise ValueError(f"message index count {count} is not plausible")
    out = []
    for _ in range(count):
        index, pos = _varint(data, pos, end)
        out.append(index)
    return out, pos


def _message_at(schema: ProtoSchema, indexes: list[int]) -> str:
    """Full name of the message the indexes name in the schema's file; ``LookupError`` when none."""
    messages = [m for m in schema.file.message_type]
    scope = schema.file.package
    name = ""
    for depth, index in enumerate(indexes):
        # Nested indexes count map entries, as confluent-kafka's serializer and deserializer do.
        if not 0 <= index < len(messages):
            raise LookupError(f"no message at index {indexes} (level {depth} has {len(messages)})")
        chosen = messages[index]
        name = f"{scope}.{chosen.name}" if scope else chosen.name
        scope, messages = name, list(chosen.nested_type)
    return name


class ProtobufDecoder:
    """Decode Confluent wire-format Protobuf into rows of a reader message.

    Args:
        source: where writer schemas come from (by id).
        reader_schema: the reader ``.proto`` text (or base64 descriptor), or ``None``: then the
            first writer schema and message the decoder meets become the reader.
        message: full name of the reader message (default: the file's first message).
        imports: import name -> ``.proto`` text of the files the reader schema imports (besides the
            well-known types and Confluent's own, which need none).
        required: nullable fields (messages, ``optional`` scalars) that must be set. Fields that
            cannot be null are listed in :attr:`required` too.

    Raises:
        ProtobufSchemaError: the reader schema does not compile.
        ValueError: the message is not in it, is recursive, or a required field is not in it.

    Example:
        >>> from fabric_ray.governance.registry import SchemaRegistry
        >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
        >>> from fabric_ray.streams.schema_source import LocalRegistrySource
        >>> proto = 'syntax = "proto3"; package shop; message Order { int64 id = 1; string sku = 2; }'
        >>> registry = SchemaRegistry(MemoryRegistryStore())
        >>> sid = registry.register("orders-value", proto, "PROTOBUF")
        >>> decoder = ProtobufDecoder(LocalRegistrySource(registry), proto)
        >>> Order = decoder.message_class
        >>> good = b"\\x00" + sid.to_bytes(4, "big") + b"\\x00" + Order(id=7, sku="a-1").SerializeToString()
        >>> out = decoder.decode([good, good[:5] + b"\\x00\\x0a\\xff", b"\\x00\\x00\\x00\\x00\\x09\\x00"])
        >>> out.table.to_pylist(), out.rejected
        ([{'id': 7, 'sku': 'a-1'}], [(1, "Protobuf decode failed at schema id 1: Error parsing message with type 'shop.Order': Wire format was corrupt"), (2, 'unknown schema id 9')])
    """

    def __init__(
        self, source: SchemaSource, reader_schema: str | None = None, message: str | None = None,
        required: Sequence[str] = (), imports: dict[str, str] | None = None,
    ) -> None:
        self.source = source
        self._wanted = tuple(required)
        self._message_name = message
        self._reader: ProtoSchema | None = None
        self._schema: pa.Schema | None = None
        self.required: tuple[str, ...] = self._wanted
        self._plans: dict[int, ProtoSchema | str] = {}
        self._imports_given = dict(imports or {})
        self._writer_imports: dict[int, dict[str, str]] = {}
        if reader_schema is not None:
            self._adopt(parse_protobuf(reader_schema, self._imports_given), message)

    def _adopt(self, reader: ProtoSchema, message: str | None, imports: dict[str, str] | None = None) -> None:
        names = reader.message_names()
        name = message or (names[0] if names else None)
        if name is None or name not in names:
            raise ValueError(f"reader schema has no message {name!r}; it declares {names}")
        descriptor = reader.pool.FindMessageTypeByName(name)
        schema = protobuf_to_arrow(descriptor)
        missing = [n for n in self._wanted if n not in schema.names]
        if missing:
            raise ValueError(f"required fields {missing} are not in message {name} {schema.names}")
        self._reader, self._message_name, self._schema = reader, name, schema
        self._reader_imports = dict(self._imports_given if imports is None else imports)
        self._descriptor = descriptor
        self.message_class = message_factory.GetMessageClass(descriptor)
        self.required = tuple(dict.fromkeys([*self._wanted, *(f.name for f in schema if not f.nullable)]))
        self._nullable_required = [n for n in self._wanted if schema.field(n).nullable]

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of the reader message; ``LookupError`` before one is known."""
        if self._schema is None:
            raise LookupError("ProtobufDecoder has no reader schema yet: pass reader_schema=..., or decode a message first")
        return self._schema

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in ("_reader", "_descriptor", "message_class", "_schema", "_plans"):
            state.pop(key, None)  # descriptors do not pickle: rebuilt from the texts
        state["_reader_text"] = self._reader.text if self._reader is not None else None
        state["_reader_imports"] = self._reader_imports if self._reader is not None else {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        text, imports = state.pop("_reader_text"), state.pop("_reader_imports")
        self.__dict__.update(state)
        self._reader, self._schema, self._plans = None, None, {}
        if text is not None:
            self._adopt(parse_protobuf(text, imports), state["_message_name"], imports)

    def _plan(self, schema_id: int) -> ProtoSchema | str:
        """The writer schema of an id, or the reason its messages are rejected."""
        known = self._plans.get(schema_id)
        if known is not None:
            return known
        try:
            found = self.source.schema(schema_id)
        except UnknownSchemaId:
            return f"unknown schema id {schema_id}"  # not cached: it may be registered soon
        if found.schema_type != "PROTOBUF":
            plan: ProtoSchema | str = f"schema id {schema_id} is {found.schema_type}, expected PROTOBUF"
        else:
            try:
                imports = self._imports(found.references)
                plan = parse_protobuf(found.schema_str, imports)
                self._writer_imports[schema_id] = imports
            except ProtobufSchemaError as exc:
                plan = f"schema id {schema_id} is not a valid Protobuf schema: {exc}"
            except (UnknownReference, LookupError, TypeError) as exc:
                plan = f"schema id {schema_id} has a reference the registry cannot resolve: {exc}"
        self._plans[schema_id] = plan
        return plan

    def _imports(self, references: Sequence[Any]) -> dict[str, str]:
        """Import name -> text of every schema ``references`` name, their own references too."""
        out: dict[str, str] = {}
        pending = list(references)
        while pending:
            ref = pending.pop()
            if ref["name"] in out:
                continue
            referenced = getattr(self.source, "referenced", None)
            if referenced is None:
                raise LookupError(f"the schema source {type(self.source).__name__} cannot look references up")
            found = referenced(ref["subject"], ref["version"])
            out[ref["name"]] = found.schema_str
            pending.extend(found.references)
        return out

    def decode(self, values: Sequence[bytes | None]) -> Decoded:
        """Decode a batch of payloads; see the class docstring.

        Raises:
            RegistryUnavailable: a writer schema could not be fetched; retry the batch later.
        """
        frames = split_wire_format(values)
        rejected = list(frames.rejected)
        parsed: list[Any] = []
        kept: list[int] = []
        checked: dict[tuple[int, str], str | None] = {}
        for schema_id, rows in frames.groups():
            writer = self._plan(schema_id)
            if isinstance(writer, str):
                rejected.extend((i, writer) for i in rows.tolist())
                continue
            for i in rows.tolist():
                start, end = int(frames.starts[i]) + HEADER_BYTES, int(frames.ends[i])
                try:
                    indexes, body = message_indexes(frames.data, start, end)
                    name = _message_at(writer, indexes)
                except (ValueError, LookupError) as exc:
                    rejected.append((i, f"Protobuf message indexes at schema id {schema_id}: {exc}"))
                    continue
                problem = checked.get((schema_id, name), "?")
                if problem == "?":
                    problem = checked[(schema_id, name)] = self._check(schema_id, writer, name)
                if problem:
                    rejected.append((i, problem))
                    continue
                msg = self.message_class()
                try:
                    msg.ParseFromString(frames.data[body:end])
                except (DecodeError, RuntimeError, ValueError) as exc:
                    rejected.append((i, f"Protobuf decode failed at schema id {schema_id}: {exc}"))
                    continue
                parsed.append(msg)
                kept.append(i)
        if self._schema is None:
            return Decoded(pa.schema([]).empty_table(), np.empty(0, np.int64), sorted(rejected))
        order = np.asarray(kept, dtype=np.int64)
        sort = np.argsort(order, kind="stable")
        messages = [parsed[j] for j in sort.tolist()]
        table = pa.Table.from_arrays(_columns(self._descriptor, messages), schema=self._schema)
        return check_required(table, order[sort], rejected, self._nullable_required)

    def _check(self, schema_id: int, writer: ProtoSchema, name: str) -> str | None:
        """Why messages of ``name`` in the writer schema cannot be read as the reader message, if they cannot."""
        if self._reader is None:
            try:
                self._adopt(writer, name, self._writer_imports.get(schema_id, {}))
            except ValueError as exc:
                return f"schema id {schema_id} cannot be the reader schema: {exc}"
        if name != self._message_name:
            return f"schema id {schema_id}: the message is {name}, the decoder reads {self._message_name}"
        assert self._reader is not None
        problems = check_compatibility(self._reader, writer)
        if problems:
            return f"writer schema id {schema_id} cannot be read as the reader schema: " + "; ".join(problems)
        return None
