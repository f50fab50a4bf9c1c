"""Compile Protobuf schemas (``.proto`` text or Confluent's base64 descriptors) with the real ``protoc``.

The registry receives a Protobuf schema in one of two forms, as Confluent's does: ``.proto``
text, or a base64-encoded ``FileDescriptorProto`` (what confluent-kafka's ``ProtobufSerializer``
sends). Either is compiled by ``protoc`` (the one inside the ``grpcio-tools`` wheel, run as
``python -m grpc_tools.protoc`` in a subprocess, so its diagnostics come back as text and a crash
cannot take the registry down) into a ``FileDescriptorSet``: the schema's own file last, every file
it imports before it. Imports resolve against, in order:

* ``dependencies``: the texts of the schemas the Confluent ``references`` point at, keyed by the
  import name (``"money.proto"``), text or base64 alike;
* the well-known types ``google/protobuf/*.proto`` (``protoc``'s own include directory);
* the files every Confluent client knows without a reference: ``confluent/meta.proto``,
  ``confluent/type/decimal.proto`` and the ``google/type/*.proto`` of googleapis-common-protos.

Errors name the file and line ``protoc`` names (``schema.proto line 4: "Foo" is not defined.``).
Compiled results are cached by their inputs (a registry re-parses stored versions on every
compatibility check).

Example:
    >>> s = parse_protobuf('syntax = "proto3"; package shop; message Order { int64 id = 1; }')
    >>> s.file.package, [m.name for m in s.file.message_type], s.message_names()
    ('shop', ['Order'], ['shop.Order'])
    >>> parse_protobuf('syntax = "proto3"; message A { Missing m = 1; }')
    Traceback (most recent call last):
    ...
    fabric_ray.governance.protobuf_parse.ProtobufSchemaError: schema.proto line 1: "Missing" is not defined.
"""

from __future__ import annotations

import base64
import binascii
import functools
import importlib
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from threading import Lock
from typing import Any, Mapping, Sequence

from google.protobuf import descriptor_pb2, descriptor_pool

__all__ = ["ProtoSchema", "ProtobufSchemaError", "is_builtin", "parse_protobuf"]

MAIN_FILE = "schema.proto"
COMPILE_TIMEOUT_S = 60
_CACHE_SIZE = 256
_BASE64 = re.compile(r"^[A-Za-z0-9+/=\s]+$")
_ABSL_LOG = re.compile(r"^[IW]\d{4} ")  # protoc's own log lines (e.g. "no syntax specified"), not errors
_DIAGNOSTIC = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): (?P<msg>.*)$")


class ProtobufSchemaError(ValueError):
    """A Protobuf schema that does not compile, with ``protoc``'s file, line and message."""


def is_builtin(name: str) -> bool:
    """Whether an import needs no reference: well-known types and Confluent's own files.

    The same prefixes confluent-kafka skips when it registers references (``skip.known.types``).

    Example:
        >>> is_builtin("google/protobuf/timestamp.proto"), is_builtin("shop/money.proto")
        (True, False)
    """
    return name.startswith(("google/protobuf/", "google/type/", "confluent/"))


@dataclass(frozen=True, eq=False)
class ProtoSchema:
    """A compiled Protobuf schema.

    Attributes:
        file: the schema's own ``FileDescriptorProto`` (with source info when it came as text).
        files: every file in import order, ``file`` last (the ``FileDescriptorSet``).
        references: import name -> ``{"name", "subject", "version"}`` for the imports that came
            from Confluent references (the others are built in).
        source: what was compiled: ``"text"`` or ``"descriptor"`` (base64).
        text: the schema as given.
    """

    file: descriptor_pb2.FileDescriptorProto
    files: tuple[descriptor_pb2.FileDescriptorProto, ...]
    references: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = "text"
    text: str = ""

    @property
    def name(self) -> str:
        """The schema's file name (``schema.proto`` unless given)."""
        return self.file.name

    def serialized(self) -> str:
        """The schema's own file as base64 ``FileDescriptorProto`` (Confluent's ``format=serialized``).

        Source info is left out, as Confluent leaves it out; the file keeps its name.
        """
        return base64.standard_b64encode(_without_source_info(self.file).SerializeToString()).decode("ascii")

    def identity(self) -> str:
        """A deterministic form for identity: the file without source info, as base64.

        Two texts that compile to the same descriptor (whitespace, comments, how a type name is
        qualified) have the same identity; the base64 form of a schema has its text's identity.
        Empty ``options`` (left by options ``protoc`` strips, such as ``retention = RETENTION_SOURCE``
        ones) count as absent.
        """
        proto = _without_source_info(self.file)
        proto.name = MAIN_FILE
        _drop_empty_options(proto)
        return base64.standard_b64encode(proto.SerializeToString(deterministic=True)).decode("ascii")

    def message_names(self) -> list[str]:
        """Full names of every message the file declares, outer before nested, in file order
        (map entries left out)."""
        out: list[str] = []
        prefix = f"{self.file.package}." if self.file.package else ""

        def walk(messages: Sequence[descriptor_pb2.DescriptorProto], scope: str) -> None:
            for m in messages:
                if m.options.map_entry:
                    continue
                out.append(scope + m.name)
                walk(m.nested_type, f"{scope}{m.name}.")

        walk(self.file.message_type, prefix)
        return out

    @functools.cached_property
    def pool(self) -> descriptor_pool.DescriptorPool:
        """A descriptor pool holding :attr:`files` (for message classes and options)."""
        pool = descriptor_pool.DescriptorPool()
        for proto in self.files:
            pool.Add(proto)
        return pool

    def line_of(self, path: Sequence[int]) -> int | None:
        """The 1-based line of the element at a ``SourceCodeInfo`` path, when the text is known."""
        for loc in self.file.source_code_info.location:
            if list(loc.path) == list(path):
                return loc.span[0] + 1
        return None


