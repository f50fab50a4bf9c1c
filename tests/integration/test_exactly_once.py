"""Exactly-once across crashes: an owner killed three times while 100,000 events stream.

The demo pipeline archives every decoded event to Parquet and keeps per-user running totals in
the cache. A second pipeline on the same topic writes two Kafka output topics: its large payments
row by row, and per-user tumbling-window totals (emitted when a window closes). After three kills
of the owners of partition 0 (at >= 20%, 40% and 60% of its share), the served features equal a
direct computation over the events, the archive holds every good event exactly once, every offset
is accounted for (processed + dead-lettered = produced), and, read back with a consumer, the
output topics hold each expected row exactly once and each dead-letter topic each bad event
exactly once (the output guard, :mod:`fabric_ray.streams.output_guard`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray

from fabric_ray.demo.payments import PAYMENTS_DECODER, expected_features, generate_events, payments_product
from fabric_ray.demo.run import produce
from fabric_ray.storage import open_location
from fabric_ray.streams.archive import archived_files
from fabric_ray.streams.assignment import owner_name
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.windows import Tumbling

from .kafka_helpers import feature_mismatches, read_topic, served_features

N_EVENTS = 100_000
LARGE = 50.0  # the payments written row by row: about 40% of them
WINDOW_MS = 60_000
LATENESS_MS = 5_000  # events are at most about 1 s out of order: none is late


def _owner(fabric, name: str) -> dict:
    (owner,) = [o for o in fabric.status()["stream"]["owners"] if o["name"] == name]
    return owner


def _pipeline_owner(fabric, pipeline: str, name: str) -> dict:
    (owner,) = [o for o in fabric.pipeline_status(pipeline)["owners"] if o["name"] == name]
    return owner


def outputs_pipeline(topic: str) -> Pipeline:
    """Large payments, row by row, and per-user one-minute totals, into Kafka topics."""
    return (
        Pipeline(f"{topic}_out", dead_letter_topic=f"{topic}_out.dlq", consumer_group=f"{topic}_out")
        .source(topic)
        .decode(PAYMENTS_DECODER)
        .validate(payments_product(), name="contract")
        .filter(lambda t: pc.greater(t["amount"], LARGE))
        .map(lambda t: t.select(["event_id", "user_id", "amount", "event_ts"]),
             output_schema=pa.schema([("event_id", pa.string()), ("user_id", pa.int64()), ("amount", pa.float64()), ("event_ts", pa.int64())]))
        .sink("large", to="kafka", topic=f"{topic}_large", key_column="user_id")
        .key_by("user_id")
        .window(Tumbling(WINDOW_MS), {"n": ("count", None), "total": ("sum", "amount")}, time="event_ts",
                allowed_lateness_ms=LATENESS_MS, emit="close")
        .sink("minutes", to="kafka", topic=f"{topic}_minutes", key_column="user_id")
    )


def _values(bootstrap: str, topic: str) -> list[tuple[dict, dict]]:
    """Every message of ``topic``: its JSON value and its headers."""
    return [(json.loads(m.value()), {k: v.decode() for k, v in m.headers() or []}) for m in read_topic(bootstrap, topic)]


def _letter_origins(bootstrap: str, topic: str, pipeline: str) -> Counter:
    """``(partition, offset)`` of each dead letter of ``pipeline``, counted."""
    headers = [{k: v.decode() for k, v in m.headers() or []} for m in read_topic(bootstrap, topic)]
    return Counter((h["fabric.source.partition"], h["fabric.source.offset"]) for h in headers if h.get("fabric.pipeline") == pipeline)


def test_owner_killed_three_times_loses_and_duplicates_nothing(make_fabric):
    # Checkpoints far enough apart that a kill lands with outputs produced after the last one.
    fabric = make_fabric(batch_size=1000, checkpoint_interval_s=2.0)
    cfg = fabric.config
    topic = cfg.stream.topic
    ev = generate_events(N_EVENTS, users=2000, seed=7, bad_fraction=0.005)
    share = N_EVENTS / cfg.kafka.topic_partitions  # partition 0's share, roughly (keys hash evenly)
    outputs = outputs_pipeline(topic)
    fabric.run_pipeline(outputs)

    # Produce in the background, paced (about 20 s in all), so the kills land while events still stream in.
    producer = threading.Thread(
        target=produce,
        args=(fabric.bootstrap_servers, topic, ev.keys, ev.payloads),
        kwargs={"progress": False, "chunk": 2000, "before_chunk": lambda sent: time.sleep(0.4)},
        daemon=True,
    )
    producer.start()

    victim = owner_name(topic, (0,))
    out_victim = owner_name(outputs.name, (0,))
    progress = {victim: lambda: _owner(fabric, victim)["processed"], out_victim: lambda: _pipeline_owner(fabric, outputs.name, out_victim)["processed"]}
    kills, out_kills = [], []
    for fraction in (0.2, 0.4, 0.6):
        for name, done_list in ((victim, kills), (out_victim, out_kills)):
            deadline = time.monotonic() + 120
            while (done := progress[name]()) < fraction * share:
                assert time.monotonic() < deadline, f"{name} stuck at {done} processed before kill at {fraction:.0%}"
                time.sleep(0.05)
            old = ray.get(ray.get_actor(name, namespace=cfg.ray.namespace).stats.remote())["incarnation"]
            ray.kill(ray.get_actor(name, namespace=cfg.ray.namespace), no_restart=False)
            done_list.append(done)
            deadline = time.monotonic() + 120
            while True:  # wait for the new incarnation before the next kill
                try:
                    stats = ray.get(ray.get_actor(name, namespace=cfg.ray.namespace).stats.remote(), timeout=5)
                    if stats["incarnation"] != old:
                        print(f"killed {name} at {done} processed; it restarted from offsets {stats['restored_from']}")
                        break
                except Exception:  # noqa: BLE001 - the actor is restarting
                    pass
                assert time.monotonic() < deadline, f"the killed owner {name} did not come back"
                time.sleep(0.1)
    producer.join(300)
    assert not producer.is_alive()

    summary = fabric.wait_until_consumed(len(ev), timeout_s=300)
    # Every offset accounted for, exactly: the counters are checkpointed with the state.
    assert summary["processed"] + summary["dead_lettered"] == len(ev), summary
    assert summary["processed"] == ev.table.num_rows
    assert summary["dead_lettered"] == ev.bad
    assert summary["offset_gaps"] == 0
    assert _owner(fabric, victim)["restarts"] >= 1

    expected = expected_features(ev.table)
    served = served_features(fabric, sorted(expected), chunk=500)
    assert feature_mismatches(expected, served) == []

    # Drain: owners checkpoint and flush the archive; then every good event is archived once.
    fabric.checkpoint_pipeline(topic)
    archive = open_location(cfg.storage_root, cfg.storage).child("archive", topic, topic)  # <pipeline>/<topic>
    ids = Counter()
    for path, *_ in archived_files(archive):
        ids.update(pq.read_table(archive.fs.open(path, "rb"), columns=["event_id"])["event_id"].to_pylist())
    duplicated = [i for i, n in ids.items() if n > 1]
    assert duplicated == [], f"{len(duplicated)} events archived twice, e.g. {duplicated[:3]}"
    assert set(ids) == set(ev.table["event_id"].to_pylist())
    assert kills[0] >= 0.2 * share and kills[2] >= 0.6 * share

    # The Kafka outputs and dead letters, read back: each exactly once (the output guard).
    deadline = time.monotonic() + 300
    while not ((s := fabric.pipeline_status(outputs.name)["summary"])["caught_up"] and s["processed"] + s["dead_lettered"] == len(ev)):
        assert time.monotonic() < deadline, f"{outputs.name} did not consume everything: {s}"
        time.sleep(0.2)
    assert s["processed"] == ev.table.num_rows and s["dead_lettered"] == ev.bad
    assert _pipeline_owner(fabric, outputs.name, out_victim)["restarts"] >= 1 and out_kills[2] >= 0.6 * share
    bootstrap = fabric.bootstrap_servers
    large = _values(bootstrap, f"{topic}_large")
    assert all(h["fabric.pipeline"] == outputs.name and "fabric.source.offset" in h for _, h in large)
    got = Counter(v["event_id"] for v, _ in large)
    want = set(ev.table.filter(pc.greater(ev.table["amount"], LARGE))["event_id"].to_pylist())
    duplicated = [i for i, n in got.items() if n > 1]
    assert duplicated == [], f"{len(duplicated)} large payments produced twice, e.g. {duplicated[:3]}"
    assert set(got) == want

    minutes = [v for v, _ in _values(bootstrap, f"{topic}_minutes")]
    per_window = Counter((v["user_id"], v["window_start_ms"]) for v in minutes)
    assert [k for k, n in per_window.items() if n > 1] == [], "window results produced twice"
    df = ev.table.filter(pc.greater(ev.table["amount"], LARGE)).select(["user_id", "amount", "event_ts"]).to_pandas()
    df["window_start_ms"] = df["event_ts"] // WINDOW_MS * WINDOW_MS
    ref = df.groupby(["user_id", "window_start_ms"])["amount"].agg(["count", "sum"])
    for v in minutes:
        count, total = ref.loc[(v["user_id"], v["window_start_ms"])]
        assert v["n"] == count and abs(v["total"] - total) < 1e-6, (v, count, total)
    # Every window well before the end has closed (each partition's watermark is near the end).
    closed_before = int(df["event_ts"].max()) - LATENESS_MS - 30_000 - WINDOW_MS
    assert {k for k in ref.index if k[1] < closed_before} <= set(per_window)

    letters = _letter_origins(bootstrap, outputs.dead_letters, outputs.name)
    assert sum(letters.values()) == len(letters) == ev.bad, f"{sum(letters.values())} letters for {ev.bad} bad events"
    demo_letters = _letter_origins(bootstrap, cfg.stream.dead_letter_topic, topic)
    assert sum(demo_letters.values()) == len(demo_letters) == ev.bad
    summary = fabric.pipeline_status(outputs.name)["summary"]
    print(f"suppressed after the kills: {summary['outputs_suppressed']} outputs, {summary['letters_suppressed']} letters")
    assert summary["outputs_suppressed"] > 0, summary  # the kills did land mid-stream
