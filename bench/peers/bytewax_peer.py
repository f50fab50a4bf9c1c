"""Bytewax 0.21 as a peer: the hopping-window computation of :mod:`bench.peers.events`, in memory.

The dataflow is what Bytewax's own docs and examples build for this job::

    TestingSource(events, batch_size)        # the payloads, in memory
    -> map json.loads
    -> key_on str(user_id)                   # Bytewax keys are strings
    -> fold_window(EventClock(ts, wait_for_system_duration=GRACE_MS, to_system_utc=no wake-up),
                   SlidingWindower(length=size, offset=hop, align_to=epoch),
                   builder=[0, 0.0], folder=count and sum, merger, ordered=False)
    -> TestingSink(list) of (user, (window id, [count, sum])), and one of the window metadata
       (user, (window id, open/close times)); results are paired with their window's open time
       and mean = sum / count is taken after the run

``run_main`` runs it on one worker in this process; only that call is timed. At the end of
input Bytewax closes every window, so each window is emitted exactly once with its final value.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

from bench.peers.events import GRACE_MS, HOP_MS, SIZE_MS, PeerResult, Results

__all__ = ["BATCH_SIZE", "run_bytewax"]

BATCH_SIZE = 1000  # items per TestingSource batch (its default is 1)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _ts(event: dict) -> datetime:
    return _EPOCH + timedelta(milliseconds=event["ts"])


def _no_wake_up(_close_time: datetime) -> None:
    return None


def _build() -> list:
    return [0, 0.0]


def _fold(acc: list, event: dict) -> list:
    acc[0] += 1
    acc[1] += event["amount"]
    return acc


def _merge(a: list, b: list) -> list:
    return [a[0] + b[0], a[1] + b[1]]


def run_bytewax(
    events: list[bytes], size_ms: int = SIZE_MS, hop_ms: int = HOP_MS, batch_size: int = BATCH_SIZE
) -> PeerResult:
    """Run the dataflow over ``events`` on one Bytewax worker; time ``run_main`` only.

    Returns:
        ``PeerResult("bytewax", len(events), elapsed_s, results)`` with ``results`` shaped like
        :func:`bench.peers.events.reference`'s.
    """
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.operators.windowing import EventClock, SlidingWindower, fold_window
    from bytewax.testing import TestingSink, TestingSource, run_main

    wall_started = time.perf_counter()
    out: list = []
    flow = Dataflow("bench_peer_hopping")
    raw = op.input("input", flow, TestingSource(events, batch_size=batch_size))
    decoded = op.map("decode", raw, json.loads)
    keyed = op.key_on("key", decoded, lambda e: str(e["user_id"]))
    # Replaying history: `to_system_utc` -> None tells the runtime not to schedule wake-ups at
    # window close times (they all lie in the past of the system clock, so with the default it
    # polls every key's windows on every activation, which measured 1.5-4x slower here).
    # Windows then close as items advance each key's watermark, and all close at end of input.
    clock = EventClock(
        _ts, wait_for_system_duration=timedelta(milliseconds=GRACE_MS), to_system_utc=_no_wake_up
    )
    windower = SlidingWindower(
        length=timedelta(milliseconds=size_ms), offset=timedelta(milliseconds=hop_ms), align_to=_EPOCH
    )
    win = fold_window("window", keyed, clock, windower, _build, _fold, _merge, ordered=False)
    # Each window emits its value on `down` and its open/close times on `meta`, both sub-keyed by
    # window id: sink both, pair them after the run. Late items (there should be none) are counted.
    metas: list = []
    late: list = []
    op.output("out", win.down, TestingSink(out))
    op.output("meta", win.meta, TestingSink(metas))
    op.output("late", win.late, TestingSink(late))

    started = time.perf_counter()
    run_main(flow)
    elapsed = time.perf_counter() - started

    starts = {
        window_id: (meta.open_time - _EPOCH) // timedelta(milliseconds=1) for _user, (window_id, meta) in metas
    }
    results: Results = {}
    for user, (window_id, (count, total)) in out:
        results[(int(user), starts[window_id])] = (count, total, total / count)
    return PeerResult(
        engine="bytewax",
        events=len(events),
        elapsed_s=elapsed,
        results=results,
        wall_s=time.perf_counter() - wall_started,
        notes={"workers": 1, "batch_size": batch_size, "grace_ms": GRACE_MS, "late": len(late)},
    )
