"""Benchmarks of fabric_ray against the tools it replaces, run side by side on this machine.

``python -m bench NAME [options]`` runs one benchmark; ``python -m bench --help`` lists them.
Each prints readable progress lines and, as its last line, one JSON object::

    {"bench": "spine", ...figures..., "ratio_vs_<peer>_<what>": 1.7}

Every ratio is oriented so that a value above 1 means fabric_ray is ahead (peer time over our
time, or our throughput over the peer's). Peers run in the same invocation, in alternating
rounds, so a noisy machine hits both alike. What each figure means: ``docs/bench.md``.

A benchmark is a module of this package with ``add_arguments(parser)`` and
``run(args, say) -> dict``; register it in :data:`BENCHMARKS`.
"""

from __future__ import annotations

import signal

import numpy as np

from fabric_ray.loopback import free_port  # noqa: F401  (re-exported for the benchmarks)

__all__ = ["BENCHMARKS", "exit_on_sigterm", "free_port", "percentile_ms"]

BENCHMARKS = {
    "materialize": "offline to online: 10M rows over 1M entities into Feast's sqlite online store, on Ray Data, against `feast materialize`",
    "etl": "10M rows through read, transform, quality gate and partitioned write on Ray Data, against pandas in one process",
    "pit_join": "point-in-time training set, 100k entity rows against 1M feature rows, on Ray out of core, against Feast's get_historical_features",
    "serving": "online feature HTTP latency (1 and 100 entities) and requests/s at 16 clients, against `feast serve`",
    "spine": "stream throughput against a hand-written Kafka consumer, and HTTP feature latency against `feast serve`",
    "stream_latency": "produce-to-readable latency through the broker to the cache shards at a fixed rate",
    "streams": "decode + keyed window aggregation, events per second per core, against Bytewax, Quix Streams, Pathway and Apache Flink",
    "windows": "windowed aggregation per key (sliding/tumbling/hopping/session), events per second on one core",
}


def percentile_ms(latencies_s: list[float], q: float) -> float:
    """The ``q``-th percentile of ``latencies_s`` (seconds), in milliseconds, rounded to µs.

    Example:
        >>> percentile_ms([0.001, 0.002, 0.003], 50)
        2.0
    """
    return round(float(np.percentile(latencies_s, q)) * 1000, 3)


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into ``SystemExit`` so that cleanup (Ray, servers, consumers) runs.

    Call it again after ``ray.init()``: Ray's driver installs its own SIGTERM handler, which
    aborts the process in the middle of the cleanup.
    """
    signal.signal(signal.SIGTERM, _raise_exit)
