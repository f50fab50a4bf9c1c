"""Session windows per key: events closer than the gap share a session; sessions merge when an
event bridges them.

A session is the set of on-time events of one key that are connected by gaps shorter than
``gap_ms`` (two events at ``a <= b`` are neighbours when ``b - a < gap_ms``). Its window is
``[first event, last event + gap_ms)``. An event is late when its own window
``[t, t + gap_ms)`` has closed (``t + gap_ms <= watermark``). A session is final, emitted (for
``emit="close"``) and freed once ``last + 2 * gap_ms <= watermark``: until then an on-time event
(``t > watermark - gap_ms``) could still land within ``gap_ms`` of its last event. With this rule
the sessions are exactly the gap-connected groups of the on-time events, however the stream is
batched.

State: a pool of session slots as parallel NumPy arrays (key id, first and last event time, one
entry per partial field; key id -1 marks a free slot). Each batch merges its events with the
sessions of the keys it touches in one sort and a few ``reduceat`` passes, and writes the merged
sessions back into the slots they came from (and free ones), so a batch costs in proportion to
what it touches, not to the number of open sessions. Results and snapshots list sessions in
(key id, start) order, so the slot layout never shows.

Example:
    >>> from fabric_ray.streams.window_aggs import BatchValues, Fields, parse_aggs
    >>> import pyarrow as pa
    >>> fields = Fields(parse_aggs({"n": ("count", None)}, "w"), 8)
    >>> s = SessionWindows(gap_ms=10, lateness_ms=0, fields=fields, emit="update")
    >>> s.ensure_capacity(1)
    >>> t = np.array([0, 25, 8])          # 8 arrives late but on time: it joins the session of 0
    >>> rows = s.process(np.zeros(3, np.int64), t, np.maximum.accumulate(t), BatchValues(pa.table({}), fields, t, "w"))
    >>> [(r.start_ms.tolist(), r.end_ms.tolist(), r.columns["n"].to_pylist()) for r in rows]
    [([0, 25], [18, 35], [2, 1])]
"""

from __future__ import annotations

import numpy as np

from fabric_ray.streams.sketches import update_registers
from fabric_ray.streams.window_aggs import I64_MIN, BatchValues, Fields, to_moments
from fabric_ray.streams.window_state import Rows, unique_ids

__all__ = ["SessionWindows"]


def segmented_cummax(values: np.ndarray, segment: np.ndarray) -> np.ndarray:
    """Running maximum of ``values`` that restarts where ``segment`` (non-decreasing ids) changes.

    Example:
        >>> segmented_cummax(np.array([5, 1, 7, 2, 3]), np.array([0, 0, 0, 1, 1])).tolist()
        [5, 5, 7, 2, 3]
    """
    if len(values) == 0:
        return values.copy()
    lo, hi = int(values.min()), int(values.max())
    span = hi - lo + 1
    if int(segment[-1]) * span < 2**62:
        enc = segment * span + (values - lo)
        return np.maximum.accumulate(enc) - segment * span + lo
    uniq, rank = np.unique(values, return_inverse=True)
    enc = segment * len(uniq) + rank
    return uniq[np.maximum.accumulate(enc) - segment * len(uniq)]


def key_time_order(kid: np.ndarray, t: np.ndarray) -> np.ndarray:
    """An order sorting by (key id, time); ties in any order.

    Example:
        >>> key_time_order(np.array([1, 0, 1]), np.array([5, 9, 2])).tolist()
        [1, 2, 0]
    """
    if len(t) == 0:
        return np.zeros(0, dtype=np.int64)
    lo = int(t.min())
    span = int(t.max()) - lo + 1
    if (int(kid.max()) + 1) * span < 2**62:
        return np.argsort(kid * span + (t - lo))
    return np.lexsort((t, kid))


