"""Decode Confluent wire-format payloads (Avro, JSON Schema) and raw bytes into Arrow batches.

The Confluent wire format is one magic byte ``0``, the writer schema's registry id as four
big-endian bytes, then the serialized value (Avro binary, or JSON text). The decoders here
share :class:`~fabric_ray.streams.json_codec.JsonDecoder`'s interface: ``decode(values)``
returns every good message as a row and every bad one with its own reason, and they satisfy
:class:`~fabric_ray.streams.codec.Decoder`, so a ``WindowedFeaturesSpec`` takes any of them.

A batch is split by schema id; each writer schema is fetched once through a
:class:`~fabric_ray.streams.schema_source.SchemaSource` and its decoding plan kept (ids are
immutable). When the registry cannot be asked, ``decode`` raises
:class:`~fabric_ray.streams.schema_source.RegistryUnavailable` instead of rejecting anything,
and the partition processor retries the batch. See ``docs/codecs.md`` for the reasons, the
schema-evolution rule and measured speeds.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, Sequence

import fastavro
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fastavro.read import SchemaResolutionError

from fabric_ray.governance.arrow_schema import avro_to_arrow, json_schema_to_arrow
from fabric_ray.governance.avro import AvroSchema, AvroSchemaError, canonical_form, check_compatibility, parse_avro
from fabric_ray.streams.codec import PAD, AvroColumns, columnar_supported, physical_type, resolve, to_logical
from fabric_ray.streams.json_codec import Decoded, JsonDecoder
from fabric_ray.streams.schema_source import SchemaSource, UnknownSchemaId

__all__ = ["AvroDecoder", "JsonSchemaDecoder", "RawDecoder", "WireFrames", "split_wire_format"]

HEADER_BYTES = 5
TOMBSTONE = "empty payload (tombstone)"


@dataclass(frozen=True)
class WireFrames:
    """A batch of payloads joined into one buffer, with each message's header checked.

    Attributes:
        data: every payload back to back (tombstones as nothing), then 16 bytes of padding.
        buf: ``data`` as a uint8 array.
        starts: where each payload starts in ``data``.
        ends: where each payload ends.
        schema_ids: the schema id of each message (-1 where the header is bad).
        rejected: ``(index, reason)`` for tombstones, short messages and wrong magic bytes.
    """

    data: bytes
    buf: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    schema_ids: np.ndarray
    rejected: list[tuple[int, str]]

    def groups(self) -> list[tuple[int, np.ndarray]]:
        """``(schema id, message indices)`` for every id in the batch, smallest id first."""
        good = np.flatnonzero(self.schema_ids >= 0)
        ids = self.schema_ids[good]
        first = ids[0] if len(ids) else 0
        if len(ids) and (ids == first).all():  # the usual case: one writer schema per batch
            return [(int(first), good)]
        return [(int(sid), good[ids == sid]) for sid in np.unique(ids)]


def split_wire_format(values: Sequence[bytes | None]) -> WireFrames:
    """Check the 5-byte Confluent header of every payload, all at once.

    Example:
        >>> f = split_wire_format([b"\\x00\\x00\\x00\\x00\\x07body", b'{"a": 1}', b"\\x00\\x01", None])
        >>> f.schema_ids.tolist(), f.rejected
        ([7, -1, -1, -1], [(1, 'not Confluent wire format: magic byte 0x7b'), (2, 'message shorter than 5 bytes'), (3, 'empty payload (tombstone)')])
    """
    n = len(values)
    parts = [b"" if v is None else v for v in values]
    lengths = np.fromiter(map(len, parts), dtype=np.int64, count=n)
    parts.append(PAD)
    data = b"".join(parts)
    buf = np.frombuffer(data, dtype=np.uint8)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    ends = starts + lengths
    head = buf[starts[:, None] + np.arange(HEADER_BYTES)].astype(np.int64)
    ids = (head[:, 1] << 24) | (head[:, 2] << 16) | (head[:, 3] << 8) | head[:, 4]
    wrong = np.flatnonzero((head[:, 0] != 0) & (lengths > 0) | (lengths < HEADER_BYTES))
    rejected: list[tuple[int, str]] = []
    for i in wrong.tolist():
        if values[i] is None:
            rejected.append((i, TOMBSTONE))
        elif lengths[i] > 0 and head[i, 0] != 0:
            rejected.append((i, f"not Confluent wire format: magic byte {int(head[i, 0]):#04x}"))
        else:
            rejected.append((i, "message shorter than 5 bytes"))
    ids[wrong] = -1
    return WireFrames(data, buf, starts, ends, ids, rejected)


def check_required(table: pa.Table, kept: np.ndarray, rejected: list[tuple[int, str]], names: Sequence[str]) -> Decoded:
    """Reject the rows of ``table`` where one of the nullable columns ``names`` is null.

    Worded as ``JsonDecoder`` words it (``missing required field 'note'``), so dead letters read the
    same whatever the format. ``kept`` are the rows' input indices; ``rejected`` is extended.

    Example:
        >>> out = check_required(pa.table({"a": [1, None]}), np.array([4, 7]), [], ["a"])
        >>> out.table.to_pylist(), out.kept.tolist(), out.rejected
        ([{'a': 1}], [4], [(7, "missing required field 'a'")])
    """
    valid = None
    for name in names:
        ok = pc.is_valid(table[name])
        valid = ok if valid is None else pc.and_(valid, ok)
    if valid is None or table.num_rows == 0:
        return Decoded(table, kept, sorted(rejected))
    valid_np = valid.to_numpy(zero_copy_only=False)
    if valid_np.all():
        return Decoded(table, kept, sorted(rejected))
    for row in np.flatnonzero(~valid_np).tolist():
        name = next(n for n in names if not table[n][row].is_valid)
        rejected.append((int(kept[row]), f"missing required field {name!r}"))
    return Decoded(table.filter(valid), kept[valid_np], sorted(rejected))


def _strip_logical(schema: Any) -> Any:
    """The schema JSON without ``logicalType``, so fastavro returns the plain stored values."""
    if isinstance(schema, dict):
        return {k: _strip_logical(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_strip_logical(v) for v in schema]
    return schema


@dataclass
class _Plan:
    """How to decode messages of one writer schema id."""

    schema_id: int
    writer: AvroSchema
    writer_json: Any
    resolve: bool  # writer and reader differ, so Avro schema resolution applies
    columnar: bool
    fast: tuple[Any, Any] | None = None  # parsed (writer, reader) for fastavro, made on first use


class AvroDecoder:
    """Decode Confluent wire-format Avro into rows of the reader schema.

    Each message's writer schema is fetched by id through ``source``. Messages are resolved
    to the reader schema by Avro schema resolution (added fields take their defaults, removed
    ones are dropped, ``int`` is promoted to ``long``...); a writer schema that cannot be read
    as the reader rejects its messages with the compatibility checker's reason.

    Without ``reader_schema`` the first Avro writer schema the decoder meets becomes the reader
    schema, and later writer schemas are resolved against it the same way. Give a reader schema
    in production: the columns should not depend on which message came first, and a
    ``WindowedFeaturesSpec`` checks the columns when it is made.

    Records of primitives, enums, fixed, nested records and ``["null", T]`` unions are decoded
    column by column with NumPy (:class:`~fabric_ray.streams.codec.AvroColumns`); schemas with
    arrays, maps or other unions go through fastavro, one call per message over one buffer.

    Args:
        source: where writer schemas come from.
        reader_schema: the Avro record to read as (JSON text or a dict), or ``None``.
        required: nullable fields that must not be null. Fields whose Avro type is not
            nullable are always required and are listed in :attr:`required` too.

    Raises:
        ValueError: the reader schema has no Arrow equivalent, or a required field is not in it.
        fabric_ray.governance.avro.AvroSchemaError: the reader schema is not valid Avro.

    Example:
        >>> import io, struct, fastavro
        >>> from fabric_ray.governance.registry import SchemaRegistry
        >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
        >>> from fabric_ray.streams.schema_source import LocalRegistrySource
        >>> registry = SchemaRegistry(MemoryRegistryStore())
        >>> schema = {"type": "record", "name": "Payment", "fields": [
        ...     {"name": "user_id", "type": "long"}, {"name": "amount", "type": "double"}]}
        >>> sid = registry.register("payments-value", json.dumps(schema))
        >>> body = io.BytesIO()
        >>> fastavro.schemaless_writer(body, fastavro.parse_schema(schema), {"user_id": 7, "amount": 2.5})
        >>> good = b"\\x00" + struct.pack(">I", sid) + body.getvalue()
        >>> decoder = AvroDecoder(LocalRegistrySource(registry), schema)
        >>> out = decoder.decode([good, b'{"user_id": 7}', b"\\x00\\x00\\x00\\x00\\x2a" + body.getvalue()])
        >>> out.table.to_pylist(), out.rejected
        ([{'user_id': 7, 'amount': 2.5}], [(1, 'not Confluent wire format: magic byte 0x7b'), (2, 'unknown schema id 42')])
    """

    def __init__(self, source: SchemaSource, reader_schema: str | dict | None = None, required: Sequence[str] = ()) -> None:
        self.source = source
        self._wanted = tuple(required)
        self._reader: AvroSchema | None = None
        self._reader_json: Any = None
        self._schema: pa.Schema | None = None
        self.required: tuple[str, ...] = self._wanted
        self._plans: dict[int, _Plan | str] = {}
        if reader_schema is not None:
            reader = parse_avro(reader_schema)
            self._adopt(reader, json.loads(reader_schema) if isinstance(reader_schema, str) else reader_schema)

    @property
    def schema(self) -> pa.Schema:
        """The Arrow schema of the reader schema (see :func:`~fabric_ray.governance.arrow_schema.avro_to_arrow`).

        Raises:
            LookupError: no reader schema was given and no message has been decoded yet.
        """
        if self._schema is None:
            raise LookupError("AvroDecoder has no reader schema yet: pass reader_schema=..., or decode a message first")
        return self._schema

    def _adopt(self, reader: AvroSchema, reader_json: Any) -> None:
        schema = avro_to_arrow(reader)
        missing = [name for name in self._wanted if name not in schema.names]
        if missing:
            raise ValueError(f"required fields {missing} are not in the reader schema {schema.names}")
        self._reader, self._reader_json, self._schema = reader, reader_json, schema
        always = [f.name for f in schema if not f.nullable]
        self.required = tuple(dict.fromkeys([*self._wanted, *always]))
        self._nullable_required = [n for n in self._wanted if schema.field(n).nullable]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_plans"] = {}  # rebuilt on first use; fastavro's parsed schemas need not travel
        return state

    # -- decoding -------------------------------------------------------------------------------

    def decode(self, values: Sequence[bytes | None]) -> Decoded:
        """Decode a batch of payloads; see the class docstring.

        Raises:
            RegistryUnavailable: a writer schema could not be fetched; retry the batch later.
        """
        frames = split_wire_format(values)
        rejected = list(frames.rejected)
        tables: list[pa.Table] = []
        kept: list[np.ndarray] = []
        for schema_id, rows in frames.groups():
            plan = self._plan(schema_id)
            if isinstance(plan, str):
                rejected.extend((i, plan) for i in rows.tolist())
                continue
            table, ok = self._decode_group(plan, frames, rows, rejected)
            tables.append(table)
            kept.append(ok)
        if self._schema is None:
            return Decoded(pa.schema([]).empty_table(), np.empty(0, np.int64), sorted(rejected))
        if not tables:
            return Decoded(self._schema.empty_table(), np.empty(0, np.int64), sorted(rejected))
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        order = np.concatenate(kept)
        if len(tables) > 1:
            sort = np.argsort(order, kind="stable")
            table, order = table.take(sort), order[sort]
        return self._check_required(table, order, rejected)

    def _check_required(self, table: pa.Table, kept: np.ndarray, rejected: list[tuple[int, str]]) -> Decoded:
        return check_required(table, kept, rejected, self._nullable_required)

    def _plan(self, schema_id: int) -> _Plan | str:
        """The plan for a writer id, or the reason all its messages are rejected."""
        plan = self._plans.get(schema_id)
        if plan is not None:
            return plan
        try:
            found = self.source.schema(schema_id)
        except UnknownSchemaId:
            return f"unknown schema id {schema_id}"  # not cached: it may be registered soon
        plan = self._make_plan(schema_id, found.schema_type, found.schema_str, found.references)
        self._plans[schema_id] = plan
        return plan

    def _make_plan(self, schema_id: int, schema_type: str, text: str, references: Sequence[Any]) -> _Plan | str:
        if schema_type != "AVRO":
            return f"schema id {schema_id} is {schema_type}, expected AVRO"
        if references:
            return f"schema id {schema_id} uses schema references, which are not supported"
        try:
            writer_json = json.loads(text) if text.strip()[:1] in ('"', "{", "[") else text
            writer = parse_avro(writer_json)
        except (AvroSchemaError, json.JSONDecodeError) as exc:
            return f"schema id {schema_id} is not a valid Avro schema: {exc}"
        if self._reader is None:
            try:
                self._adopt(writer, writer_json)
            except ValueError as exc:
                return f"schema id {schema_id} cannot be the reader schema: {exc}"
        assert self._reader is not None
        problems = check_compatibility(self._reader, writer)
        if problems:
            return f"writer schema id {schema_id} cannot be read as the reader schema: " + "; ".join(problems)
        differs = canonical_form(writer) != canonical_form(self._reader)
        return _Plan(schema_id, writer, writer_json, differs, columnar_supported(writer))

    def _decode_group(
        self, plan: _Plan, frames: WireFrames, rows: np.ndarray, rejected: list[tuple[int, str]]
    ) -> tuple[pa.Table, np.ndarray]:
        """Decode the messages ``rows`` of one writer id; bisect if Arrow refuses a value."""
        prefix = f"Avro decode failed at schema id {plan.schema_id}: "
        try:
            columns, good, why = (self._columnar if plan.columnar else self._fastavro)(plan, frames, rows)
        except SchemaResolutionError as exc:
            rejected.extend((i, f"writer schema id {plan.schema_id} cannot be read as the reader schema: {exc}") for i in rows.tolist())
            return self.schema.empty_table(), np.empty(0, np.int64)
        except (pa.ArrowException, ValueError, TypeError, OverflowError) as exc:
            if len(rows) == 1:
                rejected.append((int(rows[0]), prefix + f"{type(exc).__name__}: {exc}"[:300]))
                return self.schema.empty_table(), np.empty(0, np.int64)
            half = len(rows) // 2
            a, ka = self._decode_group(plan, frames, rows[:half], rejected)
            b, kb = self._decode_group(plan, frames, rows[half:], rejected)
            return pa.concat_tables([a, b]), np.concatenate([ka, kb])
        rejected.extend((int(rows[i]), prefix + reason) for i, reason in why.items())
        if not columns:  # a record without fields still has rows
            return pa.table({"_": pa.nulls(int(good.sum()))}).select([]), rows[good]
        return pa.Table.from_arrays(columns, schema=self.schema), rows[good]

    def _columnar(self, plan: _Plan, frames: WireFrames, rows: np.ndarray) -> tuple[list[pa.Array], np.ndarray, dict[int, str]]:
        """Columns of the good messages among ``rows``, which those are, and why the others are bad."""
        reader = AvroColumns(frames.buf, frames.starts[rows] + HEADER_BYTES, frames.ends[rows])
        columns = reader.read_record(plan.writer)
        good = ~reader.finish()
        if not good.all():  # garbage in bad rows must not reach the conversions
            mask = pa.array(good)
            columns = [c.filter(mask) for c in columns]
        assert self._reader is not None
        if plan.resolve:
            struct = pa.StructArray.from_arrays(columns, fields=list(physical_type(plan.writer)))
            resolved = resolve(self._reader, plan.writer, struct)
            columns = [resolved.field(i) for i in range(resolved.type.num_fields)]
        return [to_logical(f.type, c) for f, c in zip(self._reader.fields, columns)], good, reader.why

    def _fastavro(self, plan: _Plan, frames: WireFrames, rows: np.ndarray) -> tuple[list[pa.Array], np.ndarray, dict[int, str]]:
        """Like :meth:`_columnar`, with fastavro reading one message at a time from one buffer."""
        if plan.fast is None:
            writer = fastavro.parse_schema(_strip_logical(plan.writer_json))
            reader = fastavro.parse_schema(_strip_logical(self._reader_json)) if plan.resolve else None
            plan.fast = (writer, reader)
        writer, reader = plan.fast
        buf = io.BytesIO(frames.data)
        read = fastavro.schemaless_reader
        records: list[Any] = []
        bad = np.zeros(len(rows), dtype=bool)
        why: dict[int, str] = {}
        starts, ends = frames.starts[rows] + HEADER_BYTES, frames.ends[rows]
        for k, (start, end) in enumerate(zip(starts.tolist(), ends.tolist())):
            buf.seek(start)
            try:
                record = read(buf, writer, reader)
            except SchemaResolutionError:
                raise
            except Exception as exc:  # fastavro raises many kinds on corrupt input
                bad[k], why[k] = True, f"{type(exc).__name__}: {exc}"[:300]
                continue
            at = buf.tell()
            if at != end:
                bad[k] = True
                why[k] = "message truncated" if at > end else f"{end - at} bytes left over after the record"
                continue
            records.append(record)
        assert self._reader is not None
        columns = []
        for f in self._reader.fields:
            column = pa.array([r[f.name] for r in records], type=physical_type(f.type, pa.string()))
            columns.append(to_logical(f.type, column))
        return columns, ~bad, why


class JsonSchemaDecoder:
    """Decode Confluent wire-format JSON (JSON Schema topics) into rows of an Arrow schema.

    The header is checked and stripped, then the JSON goes through
    :class:`~fabric_ray.streams.json_codec.JsonDecoder`: typed columns, a reason per bad
    message, required fields checked. That is what runs at stream speed. Checking every
    message against its JSON Schema (``validate=True``) costs a Python validation per message
    (tens of thousands per second instead of hundreds of thousands), so it is opt-in.

    Without ``schema``, the Arrow schema comes from the first writer schema met
    (:func:`~fabric_ray.governance.arrow_schema.json_schema_to_arrow`, every column nullable),
    and that schema's top-level ``required`` properties join ``required``.

    Args:
        source: where writer schemas come from.
        schema: the columns to extract, or ``None``.
        required: fields that must be present and not null.
        validate: also validate each message against its writer's JSON Schema.

    Example:
        >>> import struct
        >>> from fabric_ray.governance.registry import SchemaRegistry
        >>> from fabric_ray.governance.registry_store import MemoryRegistryStore
        >>> from fabric_ray.streams.schema_source import LocalRegistrySource
        >>> registry = SchemaRegistry(MemoryRegistryStore())
        >>> sid = registry.register("t-value", json.dumps({"type": "object", "required": ["id"],
        ...     "properties": {"id": {"type": "integer"}, "note": {"type": "string"}}}), "JSON")
        >>> head = b"\\x00" + struct.pack(">I", sid)
        >>> out = JsonSchemaDecoder(LocalRegistrySource(registry)).decode([head + b'{"id": 1}', head + b'{"note": "x"}'])
        >>> out.table.to_pylist(), out.rejected
        ([{'id': 1, 'note': None}], [(1, "missing required field 'id'")])
    """

    def __init__(
        self, source: SchemaSource, schema: pa.Schema | None = None, required: Sequence[str] = (), *, validate: bool = False
    ) -> None:
        self.source = source
        self.validate = validate
        self._wanted = tuple(required)
        self._inner = JsonDecoder(schema, required) if schema is not None else None
        self._checks: dict[int, Any] = {}  # id -> None (ok), a reason string, or a validator

    @property
    def schema(self) -> pa.Schema:
        """The columns of decoded tables.

        Raises:
            LookupError: no schema was given and no message has been decoded yet.
        """
        if self._inner is None:
            raise LookupError("JsonSchemaDecoder has no schema yet: pass schema=..., or decode a message first")
        return self._inner.schema

    @property
    def required(self) -> tuple[str, ...]:
        return self._inner.required if self._inner is not None else self._wanted

    def decode(self, values: Sequence[bytes | None]) -> Decoded:
        """Decode a batch of payloads; see the class docstring.

        Raises:
            RegistryUnavailable: a writer schema could not be fetched; retry the batch later.
        """
        frames = split_wire_format(values)
        rejected = list(frames.rejected)
        good: list[np.ndarray] = []
        validators: list[tuple[np.ndarray, Any]] = []
        for schema_id, rows in frames.groups():
            check = self._check(schema_id)
            if isinstance(check, str):
                rejected.extend((i, check) for i in rows.tolist())
                continue
            good.append(rows)
            if check is not None:
                validators.append((rows, check))
        if self._inner is None:
            return Decoded(pa.schema([]).empty_table(), np.empty(0, np.int64), sorted(rejected))
        index = np.sort(np.concatenate(good)) if good else np.empty(0, np.int64)
        if validators:
            dropped = self._validate(values, validators, rejected)
            index = index[~np.isin(index, dropped)]
        bodies = [values[i][HEADER_BYTES:] for i in index.tolist()]  # type: ignore[index]
        inner = self._inner.decode(bodies)
        rejected.extend((int(index[i]), reason) for i, reason in inner.rejected)
        return Decoded(inner.table, index[inner.kept], sorted(rejected))

    def _check(self, schema_id: int) -> Any:
        if schema_id in self._checks:
            return self._checks[schema_id]
        try:
            found = self.source.schema(schema_id)
        except UnknownSchemaId:
            return f"unknown schema id {schema_id}"
        check: Any = None
        if found.schema_type != "JSON":
            check = f"schema id {schema_id} is {found.schema_type}, expected JSON"
        else:
            import jsonschema  # only here: validation is opt-in and the import is not free

            try:
                document = json.loads(found.schema_str)
                if self._inner is None:
                    arrow = json_schema_to_arrow(document)
                    loose = pa.schema([f.with_type(_nullable(f.type)).with_nullable(True) for f in arrow])
                    always = [f.name for f in arrow if not f.nullable]
                    self._inner = JsonDecoder(loose, tuple(dict.fromkeys([*self._wanted, *always])))
                if self.validate:
                    check = jsonschema.validators.validator_for(document)(document)
            except (ValueError, jsonschema.SchemaError) as exc:
                check = f"schema id {schema_id} cannot be used: {exc}"
        self._checks[schema_id] = check
        return check

    def _validate(self, values: Sequence[bytes | None], validators: list[tuple[np.ndarray, Any]], rejected: list[tuple[int, str]]) -> list[int]:
        dropped = []
        for rows, validator in validators:
            for i in rows.tolist():
                try:
                    document = json.loads(values[i][HEADER_BYTES:])  # type: ignore[index]
                except ValueError:
                    continue  # JsonDecoder gives the reason
                error = next(iter(validator.iter_errors(document)), None)
                if error is not None:
                    where = "#" + "".join(f"/{p}" for p in error.absolute_path)
                    schema_id = int.from_bytes(values[i][1:HEADER_BYTES], "big")  # type: ignore[index]
                    rejected.append((i, f"JSON Schema validation failed at schema id {schema_id}: {where}: {error.message}"[:500]))
                    dropped.append(i)
        return dropped


def _nullable(t: pa.DataType) -> pa.DataType:
    """``t`` with every nested field nullable (JsonDecoder checks only top-level required fields)."""
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(_nullable(f.type)).with_nullable(True) for f in t])
    if pa.types.is_list(t):
        return pa.list_(_nullable(t.value_type))
    return t


class RawDecoder:
    """The payload bytes, untouched, as one binary column ``value``; tombstones are rejected.

    Example:
        >>> out = RawDecoder().decode([b"\\x00\\x01", None, b""])
        >>> out.table.column("value").to_pylist(), out.kept.tolist(), out.rejected
        ([b'\\x00\\x01', b''], [0, 2], [(1, 'empty payload (tombstone)')])
    """

    schema = pa.schema([pa.field("value", pa.binary(), nullable=False)])
    required: tuple[str, ...] = ()

    def decode(self, values: Sequence[bytes | None]) -> Decoded:
        """Decode a batch of payloads; see the class docstring."""
        kept = [i for i, v in enumerate(values) if v is not None]
        rejected = [(i, TOMBSTONE) for i, v in enumerate(values) if v is None] if len(kept) < len(values) else []
        column = pa.array([values[i] for i in kept] if rejected else list(values), type=pa.binary())
        return Decoded(pa.Table.from_arrays([column], schema=self.schema), np.asarray(kept, dtype=np.int64), rejected)
