"""What every payload decoder offers, and a columnar reader of Avro binary records.

:class:`Decoder` is the shape the partition processor needs: an Arrow ``schema``, the
``required`` fields and ``decode(values) -> Decoded``. ``JsonDecoder`` and the Confluent
decoders (``confluent_codec``) satisfy it. A decoder raises :class:`DecoderUnavailable` when a
batch cannot be decoded *now* for a reason outside the messages (the schema registry is down):
the processor keeps the batch and tries it again instead of dead-lettering it.

:class:`AvroColumns` decodes many Avro records of one writer schema at once, field by field,
with NumPy over all messages together instead of a Python call per message: a varint is read
for every message in a few vectorised steps, strings are gathered into one Arrow buffer. It
reads records of primitives, enums, fixed, nested records and ``["null", T]`` unions; the
Confluent decoder sends schemas with arrays, maps or other unions to fastavro instead.
Columns come out *physical* (Avro's underlying types: ``int`` as int32, enums as symbol
indices, decimals as bytes); :func:`resolve` applies Avro schema resolution to them and
:func:`to_logical` gives them the Arrow types of ``avro_to_arrow``.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric_ray.governance.arrow_schema import avro_type_to_arrow, nullable_branch
from fabric_ray.governance.avro import PROMOTIONS, AvroSchema
from fabric_ray.streams.json_codec import Decoded

__all__ = [
    "AvroColumns",
    "Decoder",
    "DecoderUnavailable",
    "columnar_supported",
    "physical_type",
    "resolve",
    "to_logical",
]

PAD = bytes(16)  # appended to joined payloads so fixed-width reads never leave the buffer
_INT32 = (-(2**31), 2**31 - 1)


class Decoder(Protocol):
    """Turns a batch of payloads into rows of ``schema``, rejecting bad messages with a reason."""

    @property
    def schema(self) -> pa.Schema:
        """The columns of every decoded table."""
        ...

    @property
    def required(self) -> tuple[str, ...]:
        """Columns that are never null in a decoded table."""
        ...

    def decode(self, values: Sequence[bytes | None]) -> Decoded:
        """Decode one batch; see :class:`~fabric_ray.streams.json_codec.Decoded`."""
        ...


class DecoderUnavailable(Exception):
    """The batch cannot be decoded now for a reason outside its messages (e.g. a registry outage).

    Nothing is wrong with the messages, so they must not be dead-lettered: the processor keeps
    the batch and decodes it again on its next call.
    """


# ---------------------------------------------------------------------------------------------
# Types


def _unwrap(node: AvroSchema) -> tuple[AvroSchema, bool]:
    """``(T, nullable)`` for ``["null", T]``, ``[T]`` and plain ``T``."""
    inner = nullable_branch(node)
    if inner is not None:
        return inner, True
    if node.type == "union" and len(node.branches) == 1:
        return node.branches[0], False
    return node, node.type == "null"


def _items(node: AvroSchema) -> AvroSchema:
    """The items of an array or the values of a map."""
    inner = node.items if node.type == "array" else node.values
    if inner is None:
        raise ValueError(f"{node.type} without items or values")
    return inner


def physical_type(node: AvroSchema, enum_type: pa.DataType = pa.int32()) -> pa.DataType:
    """The Arrow type of a node's values before logical types: Avro's underlying representation.

    ``enum_type`` is int32 (symbol indices, as :class:`AvroColumns` reads them) or string (the
    symbols, as fastavro returns them).

    Example:
        >>> from fabric_ray.governance.avro import parse_avro
        >>> physical_type(parse_avro(["null", {"type": "long", "logicalType": "timestamp-millis"}]))
        DataType(int64)
    """
    node, _ = _unwrap(node)
    t = node.type
    if t == "record":
        return pa.struct([pa.field(f.name, physical_type(f.type, enum_type)) for f in node.fields])
    if t == "enum":
        return enum_type
    if t == "fixed":
        return pa.binary(node.size)
    if t == "array":
        return pa.list_(physical_type(_items(node), enum_type))
    if t == "map":
        return pa.map_(pa.string(), physical_type(_items(node), enum_type))
    if t == "union":
        raise ValueError(f"{t} {node!r} has no single physical Arrow type")
    return {
        "null": pa.null(), "boolean": pa.bool_(), "int": pa.int32(), "long": pa.int64(),
        "float": pa.float32(), "double": pa.float64(), "bytes": pa.binary(), "string": pa.string(),
    }[t]


def columnar_supported(node: AvroSchema, _seen: frozenset[str] = frozenset()) -> bool:
    """Whether :class:`AvroColumns` reads this schema (no arrays, maps, other unions or recursion).

    Example:
        >>> from fabric_ray.governance.avro import parse_avro
        >>> columnar_supported(parse_avro({"type": "record", "name": "R", "fields": [{"name": "a", "type": ["null", "string"]}]}))
        True
        >>> columnar_supported(parse_avro({"type": "array", "items": "int"}))
        False
    """
    if node.type == "union":
        inner, _ = _unwrap(node)
        return inner is not node and columnar_supported(inner, _seen)
    if node.type == "record":
        if node.name in _seen:
            return False
        return all(columnar_supported(f.type, _seen | {node.name or ""}) for f in node.fields)
    return node.type not in ("array", "map")


# ---------------------------------------------------------------------------------------------
# Reading


class AvroColumns:
    """Read one Avro record from each of many byte ranges of one buffer, column by column.

    A message that goes wrong (runs past its end, has a boolean byte of 7, an enum index out of
    range, bytes left over after the record, ...) is marked in :attr:`bad` with a reason in
    :attr:`why`; the others still decode, and the columns have a row for every message
    (garbage where :attr:`bad`), so filter them with ``~bad``.

    Args:
        buf: the bytes, ending with at least 16 bytes of padding past the last range.
        starts: where each message's record starts in ``buf``.
        ends: where each message ends.

    Example:
        >>> import fastavro, io
        >>> from fabric_ray.governance.avro import parse_avro
        >>> schema = {"type": "record", "name": "R", "fields": [{"name": "id", "type": "long"},
        ...           {"name": "name", "type": ["null", "string"]}]}
        >>> out = io.BytesIO()
        >>> for rec in ({"id": 1, "name": "ann"}, {"id": -2, "name": None}):
        ...     fastavro.schemaless_writer(out, fastavro.parse_schema(schema), rec)
        >>> data = out.getvalue() + b"\\x02" + PAD           # a third message, cut short
        >>> reader = AvroColumns(np.frombuffer(data, np.uint8), np.array([0, 6, 8]), np.array([6, 8, 9]))
        >>> cols = reader.read_record(parse_avro(schema))
        >>> [c.to_pylist()[:2] for c in cols], reader.finish(), reader.why
        ([[1, -2], ['ann', None]], array([False, False,  True]), {2: "message truncated in field 'name'"})
    """

    def __init__(self, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> None:
        self.buf = buf
        self.pos = np.asarray(starts, dtype=np.int64).copy()
        self.end = np.asarray(ends, dtype=np.int64)
        self.bad = np.zeros(len(self.pos), dtype=bool)
        self.why: dict[int, str] = {}
        self._last = len(buf) - 1

    def read_record(self, node: AvroSchema) -> list[pa.Array]:
        """Read a record for every message; return its fields' physical columns."""
        return self._fields(node, np.arange(len(self.pos)), "")

    def finish(self) -> np.ndarray:
        """Mark messages with bytes left after their record; return :attr:`bad`."""
        left = self.end - self.pos
        extra = np.flatnonzero((left > 0) & ~self.bad)
        self.fail(extra, [f"{n} bytes left over after the record" for n in left[extra].tolist()])
        return self.bad

    def fail(self, rows: np.ndarray, reason: str | list[str]) -> None:
        """Mark ``rows`` bad (the first reason stays) and stop reading them meaningfully."""
        if len(rows) == 0:
            return
        reasons = reason if isinstance(reason, list) else [reason] * len(rows)
        for row, why in zip(rows.tolist(), reasons):
            if not self.bad[row]:
                self.bad[row] = True
                self.why[row] = why
        self.pos[rows] = self.end[rows]  # their later reads stay inside the buffer

    # -- nodes ----------------------------------------------------------------------------------

    def _read(self, node: AvroSchema, rows: np.ndarray, path: str) -> pa.Array:
        what = f"field {path!r}"
        t = node.type
        if t == "union":
            return self._union(node, rows, path)
        if t == "record":
            children = self._fields(node, rows, f"{path}.")
            return pa.StructArray.from_arrays(children, fields=list(physical_type(node))) if children else pa.array(
                [{}] * len(rows), pa.struct([]))
        if t in ("int", "long", "enum"):
            values = self._varint(rows, what)
            if t == "long":
                return pa.array(values)
            low, high = (0, len(node.symbols) - 1) if t == "enum" else _INT32
            out = np.flatnonzero((values < low) | (values > high))
            if out.size:
                shown = "out of range for an Avro int" if t == "int" else f"is not a symbol index (0..{high})"
                self.fail(rows[out], [f"{what}: {v} {shown}" for v in values[out].tolist()])
                values[out] = 0
            return pa.array(values.astype(np.int32))
        if t in ("double", "float"):
            width = 8 if t == "double" else 4
            raw = self._take(rows, width, what)
            return pa.array(raw.view("<f8" if width == 8 else "<f4").ravel())
        if t == "boolean":
            raw = self._take(rows, 1, what).ravel()
            out = np.flatnonzero(raw > 1)
            if out.size:
                self.fail(rows[out], [f"{what}: boolean byte {b:#04x} is not 0 or 1" for b in raw[out].tolist()])
            return pa.array(raw == 1)
        if t in ("string", "bytes"):
            return self._blob(rows, what, utf8=t == "string")
        if t == "fixed":
            raw = self._take(rows, node.size or 0, what)
            return pa.Array.from_buffers(pa.binary(node.size), len(rows), [None, pa.py_buffer(raw)])
        if t == "null":
            return pa.nulls(len(rows))
        raise ValueError(f"{what}: AvroColumns cannot read {t}")

    def _fields(self, node: AvroSchema, rows: np.ndarray, prefix: str) -> list[pa.Array]:
        return [self._read(f.type, rows, f"{prefix}{f.name}") for f in node.fields]

    def _union(self, node: AvroSchema, rows: np.ndarray, path: str) -> pa.Array:
        branch = self._varint(rows, f"field {path!r}")
        out = np.flatnonzero((branch < 0) | (branch >= len(node.branches)))
        if out.size:
            self.fail(rows[out], [f"field {path!r}: union branch {b} does not exist" for b in branch[out].tolist()])
        inner, _ = _unwrap(node)
        if inner.type == "null":
            return pa.nulls(len(rows))
        use = branch == next(i for i, b in enumerate(node.branches) if b is inner)
        if use.all():
            return self._read(inner, rows, path)
        sub = rows[use]
        child = self._read(inner, sub, path)
        where = np.full(len(rows), -1, dtype=np.int64)
        where[use] = np.arange(len(sub))
        return child.take(pa.array(where, mask=~use))

    # -- primitives -----------------------------------------------------------------------------

    def _past_end(self, rows: np.ndarray, what: str) -> None:
        over = np.flatnonzero(self.pos[rows] > self.end[rows])
        if over.size:
            self.fail(rows[over], f"message truncated in {what}")

    def _varint(self, rows: np.ndarray, what: str) -> np.ndarray:
        """Zigzag varints (Avro int and long), one per row, as int64."""
        p = self.pos[rows]
        b = self.buf[p]
        value = (b & 0x7F).astype(np.uint64)
        p += 1
        more = np.flatnonzero(b & 0x80)
        shift = 7
        overlong = more[:0]
        while more.size:
            if shift >= 70:
                overlong = more
                break
            q = p[more]
            b = self.buf[q]
            value[more] |= (b & 0x7F).astype(np.uint64) << np.uint64(shift)
            p[more] = q + 1
            more = more[(b & 0x80) != 0]
            shift += 7
        self.pos[rows] = p
        self._past_end(rows, what)
        self.fail(rows[overlong], f"{what}: varint longer than 10 bytes")
        return (value >> np.uint64(1)).astype(np.int64) ^ -(value & np.uint64(1)).astype(np.int64)

    def _take(self, rows: np.ndarray, width: int, what: str) -> np.ndarray:
        """``width`` bytes per row as a (rows, width) uint8 array."""
        p = self.pos[rows]
        index = p[:, None] + np.arange(width)
        if width > len(PAD):
            np.minimum(index, self._last, out=index)
        raw = self.buf[index]
        self.pos[rows] = p + width
        self._past_end(rows, what)
        return raw

    def _blob(self, rows: np.ndarray, what: str, utf8: bool) -> pa.Array:
        n = self._varint(rows, what)
        p = self.pos[rows]
        over = np.flatnonzero((n < 0) | (n > self.end[rows] - p))
        if over.size:
            self.fail(rows[over], f"message truncated in {what}")
            n[over] = 0
            p = self.pos[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(n, out=offsets[1:])
        total = int(offsets[-1])
        if total >= 2**31:  # int32 offsets: the caller splits the batch and tries again
            raise ValueError(f"{what}: {total} bytes of strings in one batch is more than one Arrow array holds")
        data = self.buf[np.repeat(p - offsets[:-1], n) + np.arange(total)] if total else np.empty(0, np.uint8)
        self.pos[rows] = p + n
        arr = pa.Array.from_buffers(pa.binary(), len(rows), [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)])
        if not utf8:
            return arr
        text = arr.view(pa.string())
        try:
            text.validate(full=True)
            return text
        except pa.ArrowInvalid:
            pass
        broken = [i for i, v in enumerate(arr.to_pylist()) if not _is_utf8(v)]
        self.fail(rows[broken], f"{what}: string is not valid UTF-8")
        keep = np.ones(len(rows), dtype=bool)
        keep[broken] = False
        return pc.if_else(pa.array(keep), arr, pa.scalar(b"", pa.binary())).cast(pa.string())


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


