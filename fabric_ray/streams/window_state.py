"""Tile state behind tumbling, hopping and sliding windows: partial aggregates per key and tile.

Event time is cut into tiles of ``tile_ms`` (tile ``j`` holds ``[j*tile_ms, (j+1)*tile_ms)``). A
window ``k`` is the ``n`` tiles ``k-n+1 .. k``, i.e. ``[(k-n+1)*tile_ms, (k+1)*tile_ms)``:
tumbling windows have ``n = 1``, hopping windows ``n = size/hop`` with ``tile = hop``, sliding
windows ``n = size/tile``. Its value is the merge of its tiles' partials, computed when read.

State layout: one NumPy array per partial field (see :mod:`window_aggs`) of shape
``(slots, key capacity)``, a ring buffer over tiles: tile ``j`` lives in slot ``j % slots``.
``slots = n + ceil(allowed_lateness / tile)`` is the most tiles that can be live at once, so the
state holds ``slots x keys`` partials whatever the length of the stream.

Closing: the *level* ``F = floor(watermark / tile)``; window ``k`` is closed once
``(k+1)*tile <= watermark``, i.e. ``k < F``. Tile ``j`` is freed once its last window
``j+n-1`` is closed. Batches are folded in *units* (see :meth:`TileWindows.process`): windows
close before the first event that arrives after the watermark passed their end, so an event
counts exactly in the windows that were open when it arrived, however the stream is batched.

Example:
    >>> from fabric_ray.streams.window_aggs import BatchValues, Fields, parse_aggs
    >>> import pyarrow as pa
    >>> fields = Fields(parse_aggs({"n": ("count", None)}, "w"), 8)
    >>> tiles = TileWindows("tumbling", tile_ms=10, n_tiles=1, lateness_ms=0, fields=fields, emit="update")
    >>> tiles.ensure_capacity(2)
    >>> t = np.array([1, 5, 12])
    >>> batch = BatchValues(pa.table({}), fields, t, "w")
    >>> rows = tiles.process(np.array([0, 1, 0]), t, np.maximum.accumulate(t), batch)
    >>> [(r.kids.tolist(), r.start_ms.tolist(), r.columns["n"].to_pylist()) for r in rows]
    [([0, 1], [0, 0], [1, 1]), ([0], [10], [1])]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa

from fabric_ray.streams.window_aggs import BatchValues, Fields, combine_moments, to_moments

__all__ = ["NO_LEVEL", "Rows", "TileWindows", "unique_ids"]

NO_TILE = np.iinfo(np.int64).min
NO_LEVEL = -(2**62)  # the closing level before any event: nothing is closed


class Rows(NamedTuple):
    """Result rows of one window shape: key ids, window bounds, one column per aggregate."""

    kids: np.ndarray
    start_ms: np.ndarray
    end_ms: np.ndarray
    columns: dict[str, pa.Array]


def unique_ids(ids: np.ndarray, bound: int) -> np.ndarray:
    """Sorted distinct values of ``ids`` (all in ``[0, bound)``), by counting when that is cheaper."""
    if len(ids) == 0:
        return np.zeros(0, dtype=np.int64)
    if bound <= 8 * len(ids) + 4096:
        return np.flatnonzero(np.bincount(ids, minlength=bound))
    return np.unique(ids)


class TileWindows:
    """Windowed partial aggregates over tiles, for every key.

    Args:
        kind: ``"tumbling"``, ``"hopping"`` or ``"sliding"`` (decides what an update emits).
        tile_ms: tile width.
        n_tiles: tiles per window.
        lateness_ms: allowed lateness (sizes the ring).
        fields: the partial fields to keep.
        emit: ``"update"`` or ``"close"``.
    """

    def __init__(self, kind: str, tile_ms: int, n_tiles: int, lateness_ms: int, fields: Fields, emit: str) -> None:
        self.kind = kind
        self.tile_ms = tile_ms
        self.n = n_tiles
        self.lateness_ms = lateness_ms
        self.slots = n_tiles + -(-lateness_ms // tile_ms)
        self.fields = fields
        self.emit = emit
        self.level = NO_LEVEL
        self.tile_of_slot = np.full(self.slots, NO_TILE, dtype=np.int64)
        self.cap = 0
        self.arr = fields.new((self.slots, 0))
        self.had_nulls: set[str] = set()
        self.units = 1
        # hopping windows, and every closed window, must not see an event that arrived after they
        # closed: units are cut there (see process)
        self.split_partial = n_tiles > 1 and (kind == "hopping" or emit == "close")

    # -- geometry ---------------------------------------------------------------------------
    def last_window(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Start and end of the last window holding each event time."""
        j = t // self.tile_ms
        return j * self.tile_ms, (j + self.n) * self.tile_ms

    def _bounds(self, k: int) -> tuple[int, int]:
        return (k - self.n + 1) * self.tile_ms, (k + 1) * self.tile_ms

    # -- memory -----------------------------------------------------------------------------
    def ensure_capacity(self, n_keys: int) -> None:
        """Make room for key ids below ``n_keys`` (capacity doubles)."""
        if n_keys <= self.cap:
            return
        new_cap = max(n_keys, 2 * self.cap, 1024)
        grown = self.fields.new((self.slots, new_cap))
        for f, a in self.arr.items():
            grown[f][:, : self.cap] = a
        self.arr, self.cap = grown, new_cap

    def live_keys(self, n_keys: int) -> np.ndarray:
        """Which key ids still hold state."""
        return self.arr["count"][:, :n_keys].any(axis=0)

    def compact(self, kept: np.ndarray) -> None:
        """Keep only the key ids ``kept`` (they become 0..len-1), at the same capacity."""
        for f, a in self.arr.items():
            moved = a[:, kept]
            self.fields.reset({f: a}, (slice(None), slice(len(kept), None)))
            a[:, : len(kept)] = moved

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arr.values()) + self.tile_of_slot.nbytes

    # -- folding and closing ----------------------------------------------------------------
    def process(self, kid: np.ndarray, t: np.ndarray, pmax: np.ndarray, batch: BatchValues) -> list[Rows]:
        """Fold on-time events (arrival order) and close what their watermark closes.

        Args:
            kid: key id per event.
            t: event time per event (ms).
            pmax: running maximum of event time, this event included (and all earlier batches).
            batch: the events' values.

        Returns:
            Rows to emit: for ``emit="update"``, the windows the events touched; for
            ``"close"``, the windows the watermark closed (final values).

        Units: a unit of events is folded after closing the windows its first event's watermark
        closes. A new unit starts (a) at the latest watermark crossing of a tile edge before an
        event whose tile would not fit in the ring, and (b) where ``split_partial`` is on, at the
        crossing before an event that arrives after one of its windows closed, so that window's
        value is computed without it.
        """
        if len(t) == 0:
            return []
        tile, n = self.tile_ms, self.n
        j = t // tile
        f_incl = (pmax - self.lateness_ms) // tile
        f_excl = np.concatenate([[self.level], f_incl[:-1]])
        crossings = np.flatnonzero(f_incl > f_excl)
        out: list[Rows] = []
        a, m = 0, len(t)
        self.units = 0
        while a < m:
            self.units += 1
            fa = int(f_incl[a])
            jj = j[a:]
            bad = jj > fa - n + self.slots
            if self.split_partial:
                fe = f_excl[a:]
                bad |= (fe > fa) & (jj + 1 <= fe)
            b = m
            if bad.any():
                i = a + int(np.argmax(bad))
                b = int(crossings[np.searchsorted(crossings, i, side="right") - 1])
                assert b > a, "unit cut must make progress"
            out += self.close(fa)
            self._fold(kid[a:b], j[a:b], batch.take(slice(a, b)))
            if self.emit == "update" and self.kind != "sliding":
                out += self._touched(kid[a:b], j[a:b], fa, int(pmax[b - 1]))
            a = b
        out += self.close(int(f_incl[-1]))
        if self.emit == "update" and self.kind == "sliding":
            # one row per touched key: its window as of the batch's greatest event time
            out += self._touched(kid, j, int(f_incl[-1]), int(pmax[-1]))
        return out

    def _fold(self, kid: np.ndarray, j: np.ndarray, batch: BatchValues) -> None:
        lo, hi = int(j.min()), int(j.max())
        for tile in (np.unique(j) if hi > lo else (lo,)):
            slot = int(tile) % self.slots
            held = self.tile_of_slot[slot]
            if held == NO_TILE:
                self.tile_of_slot[slot] = tile
            elif held != tile:
                raise AssertionError(f"tile ring: slot {slot} holds tile {held}, needed for tile {tile}")
        idx = (j % self.slots) * self.cap + kid
        flat = {f: a.reshape(-1) for f, a in self.arr.items()}
        self.fields.fold(flat, idx, batch)
        self.had_nulls.update(c for c, v in batch.valid.items() if v is not None and not v.all())

    def close(self, level: int, n_keys: int | None = None) -> list[Rows]:
        """Close windows ``k < level`` and free the tiles no open window needs."""
        if level <= self.level:
            return []
        out: list[Rows] = []
        held = self.tile_of_slot != NO_TILE
        if self.emit == "close" and held.any():
            live = self.tile_of_slot[held]
            ks = np.unique((live[:, None] + np.arange(self.n)).ravel())
            ks = ks[(ks >= self.level) & (ks < level)]
            for k in ks.tolist():
                out += self._rows_all(k - self.n + 1, k, n_keys)
        freed = held & (self.tile_of_slot <= level - self.n)
        if freed.any():
            self.fields.reset(self.arr, freed)
            self.tile_of_slot[freed] = NO_TILE
        self.level = level
        return out

    def flush(self, n_keys: int) -> tuple[list[Rows], int | None]:
        """Close every window (end of a bounded stream); also returns the watermark that closes them."""
        held = self.tile_of_slot[self.tile_of_slot != NO_TILE]
        if len(held) == 0:
            return [], None
        level = int(held.max()) + self.n
        return self.close(level, n_keys), level * self.tile_ms

    # -- reading ----------------------------------------------------------------------------
    def _touched(self, kid: np.ndarray, j: np.ndarray, fa: int, max_ms: int) -> list[Rows]:
        if self.kind == "sliding":
            cur = max_ms // self.tile_ms
            return self._rows(unique_ids(kid, self.cap), cur - self.n + 1, cur)
        tiles = np.unique(j)
        ks = np.unique((tiles[:, None] + np.arange(self.n)).ravel())
        out: list[Rows] = []
        for k in ks[ks >= fa].tolist():
            inside = (j >= k - self.n + 1) & (j <= k)
            out += self._rows(unique_ids(kid[inside], self.cap), k - self.n + 1, k)
        return out

    def read(self, kids: np.ndarray | None, at_ms: int, n_keys: int) -> list[Rows]:
        """Open windows at ``at_ms``: the window holding it (tumbling), every open window holding
        it (hopping), the window of the ``n`` tiles ending with its tile (sliding).

        Raises:
            ValueError: the window asked for has closed (its state is freed).
        """
        j = at_ms // self.tile_ms
        ks = [j] if self.kind != "hopping" else [k for k in range(j, j + self.n) if k >= self.level]
        if not ks or ks[0] < self.level:
            start, end = self._bounds(j)
            raise ValueError(
                f"read at_ms={at_ms}: window [{start}, {end}) has closed (closed windows end at or before "
                f"{self.level * self.tile_ms} ms); its state is freed"
            )
        out: list[Rows] = []
        for k in ks:
            out += self._rows_all(k - self.n + 1, k, n_keys) if kids is None else self._rows(kids, k - self.n + 1, k)
        return out

    def _rows_all(self, j_lo: int, j_hi: int, n_keys: int | None) -> list[Rows]:
        n_keys = self.cap if n_keys is None else n_keys
        if "hll" in {Fields.kind(f) for f in self.arr}:
            # sketches are large: merge them only for the keys with events in the window
            count = self.combine(np.arange(n_keys, dtype=np.int64), j_lo, j_hi, only=("count",))["count"]
            return self._rows(np.flatnonzero(count), j_lo, j_hi)
        return self._rows(np.arange(n_keys, dtype=np.int64), j_lo, j_hi)

    def _rows(self, kids: np.ndarray, j_lo: int, j_hi: int) -> list[Rows]:
        parts = self.combine(kids, j_lo, j_hi)
        has = parts["count"] > 0
        if not has.all():
            kids = kids[has]
            parts = {f: p[has] for f, p in parts.items()}
        if len(kids) == 0:
            return []
        start, end = (j_lo * self.tile_ms, (j_hi + 1) * self.tile_ms)
        n = len(kids)
        return [Rows(kids, np.full(n, start, np.int64), np.full(n, end, np.int64), self.fields.finalize(parts))]

    def combine(
        self, kids: np.ndarray, j_lo: int, j_hi: int, only: tuple[str, ...] | None = None
    ) -> dict[str, np.ndarray]:
        """Partials of tiles ``j_lo..j_hi`` merged per key, for the key ids ``kids`` (all fields,
        or the fields ``only``)."""
        held = self.tile_of_slot[self.tile_of_slot != NO_TILE]
        lo, hi = (max(j_lo, int(held.min())), min(j_hi, int(held.max()))) if len(held) else (1, 0)
        if lo > hi:
            empty = self.fields.new((len(kids),))
            return empty if only is None else {f: empty[f] for f in only}
        s0, count = lo % self.slots, hi - lo + 1
        slices = [(s0, min(self.slots, s0 + count))]
        if s0 + count > self.slots:
            slices.append((0, s0 + count - self.slots))
        full = len(kids) * 4 >= self.cap

        def blocks(a: np.ndarray) -> list[np.ndarray]:
            bl = [a[x:y] for x, y in slices]
            return bl if full else [b[:, kids] for b in bl]

        def stacked(a: np.ndarray) -> np.ndarray:
            bl = blocks(a)
            return bl[0] if len(bl) == 1 else np.concatenate(bl)

        parts: dict[str, np.ndarray] = {}
        for f, a in self.arr.items():
            if only is not None and f not in only:
                continue
            kind = Fields.kind(f)
            if kind in ("count", "sum") or (kind == "nulls" and f[6:] in self.had_nulls):
                parts[f] = sum(b.sum(axis=0) for b in blocks(a))
            elif kind == "nulls":
                parts[f] = np.zeros(a.shape[1] if full else len(kids), dtype=np.int64)
            elif kind == "min":
                parts[f] = np.minimum.reduce([b.min(axis=0) for b in blocks(a)])
            elif kind in ("max", "hll"):
                parts[f] = np.maximum.reduce([b.max(axis=0) for b in blocks(a)])
            elif kind == "lts":
                c = f[4:]
                lts = stacked(a)
                pick = np.argmax(lts, axis=0)[None]
                parts[f] = np.take_along_axis(lts, pick, 0)[0]
                parts[f"lval:{c}"] = np.take_along_axis(stacked(self.arr[f"lval:{c}"]), pick, 0)[0]
            elif kind == "shift":
                c = f[6:]
                n_c = stacked(self.arr["count"]) - (stacked(self.arr[f"nulls:{c}"]) if c in self.had_nulls else 0)
                mean, m2 = to_moments(n_c, stacked(a), stacked(self.arr[f"sy:{c}"]), stacked(self.arr[f"syy:{c}"]))
                _, mu, m2 = combine_moments(n_c, mean, m2)
                parts[f], parts[f"sy:{c}"], parts[f"syy:{c}"] = mu, np.zeros_like(mu), m2
        if full:
            parts = {f: p[kids] for f, p in parts.items()}
        return parts

    # -- checkpoints ------------------------------------------------------------------------
    def state_rows(self, n_keys: int) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Every (key, tile) partial with events: key ids, ``{"tile": ...}``, field values."""
        held = np.flatnonzero(self.tile_of_slot != NO_TILE)
        held = held[np.argsort(self.tile_of_slot[held])]
        counts = self.arr["count"][held, :n_keys]
        si, kid = np.nonzero(counts)
        slot = held[si]
        order = np.lexsort((self.tile_of_slot[slot], kid))
        slot, kid = slot[order], kid[order]
        values = {f: a[slot, kid] for f, a in self.arr.items()}
        return kid, {"tile": self.tile_of_slot[slot]}, values

    def load_rows(self, kid: np.ndarray, extra: dict[str, np.ndarray], values: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`state_rows` (capacity must already fit the key ids)."""
        tile = extra["tile"]
        slot = tile % self.slots
        self.tile_of_slot[slot] = tile
        for f, a in self.arr.items():
            a[slot, kid] = values[f]
        self.had_nulls.update(f[6:] for f in self.arr if f.startswith("nulls:") and values[f].any())
