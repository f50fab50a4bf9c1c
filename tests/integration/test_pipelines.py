"""User pipelines on the fabric: windows into a Kafka output topic, then a new version backfilled
from the first one's Parquet archive that takes over the live stream.
"""

from __future__ import annotations

import json
import time

import pyarrow as pa
import pytest

from fabric_ray.demo.payments import PAYMENTS_DECODER, generate_events
from fabric_ray.demo.run import produce
from fabric_ray.streams.pipeline import Pipeline
from fabric_ray.streams.windows import Tumbling

from .kafka_helpers import read_topic


def velocity(topic: str, name: str, window_ms: int) -> Pipeline:
    return (
        Pipeline(name)
        .source(topic)
        .decode(PAYMENTS_DECODER)
        .sink("archive", to="archive", time_column="event_ts")
        .key_by("user_id")
        .window(Tumbling(window_ms), {"n": ("count", None), "total": ("sum", "amount")}, time="event_ts", allowed_lateness_ms=2_000)
        .sink("out", to="kafka", topic=f"{topic}.{name}", key_column="user_id")
    )


def expected(tables: list[pa.Table], window_ms: int) -> dict[tuple[int, int], tuple[int, float]]:
    df = pa.concat_tables(tables).select(["user_id", "amount", "event_ts"]).to_pandas()
    df["start"] = df["event_ts"] // window_ms * window_ms
    g = df.groupby(["user_id", "start"])["amount"].agg(["count", "sum"])
    return {(int(u), int(s)): (int(r["count"]), float(r["sum"])) for (u, s), r in g.iterrows()}


def served(bootstrap: str, topic: str) -> dict[tuple[int, int], tuple[int, float]]:
    """The latest row per (user, window) of an output topic (emit="update": the last is the current value)."""
    out = {}
    for m in read_topic(bootstrap, topic):
        row = json.loads(m.value())
        out[(row["user_id"], row["window_start_ms"])] = (row["n"], row["total"])
    return out


def wait_consumed(fabric, name: str, produced: int, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status = fabric.pipeline_status(name)
        s = status["summary"]
        if s["processed"] + s["dead_lettered"] >= produced and s["caught_up"]:
            return status
        assert time.monotonic() < deadline, f"{name}: {s} after {timeout_s}s; errors {[o['last_error'] for o in status['owners'] if o['last_error']]}"
        time.sleep(0.2)


def same(got: dict, want: dict) -> list[str]:
    bad = [f"{k}: got {got.get(k)}, want {v}" for k, v in want.items() if k not in got or got[k][0] != v[0] or got[k][1] != pytest.approx(v[1])]
    bad += [f"{k}: unexpected {v}" for k, v in got.items() if k not in want]
    return bad


def test_a_windowed_pipeline_then_a_backfilled_version_taking_over(make_fabric):
    fabric = make_fabric(serve_http=False, checkpoint_interval_s=0.5)
    topic = fabric.config.stream.topic
    boot = fabric.bootstrap_servers
    first = generate_events(3000, users=50, seed=11, bad_fraction=0.01)
    produce(boot, topic, first.keys, first.payloads, progress=False)

    v1 = velocity(topic, "v1", 60_000)
    owners = fabric.run_pipeline(v1)
    assert len(owners) == fabric.config.kafka.topic_partitions  # one owner per partition by default
    status = wait_consumed(fabric, "v1", len(first))
    s = status["summary"]
    assert s["processed"] == first.table.num_rows and s["dead_lettered"] == first.bad
    assert sum(s["reasons"].values()) == first.bad
    assert same(served(boot, f"{topic}.v1"), expected([first.table], 60_000)) == []
    fabric.stop_pipeline("v1")  # drains: the last events are archived and checkpointed

    # v2: 5-minute windows; its state comes from v1's archive, then it takes over the live stream
    v2 = velocity(topic, "v2", 300_000)
    report = fabric.backfill(v2, from_pipeline="v1")
    assert report.rows == first.table.num_rows
    assert sum(p.next_offset for p in report.partitions.values()) == len(first)
    more = generate_events(2000, users=50, seed=12, bad_fraction=0.01, start_ms=1_795_660_000_000 + 1_800_000)
    produce(boot, topic, more.keys, more.payloads, progress=False)
    status = wait_consumed(fabric, "v2", first.table.num_rows + len(more))
    assert all(o["restarts"] == 0 for o in status["owners"])
    assert same(served(boot, f"{topic}.v2"), expected([first.table, more.table], 300_000)) == []


def test_fresh_replays_from_a_time_and_from_offsets(make_fabric):
    fabric = make_fabric(serve_http=False, checkpoint_interval_s=0.5)
    topic = fabric.config.stream.topic
    boot = fabric.bootstrap_servers
    ev = generate_events(1000, users=20, seed=13, bad_fraction=0)
    produce(boot, topic, ev.keys, ev.payloads, progress=False)
    p = velocity(topic, "replay", 60_000)
    fabric.run_pipeline(p)
    wait_consumed(fabric, "replay", len(ev))
    with pytest.raises(ValueError, match="is running"):
        fabric.run_pipeline(p, fresh=True)
    fabric.stop_pipeline("replay")

    # from a time after every message: fresh, empty state, nothing to replay
    fabric.run_pipeline(p, fresh=True, start_timestamp_ms=int(time.time() * 1000) + 3_600_000)
    deadline = time.monotonic() + 60
    while not (s := fabric.pipeline_status("replay")["summary"])["caught_up"]:
        assert time.monotonic() < deadline, s
        time.sleep(0.2)
    assert s["processed"] == 0 and s["restarts"] == 0
    fabric.stop_pipeline("replay")

    # from offset 0 of every partition: the whole log again, into fresh state
    fabric.run_pipeline(p, fresh=True, start_offsets={part: 0 for part in range(fabric.config.kafka.topic_partitions)})
    s = wait_consumed(fabric, "replay", len(ev))["summary"]
    assert s["processed"] == len(ev)

    # stopping the fabric removes the pipelines it still runs (a regression: they outlived it, holding CPUs)
    import ray

    ns = fabric.config.ray.namespace
    assert "supervisor:replay" in [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == ns]
    fabric.stop()
    left = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == ns]
    assert not [n for n in left if n.startswith(("supervisor:", "partition:"))], left
