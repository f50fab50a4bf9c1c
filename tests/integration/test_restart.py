"""A partition actor killed mid-stream is restarted by Ray and loses no events."""

from __future__ import annotations

import time

import ray

from fabric_ray.demo.payments import expected_features, generate_events
from fabric_ray.demo.run import produce
from fabric_ray.streams.assignment import owner_name

from .kafka_helpers import committed_offsets, feature_mismatches, high_watermarks, served_features


def _owner(fabric, name: str) -> dict:
    (owner,) = [o for o in fabric.status()["stream"]["owners"] if o["name"] == name]
    return owner


def test_killed_partition_actor_resumes_without_losing_events(make_fabric):
    fabric = make_fabric(batch_size=100)
    cfg = fabric.config
    topic = cfg.stream.topic
    ev = generate_events(4000, users=300, seed=21, bad_fraction=0.005)
    half = len(ev) // 2
    produce(fabric.bootstrap_servers, topic, ev.keys[:half], ev.payloads[:half], progress=False)

    victim = owner_name(topic, (0,))
    deadline = time.monotonic() + 60
    while _owner(fabric, victim)["processed"] == 0:
        assert time.monotonic() < deadline, f"{victim} made no progress"
        time.sleep(0.1)
    actor = ray.get_actor(victim, namespace=cfg.ray.namespace)
    ray.kill(actor, no_restart=False)

    produce(fabric.bootstrap_servers, topic, ev.keys[half:], ev.payloads[half:], progress=False)
    summary = fabric.wait_until_consumed(len(ev), timeout_s=120)
    assert summary["processed"] + summary["dead_lettered"] == len(ev)
    assert summary["processed"] == ev.table.num_rows
    assert summary["dead_lettered"] == ev.bad

    owner = _owner(fabric, victim)
    assert owner["restarts"] >= 1
    assert owner["state"] == "running"
    assert all(o["restarts"] == 0 for o in fabric.status()["stream"]["owners"] if o["name"] != victim)

    expected = expected_features(ev.table)
    served = served_features(fabric, sorted(expected), chunk=100)
    assert feature_mismatches(expected, served) == []

    # The consumer group's committed offsets catch up with the log (commits are asynchronous).
    highs = high_watermarks(fabric.bootstrap_servers, topic)
    assert sum(highs.values()) == len(ev)
    deadline = time.monotonic() + 30
    while (committed := committed_offsets(fabric.bootstrap_servers, cfg.stream.consumer_group, topic)) != highs:
        if time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert committed == highs