def _drop_empty_options(message: Any) -> None:
    """Clear every set but empty ``options`` field in a descriptor proto, recursively."""
    for field, value in message.ListFields():
        if field.message_type is None or field.is_extension or field.message_type.GetOptions().map_entry:
            continue  # only the descriptor protos' own structure holds ``options``
        if field.name == "options" and not value.ByteSize():
            message.ClearField("options")
            continue
        for item in value if field.is_repeated else [value]:
            _drop_empty_options(item)


def _without_source_info(proto: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    copy = descriptor_pb2.FileDescriptorProto()
    copy.CopyFrom(proto)
    copy.ClearField("source_code_info")
    return copy


def parse_protobuf(
    schema: str,
    dependencies: Mapping[str, str] | None = None,
    references: Sequence[Mapping[str, Any]] = (),
    name: str = MAIN_FILE,
) -> ProtoSchema:
    """Compile ``schema`` (``.proto`` text or base64 ``FileDescriptorProto``) with ``protoc``.

    Args:
        schema: the schema text.
        dependencies: import name -> schema text (or base64) of every file it may import,
            transitively (the referenced versions).
        references: the Confluent reference list; kept on the result by import name.
        name: the file name to compile the schema as (a base64 descriptor keeps its own unless
            it has none).

    Raises:
        ProtobufSchemaError: the schema or a dependency does not compile, naming file and line.

    Example:
        >>> money = 'syntax = "proto3"; package fin; message Money { int64 units = 1; }'
        >>> s = parse_protobuf(
        ...     'syntax = "proto3"; import "fin/money.proto"; import "google/protobuf/timestamp.proto";'
        ...     ' message Pay { fin.Money amount = 1; google.protobuf.Timestamp at = 2; }',
        ...     {"fin/money.proto": money})
        >>> [f.name for f in s.files]
        ['fin/money.proto', 'google/protobuf/timestamp.proto', 'schema.proto']
        >>> parse_protobuf(s.serialized(), {"fin/money.proto": money}).identity() == s.identity()
        True
    """
    if not isinstance(schema, str) or not schema.strip():
        raise ProtobufSchemaError(f"{name}: empty schema; expected .proto text or a base64 FileDescriptorProto")
    deps = dict(dependencies or {})
    key = (schema, name, tuple(sorted(deps.items())))
    with _CACHE_LOCK:
        files = _CACHE.get(key)
        if files is not None:
            _CACHE.move_to_end(key)
    if files is None:
        files = _compile(schema, deps, name)
        with _CACHE_LOCK:
            _CACHE[key] = files
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    refs = {r["name"]: dict(r) for r in references}
    source = "descriptor" if _as_descriptor(schema) is not None else "text"
    return ProtoSchema(files[-1], files, refs, source, schema)


_CACHE: OrderedDict[Any, tuple[descriptor_pb2.FileDescriptorProto, ...]] = OrderedDict()
_CACHE_LOCK = Lock()


def _as_descriptor(text: str) -> descriptor_pb2.FileDescriptorProto | None:
    """``text`` as a base64 ``FileDescriptorProto``, or ``None`` when it is not one (then it is .proto text)."""
    if not _BASE64.match(text):
        return None
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
        proto = descriptor_pb2.FileDescriptorProto()
        proto.ParseFromString(raw)
    except (binascii.Error, ValueError, Exception):  # DecodeError is not a ValueError in every runtime
        return None
    return proto


def _compile(schema: str, deps: dict[str, str], name: str) -> tuple[descriptor_pb2.FileDescriptorProto, ...]:
    given: list[descriptor_pb2.FileDescriptorProto] = []
    texts: dict[str, str] = {}
    main_proto = _as_descriptor(schema)
    if main_proto is not None:
        name = main_proto.name or name
        main_proto.name = name
    for dep_name, text in deps.items():
        if dep_name == name:
            raise ProtobufSchemaError(f"{name}: a reference has the schema's own file name {dep_name!r}")
        proto = _as_descriptor(text)
        if proto is None:
            texts[dep_name] = text
        else:
            proto.name = dep_name
            given.append(proto)
    taken = set(deps) | {name}
    given.extend(f for f in _builtin_files() if f.name not in taken)
    if main_proto is not None and texts:
        # A file read from a descriptor set resolves its imports in descriptor sets only: compile
        # the text dependencies first and hand them over as descriptors.
        given = list(_protoc(given, texts, sorted(texts), sorted(texts)[0])) + [
            f for f in given if f.name not in texts
        ]
        texts = {}
    if main_proto is not None:
        return _protoc(given + [main_proto], texts, [name], name)
    return _protoc(given, {**texts, name: schema}, [name], name)


def _protoc(
    given: Sequence[descriptor_pb2.FileDescriptorProto], texts: Mapping[str, str], inputs: Sequence[str], name: str
) -> tuple[descriptor_pb2.FileDescriptorProto, ...]:
    """Run ``protoc`` on ``inputs`` with ``texts`` as source files and ``given`` as a descriptor set."""
    with tempfile.TemporaryDirectory(prefix="fabric-protoc-") as tmp:
        src = os.path.join(tmp, "src")
        os.makedirs(src)
        for file_name, text in texts.items():
            _write(src, file_name, text)
        unique: dict[str, descriptor_pb2.FileDescriptorProto] = {}
        for proto in given:
            unique.setdefault(proto.name, proto)
        set_in = os.path.join(tmp, "in.pb")
        with open(set_in, "wb") as out:
            out.write(descriptor_pb2.FileDescriptorSet(file=list(unique.values())).SerializeToString())
        set_out = os.path.join(tmp, "out.pb")
        args = [
            sys.executable, "-m", "grpc_tools.protoc", f"--proto_path={src}", f"--proto_path={_wkt_dir()}",
            f"--descriptor_set_in={set_in}", f"--descriptor_set_out={set_out}", "--include_imports",
            "--include_source_info", *inputs,
        ]
        try:
            done = subprocess.run(args, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise ProtobufSchemaError(f"{name}: protoc did not finish within {COMPILE_TIMEOUT_S} s") from None
        if done.returncode != 0:
            raise ProtobufSchemaError(_diagnostics(done.stderr, src, name))
        result = descriptor_pb2.FileDescriptorSet()
        with open(set_out, "rb") as f:
            result.ParseFromString(f.read())
    files = list(result.file)
    if files and files[-1].name != inputs[-1]:  # protoc orders by imports; keep the schema last
        files.sort(key=lambda f: f.name == name)
    return tuple(files)


def _write(root: str, name: str, text: str) -> None:
    if name.startswith("/") or ".." in name.split("/") or not name.strip():
        raise ProtobufSchemaError(f"invalid import name {name!r}: expected a relative path such as 'shop/money.proto'")
    path = os.path.join(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _diagnostics(stderr: str, src: str, name: str) -> str:
    """``protoc``'s errors as ``file line N: message``, warnings dropped, paths made relative."""
    errors = []
    for raw in stderr.splitlines():
        line = raw.replace(src + os.sep, "").strip()
        if not line or "warning:" in line.lower() or _ABSL_LOG.match(line):
            continue
        m = _DIAGNOSTIC.match(line)
        errors.append(f"{m['file']} line {m['line']}: {m['msg']}" if m else line)
    return "; ".join(errors) or f"{name}: protoc failed without a message"


@functools.cache
def _wkt_dir() -> str:
    import grpc_tools

    return os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")


@functools.cache
def _builtin_files() -> tuple[descriptor_pb2.FileDescriptorProto, ...]:
    """Confluent's own files and googleapis' ``google/type/*``, from the modules that ship them."""
    modules = [
        "confluent_kafka.schema_registry.confluent.meta_pb2",
        "confluent_kafka.schema_registry.confluent.type.decimal_pb2",
        "confluent_kafka.schema_registry.confluent.type.variant_pb2",
    ]
    try:
        import google.type as google_type

        modules += [
            f"google.type.{m.name}" for m in pkgutil.iter_modules(google_type.__path__) if m.name.endswith("_pb2")
        ]
    except ImportError:  # googleapis-common-protos missing: those imports then fail to compile, by name
        pass
    files = []
    for module in modules:
        try:
            serialized = importlib.import_module(module).DESCRIPTOR.serialized_pb
        except (ImportError, AttributeError):
            continue
        proto = descriptor_pb2.FileDescriptorProto()
        proto.ParseFromString(serialized)
        if not proto.name.startswith("google/protobuf/"):
            files.append(proto)
    return tuple(files)