class SessionWindows:
    """Open sessions of every key, merged a batch at a time.

    Args:
        gap_ms: the session gap.
        lateness_ms: allowed lateness.
        fields: the partial fields to keep.
        emit: ``"update"`` or ``"close"``.
    """

    kind = "session"

    def __init__(self, gap_ms: int, lateness_ms: int, fields: Fields, emit: str) -> None:
        self.gap = gap_ms
        self.lateness_ms = lateness_ms
        self.fields = fields
        self.emit = emit
        self.cap = 0
        self.units = 1
        self.kid = np.zeros(0, dtype=np.int64)  # -1: a free slot
        self.start = np.zeros(0, dtype=np.int64)
        self.last = np.zeros(0, dtype=np.int64)
        self.parts = fields.new((0,))

    def _grow(self, slots: int) -> None:
        size = len(self.kid)
        if slots <= size:
            return
        new = max(slots, 2 * size, 1024)
        self.kid = np.concatenate([self.kid, np.full(new - size, -1, dtype=np.int64)])
        self.start = np.concatenate([self.start, np.zeros(new - size, dtype=np.int64)])
        self.last = np.concatenate([self.last, np.zeros(new - size, dtype=np.int64)])
        more = self.fields.new((new - size,))
        self.parts = {f: np.concatenate([a, more[f]]) for f, a in self.parts.items()}

    def _sorted(self, slots: np.ndarray) -> np.ndarray:
        return slots[key_time_order(self.kid[slots], self.start[slots])]

    def last_window(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The window an event opens, ``[t, t + gap)``; the event is late once it has closed."""
        return t, t + self.gap

    def ensure_capacity(self, n_keys: int) -> None:
        self.cap = max(self.cap, n_keys)

    def live_keys(self, n_keys: int) -> np.ndarray:
        return np.bincount(self.kid[self.kid >= 0], minlength=n_keys)[:n_keys] > 0

    def compact(self, kept: np.ndarray) -> None:
        new_id = np.full(max(self.cap, 1), -1, dtype=np.int64)
        new_id[kept] = np.arange(len(kept))
        live = self.kid >= 0
        self.kid[live] = new_id[self.kid[live]]

    @property
    def nbytes(self) -> int:
        return self.kid.nbytes + self.start.nbytes + self.last.nbytes + sum(a.nbytes for a in self.parts.values())

    def _event_parts(self, batch: BatchValues) -> dict[str, np.ndarray]:
        """Each event as a one-event partial (``hll`` is folded separately)."""
        n = len(batch.time)
        out: dict[str, np.ndarray] = {"count": np.ones(n, dtype=np.int64)}
        for f in self.fields.names[1:]:
            kind, c = f.split(":", 1)
            valid = batch.valid.get(c)
            v = batch.values.get(c)
            if kind == "nulls":
                out[f] = np.zeros(n, np.int64) if valid is None else (~valid).astype(np.int64)
            elif kind in ("sum", "shift", "lval"):
                out[f] = v.copy()
            elif kind in ("sy", "syy"):
                out[f] = np.zeros(n)
            elif kind in ("min", "max"):
                out[f] = v.copy() if valid is None else np.where(valid, v, self.fields.identity(f))
            elif kind == "lts":
                out[f] = batch.time.copy() if valid is None else np.where(valid, batch.time, I64_MIN)
        return out

    def process(self, kid: np.ndarray, t: np.ndarray, pmax: np.ndarray, batch: BatchValues) -> list[Rows]:
        """Merge on-time events (arrival order) into the sessions; close what the watermark closes.

        Returns:
            For ``emit="update"``, the sessions holding at least one of these events (current
            values); for ``"close"``, the sessions the watermark finalized.
        """
        if len(t) == 0:
            return []
        fields = self.fields
        touched = np.zeros(max(self.cap, 1), dtype=bool)
        touched[unique_ids(kid, self.cap)] = True
        live = self.kid >= 0
        old = np.flatnonzero(live & touched[np.where(live, self.kid, 0)])
        n_old, n_ev = len(old), len(t)

        ev = self._event_parts(batch)
        items = {f: np.concatenate([self.parts[f][old], ev[f]]) for f in ev}
        i_kid = np.concatenate([self.kid[old], kid])
        i_start = np.concatenate([self.start[old], t])
        i_last = np.concatenate([self.last[old], t])
        arrival = np.concatenate([np.full(n_old, -1, dtype=np.int64), np.arange(n_ev, dtype=np.int64)])
        order = key_time_order(i_kid, i_start)
        i_kid, i_start, i_last, arrival = i_kid[order], i_start[order], i_last[order], arrival[order]
        items = {f: a[order] for f, a in items.items()}

        new_key = np.ones(len(order), dtype=bool)
        new_key[1:] = i_kid[1:] != i_kid[:-1]
        seg = np.cumsum(new_key) - 1
        run = segmented_cummax(i_last, seg)
        boundary = new_key.copy()
        boundary[1:] |= i_start[1:] - run[:-1] >= self.gap
        g = np.cumsum(boundary) - 1
        gs = np.flatnonzero(boundary)

        merged: dict[str, np.ndarray] = {}
        for f, a in items.items():
            kind = Fields.kind(f)
            if kind in ("count", "nulls", "sum"):
                merged[f] = np.add.reduceat(a, gs)
            elif kind == "min":
                merged[f] = np.minimum.reduceat(a, gs)
            elif kind == "max":
                merged[f] = np.maximum.reduceat(a, gs)
            elif kind == "lts":
                c = f[4:]
                gmax = np.maximum.reduceat(a, gs)
                cand = a == gmax[g]
                best = np.maximum.reduceat(np.where(cand, arrival, -2), gs)
                chosen = np.flatnonzero(cand & (arrival == best[g]))
                merged[f] = gmax
                merged[f"lval:{c}"] = np.full(len(gs), np.nan)
                merged[f"lval:{c}"][g[chosen]] = items[f"lval:{c}"][chosen]
            elif kind == "shift":
                c = f[6:]
                n_i = items["count"] - items[f"nulls:{c}"]
                mean, m2 = to_moments(n_i, a, items[f"sy:{c}"], items[f"syy:{c}"])
                total = np.add.reduceat(n_i, gs)
                with np.errstate(divide="ignore", invalid="ignore"):
                    mu = np.where(total > 0, np.add.reduceat(n_i * mean, gs) / np.maximum(total, 1), 0.0)
                dev = mean - mu[g]
                merged[f] = mu
                merged[f"sy:{c}"] = np.zeros(len(gs))
                merged[f"syy:{c}"] = np.add.reduceat(m2 + n_i * dev * dev, gs)
        for c in fields.hashed:
            regs = np.zeros((len(gs), fields.m), dtype=np.uint8)
            from_old = np.flatnonzero(arrival < 0)  # in group order
            if len(from_old):
                g_old = g[from_old]
                pool = self.parts[f"hll:{c}"]
                src_slots = old[order[from_old]]
                single = np.ones(len(g_old), dtype=bool)
                single[1:] &= g_old[1:] != g_old[:-1]
                single[:-1] &= g_old[:-1] != g_old[1:]
                regs[g_old[single]] = pool[src_slots[single]]
                multi = np.flatnonzero(~single)  # groups merging several sessions: rare
                if len(multi):
                    gm = g_old[multi]
                    firsts = np.flatnonzero(np.concatenate([[True], gm[1:] != gm[:-1]]))
                    regs[gm[firsts]] = np.maximum.reduceat(pool[src_slots[multi]], firsts, axis=0)
            evs = np.flatnonzero(arrival >= 0)
            src = arrival[evs]
            valid = batch.valid.get(c)
            if valid is not None:
                ok = valid[src]
                evs, src = evs[ok], src[ok]
            update_registers(regs.reshape(-1), g[evs], batch.hashes[c][src], fields.precision)
            merged[f"hll:{c}"] = regs

        g_kid = i_kid[gs]
        g_start = np.minimum.reduceat(i_start, gs)
        g_last = np.maximum.reduceat(i_last, gs)
        out: list[Rows] = []
        if self.emit == "update":
            hit = np.add.reduceat((arrival >= 0).astype(np.int64), gs) > 0
            sel = {f: p[hit] for f, p in merged.items()}
            out.append(Rows(g_kid[hit], g_start[hit], g_last[hit] + self.gap, fields.finalize(sel)))

        # the merged sessions replace the touched ones: their slots first, then free slots
        free = np.flatnonzero(~live)
        if len(old) + len(free) < len(gs):
            self._grow(len(self.kid) + len(gs))
            free = np.flatnonzero(self.kid < 0)
        slots = np.concatenate([old, free])[: len(gs)]
        self.kid[old] = -1
        self.kid[slots], self.start[slots], self.last[slots] = g_kid, g_start, g_last
        for f, a in self.parts.items():
            a[slots] = merged[f]
        return out + self.close(int(pmax[-1]) - self.lateness_ms)

    def close(self, watermark_ms: int) -> list[Rows]:
        """Finalize and free the sessions with ``last + 2 * gap <= watermark_ms``."""
        done = np.flatnonzero((self.kid >= 0) & (self.last + 2 * self.gap <= watermark_ms))
        if len(done) == 0:
            return []
        out: list[Rows] = []
        if self.emit == "close":
            out = self._rows(self._sorted(done))
        self.kid[done] = -1
        return out

    def _rows(self, slots: np.ndarray) -> list[Rows]:
        parts = {f: p[slots] for f, p in self.parts.items()}
        return [Rows(self.kid[slots], self.start[slots], self.last[slots] + self.gap, self.fields.finalize(parts))]

    def flush(self, n_keys: int) -> tuple[list[Rows], int | None]:
        """Finalize every open session (end of a bounded stream); also returns the watermark that does."""
        live = self.kid >= 0
        if not live.any():
            return [], None
        watermark_ms = int(self.last[live].max()) + 2 * self.gap
        return self.close(watermark_ms), watermark_ms

    def read(self, kids: np.ndarray | None, n_keys: int) -> list[Rows]:
        """The open sessions of ``kids`` (all keys when None), current values."""
        live = self.kid >= 0
        sel = np.flatnonzero(live if kids is None else live & np.isin(self.kid, kids))
        return self._rows(self._sorted(sel)) if len(sel) else []

    def state_rows(self, n_keys: int) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Every open session: key ids, ``{"start": ..., "last": ...}``, field values."""
        sel = self._sorted(np.flatnonzero(self.kid >= 0))
        extra = {"start": self.start[sel], "last": self.last[sel]}
        return self.kid[sel], extra, {f: p[sel] for f, p in self.parts.items()}

    def load_rows(self, kid: np.ndarray, extra: dict[str, np.ndarray], values: dict[str, np.ndarray]) -> None:
        n = len(kid)
        self._grow(n)
        self.kid[:n], self.start[:n], self.last[:n] = kid, extra["start"], extra["last"]
        for f, a in self.parts.items():
            a[:n] = values[f]
