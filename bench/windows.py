"""Benchmark ``windows``: events per second of the windowed aggregation operator on one core.

For each window type, a ``WindowedAggregator`` keyed by 10,000 users with count + sum + mean of
an amount folds pre-generated Arrow batches of 10,000 events whose event times advance by
``--gap-ms`` on average and arrive up to ``--disorder-ms`` out of order (allowed lateness
``--lateness-ms``). The clock covers ``update()`` including the emitted rows (an Arrow table), not
the generation of the batches. The first ``--warmup`` batches are not timed. Each window type
runs ``--rounds`` times on a fresh operator; the figure is the median round. The process pins
itself to one CPU and sets ``pa.set_cpu_count(1)``, so the figure is per core.

Windows: sliding 1 h / 1 min tiles (the headline ``events_per_s``), tumbling 1 min, hopping
1 h / 10 min hop, session with a 1 min gap.

``python -m bench.windows [--events N] ...``: the last line is ``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Callable

import numpy as np
import pyarrow as pa

from fabric_ray.streams.windows import Hopping, Session, Sliding, Tumbling, WindowedAggregator

Say = Callable[[str], None]
START_MS = 1_795_660_000_000
WINDOWS = {
    "sliding": Sliding(3_600_000, 60_000),
    "tumbling": Tumbling(60_000),
    "hopping": Hopping(3_600_000, 600_000),
    "session": Session(60_000),
}
AGGS = {"n": ("count", None), "total": ("sum", "amount"), "avg": ("mean", "amount")}


# `python -m bench all --quick` (bench/suite.py): this benchmark's short mode and the figures it compares
QUICK_ARGS = ["--rounds", "3"]  # the default 2,000,000 events, about 10 s: with 1,000,000, two runs of the same code differed by 20 %
KEY_FIGURES = {f"events_per_s_{name}": "higher" for name in ("sliding", "tumbling", "hopping", "session")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m bench.windows``."""
    parser.add_argument("--events", type=int, default=2_000_000, help="timed events per window type (default 2000000)")
    parser.add_argument("--keys", type=int, default=10_000, help="distinct keys (default 10000)")
    parser.add_argument("--batch", type=int, default=10_000, help="events per batch (default 10000)")
    parser.add_argument("--gap-ms", type=float, default=1.0, help="mean event-time step between events (default 1.0)")
    parser.add_argument("--disorder-ms", type=int, default=500, help="events arrive up to this much out of order (default 500)")
    parser.add_argument("--lateness-ms", type=int, default=1_000, help="allowed lateness (default 1000)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed batches first (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per window type; the median counts (default 3)")
    parser.add_argument("--emit", choices=("update", "close"), default="update", help="emit mode (default update)")
    parser.add_argument(
        "--windows", default=",".join(WINDOWS), help=f"comma-separated window types (default {','.join(WINDOWS)})"
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin the process to one CPU")


def make_batches(n_batches: int, args: argparse.Namespace, seed: int = 0) -> list[pa.Table]:
    """In-order-ish events: time steps drawn from an exponential law, then jittered backwards."""
    rng = np.random.default_rng(seed)
    out, t = [], START_MS
    for _ in range(n_batches):
        steps = np.cumsum(rng.exponential(args.gap_ms, args.batch))
        ts = (t + steps).astype(np.int64) - rng.integers(0, args.disorder_ms + 1, args.batch)
        t = int(t + steps[-1])
        out.append(
            pa.table(
                {
                    "user": rng.integers(0, args.keys, args.batch),
                    "ts": ts,
                    "amount": np.round(rng.random(args.batch) * 100, 2),
                }
            )
        )
    return out


def run(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    """Time every window type; return the figures."""
    names = [w.strip() for w in args.windows.split(",") if w.strip()]
    unknown = [w for w in names if w not in WINDOWS]
    if unknown or args.events < args.batch or args.batch < 1 or args.keys < 1 or args.rounds < 1:
        raise SystemExit(
            f"need --windows from {', '.join(WINDOWS)}, --events >= --batch >= 1, --keys >= 1, --rounds >= 1; "
            f"got {args.windows!r}, {args.events}, {args.batch}, {args.keys}, {args.rounds}"
        )
    if not args.no_pin and hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        say(f"pinned to CPU {cpu}")
    pa.set_cpu_count(1)
    timed = args.events // args.batch
    say(f"generating {args.warmup + timed} batches of {args.batch} events over {args.keys} keys")
    batches = make_batches(args.warmup + timed, args)
    result: dict[str, Any] = {"keys": args.keys, "batch": args.batch, "emit": args.emit, "timed_events": timed * args.batch}
    for name in names:
        rates = []
        for _ in range(args.rounds):
            op = WindowedAggregator("user", "ts", WINDOWS[name], AGGS, allowed_lateness_ms=args.lateness_ms, emit=args.emit)
            for b in batches[: args.warmup]:
                op.update(b)
            rows = late = 0
            started = time.perf_counter()
            for b in batches[args.warmup :]:
                out = op.update(b)
                rows += out.rows.num_rows
                late += len(out.late_rows)
            rates.append(timed * args.batch / (time.perf_counter() - started))
        rate = float(np.median(rates))
        say(
            f"{name:9s} {rate:>14,.0f} events/s (rounds: {', '.join(f'{r / 1e6:.1f}M' for r in rates)})  "
            f"{rows / timed:>7,.0f} rows/batch  late {late}  state {op.state_bytes / 2**20:.1f} MiB"
        )
        result[f"events_per_s_{name}"] = round(rate)
        result[f"rows_per_batch_{name}"] = round(rows / timed)
        result[f"state_mib_{name}"] = round(op.state_bytes / 2**20, 1)
    result["events_per_s"] = result.get("events_per_s_sliding", result[f"events_per_s_{names[0]}"])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.windows", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        print(f"[windows {time.strftime('%H:%M:%S')}] {line}", flush=True)

    result = run(args, say)
    print(" ".join(f"{k}={v}" for k, v in result.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
