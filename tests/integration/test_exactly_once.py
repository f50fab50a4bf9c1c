"""Exactly-once across crashes: an owner killed three times while 100,000 events stream.

The demo pipeline archives every decoded event to Parquet and keeps per-user running totals in
the cache. After three kills of the owner of partition 0 (at >= 20%, 40% and 60% of its share),
the served features equal a direct computation over the events, the archive holds every good
event exactly once, and every offset is accounted for: processed + dead-lettered = produced.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import pyarrow.parquet as pq
import ray

from fabric_ray.demo.payments import expected_features, generate_events
from fabric_ray.demo.run import produce
from fabric_ray.storage import open_location
from fabric_ray.streams.archive import archived_files
from fabric_ray.streams.assignment import owner_name

from .kafka_helpers import feature_mismatches, served_features

N_EVENTS = 100_000


def _owner(fabric, name: str) -> dict:
    (owner,) = [o for o in fabric.status()["stream"]["owners"] if o["name"] == name]
    return owner


def test_owner_killed_three_times_loses_and_duplicates_nothing(make_fabric):
    fabric = make_fabric(batch_size=1000, checkpoint_interval_s=0.5)
    cfg = fabric.config
    topic = cfg.stream.topic
    ev = generate_events(N_EVENTS, users=2000, seed=7, bad_fraction=0.001)
    share = N_EVENTS / cfg.kafka.topic_partitions  # partition 0's share, roughly (keys hash evenly)

    # Produce in the background, paced, so the kills land while events still stream in.
    producer = threading.Thread(
        target=produce,
        args=(fabric.bootstrap_servers, topic, ev.keys, ev.payloads),
        kwargs={"progress": False, "chunk": 2000, "before_chunk": lambda sent: time.sleep(0.05)},
        daemon=True,
    )
    producer.start()

    victim = owner_name(topic, (0,))
    kills = []
    for fraction in (0.2, 0.4, 0.6):
        deadline = time.monotonic() + 120
        while (done := _owner(fabric, victim)["processed"]) < fraction * share:
            assert time.monotonic() < deadline, f"{victim} stuck at {done} processed before kill at {fraction:.0%}"
            time.sleep(0.05)
        old = ray.get(ray.get_actor(victim, namespace=cfg.ray.namespace).stats.remote())["incarnation"]
        ray.kill(ray.get_actor(victim, namespace=cfg.ray.namespace), no_restart=False)
        kills.append(done)
        deadline = time.monotonic() + 120
        while True:  # wait for the new incarnation before the next kill
            try:
                stats = ray.get(ray.get_actor(victim, namespace=cfg.ray.namespace).stats.remote(), timeout=5)
                if stats["incarnation"] != old:
                    break
            except Exception:  # noqa: BLE001 - the actor is restarting
                pass
            assert time.monotonic() < deadline, "the killed owner did not come back"
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
