"""Event-time windowed aggregation per key over Arrow batches: window definitions and the operator.

Four window types (all times in milliseconds since the epoch, windows aligned to 0, every
window ``[start, end)``: start inclusive, end exclusive):

* :class:`Tumbling` ``(size_ms)``: ``[k*size, (k+1)*size)``; each event is in one window.
* :class:`Hopping` ``(size_ms, hop_ms)``: ``[k*hop, k*hop + size)``; each event is in
  ``size/hop`` windows.
* :class:`Sliding` ``(size_ms, tile_ms)``: read at time ``T``, the window is the ``size/tile``
  whole tiles ending with the tile holding ``T``: ``[end - size, end)`` with
  ``end = (floor(T/tile) + 1) * tile``. It holds every event from ``end - size`` up to ``T`` (and
  any of ``T``'s tile that arrived later), i.e. between ``size - tile`` and ``size`` of history
  before ``T``: current to the latest event, not to the last hop.
* :class:`Session` ``(gap_ms)``: per key, events closer than ``gap_ms`` share a session
  ``[first, last + gap)``; an out-of-order event that bridges two sessions merges them.

Watermark: ``max event time seen - allowed_lateness_ms``, per operator. An event is *late* when
the watermark before it (from the events that arrived earlier) has passed the end of every
window it could count in: ``end of its last window <= watermark`` (tumbling, hopping, sliding:
``(floor(t/tile) + n) * tile``; session: ``t + gap``). Lateness is therefore independent of how
the stream is cut into batches. A window closes when ``end <= watermark`` (sessions: when
``last + 2*gap <= watermark``, see :mod:`window_sessions`); an event counts in exactly the windows
that contain it and were open when it arrived; closed windows' state is freed.

Example:
    >>> import pyarrow as pa
    >>> op = WindowedAggregator("user", "ts", Tumbling(60_000), {"n": ("count", None), "total": ("sum", "amount")})
    >>> out = op.update(pa.table({"user": [1, 1, 2], "ts": [1_000, 59_000, 61_000], "amount": [1.0, 2.0, 5.0]}))
    >>> out.rows.to_pylist()[0]
    {'key': 1, 'window_start_ms': 0, 'window_end_ms': 60000, 'n': 2, 'total': 3.0}
    >>> late = op.update(pa.table({"user": [3], "ts": [5], "amount": [1.0]}))   # window [0, 60 s) closed
    >>> late.late_rows.tolist()
    [0]
    >>> for part in late.late_reasons[0].as_py().split("; "): print(part)
    late event: event time 1970-01-01T00:00:00.005Z is 60.995 s behind the watermark 1970-01-01T00:01:01.000Z (max event time seen minus allowed lateness 0 s)
    the last window holding it, [1970-01-01T00:00:00.000Z, 1970-01-01T00:01:00.000Z), has closed
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Literal, Mapping, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fabric_ray.streams.sketches import MAX_PRECISION, MIN_PRECISION
from fabric_ray.streams.window_aggs import BatchValues, Fields, parse_aggs
from fabric_ray.streams.window_keys import KeyIndex
from fabric_ray.streams.window_sessions import SessionWindows
from fabric_ray.streams.window_state import NO_LEVEL, Rows, TileWindows

__all__ = ["Hopping", "Session", "Sliding", "Tumbling", "Window", "WindowUpdate", "WindowedAggregator"]

SKETCH_BYTES_PER_KEY = 16 * 1024
"""Register budget per key that picks the default ``distinct_precision``."""

_SNAPSHOT_META = b"fabric_ray.windows"
_NO_MAX = -(2**62)


def _positive(window: object, name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"window {window!r}: {name} must be a positive integer (ms); got {value!r}")


@dataclass(frozen=True)
class Tumbling:
    """Fixed, non-overlapping windows ``[k*size_ms, (k+1)*size_ms)``.

    Example:
        >>> Tumbling(0)
        Traceback (most recent call last):
        ...
        ValueError: window Tumbling(size_ms=0): size_ms must be a positive integer (ms); got 0
    """

    size_ms: int

    def __post_init__(self) -> None:
        _positive(self, "size_ms", self.size_ms)


@dataclass(frozen=True)
class Hopping:
    """Overlapping windows ``[k*hop_ms, k*hop_ms + size_ms)``; ``hop_ms`` divides ``size_ms``.

    Example:
        >>> Hopping(10_000, 3_000)
        Traceback (most recent call last):
        ...
        ValueError: window Hopping(size_ms=10000, hop_ms=3000): hop_ms must divide size_ms; got 3000
    """

    size_ms: int
    hop_ms: int

    def __post_init__(self) -> None:
        _positive(self, "size_ms", self.size_ms)
        _positive(self, "hop_ms", self.hop_ms)
        if self.size_ms % self.hop_ms:
            raise ValueError(f"window {self!r}: hop_ms must divide size_ms; got {self.hop_ms}")


@dataclass(frozen=True)
class Sliding:
    """A window of ``size_ms`` ending with the tile of the read time, served fresh from per-tile
    partials; ``tile_ms`` divides ``size_ms``.

    Example:
        >>> Sliding(3_600_000, 7_000)
        Traceback (most recent call last):
        ...
        ValueError: window Sliding(size_ms=3600000, tile_ms=7000): tile_ms must divide size_ms; got 7000
    """

    size_ms: int
    tile_ms: int

    def __post_init__(self) -> None:
        _positive(self, "size_ms", self.size_ms)
        _positive(self, "tile_ms", self.tile_ms)
        if self.size_ms % self.tile_ms:
            raise ValueError(f"window {self!r}: tile_ms must divide size_ms; got {self.tile_ms}")


@dataclass(frozen=True)
class Session:
    """Per-key sessions of events closer than ``gap_ms``: ``[first, last + gap_ms)``."""

    gap_ms: int

    def __post_init__(self) -> None:
        _positive(self, "gap_ms", self.gap_ms)


Window = Union[Tumbling, Hopping, Sliding, Session]
_WINDOW_TYPES = {"tumbling": Tumbling, "hopping": Hopping, "sliding": Sliding, "session": Session}


def _window_dict(w: Window) -> dict:
    return {"type": type(w).__name__.lower(), **asdict(w)}


def _window_from_dict(d: dict) -> Window:
    d = dict(d)
    return _WINDOW_TYPES[d.pop("type")](**d)


MAX_TILES_PER_KEY = 100_000  # state is tiles x keys: beyond this a typo in a size is more likely than a need


@dataclass(frozen=True)
class WindowUpdate:
    """What one :meth:`WindowedAggregator.update` produced.

    Attributes:
        rows: result rows to emit: ``key, window_start_ms, window_end_ms`` and one column per
            aggregate (``emit="update"``: every (key, window) the batch changed, current values;
            ``"close"``: every (key, window) closed by the watermark advance, final values).
        late_rows: positions in the batch of the late events (``late="dead_letter"``).
        late_reasons: one reason per late row.
        late_dropped: late events dropped (``late="drop"``).
        watermark_ms: the watermark after the batch (None before any event).
    """

    rows: pa.Table
    late_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    late_reasons: pa.Array = field(default_factory=lambda: pa.array([], type=pa.string()))
    late_dropped: int = 0
    watermark_ms: int | None = None


def _fmt_ms(ms: np.ndarray) -> pa.Array:
    return pc.utf8_replace_slice(
        pc.strftime(pa.array(ms, type=pa.timestamp("ms")), format="%Y-%m-%dT%H:%M:%S"), 23, 23, "Z"
    )


def _fmt_s(ms: np.ndarray) -> pa.Array:
    secs = pc.cast(pa.array(ms // 1000), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(ms % 1000), pa.string()), width=3, padding="0")
    return pc.binary_join_element_wise(secs, frac, ".")


class WindowedAggregator:
    """Event-time windowed aggregates per key, folded a batch at a time (columnar, no Ray, no I/O).

    Args:
        key: name of the key column (integers, strings, binaries; no nulls).
        time: name of the event-time column: int64 milliseconds since the epoch or a timestamp.
        window: a :class:`Tumbling`, :class:`Hopping`, :class:`Sliding` or :class:`Session`.
        aggs: ``{"result name": (op, column)}`` with op one of count (column None counts events),
            sum, mean, min, max, std (sample), last (value at the greatest event time; ties: the
            later arrival), approx_distinct (HyperLogLog).
        allowed_lateness_ms: how far behind the greatest event time the watermark trails.
        late: ``"dead_letter"`` returns late rows with reasons; ``"drop"`` only counts them.
        emit: ``"update"`` emits current values of what each batch changed; ``"close"`` emits
            final values when the watermark closes a window.
        distinct_precision: HyperLogLog precision ``p`` (``2**p`` one-byte registers per key and
            tile or session; relative error ``1.04/sqrt(2**p)``). Default: the largest ``p <= 10``
            whose registers for all of a key's live tiles fit in 16 KiB.

    Raises:
        ValueError: bad window, aggregate, lateness, policy or precision (the message names it).
    """

    def __init__(
        self,
        key: str,
        time: str,
        window: Window,
        aggs: Mapping[str, tuple[str, str | None]],
        allowed_lateness_ms: int = 0,
        late: Literal["dead_letter", "drop"] = "dead_letter",
        emit: Literal["update", "close"] = "update",
        distinct_precision: int | None = None,
    ) -> None:
        if not isinstance(window, tuple(_WINDOW_TYPES.values())):
            raise ValueError(f"window must be Tumbling, Hopping, Sliding or Session; got {window!r}")
        owner = f"window {window!r}"
        for name, col in (("key", key), ("time", time)):
            if not isinstance(col, str) or not col:
                raise ValueError(f"{owner}: {name} must be a column name; got {col!r}")
        lateness = allowed_lateness_ms
        if isinstance(lateness, bool) or not isinstance(lateness, (int, np.integer)) or lateness < 0:
            raise ValueError(f"{owner}: allowed_lateness_ms must be an integer >= 0; got {allowed_lateness_ms!r}")
        if late not in ("dead_letter", "drop"):
            raise ValueError(f"{owner}: late must be 'dead_letter' or 'drop'; got {late!r}")
        if emit not in ("update", "close"):
            raise ValueError(f"{owner}: emit must be 'update' or 'close'; got {emit!r}")
        specs = parse_aggs(aggs, owner)
        self.key, self.time, self.window = key, time, window
        self.aggs = {s.name: (s.op, s.column) for s in specs}
        self.allowed_lateness_ms = int(allowed_lateness_ms)
        self.late, self.emit = late, emit
        self._owner = owner
        for s in specs:
            if s.column in (key, time):
                raise ValueError(
                    f"{owner}: aggregate {s.name!r} reads the {s.column!r} column, which is the key or time"
                )
        L = self.allowed_lateness_ms
        if isinstance(window, Session):
            rows_per_key = 1
        else:
            tile = {Tumbling: "size_ms", Hopping: "hop_ms", Sliding: "tile_ms"}[type(window)]
            tile_ms = getattr(window, tile)
            rows_per_key = window.size_ms // tile_ms + -(-L // tile_ms)
            if rows_per_key > MAX_TILES_PER_KEY:
                raise ValueError(
                    f"{owner}: allowed_lateness_ms={L} keeps {rows_per_key:,} tiles per key "
                    f"(size / tile + lateness / tile), over {MAX_TILES_PER_KEY:,}; use a coarser "
                    f"{tile} or less lateness"
                )
        wants_distinct = any(s.op == "approx_distinct" for s in specs)
        if distinct_precision is None:
            distinct_precision = min(10, int(math.floor(math.log2(SKETCH_BYTES_PER_KEY / rows_per_key))))
            if wants_distinct and distinct_precision < MIN_PRECISION:
                raise ValueError(
                    f"{owner}: approx_distinct keeps {rows_per_key} tiles per key; even sketches of "
                    f"{2**MIN_PRECISION} registers would exceed {SKETCH_BYTES_PER_KEY // 1024} KiB per key; use a "
                    f"coarser tile or pass distinct_precision"
                )
            distinct_precision = max(distinct_precision, MIN_PRECISION)
        elif isinstance(distinct_precision, bool) or not isinstance(distinct_precision, (int, np.integer)):
            raise ValueError(f"{owner}: distinct_precision must be an integer; got {distinct_precision!r}")
        elif not MIN_PRECISION <= distinct_precision <= MAX_PRECISION:
            raise ValueError(
                f"{owner}: distinct_precision must be in [{MIN_PRECISION}, {MAX_PRECISION}]; got {distinct_precision}"
            )
        self.distinct_precision = int(distinct_precision)
        self._fields = Fields(specs, self.distinct_precision)
        if isinstance(window, Session):
            self._engine: TileWindows | SessionWindows = SessionWindows(window.gap_ms, L, self._fields, emit)
        else:
            kind = type(window).__name__.lower()
            self._engine = TileWindows(kind, tile_ms, window.size_ms // tile_ms, L, self._fields, emit)
        self._keys: KeyIndex | None = None
        self._max_ms = _NO_MAX
        self.late_total = 0
        """Late events seen so far (dead-lettered or dropped)."""

    # -- properties -------------------------------------------------------------------------
    @property
    def max_event_ms(self) -> int | None:
        """The greatest event time seen (None before any event)."""
        return None if self._max_ms == _NO_MAX else self._max_ms

    @property
    def watermark_ms(self) -> int | None:
        """``max_event_ms - allowed_lateness_ms`` (None before any event)."""
        return None if self._max_ms == _NO_MAX else self._max_ms - self.allowed_lateness_ms

    @property
    def state_bytes(self) -> int:
        """Bytes held by the window state and the key index."""
        return self._engine.nbytes + (self._keys.nbytes if self._keys is not None else 0)

    def schema(self, key_type: pa.DataType | None = None) -> pa.Schema:
        """Schema of result rows."""
        if key_type is None:
            key_type = self._keys.key_type if self._keys is not None else pa.null()
        cols = [
            pa.field("key", key_type),
            pa.field("window_start_ms", pa.int64()),
            pa.field("window_end_ms", pa.int64()),
        ]
        for s in self._fields.specs:
            cols.append(pa.field(s.name, pa.int64() if s.op in ("count", "approx_distinct") else pa.float64()))
        return pa.schema(cols)

    # -- folding ----------------------------------------------------------------------------
    def _event_ms(self, table: pa.Table) -> np.ndarray:
        col = table.column(self.time).combine_chunks()
        if col.null_count:
            raise ValueError(f"{self._owner}: time column {self.time!r} has {col.null_count} null(s)")
        t = col.type
        if pa.types.is_timestamp(t):
            col = col.cast(pa.timestamp("ms", tz=t.tz), safe=False).cast(pa.int64())
        elif not pa.types.is_integer(t):
            raise TypeError(f"{self._owner}: time column {self.time!r} must be int64 ms or a timestamp; got {t}")
        return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)

    def _key_ids(self, keys: pa.Array) -> np.ndarray:
        if self._keys is None:
            self._keys = KeyIndex(keys.type)
        n_old = len(self._keys)
        kid = self._keys.ids(keys)
        n_new = len(self._keys)
        engine = self._engine
        if n_new > max(engine.cap, 1024):
            # bounded memory with churning keys: forget keys without state before growing
            live = np.concatenate([engine.live_keys(n_old), np.ones(n_new - n_old, dtype=bool)])
            live[kid] = True  # keys of this batch stay, even those whose earlier state all closed
            if live[:n_old].sum() * 2 <= n_old:
                kept = self._keys.retain(live)
                remap = np.full(n_new, -1, dtype=np.int64)
                remap[kept] = np.arange(len(kept))
                engine.compact(kept[kept < n_old])
                kid = remap[kid]
        engine.ensure_capacity(len(self._keys))
        return kid

    def update(self, table: pa.Table) -> WindowUpdate:
        """Fold a batch of events in.

        Args:
            table: columns ``key``, ``time`` and every aggregated column; rows in arrival order.

        Returns:
            The rows to emit and the late events (see :class:`WindowUpdate`).

        Raises:
            KeyError: a needed column is missing.
            ValueError: nulls in the key or time column.
            TypeError: a column of the wrong type.
        """
        for col in (self.key, self.time):
            if col not in table.column_names:
                have = ", ".join(table.column_names)
                raise KeyError(f"{self._owner}: the batch has no column {col!r} (columns: {have})")
        if table.num_rows == 0:
            return WindowUpdate(self._empty(), watermark_ms=self.watermark_ms)
        keys = table.column(self.key).combine_chunks()
        if keys.null_count:
            raise ValueError(f"{self._owner}: key column {self.key!r} has {keys.null_count} null(s)")
        t = self._event_ms(table)
        values = BatchValues(table, self._fields, t, self._owner)
        kid = self._key_ids(keys)

        pmax = np.maximum.accumulate(np.concatenate([[self._max_ms], t]))
        wm_before = pmax[:-1] - self.allowed_lateness_ms
        w_start, w_end = self._engine.last_window(t)
        late = w_end <= wm_before
        if late.any():
            ok = np.flatnonzero(~late)
            rows = self._engine.process(kid[ok], t[ok], pmax[1:][ok], values.take(ok))
        else:
            rows = self._engine.process(kid, t, pmax[1:], values)
        self._max_ms = int(pmax[-1])

        out = self._table(rows, dedupe=self.emit == "update" and getattr(self._engine, "units", 1) > 1)
        n_late = int(late.sum())
        self.late_total += n_late
        if self.late == "drop" or n_late == 0:
            return WindowUpdate(out, late_dropped=n_late if self.late == "drop" else 0, watermark_ms=self.watermark_ms)
        idx = np.flatnonzero(late)
        return WindowUpdate(
            out,
            late_rows=idx,
            late_reasons=self._reasons(t[idx], wm_before[idx], w_start[idx], w_end[idx]),
            watermark_ms=self.watermark_ms,
        )

    def _reasons(self, t: np.ndarray, wm: np.ndarray, start: np.ndarray, end: np.ndarray) -> pa.Array:
        what = "its session window" if isinstance(self.window, Session) else "the last window holding it"
        lateness = f"{self.allowed_lateness_ms / 1000:g} s"
        return pc.binary_join_element_wise(
            "late event: event time ", _fmt_ms(t), " is ", _fmt_s(wm - t), " s behind the watermark ", _fmt_ms(wm),
            f" (max event time seen minus allowed lateness {lateness}); {what}, [", _fmt_ms(start), ", ", _fmt_ms(end),
            "), has closed", "",
        )  # fmt: skip

    # -- results ----------------------------------------------------------------------------
    def _empty(self) -> pa.Table:
        return self.schema().empty_table()

    def _table(self, rows: list[Rows], dedupe: bool = False) -> pa.Table:
        rows = [r for r in rows if len(r.kids)]
        if not rows:
            return self._empty()
        kids = np.concatenate([r.kids for r in rows])
        start = np.concatenate([r.start_ms for r in rows])
        end = np.concatenate([r.end_ms for r in rows])
        cols = {name: pa.concat_arrays([r.columns[name] for r in rows]) for name in rows[0].columns}
        if dedupe:
            # a window touched by two units of one batch: keep its later row
            order = np.lexsort((np.arange(len(kids))[::-1], kids, start))
            keep = np.ones(len(order), dtype=bool)
            keep[1:] = (kids[order][1:] != kids[order][:-1]) | (start[order][1:] != start[order][:-1])
            sel = np.sort(order[keep])
            kids, start, end = kids[sel], start[sel], end[sel]
            cols = {name: c.take(pa.array(sel)) for name, c in cols.items()}
        return pa.Table.from_arrays(
            [self._keys.keys(kids), pa.array(start), pa.array(end), *cols.values()], schema=self.schema()
        )

    def read(self, keys: Iterable | pa.Array | None = None, at_ms: int | None = None) -> pa.Table:
        """Current values of open windows, one row per key and window with events.

        Args:
            keys: the keys to read (default: every key).
            at_ms: the time to read at (default: the greatest event time seen). Tumbling: the
                window holding ``at_ms``; hopping: every open window holding it; sliding: the
                window of the ``size/tile`` tiles ending with ``at_ms``'s tile. Sessions: not
                supported (they are read as they are now).

        Raises:
            ValueError: ``at_ms`` for sessions, or a window that has already closed.

        Example:
            >>> import pyarrow as pa
            >>> op = WindowedAggregator("k", "ts", Sliding(3_600_000, 60_000), {"n": ("count", None)})
            >>> _ = op.update(pa.table({"k": ["a", "a", "b"], "ts": [0, 3_599_999, 3_600_000]}))
            >>> op.read().to_pylist()
            [{'key': 'a', 'window_start_ms': 60000, 'window_end_ms': 3660000, 'n': 1}, {'key': 'b', 'window_start_ms': 60000, 'window_end_ms': 3660000, 'n': 1}]
        """
        if isinstance(self._engine, SessionWindows) and at_ms is not None:
            raise ValueError(f"{self._owner}: read(at_ms=...) is not supported for sessions; got at_ms={at_ms}")
        if self._keys is None:
            return self._empty()
        kids = None
        if keys is not None:
            arr = keys
            if not isinstance(keys, (pa.Array, pa.ChunkedArray)):
                arr = pa.array(list(keys), type=self._keys.key_type)
            kids = self._keys.ids(arr, insert=False)
            kids = np.unique(kids[kids >= 0])
        n_keys = len(self._keys)
        if isinstance(self._engine, SessionWindows):
            return self._table(self._engine.read(kids, n_keys))
        if at_ms is None:
            if self._max_ms == _NO_MAX:
                return self._empty()
            at_ms = self._max_ms
        return self._table(self._engine.read(kids, int(at_ms), n_keys))

    def flush(self) -> pa.Table:
        """Close every open window (the end of a bounded stream) and free all state.

        Returns:
            For ``emit="close"``, the final values of the windows closed now; for ``"update"``,
            an empty table (their values were emitted as they changed). The watermark moves past
            every flushed window, so later events that would fall in them are late.
        """
        n_keys = len(self._keys) if self._keys is not None else 0
        rows, watermark_ms = self._engine.flush(n_keys)
        if rows or watermark_ms is not None:
            # what was flushed is closed for good: later events for it are late
            self._max_ms = max(self._max_ms, watermark_ms + self.allowed_lateness_ms)
        return self._table(rows)

    # -- checkpoints ------------------------------------------------------------------------
    def _config(self) -> dict:
        return {
            "version": 1,
            "key": self.key,
            "time": self.time,
            "window": _window_dict(self.window),
            "aggs": {k: list(v) for k, v in self.aggs.items()},
            "allowed_lateness_ms": self.allowed_lateness_ms,
            "late": self.late,
            "emit": self.emit,
            "distinct_precision": self.distinct_precision,
        }

    def snapshot(self) -> pa.Table:
        """All state as one Arrow table (a checkpoint writes it as Arrow IPC).

        Rows: one per open (key, tile) partial or open session, plus one per known key without
        state (its state columns null), in key-id order. The configuration and the operator's
        scalars (greatest event time, closing level, late counter, key capacity) are JSON in the
        schema metadata under ``fabric_ray.windows``.
        """
        meta = {
            **self._config(),
            "max_ms": self._max_ms,
            "level": getattr(self._engine, "level", NO_LEVEL),
            "late_total": self.late_total,
            "key_capacity": self._engine.cap,
            "key_type": None,
        }
        n_keys = len(self._keys) if self._keys is not None else 0
        kid, extra, values = self._engine.state_rows(n_keys)
        bare = np.setdiff1d(np.arange(n_keys), kid)
        all_kid = np.concatenate([kid, bare])
        order = np.argsort(all_kid, kind="stable")
        has = np.concatenate([np.ones(len(kid), bool), np.zeros(len(bare), bool)])[order]
        mask = ~has

        def column(a: np.ndarray) -> pa.Array:
            full = np.zeros((len(all_kid),) + a.shape[1:], dtype=a.dtype)
            full[: len(kid)] = a
            full = full[order]
            if a.ndim == 2:
                buf = pa.py_buffer(np.ascontiguousarray(full).tobytes())
                fsb = pa.FixedSizeBinaryArray.from_buffers(pa.binary(a.shape[1]), len(full), [None, buf])
                return pc.if_else(pa.array(mask), pa.scalar(None, fsb.type), fsb)
            return pa.array(full, mask=mask)

        key_type = self._keys.key_type if self._keys is not None else pa.int64()
        keys = self._keys.keys(all_kid[order]) if self._keys is not None else pa.array([], key_type)
        arrays = {"key": keys}
        arrays.update({name: column(a) for name, a in extra.items()})
        arrays.update({name: column(a) for name, a in values.items()})
        table = pa.table(arrays)
        return table.replace_schema_metadata({_SNAPSHOT_META: json.dumps(meta).encode()})

    @classmethod
    def restore(cls, snapshot: pa.Table) -> WindowedAggregator:
        """Rebuild an operator from :meth:`snapshot` output; it continues exactly as the original.

        Raises:
            ValueError: the table is not a window snapshot.

        Example:
            >>> import pyarrow as pa
            >>> op = WindowedAggregator("k", "ts", Session(10), {"n": ("count", None)})
            >>> _ = op.update(pa.table({"k": [1, 1], "ts": [0, 5]}))
            >>> WindowedAggregator.restore(op.snapshot()).read().to_pylist()
            [{'key': 1, 'window_start_ms': 0, 'window_end_ms': 15, 'n': 2}]
        """
        raw = (snapshot.schema.metadata or {}).get(_SNAPSHOT_META)
        if raw is None:
            raise ValueError(f"restore: not a window snapshot (no {_SNAPSHOT_META.decode()!r} schema metadata)")
        meta = json.loads(raw)
        if meta.get("version") != 1:
            raise ValueError(f"restore: unknown window snapshot version {meta.get('version')!r}")
        op = cls(
            meta["key"],
            meta["time"],
            _window_from_dict(meta["window"]),
            {k: tuple(v) for k, v in meta["aggs"].items()},
            allowed_lateness_ms=meta["allowed_lateness_ms"],
            late=meta["late"],
            emit=meta["emit"],
            distinct_precision=meta["distinct_precision"],
        )
        op._max_ms = int(meta["max_ms"])
        op.late_total = int(meta["late_total"])
        if isinstance(op._engine, TileWindows):
            op._engine.level = int(meta["level"])
        if snapshot.num_rows == 0:
            return op
        op._keys = KeyIndex(snapshot.schema.field("key").type)
        kid = op._keys.ids(snapshot.column("key").combine_chunks())
        op._engine.ensure_capacity(max(int(meta["key_capacity"]), len(op._keys)))
        extra_names = ("start", "last") if isinstance(op._engine, SessionWindows) else ("tile",)
        has = np.asarray(snapshot.column(extra_names[0]).is_valid().to_numpy(zero_copy_only=False))
        sel = pa.array(np.flatnonzero(has))
        state = snapshot.take(sel)
        extra = {n: np.asarray(state.column(n).to_numpy(), dtype=np.int64) for n in extra_names}
        values = {}
        for f in op._fields.names:
            col = state.column(f).combine_chunks()
            if Fields.kind(f) == "hll":
                data = col.buffers()[1]
                m = op._fields.m
                raw = np.frombuffer(data, dtype=np.uint8)[col.offset * m : (col.offset + len(col)) * m]
                values[f] = raw.reshape(-1, m).copy()
            else:
                values[f] = np.asarray(col.to_numpy(zero_copy_only=False), dtype=op._fields.dtype(f))
        op._engine.load_rows(kid[has], extra, values)
        return op
