"""Produce-to-readable latency: from the produce call to the value being readable from the cache shards.

A fabric runs the demo pipeline (embedded broker, 4 partition owners, 2 cache shards, local
Ray). A producer sends demo payments at a fixed rate (default 10,000 events/s); every
``--probe-every``-th event belongs to a user seen nowhere else (a probe). A prober reads the
outstanding probes' ``txn_count`` through the fabric's Python handle (the cache shards, not
HTTP) every few milliseconds; a probe's latency is the time from its produce call to the first
read that finds it. That covers the producer's batching (``linger.ms=2``), the broker, the
owner's poll, decoding, the archive buffer, the aggregate, the cache write and one read.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bench import exit_on_sigterm, free_port, percentile_ms

Say = Callable[[str], None]
PROBE_BASE = 10_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=int, default=10_000, help="events per second to produce (default 10,000)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured production time (default 20 s)")
    parser.add_argument("--warmup", type=float, default=3.0, help="untimed production first (default 3 s)")
    parser.add_argument("--probe-every", type=int, default=50, help="one probe event per this many events (default 50)")


_TEMPLATE = b'{"event_id": "evt-9-%08d", "user_id": %d, "merchant_id": %d, "amount": 1.0, "currency": "EUR", "event_ts": %d}'


def _payload(user: int, ts_ms: int, seq: int) -> bytes:
    """One demo payment, valid under the payments contract (event id pattern, merchant id >= 1).

    Formatted from a template rather than ``json.dumps``: the producer shares the two cores with
    the fabric it measures, so its own cost is kept small.

    Example:
        >>> json.loads(_payload(7, 1000, 3)) == {"event_id": "evt-9-00000003", "user_id": 7, "merchant_id": 4,
        ...                                      "amount": 1.0, "currency": "EUR", "event_ts": 1000}
        True
    """
    return _TEMPLATE % (seq, user, 1 + seq % 500, ts_ms)


STAGE_MEANING = {
    "broker": "produce to read, messages an idle owner was waiting for (linger, broker, fetch)",
    "queue": "produce to read, all messages (the broker plus any backlog at the owner)",
    "decode": "JSON to Arrow, per batch",
    "steps": "validate, key, aggregates, per batch",
    "end_to_end": "produce to every sink written (readable), per message",
    "read": "one prober read through the Python handle",
}


def _stages(owner_stages: dict[str, dict[str, Any]], read_ms: list[float]) -> dict[str, dict[str, Any]]:
    """The owners' stage figures plus the prober's read calls as stage ``read``."""
    out = {k: dict(v) for k, v in owner_stages.items()}
    if read_ms:
        p50, p99 = np.percentile(read_ms, [50, 99])
        out["read"] = {"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3), "max_ms": round(max(read_ms), 3), "samples": len(read_ms)}
    return out


def _stage_table(stages: dict[str, dict[str, Any]]) -> list[str]:
    from fabric_ray.streams.stage_latency import flow_order

    names = flow_order(stages)
    rows = [f"{'stage':<14}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}  what"]
    for name in names:
        f = stages[name]
        what = STAGE_MEANING.get(name, "delivering a batch to this sink" if name.startswith("sink:") else "")
        rows.append(f"{name:<14}{f['p50_ms']:>10.1f}{f['p99_ms']:>10.1f}{f['max_ms']:>10.1f}  {what}")
    return rows


def run(args: argparse.Namespace, say: Say) -> dict[str, Any]:
    from fabric_ray.loopback import keep_on_loopback

    keep_on_loopback()
    from fabric_ray import Fabric, load_config
    from fabric_ray.streams.kafka import make_producer

    work = Path(tempfile.mkdtemp(prefix="bench-latency-"))
    config = load_config(None, home=str(work / "fabric"), ray={"namespace": "bench-latency"}, serving={"port": free_port()})
    fabric = Fabric(config)
    say("starting a fabric (local Ray, embedded broker)")
    fabric.start(serve_http=False)
    exit_on_sigterm()
    try:
        topic = config.stream.topic
        sent_at: dict[int, float] = {}
        seen_at: dict[int, float] = {}
        read_ms: list[float] = []
        stop = threading.Event()
        counts = {"sent": 0, "measured_from": 0.0, "measured_sent": 0}

        def produce() -> None:
            producer = make_producer(fabric.bootstrap_servers, config.kafka.client, **{"linger.ms": 2, "enable.idempotence": False})
            rng = np.random.default_rng(0)
            tick_s = 0.005
            per_tick = max(1, round(args.rate * tick_s))
            start = time.perf_counter()
            total_s = args.warmup + args.seconds
            seq = probe = 0
            while not stop.is_set():
                elapsed = time.perf_counter() - start
                if elapsed >= total_s:
                    break
                due = int(elapsed / tick_s) * per_tick
                users = rng.integers(0, 10_000, size=max(0, due - seq)).tolist()
                now_ms = int(time.time() * 1000)
                while seq < due:
                    if seq % args.probe_every == 0 and elapsed >= args.warmup:
                        user = PROBE_BASE + probe
                        probe += 1
                        producer.produce(topic, key=str(user).encode(), value=_payload(user, now_ms, seq))
                        sent_at[user] = time.perf_counter()
                    else:
                        user = users[len(users) - (due - seq)]
                        producer.produce(topic, key=str(user).encode(), value=_payload(user, now_ms, seq))
                    seq += 1
                    if elapsed >= args.warmup:
                        if not counts["measured_from"]:
                            counts["measured_from"] = time.perf_counter()
                        counts["measured_sent"] += 1
                producer.poll(0)
                time.sleep(max(0.0, tick_s - (time.perf_counter() - start - elapsed)))
            counts["sent"] = seq
            counts["measured_s"] = time.perf_counter() - counts["measured_from"] if counts["measured_from"] else 0.0
            producer.flush(30)

        thread = threading.Thread(target=produce, name="producer", daemon=True)
        say(f"producing {args.rate:,} events/s for {args.warmup:.0f} s warm-up + {args.seconds:.0f} s measured")
        thread.start()
        give_up = float("inf")
        while time.perf_counter() < give_up:
            if not thread.is_alive() and give_up == float("inf"):
                give_up = time.perf_counter() + 30  # the last probes get 30 s to show up
            outstanding = [u for u in list(sent_at) if u not in seen_at][:200]
            if not outstanding:
                if not thread.is_alive():
                    break
                time.sleep(0.001)
                continue
            asked = time.perf_counter()
            body = fabric.get_online_features(["user_payments:txn_count"], {"user_id": outstanding})
            now = time.perf_counter()
            read_ms.append((now - asked) * 1000)
            for user, status in zip(outstanding, body["results"][1]["statuses"]):
                if status == "PRESENT":
                    seen_at[user] = now
            time.sleep(0.002)
        stop.set()
        thread.join(10)
        lat = [seen_at[u] - sent_at[u] for u in sent_at if u in seen_at]
        if not lat:
            status = fabric.status()["stream"]["summary"]
            raise RuntimeError(f"none of {len(sent_at)} probes became readable; stream: {status}")
        rate = counts["measured_sent"] / counts["measured_s"] if counts.get("measured_s") else 0.0
        p50, p99 = percentile_ms(lat, 50), percentile_ms(lat, 99)
        stages = _stages(fabric.status()["stream"]["summary"].get("stages", {}), read_ms)
        say(f"{len(lat)} of {len(sent_at)} probes seen; produce rate {rate:,.0f} events/s; p50 {p50} ms, p99 {p99} ms, max {max(lat) * 1000:.1f} ms")
        say("per stage (the slowest owner's figures; the last 4,096 messages or batches of each owner):")
        for line in _stage_table(stages):
            say("  " + line)
        return {
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": round(max(lat) * 1000, 3) if lat else None,
            "rate_eps": round(rate),
            "probes": len(sent_at),
            "probes_seen": len(lat),
            "target_p99_ms": 100,
            "stages": stages,
        }
    finally:
        fabric.stop()


# `python -m bench all --quick` (bench/suite.py): this benchmark's short mode and the figures it compares
QUICK_ARGS = ["--seconds", "10", "--warmup", "2"]
KEY_FIGURES = {"p50_ms": "lower", "p99_ms": "lower"}
