"""The Pathway side of :mod:`bench.peers.pathway_peer`; runs INSIDE ``bench/.venv-pathway``.

It imports nothing from this repository: ``bench/.venv-pathway/bin/python bench/peers/pathway_app.py
--events FILE --size-ms S --hop-ms H --grace-ms G --behavior exactly_once --out DIR``.

The pipeline is the plain Pathway way to compute the hopping-window aggregate, all of it in the
Rust engine (no Python per row)::

    t = pw.io.fs.read(FILE, format="json", schema={user_id: int, amount: float, ts: int}, mode="static")
    t.windowby(t.ts, window=pw.temporal.sliding(hop=H, duration=S), instance=t.user_id,
               behavior=pw.temporal.exactly_once_behavior(shift=G))     # or no behavior
     .reduce(user_id, start=_pw_window_start, count, sum(amount), avg(amount))
    pw.io.csv.write(windows, DIR/windows.csv)
    pw.run()                                   # PATHWAY_THREADS=1: one worker

``exactly_once_behavior(shift=G)`` emits each window once, when the operator's time passes the
window's end plus ``G`` (the grace every engine gets); at the end of input every window left is
emitted. With ``--behavior none`` there is no lateness handling: the windows are computed over the
input as it arrives, which with one commit (``mode="static"`` reads the file in one commit) is
also each window once, final.

Output in ``--out``: ``windows.csv`` (Pathway's CSV: ``user_id,start,count,sum,mean,time,diff``)
and ``summary.json`` (``elapsed_s``: the ``pw.run()`` call, the graph built before it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", required=True, help="JSON-lines file of payloads")
    parser.add_argument("--size-ms", type=int, required=True)
    parser.add_argument("--hop-ms", type=int, required=True)
    parser.add_argument("--grace-ms", type=int, required=True)
    parser.add_argument("--behavior", choices=["exactly_once", "none"], default="exactly_once")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    import pathway as pw

    class Event(pw.Schema):
        user_id: int
        amount: float
        ts: int

    out = Path(args.out)
    events = pw.io.fs.read(args.events, format="json", schema=Event, mode="static", name="events")
    behavior = pw.temporal.exactly_once_behavior(shift=args.grace_ms) if args.behavior == "exactly_once" else None
    windows = events.windowby(
        events.ts,
        window=pw.temporal.sliding(hop=args.hop_ms, duration=args.size_ms),
        instance=events.user_id,
        behavior=behavior,
    ).reduce(
        user_id=pw.this._pw_instance,
        start=pw.this._pw_window_start,
        count=pw.reducers.count(),
        sum=pw.reducers.sum(pw.this.amount),
        mean=pw.reducers.avg(pw.this.amount),
    )
    pw.io.csv.write(windows, out / "windows.csv", name="windows")

    started = time.perf_counter()
    cpu_started = time.process_time()
    pw.run(monitoring_level=pw.MonitoringLevel.NONE)
    elapsed = time.perf_counter() - started
    summary = {
        "elapsed_s": elapsed,
        "cpu_s": time.process_time() - cpu_started,
        "pathway": pw.__version__,
        "threads": os.environ.get("PATHWAY_THREADS"),
        "behavior": args.behavior,
        "cpus": sorted(os.sched_getaffinity(0)),
    }
    (out / "summary.json").write_text(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
