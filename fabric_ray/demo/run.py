"""The end-to-end demo: events into Kafka, through the partition actors, out of the HTTP endpoint, checked.

``fabric demo`` calls :func:`run_demo`; its last line of output is one JSON object.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, TextIO

import httpx
import numpy as np
from tqdm import tqdm

from fabric_ray.config import FabricConfig
from fabric_ray.demo.batch_features import write_demo_batch_features
from fabric_ray.demo.feature_check import check_feature_service, expected_batch_features
from fabric_ray.demo.payments import USER_PAYMENTS, expected_features, generate_events
from fabric_ray.fabric import Fabric
from fabric_ray.streams.kafka import make_producer

__all__ = ["DemoOptions", "check_features", "produce", "run_demo"]

FEATURES = [f"{USER_PAYMENTS.name}:{name}" for name in USER_PAYMENTS.feature_names]


@dataclass(frozen=True)
class DemoOptions:
    """Knobs of the demo run.

    Attributes:
        events: messages to produce.
        sample: users whose served features are checked.
        users: distinct users in the generated events.
        seed: generator seed.
        bad_fraction: share of deliberately invalid messages (dead-lettered).
        timeout_s: longest wait for the stream to consume everything.
        progress: show progress bars.
    """

    events: int = 100_000
    sample: int = 200
    users: int = 10_000
    seed: int = 7
    bad_fraction: float = 0.001
    timeout_s: float = 600
    progress: bool = True


def produce(
    bootstrap_servers: str,
    topic: str,
    keys: list[bytes],
    payloads: list[bytes],
    *,
    client: dict[str, str] | None = None,
    progress: bool = True,
    chunk: int = 5000,
    before_chunk: Callable[[int], None] | None = None,
) -> None:
    """Produce ``payloads`` keyed by ``keys`` and wait until the broker has all of them.

    Args:
        chunk: messages between progress updates (and ``before_chunk`` calls).
        before_chunk: called with the number sent so far before each chunk, e.g. to pace the
            producer against a consumer (benchmarks do).

    Raises:
        RuntimeError: some messages were not acknowledged.
    """
    producer = make_producer(bootstrap_servers, client)
    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    with tqdm(total=len(payloads), desc="produce", unit="ev", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(payloads), chunk):
            if before_chunk is not None:
                before_chunk(start)
            for key, value in zip(keys[start : start + chunk], payloads[start : start + chunk]):
                while True:
                    try:
                        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                        break
                    except BufferError:  # local queue full: let the broker catch up
                        producer.poll(0.05)
            producer.poll(0)
            bar.update(min(chunk, len(payloads) - start))
        left = producer.flush(60)
    if left or failures:
        raise RuntimeError(f"{left} messages unacknowledged, {len(failures)} failed: {failures[:3]}")


def check_features(url: str, expected: dict[int, dict[str, float]], users: list[int]) -> tuple[list[str], list[float]]:
    """Ask the HTTP endpoint for each user's features, one request per user.

    Returns:
        ``(mismatches, latencies_ms)``: a readable line per wrong value, and each request's latency.
    """
    mismatches: list[str] = []
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=10) as http:
        for uid in users:
            t0 = time.perf_counter()
            r = http.post("/get-online-features", json={"features": FEATURES, "entities": {"user_id": [uid]}})
            latencies.append((time.perf_counter() - t0) * 1000)
            if r.status_code != 200:
                mismatches.append(f"user {uid}: HTTP {r.status_code} {r.text[:200]}")
                continue
            body = r.json()
            got = {name: res["values"][0] for name, res in zip(body["metadata"]["feature_names"], body["results"])}
            for name, want in expected[uid].items():
                have = got.get(name)
                if have is None or not math.isclose(have, want, rel_tol=1e-9, abs_tol=1e-6):
                    mismatches.append(f"user {uid}: {name} served {have!r}, expected {want!r}")
    return mismatches, latencies


def run_demo(config: FabricConfig, options: DemoOptions = DemoOptions(), out: TextIO = sys.stdout) -> dict[str, Any]:
    """Start the fabric, stream the events, check the served features, stop; return the summary.

    The summary has at least ``events, processed, dead_lettered, features_checked, mismatches,
    throughput_eps, serve_p50_ms, serve_p99_ms``.
    """

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    say(f"generating {options.events:,} payment events for {options.users:,} users (seed {options.seed})")
    events = generate_events(options.events, users=options.users, seed=options.seed, bad_fraction=options.bad_fraction)
    expected = expected_features(events.table)
    t_start = time.perf_counter()
    say("starting the fabric (Ray, embedded broker, actors, HTTP endpoint)" if config.kafka.embedded else "starting the fabric")
    fabric = Fabric(config).start()
    try:
        t_up = time.perf_counter()
        say(f"fabric up in {t_up - t_start:.1f}s: broker {fabric.bootstrap_servers}, endpoint {config.serving.url}")
        produce(fabric.bootstrap_servers, config.stream.topic, events.keys, events.payloads, client=config.kafka.client, progress=options.progress)
        with tqdm(total=len(events), desc="consume", unit="ev", disable=not options.progress, file=sys.stderr) as bar:
            summary = fabric.wait_until_consumed(len(events), timeout_s=options.timeout_s, on_progress=lambda n: bar.update(n - bar.n))
        elapsed = time.perf_counter() - t_up
        say(f"stream: {summary['processed']:,} processed, {summary['dead_lettered']:,} dead-lettered in {elapsed:.2f}s")
        if summary.get("offset_gaps"):
            say(
                f"LOST {summary['offset_gaps']:,} events: the broker deleted them before they were read "
                "(the embedded broker keeps about 5 MiB per partition; see docs/broker.md)"
            )
        users = sorted(random.Random(options.seed).sample(sorted(expected), min(options.sample, len(expected))))
        mismatches, latencies = check_features(config.serving.url, expected, users)
        batch = _batch_features(fabric, options, say)
    finally:
        fabric.stop()
    for line in [*mismatches, *batch["mismatches"]][:20]:
        say(f"MISMATCH {line}")
    result = {
        "events": len(events),
        "processed": summary["processed"],
        "dead_lettered": summary["dead_lettered"],
        "dead_lettered_expected": events.bad,
        "lost_to_retention": summary.get("offset_gaps", 0),
        "features_checked": len(users) * len(USER_PAYMENTS.feature_names),
        "mismatches": len(mismatches),
        "throughput_eps": round(len(events) / elapsed, 1),
        "serve_p50_ms": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
        "serve_p99_ms": round(float(np.percentile(latencies, 99)), 3) if latencies else None,
        "startup_s": round(t_up - t_start, 2),
        "batch_entities_written": batch["entities_written"],
        "batch_values_checked": batch["checked"],
        "batch_mismatches": len(batch["mismatches"]),
        "materialize_s": batch["materialize_s"],
        "service_p50_ms": batch["p50_ms"],
    }
    ok = (
        result["mismatches"] == 0
        and result["batch_mismatches"] == 0
        and result["batch_values_checked"] > 0
        and result["processed"] + result["dead_lettered"] == result["events"]
    )
    say(
        f"{'OK' if ok else 'FAILED'}: {result['features_checked']} feature values of {len(users)} users checked, "
        f"{result['mismatches']} mismatches; {result['throughput_eps']:,.0f} events/s end to end; "
        f"HTTP p50 {result['serve_p50_ms']} ms, p99 {result['serve_p99_ms']} ms"
    )
    say(
        f"batch features: {result['batch_values_checked']} values of feature service fraud_model checked, "
        f"{result['batch_mismatches']} mismatches; materialized {result['batch_entities_written']:,} entities "
        f"in {result['materialize_s']}s; HTTP p50 {result['service_p50_ms']} ms"
    )
    result["ok"] = ok
    return result


def _batch_features(fabric: Fabric, options: DemoOptions, say: Callable[[str], None]) -> dict[str, Any]:
    """Write the demo's daily batch features, materialize them, and check ``fraud_model`` over HTTP."""
    config = fabric.config
    report = write_demo_batch_features(config, source="events", events=max(options.events // 5, 1000), users=options.users, seed=options.seed)
    say(f"batch features: {sum(report.rows.values()):,} daily rows of {', '.join(report.rows)} for days {', '.join(report.days)}")
    t0 = time.perf_counter()
    mat = fabric.materialize(incremental=False, progress=options.progress)
    materialize_s = round(time.perf_counter() - t0, 2)
    views = [v.view for v in mat.views]
    expected = expected_batch_features(config, fabric.catalog, views)
    rng = random.Random(options.seed)
    users = rng.sample(sorted(expected.get("user_daily", {})), min(options.sample // 2, len(expected.get("user_daily", {}))))
    merchants = sorted(expected.get("merchant_daily", {})) or [0]
    rows = [{"user_id": u, "merchant_id": rng.choice(merchants)} for u in sorted(users)]
    mismatches, latencies, checked = check_feature_service(config.serving.url, "fraud_model", fabric.catalog, expected, rows)
    return {
        "entities_written": sum(v.entities_written for v in mat.views),
        "checked": checked,
        "mismatches": mismatches,
        "materialize_s": materialize_s,
        "p50_ms": round(float(np.percentile(latencies, 50)), 3) if latencies else None,
    }
