"""The registry's Protobuf format: ``.proto`` text or base64 descriptors, compiled by ``protoc``, checked by Confluent's rules.

It has the shape of ``formats.SchemaFormat`` (``parse``, ``text``, ``normalized``, ``check``,
``schema_type``, ``references_supported``) plus :meth:`ProtobufFormat.serialized` for Confluent's
``?format=serialized``. References are imports: each resolved reference's ``name`` is the import
path its text is compiled under; the well-known types and Confluent's own files need none.

Example:
    >>> money = 'syntax = "proto3"; package fin; message Money { int64 units = 1; }'
    >>> v1 = FORMAT.parse('syntax = "proto3"; import "fin/money.proto"; message Pay { fin.Money amount = 1; }',
    ...                   [("fin/money.proto", "PROTOBUF", money)])
    >>> v2 = FORMAT.parse('syntax = "proto3"; message Pay { string amount = 1; }', [])
    >>> FORMAT.check(v2, v1)
    ["FIELD_KIND_CHANGED #/Pay/1: field 'amount' (line 1 of the new schema): its kind changed, from fin.Money (message) to string (scalar)"]
    >>> FORMAT.parse('syntax = "proto3"; message Pay { string amount = 1 }', [])
    Traceback (most recent call last):
    ...
    fabric_ray.governance.protobuf_format.ProtobufFormatError: schema.proto line 1: Expected ";".
"""

from __future__ import annotations

from typing import Any, Sequence

from fabric_ray.governance.protobuf import ProtobufSchemaError, ProtoSchema, check_compatibility, parse_protobuf
from fabric_ray.governance.protobuf_text import proto_text

__all__ = ["FORMAT", "ProtobufFormat", "ProtobufFormatError"]

try:  # the registry's format interface, where it exists: its error type, so the registry maps it to 422
    from fabric_ray.governance.formats import SchemaFormatError as _FormatError
except ImportError:  # pragma: no cover - before formats.py lands
    _FormatError = ValueError  # type: ignore[misc,assignment]


class ProtobufFormatError(_FormatError):  # type: ignore[misc,valid-type]
    """A Protobuf schema or reference the registry refuses; the message names file and line."""


class ProtobufFormat:
    """Protobuf for the schema registry (see the module docstring)."""

    schema_type = "PROTOBUF"
    references_supported = True

    def parse(self, text: str, resolved: Sequence[Any], validate: bool = True) -> ProtoSchema:
        """Compile ``text`` with the referenced schemas (``(name, schema_type, text)``, dependencies first).

        Raises:
            ProtobufFormatError: it does not compile, or a reference is not Protobuf.
        """
        deps: dict[str, str] = {}
        for name, schema_type, dep_text in (tuple(r) for r in resolved):
            if str(schema_type).upper() != "PROTOBUF":
                raise ProtobufFormatError(
                    f"reference {name!r} is a {schema_type} schema; a PROTOBUF schema can only import PROTOBUF schemas"
                )
            deps[name] = dep_text
        try:
            # No reference list: every imported type is then compared member by member, which gives
            # Confluent's verdicts (it skips only types of the same subject and version: the same text).
            return parse_protobuf(text, deps)
        except ProtobufSchemaError as exc:
            raise ProtobufFormatError(str(exc)) from None

    def text(self, parsed: ProtoSchema) -> str:
        """The ``.proto`` text printed from the compiled schema, as Confluent stores its printed text.

        Text and base64 forms of one schema print the same, and so are one schema (one id);
        comments and layout are not kept.
        """
        return proto_text(parsed)

    def normalized(self, parsed: ProtoSchema) -> str:
        """The text under ``normalize=true``: printed with Confluent's orderings (fields by number,
        options by name, imports sorted...; see :func:`~fabric_ray.governance.protobuf_text.proto_text`)."""
        return proto_text(parsed, normalize=True)

    def serialized(self, parsed: ProtoSchema) -> str:
        """The schema's file as a base64 ``FileDescriptorProto``: Confluent's ``?format=serialized``."""
        return parsed.serialized()

    def check(self, reader: ProtoSchema, writer: ProtoSchema) -> list[str]:
        """Why ``reader`` cannot read data written with ``writer`` (Confluent's Protobuf rules)."""
        return check_compatibility(reader, writer)


FORMAT = ProtobufFormat()
