"""Benchmark ``streams``: decode plus keyed window aggregation, events per second per core, against Bytewax and Quix Streams.

The computation, identical in every engine and checked equal against a pandas reference
(``bench/peers/events.py``): JSON payloads ``{"user_id", "amount", "ts"}`` over 10,000 keys, event
times spanning 90 minutes with up to 2 s of disorder; per key, windows of 10 minutes every
1 minute (what Bytewax calls a ``SlidingWindower`` and Quix a hopping window), count, sum and
mean of ``amount``, each window reported once with its final value.

- **fabric_ray**: a :class:`~fabric_ray.streams.pipeline.Pipeline` (``decode`` with
  ``JsonDecoder``, ``key_by``, ``window(Hopping(...), emit="close")``, ``sink``) run by the
  partition processor over an in-memory source, batches of ``--batch-size`` messages, the process
  pinned to one CPU with Arrow on one thread. Timed: the whole run, from the first batch read to
  the last window flushed, decode included.
- **Bytewax 0.21**: ``TestingSource`` + ``run_main`` (one worker), see ``docs/bench-peers.md``.
- **Quix Streams 3.28**: its own virtual environment, an ``Application`` reading a topic on a
  Tansu broker (it has no in-memory source); timed inside the app, first message to last window.

Also reported, fabric_ray only: the same pipeline with a served-fresh ``Sliding(10 min, 1 min)``
window emitting every changed key each batch (``sliding_events_per_s``).

The last line includes ``events_per_s`` (fabric_ray, hopping), ``ratio_vs_bytewax`` and
``ratio_vs_quixstreams`` (fabric_ray's events/s over the peer's, the same events).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any, Callable

Say = Callable[[str], None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=100_000, help="events per engine (default 100,000)")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct user_ids (default 10,000)")
    parser.add_argument("--batch-size", type=int, default=20_000, help="fabric_ray messages per batch (default 20,000)")
    parser.add_argument("--rounds", type=int, default=5, help="fabric_ray rounds; the median counts (default 5)")
    parser.add_argument("--skip-quix", action="store_true", help="leave Quix Streams out (it builds its own venv on first use)")


def _pipeline(window: Any, emit: str):
    import pyarrow as pa

    from bench.peers.events import GRACE_MS
    from fabric_ray.streams.json_codec import JsonDecoder
    from fabric_ray.streams.pipeline import Pipeline

    schema = pa.schema([("user_id", pa.int64()), ("amount", pa.float64()), ("ts", pa.int64())])
    aggs = {"count": ("count", None), "sum": ("sum", "amount"), "mean": ("mean", "amount")}
    return (
        Pipeline("bench")
        .source("events")
        .decode(JsonDecoder(schema, required=["user_id", "amount", "ts"]))
        .key_by("user_id")
        .window(window, aggs, time="ts", allowed_lateness_ms=GRACE_MS, emit=emit)
        .sink("out")
    )


def run_fabric(events: list[bytes], window: Any, emit: str, batch_size: int) -> tuple[float, Any]:
    """``(seconds, processor)`` of one in-memory run of the pipeline over ``events`` (one partition)."""
    from fabric_ray.streams.processor import PipelineProcessor
    from fabric_ray.testing import CollectingSink, MemorySource

    out, dead = CollectingSink(), CollectingSink()
    proc = PipelineProcessor(MemorySource("events", {0: events}), _pipeline(window, emit), {"out": out}, dead, batch_size=batch_size, poll_timeout_s=0, checkpoint_interval_s=3600)
    started = time.perf_counter()
    while proc.next_batch():
        pass
    final = proc.runtime(0).window("window").flush() if emit == "close" else None
    elapsed = time.perf_counter() - started
    proc.out, proc.final, proc.dead = out, final, dead
    return elapsed, proc


def _fabric_results(proc: Any) -> dict:
    import pyarrow as pa

    tables = [t for t in proc.out.items if isinstance(t, pa.Table)] + ([proc.final] if proc.final is not None and proc.final.num_rows else [])
    results = {}
    for t in tables:
        names = t.column_names
        key = names[0]
        for row in t.to_pylist():
            results[(row[key], row["window_start_ms"])] = (row["count"], row["sum"], row["mean"])
    return results


def run(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    import pyarrow as pa

    from bench.peers.events import HOP_MS, SIZE_MS, compare, make_events, reference
    from fabric_ray.streams.windows import Hopping, Sliding

    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core: the figure is per core
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    events = make_events(args.events, keys=args.keys)
    want = reference(events, SIZE_MS, HOP_MS)
    say(f"{len(events):,} events, {args.keys:,} keys, windows of {SIZE_MS // 60_000} min every {HOP_MS // 60_000} min: {len(want):,} windows; one core")

    hopping, sliding = Hopping(SIZE_MS, HOP_MS), Sliding(SIZE_MS, HOP_MS)
    run_fabric(events[: args.batch_size * 2], hopping, "close", args.batch_size)  # warm-up, untimed
    times = []
    for i in range(args.rounds):
        elapsed, proc = run_fabric(events, hopping, "close", args.batch_size)
        times.append(elapsed)
        if i == 0:
            problems = compare(_fabric_results(proc), want)
            assert not problems, f"fabric_ray's windows differ from the reference: {problems[:3]}"
            assert not proc.dead.items, f"fabric_ray dead-lettered {len(proc.dead.items)} events: {proc.dead.items[0].reason}"
    fabric_eps = len(events) / statistics.median(times)
    say(f"fabric_ray: {fabric_eps:,.0f} events/s (median of {args.rounds}; results equal the reference)")
    sliding_times = [run_fabric(events, sliding, "update", args.batch_size)[0] for _ in range(args.rounds)]
    sliding_eps = len(events) / statistics.median(sliding_times)
    say(f"fabric_ray, served-fresh sliding window (emit every changed key each batch): {sliding_eps:,.0f} events/s")

    out: dict[str, Any] = {"events": len(events), "keys": args.keys, "windows": len(want), "events_per_s": round(fabric_eps), "sliding_events_per_s": round(sliding_eps)}
    from bench.peers.bytewax_peer import run_bytewax

    say("Bytewax 0.21: TestingSource + run_main, one worker")
    bw = run_bytewax(events, SIZE_MS, HOP_MS)
    problems = compare(bw.results, want)
    assert not problems, f"Bytewax's windows differ from the reference: {problems[:3]}"
    say(f"Bytewax: {bw.events_per_s:,.0f} events/s (results equal the reference)")
    out["bytewax_events_per_s"] = round(bw.events_per_s)
    out["ratio_vs_bytewax"] = round(fabric_eps / bw.events_per_s, 1)
    if not args.skip_quix:
        from bench.peers.quix_peer import run_quix

        say("Quix Streams 3.28: its own venv, an Application on a Tansu broker (first use builds the venv)")
        os.sched_setaffinity(0, os.sched_getaffinity(0) | set(range(os.cpu_count() or 1)))  # the broker gets the other core
        qx = run_quix(events, SIZE_MS, HOP_MS, say=say)
        problems = compare(qx.results, want)
        assert not problems, f"Quix Streams' windows differ from the reference: {problems[:3]}"
        say(f"Quix Streams: {qx.events_per_s:,.0f} events/s (results equal the reference)")
        out["quixstreams_events_per_s"] = round(qx.events_per_s)
        out["ratio_vs_quixstreams"] = round(fabric_eps / qx.events_per_s, 1)
    out["target_events_per_s"] = 1_000_000
    out["target_ratio"] = 10
    return out
