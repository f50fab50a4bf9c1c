"""Benchmark ``streams``: decode plus keyed window aggregation, events per second per core, against four stream engines.

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
- **Pathway 0.33**: its own virtual environment, one worker, the file read in one commit,
  ``windowby(sliding, exactly_once_behavior(shift=grace))``; timed: ``pw.run()``. Also reported,
  the same without a temporal behavior (``pathway_no_behavior_events_per_s``).
- **Apache Flink 2.3**: its own virtual environment, Flink SQL (a ``HOP`` window TVF aggregation) in
  streaming mode on a local mini-cluster, parallelism 1, after an untimed warm-up job in the same
  JVM; timed inside the job, first event through the source to last window emitted.

Pathway and Flink run pinned to fabric_ray's core; a peer that cannot be installed or run, or
whose windows differ from the reference, gets ``ratio_vs_<peer>: null`` and a
``<peer>_error`` or ``<peer>_mismatch`` string instead of a figure.

Also reported, fabric_ray only: the same pipeline with a served-fresh ``Sliding(10 min, 1 min)``
window emitting every changed key each batch (``sliding_events_per_s``).

The last line includes ``events_per_s`` (fabric_ray, hopping), ``ratio_vs_bytewax``,
``ratio_vs_quixstreams``, ``ratio_vs_pathway`` and ``ratio_vs_flink`` (fabric_ray's events/s over
the peer's, the same events, one core each), and, because the machine is shared, the same per CPU
second where the CPU time is known (``events_per_cpu_s``, ``cpu_ratio_vs_<peer>``).
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
    parser.add_argument("--skip-pathway", action="store_true", help="leave Pathway out (it builds its own venv on first use)")
    parser.add_argument("--skip-flink", action="store_true", help="leave Apache Flink out (it builds its own venv on first use)")


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
    times, cpu_times = [], []
    for i in range(args.rounds):
        cpu_started = time.process_time()
        elapsed, proc = run_fabric(events, hopping, "close", args.batch_size)
        cpu_times.append(time.process_time() - cpu_started)
        times.append(elapsed)
        if i == 0:
            problems = compare(_fabric_results(proc), want)
            assert not problems, f"fabric_ray's windows differ from the reference: {problems[:3]}"
            assert not proc.dead.items, f"fabric_ray dead-lettered {len(proc.dead.items)} events: {proc.dead.items[0].reason}"
    fabric_eps = len(events) / statistics.median(times)
    fabric_cpu_eps = len(events) / statistics.median(cpu_times)
    say(f"fabric_ray: {fabric_eps:,.0f} events/s (median of {args.rounds}; results equal the reference)")
    sliding_times = [run_fabric(events, sliding, "update", args.batch_size)[0] for _ in range(args.rounds)]
    sliding_eps = len(events) / statistics.median(sliding_times)
    say(f"fabric_ray, served-fresh sliding window (emit every changed key each batch): {sliding_eps:,.0f} events/s")

    out: dict[str, Any] = {"events": len(events), "keys": args.keys, "windows": len(want), "events_per_s": round(fabric_eps), "events_per_cpu_s": round(fabric_cpu_eps), "sliding_events_per_s": round(sliding_eps)}

    def bytewax() -> Any:  # in this process, so its CPU time is ours to take
        from bench.peers.bytewax_peer import run_bytewax

        cpu_started = time.process_time()
        result = run_bytewax(events, SIZE_MS, HOP_MS)
        result.notes["cpu_s"] = time.process_time() - cpu_started
        return result

    say("Bytewax 0.21: TestingSource + run_main, one worker (the `bench` extra: pip install -e '.[bench]')")
    _peer(out, "bytewax", bytewax, want, fabric_eps, fabric_cpu_eps, say)
    core = set(os.sched_getaffinity(0))  # fabric_ray's one core: the compiled peers run there too
    if not args.skip_pathway:
        from bench.peers.pathway_peer import run_pathway

        say("Pathway 0.33: its own venv, one worker, windowby(sliding, exactly_once_behavior(shift=grace)) (first use builds the venv)")
        _peer(out, "pathway", lambda: run_pathway(events, SIZE_MS, HOP_MS, cpus=core, say=say), want, fabric_eps, fabric_cpu_eps, say)
        say("Pathway 0.33, the same without a temporal behavior (no grace; one commit, so each window once)")
        _peer(out, "pathway_no_behavior", lambda: run_pathway(events, SIZE_MS, HOP_MS, behavior="none", cpus=core, say=say), want, fabric_eps, fabric_cpu_eps, say)
    if not args.skip_flink:
        from bench.peers.flink_peer import run_flink

        say("Apache Flink 2.3: its own venv, Flink SQL HOP window TVF, streaming mode, mini-cluster, parallelism 1 (first use builds the venv)")
        _peer(out, "flink", lambda: run_flink(events, SIZE_MS, HOP_MS, warmup_events=args.batch_size * 2, cpus=core, say=say), want, fabric_eps, fabric_cpu_eps, say)
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


def _peer(out: dict[str, Any], name: str, run_peer: Callable[[], Any], want: dict, fabric_eps: float, fabric_cpu_eps: float, say: Say) -> None:
    """Run one peer into ``out``: its figures and ratios, or why there are none.

    A peer that fails to install or run gets ``<name>_error``; one whose windows differ from the
    reference gets ``<name>_mismatch``; either way ``ratio_vs_<name>`` is None (no ratio for
    unchecked results).
    """
    from bench.peers.events import compare

    try:
        result = run_peer()
    except Exception as exc:  # noqa: BLE001 (any failure is reported, not raised: the other figures stand)
        reason = f"{type(exc).__name__}: {exc}"
        say(f"{name}: not measured: {reason}")
        out[f"{name}_error"] = reason[:2000]
        out[f"ratio_vs_{name}"] = None
        return
    problems = compare(result.results, want)
    if problems:
        late = f" ({result.notes['late']} events it counted as late)" if result.notes.get("late") else ""
        say(f"{name}: windows differ from the reference{late}: {problems[:3]}")
        out[f"{name}_mismatch"] = "; ".join(problems[:3]) + late
        out[f"ratio_vs_{name}"] = None
        return
    cpu_s = result.notes.get("cpu_s", result.notes.get("job_cpu_s"))
    say(f"{name}: {result.events_per_s:,.0f} events/s (results equal the reference; timed {result.elapsed_s:.2f} s, "
        f"CPU {cpu_s:.2f} s, wall {result.wall_s:.1f} s)")
    out[f"{name}_events_per_s"] = round(result.events_per_s)
    out[f"ratio_vs_{name}"] = round(fabric_eps / result.events_per_s, 1)
    if cpu_s:
        out[f"{name}_events_per_cpu_s"] = round(result.events / cpu_s)
        out[f"cpu_ratio_vs_{name}"] = round(fabric_cpu_eps / (result.events / cpu_s), 1)


# `python -m bench all --quick` (bench/suite.py): this benchmark's short mode and the figures it compares;
# SKIP_PEERS_ARGS leave out the peers that build their own venv on first use (unless `bench all --with-peers`)
QUICK_ARGS = ["--events", "50000", "--batch-size", "10000", "--rounds", "3"]
SKIP_PEERS_ARGS = ["--skip-quix", "--skip-pathway", "--skip-flink"]
KEY_FIGURES = {"events_per_s": "higher", "sliding_events_per_s": "higher", "ratio_vs_bytewax": "higher"}