# ---------------------------------------------------------------------------------------------
# Resolution and logical types


def resolve(reader: AvroSchema, writer: AvroSchema, arr: pa.Array) -> pa.Array:
    """Physical values of ``writer`` as physical values of ``reader`` (Avro schema resolution).

    The pair must be compatible (``check_compatibility(reader, writer) == []``) and the writer
    :func:`columnar_supported`. Reader fields missing from the writer take their defaults,
    writer fields the reader lacks are dropped, numbers are promoted, enum symbols remapped.

    Raises:
        ValueError: a value cannot be converted (bytes that are not UTF-8 read as a string).

    Example:
        >>> from fabric_ray.governance.avro import parse_avro
        >>> w = parse_avro({"type": "record", "name": "R", "fields": [{"name": "n", "type": "int"}]})
        >>> r = parse_avro({"type": "record", "name": "R", "fields": [{"name": "n", "type": "long"},
        ...                 {"name": "tag", "type": "string", "default": "none"}]})
        >>> resolve(r, w, pa.array([{"n": 1}], physical_type(w))).to_pylist()
        [{'n': 1, 'tag': 'none'}]
    """
    w, _ = _unwrap(writer)
    r, _ = _unwrap(reader)
    if w.type == "null":
        return pa.nulls(len(arr), physical_type(r))
    if r.type == "record":
        by_name = {f.name: i for i, f in enumerate(w.fields)}
        children = []
        for rf in r.fields:
            j = next((by_name[n] for n in (rf.name, *rf.aliases) if n in by_name), None)
            if j is None:
                children.append(default_array(rf.type, rf.default, len(arr)))
            else:
                children.append(resolve(rf.type, w.fields[j].type, arr.field(j)))
        return pa.StructArray.from_arrays(children, fields=list(physical_type(r)), mask=_mask(arr))
    if r.type == "enum":
        mapping = np.array([_symbol_index(r, s) for s in w.symbols] or [0], dtype=np.int32)
        indices = np.asarray(arr.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        return pa.array(mapping[indices], mask=_np_mask(arr))
    if r.type == w.type:
        return arr
    if (w.type, r.type) not in PROMOTIONS:
        raise ValueError(f"reader type {r.type} cannot read writer type {w.type}")
    return arr.cast(physical_type(r))


def _symbol_index(reader: AvroSchema, symbol: str) -> int:
    if symbol in reader.symbols:
        return reader.symbols.index(symbol)
    return reader.symbols.index(reader.enum_default) if reader.enum_default is not None else 0


def default_array(node: AvroSchema, default: Any, n: int) -> pa.Array:
    """``n`` copies of a field's JSON ``default``, physical.

    Example:
        >>> from fabric_ray.governance.avro import parse_avro
        >>> default_array(parse_avro({"type": "enum", "name": "E", "symbols": ["A", "B"]}), "B", 2).to_pylist()
        [1, 1]
    """
    value = _default_value(node, default)
    return pa.repeat(pa.scalar(value, physical_type(node)), n)


def _default_value(node: AvroSchema, value: Any) -> Any:
    if node.type == "union":  # a union's default belongs to its first branch
        return _default_value(node.branches[0], value)
    if value is None:
        return None
    if node.type in ("bytes", "fixed"):
        return value.encode("latin-1")
    if node.type == "enum":
        return node.symbols.index(value)
    if node.type in ("float", "double"):
        return float(value)
    if node.type == "record":
        return {f.name: _default_value(f.type, value[f.name] if f.name in value else f.default) for f in node.fields}
    if node.type == "array":
        return [_default_value(_items(node), v) for v in value]
    if node.type == "map":
        return [(k, _default_value(_items(node), v)) for k, v in value.items()]
    return value


def to_logical(node: AvroSchema, arr: pa.Array) -> pa.Array:
    """Physical values as the Arrow type ``avro_to_arrow`` gives ``node``.

    Timestamps, dates and times are reinterpreted (Avro stores them as plain numbers), enum
    indices or symbols become a dictionary of the symbols, decimal bytes become decimals.

    Raises:
        ValueError: a decimal of more bytes than its Arrow type holds.

    Example:
        >>> from fabric_ray.governance.avro import parse_avro
        >>> to_logical(parse_avro({"type": "int", "logicalType": "date"}), pa.array([1], pa.int32())).to_pylist()
        [datetime.date(1970, 1, 2)]
    """
    node, _ = _unwrap(node)
    target, _ = avro_type_to_arrow(node)
    if node.type == "record":
        children = [to_logical(f.type, arr.field(i)) for i, f in enumerate(node.fields)]
        if not children:
            return arr
        return pa.StructArray.from_arrays(children, fields=list(target), mask=_mask(arr))
    if node.type == "enum":
        indices = pc.index_in(arr, value_set=pa.array(node.symbols)) if pa.types.is_string(arr.type) else arr
        return pa.DictionaryArray.from_arrays(indices.cast(pa.int32()), pa.array(node.symbols, pa.string()))
    if node.type == "array":
        items = to_logical(_items(node), arr.values)
        return pa.ListArray.from_arrays(arr.offsets, items, type=target, mask=_mask(arr))
    if node.type == "map":
        items = to_logical(_items(node), arr.items)
        return pa.MapArray.from_arrays(arr.offsets, arr.keys, items, type=target, mask=_mask(arr))
    if arr.type == target:
        return arr
    if pa.types.is_decimal(target):
        return _decimal(arr, target)
    return arr.cast(target)


def _mask(arr: pa.Array) -> pa.Array | None:
    return arr.is_null() if arr.null_count else None


def _np_mask(arr: pa.Array) -> np.ndarray | None:
    return arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None


def _decimal(arr: pa.Array, target: pa.DataType) -> pa.Array:
    """Big-endian two's-complement bytes (Avro's decimal) as Arrow's little-endian decimals."""
    width = 16 if isinstance(target, pa.Decimal128Type) else 32
    n = len(arr)
    data_buf = arr.buffers()[-1]
    data = np.frombuffer(data_buf, np.uint8) if data_buf is not None else np.empty(0, np.uint8)
    if pa.types.is_fixed_size_binary(arr.type):
        size = arr.type.byte_width
        offsets = (np.arange(n + 1, dtype=np.int64) + arr.offset) * size
    else:
        offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset : arr.offset + n + 1].astype(np.int64)
    lengths = np.diff(offsets)
    if (lengths > width).any():
        longest = int(lengths.max())
        raise ValueError(f"a decimal of {longest} bytes does not fit {target}")
    out = np.zeros((n, width), dtype=np.uint8)
    has = lengths > 0
    first = np.zeros(n, dtype=np.uint8)
    first[has] = data[offsets[:-1][has]]
    out[first >= 0x80] = 0xFF  # sign extension
    total = int(lengths.sum())
    row = np.repeat(np.arange(n), lengths)
    j = np.arange(total) - np.repeat(offsets[:-1] - offsets[0], lengths)
    out[row, np.repeat(lengths, lengths) - 1 - j] = data[offsets[0] : offsets[0] + total] if total else data[:0]
    result = pa.Array.from_buffers(target, n, [None, pa.py_buffer(out)])
    if arr.null_count:
        result = pc.if_else(arr.is_valid(), result, pa.scalar(None, target))
    return result

