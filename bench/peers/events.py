"""The input and the expected answer of the stream-engine comparison.

Every engine gets the same ``make_events(n)`` payloads and computes, per ``user_id``, the count,
sum and mean of ``amount`` over hopping event-time windows (Bytewax's ``SlidingWindower``, Quix's
``hopping_window``). :func:`reference` computes the same thing with pandas/NumPy, and
:func:`compare` checks an engine's answer against it.

Example:
    >>> events = make_events(3, keys=2, span_ms=60_000)
    >>> events[0]
    b'{"user_id":1,"amount":134.9,"ts":1700000000150}'
    >>> for window, value in sorted(reference(events, size_ms=120_000, hop_ms=60_000).items()):
    ...     print(window, value)
    (1, 1699999920000) (2, 288.82, 144.41)
    (1, 1699999980000) (3, 309.31, 103.10333333333334)
    (1, 1700000040000) (1, 20.49, 20.49)
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "GRACE_MS",
    "HOP_MS",
    "MAX_JITTER_MS",
    "SIZE_MS",
    "SPAN_MS",
    "START_MS",
    "PeerResult",
    "Results",
    "compare",
    "make_events",
    "reference",
]

START_MS = 1_700_000_000_000
SPAN_MS = 90 * 60_000  # the whole stream spans 90 minutes of event time, whatever n is
MAX_JITTER_MS = 2_000  # an event's ts is at most this much (exclusive) before an earlier event's ts
GRACE_MS = 5_000  # allowed lateness every engine is given (> MAX_JITTER_MS, so nothing is late)
SIZE_MS = 10 * 60_000  # benchmark default window size
HOP_MS = 60_000  # benchmark default hop

Results = dict[tuple[int, int], tuple[int, float, float]]
"""``{(user_id, window_start_ms): (count, sum_amount, mean_amount)}``: one entry per window."""


@dataclass
class PeerResult:
    """What one engine run returns.

    Attributes:
        engine: ``"bytewax"`` or ``"quixstreams"``.
        events: input events processed (sentinels excluded).
        elapsed_s: the timed part of the run (see each peer for what it covers).
        results: the windows, in :data:`Results` shape.
        wall_s: the whole call, set-up and tear-down included.
        notes: engine-specific details (configuration, extra timings).
    """

    engine: str
    events: int
    elapsed_s: float
    results: Results
    wall_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def events_per_s(self) -> float:
        """``events / elapsed_s``."""
        return self.events / self.elapsed_s if self.elapsed_s > 0 else math.inf


def make_events(n: int, keys: int = 10_000, seed: int = 0, span_ms: int = SPAN_MS) -> list[bytes]:
    """``n`` deterministic JSON payloads ``{"user_id", "amount", "ts"}`` (compact, UTF-8).

    ``user_id`` is uniform in ``[0, keys)``; ``amount`` has two decimals in ``[0.01, 500.00]``;
    event ``i`` has ``ts = START_MS + i * span_ms // n + jitter`` with ``jitter`` uniform in
    ``[0, MAX_JITTER_MS)``, so ts rises through the stream but is out of order by less than 2 s.
    """
    if n < 1 or keys < 1:
        raise ValueError(f"need n >= 1 and keys >= 1, got n={n}, keys={keys}")
    rng = np.random.default_rng(seed)
    users = rng.integers(0, keys, n).tolist()
    cents = rng.integers(1, 50_001, n).tolist()
    ts = (START_MS + np.arange(n, dtype=np.int64) * span_ms // n + rng.integers(0, MAX_JITTER_MS, n)).tolist()
    # repr(c / 100) is the shortest float text, i.e. exactly two decimals at most.
    return [
        f'{{"user_id":{u},"amount":{c / 100!r},"ts":{t}}}'.encode() for u, c, t in zip(users, cents, ts)
    ]


def _frame(events: list[bytes]) -> pd.DataFrame:
    # The payloads are our own fixed format: let pandas' JSON-lines reader parse them in one go.
    frame = pd.read_json(
        io.StringIO(b"\n".join(events).decode()),
        lines=True,
        dtype={"user_id": "int64", "amount": "float64", "ts": "int64"},
    )
    return frame[["user_id", "amount", "ts"]]


def reference(events: list[bytes], size_ms: int = SIZE_MS, hop_ms: int = HOP_MS) -> Results:
    """Per ``user_id`` and hopping window: ``(count, sum, mean)`` of ``amount``.

    Windows are ``[start, start + size_ms)`` with ``start`` a multiple of ``hop_ms``; an event at
    ``ts`` belongs to every window with ``start <= ts < start + size_ms``. Every window that holds
    at least one event is reported once.
    """
    if not 0 < hop_ms <= size_ms:
        raise ValueError(f"need 0 < hop_ms <= size_ms, got hop_ms={hop_ms}, size_ms={size_ms}")
    frame = _frame(events)
    user = frame["user_id"].to_numpy()
    amount = frame["amount"].to_numpy()
    ts = frame["ts"].to_numpy()
    last_start = ts // hop_ms * hop_ms
    copies = -(-size_ms // hop_ms)  # the most windows one event can fall in
    parts = []
    for k in range(copies):
        start = last_start - k * hop_ms
        keep = start > ts - size_ms
        parts.append(pd.DataFrame({"user_id": user[keep], "start": start[keep], "amount": amount[keep]}))
    grouped = pd.concat(parts, ignore_index=True).groupby(["user_id", "start"], sort=False)["amount"]
    agg = grouped.agg(["count", "sum"])
    return {
        (int(u), int(s)): (int(c), float(t), float(t) / int(c))
        for (u, s), c, t in zip(agg.index, agg["count"].to_numpy(), agg["sum"].to_numpy())
    }


def compare(got: Results, want: Results, rel: float = 1e-6) -> list[str]:
    """Differences between two answers, at most 10 described; ``[]`` when they match.

    Counts must be equal; sums and means may differ by ``rel`` relative (float addition order).
    """
    problems: list[str] = []
    missing = want.keys() - got.keys()
    extra = got.keys() - want.keys()
    if missing:
        problems.append(f"{len(missing)} windows missing, e.g. {sorted(missing)[:3]}")
    if extra:
        problems.append(f"{len(extra)} unexpected windows, e.g. {sorted(extra)[:3]}")
    wrong = []
    for key in want.keys() & got.keys():
        (gc, gs, gm), (wc, ws, wm) = got[key], want[key]
        close = math.isclose(gs, ws, rel_tol=rel, abs_tol=1e-9) and math.isclose(gm, wm, rel_tol=rel, abs_tol=1e-9)
        if gc != wc or not close:
            wrong.append(key)
    if wrong:
        problems.append(f"{len(wrong)} windows differ")
        problems += [f"window {key}: got {got[key]}, want {want[key]}" for key in sorted(wrong)[:5]]
    return problems
