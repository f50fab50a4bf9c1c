"""The pipeline processor running the demo pipeline over the in-memory source and collecting sinks."""

from __future__ import annotations

import itertools
import json
import math
from typing import Mapping

import pyarrow as pa
import pytest

from fabric_ray.demo.payments import FEATURE_NAMES, expected_features, generate_events, payments_pipeline
from fabric_ray.streams.aggregates import KeyedWindowAggregate, RunningTotals
from fabric_ray.streams.processor import PipelineProcessor, ProcessorStats
from fabric_ray.streams.records import DeadLetter, RawBatch
from fabric_ray.testing import CollectingSink, MemorySource, run_local


def processor(src, features, dlq, **kw):
    """The demo pipeline over ``src``; checkpoint (and so commit) after every batch."""
    sinks = {"features": features, "archive": CollectingSink()}
    kw.setdefault("checkpoint_interval_s", 0)
    return PipelineProcessor(src, payments_pipeline(src.topic), sinks, dlq, **kw)


_ids = itertools.count()


def pay(user: int, amount: float, ts: int) -> bytes:
    """A payment that passes the demo product's contract (unique ``evt-`` id, positive amount)."""
    return json.dumps({"event_id": f"evt-1-{next(_ids):08d}", "user_id": user, "amount": amount, "event_ts": ts}).encode()


def make(partitions: Mapping[int, list], *, batch_size: int = 1000, topic: str = "payments"):
    src = MemorySource(topic, partitions)
    out, dlq = CollectingSink(), CollectingSink()
    proc = processor(src, out, dlq, batch_size=batch_size, poll_timeout_s=0)
    return proc, src, out, dlq


# -- one batch -----------------------------------------------------------------------------------
def test_next_batch_emits_features_of_touched_keys():
    proc, src, out, dlq = make({0: [pay(1, 2.0, 5), pay(1, 3.0, 6), pay(2, 10.0, 7)]})
    assert proc.next_batch() == 3
    assert dlq.items == []
    assert out.rows() == [
        {"user_id": 1, "txn_count": 2, "amount_sum": 5.0, "txn_count_1m": 2, "amount_sum_1m": 5.0, "event_ts_ms": 6},
        {"user_id": 2, "txn_count": 1, "amount_sum": 10.0, "txn_count_1m": 1, "amount_sum_1m": 10.0, "event_ts_ms": 7},
    ]
    assert isinstance(out.items[0], pa.Table)


def test_next_batch_returns_zero_when_nothing_arrives():
    proc, src, out, dlq = make({0: []})
    assert proc.next_batch() == 0
    assert out.items == [] and dlq.items == [] and src.committed == {}
    assert proc.stats.batches == 0


def test_dead_letters_carry_origin_reason_and_original_value():
    bad_json = b'{"event_id": "x", "user_id": '
    bad_type = json.dumps({"event_id": "y", "user_id": "one", "amount": 1.0, "event_ts": 1}).encode()
    missing = json.dumps({"event_id": "z", "amount": 1.0, "event_ts": 1}).encode()
    proc, src, out, dlq = make({0: [pay(1, 1.0, 1), bad_json], 3: [bad_type, pay(2, 1.0, 1), missing, None]}, topic="pay-t")
    assert proc.next_batch() == 6
    letters = sorted(dlq.items, key=lambda d: (d.partition, d.offset))
    assert all(isinstance(d, DeadLetter) for d in letters)
    assert [(d.topic, d.partition, d.offset) for d in letters] == [("pay-t", 0, 1), ("pay-t", 3, 0), ("pay-t", 3, 2), ("pay-t", 3, 3)]
    assert [d.value for d in letters] == [bad_json, bad_type, missing, None]
    reasons = [d.reason for d in letters]
    assert reasons[0].startswith("not valid JSON")
    assert reasons[1] == "field 'user_id': expected int64, got 'one'"
    assert reasons[2] == "missing required field 'user_id'"
    assert reasons[3] == "empty payload (tombstone)"
    assert sorted(r["user_id"] for r in out.rows()) == [1, 2]
    assert proc.stats.dead_lettered == 4 and proc.stats.processed == 2 and proc.stats.read == 6


class KeyedSource(MemorySource):
    """A memory source whose messages carry keys, like Kafka's."""

    def read_batch(self, max_messages: int, timeout_s: float) -> RawBatch:
        b = super().read_batch(max_messages, timeout_s)
        keys = [f"k{p}-{o}".encode() for p, o in zip(b.partitions.tolist(), b.offsets.tolist())]
        return RawBatch(b.topic, b.partitions, b.offsets, keys, b.values)


def test_dead_letters_keep_the_message_key():
    src = KeyedSource("t", {2: [pay(1, 1.0, 1), b"oops"]})
    dlq = CollectingSink()
    processor(src, CollectingSink(), dlq).next_batch()
    assert [(d.key, d.value, d.offset) for d in dlq.items] == [(b"k2-1", b"oops", 1)]


def test_a_batch_of_only_bad_messages_writes_no_features_but_commits():
    proc, src, out, dlq = make({0: [b"x", b"y"]})
    assert proc.next_batch() == 2
    assert out.items == []
    assert len(dlq.items) == 2
    assert src.committed == {0: 2}
    assert proc.stats.next_offsets == {0: 2}


def test_no_dead_letter_call_when_all_messages_are_good():
    class Refusing:
        def send(self, letters):
            raise AssertionError("send called with nothing to send")

    src = MemorySource("t", {0: [pay(1, 1.0, 1)]})
    proc = processor(src, CollectingSink(), Refusing())
    assert proc.next_batch() == 1


# -- offsets, commits, lag and stats -------------------------------------------------------------
def test_commits_and_next_offsets_follow_the_batches():
    proc, src, out, dlq = make({0: [pay(1, 1.0, i) for i in range(5)], 1: [pay(2, 1.0, i) for i in range(3)]}, batch_size=4)
    assert proc.next_batch() == 4  # partition 0 first: offsets 0-3
    assert src.committed == {0: 4}
    assert proc.stats.next_offsets == {0: 4}
    assert proc.next_batch() == 4  # offset 4 of partition 0, offsets 0-2 of partition 1
    assert src.committed == {0: 5, 1: 3}
    assert proc.stats.next_offsets == {0: 5, 1: 3}
    assert proc.next_batch() == 0
    assert src.committed == {0: 5, 1: 3}


def test_lag_is_high_watermark_minus_next_offset():
    proc, src, out, dlq = make({0: [pay(1, 1.0, i) for i in range(5)], 1: [pay(2, 1.0, i) for i in range(3)]}, batch_size=4)
    assert proc.lag() == {0: 5, 1: 3}
    proc.next_batch()
    assert proc.lag() == {0: 1, 1: 3}
    proc.next_batch()
    assert proc.lag() == {0: 0, 1: 0}
    src.append(1, [pay(2, 1.0, 9), b"bad"])
    assert proc.lag() == {0: 0, 1: 2}
    proc.next_batch()
    assert proc.lag() == {0: 0, 1: 0}


def test_stats_count_reads_processed_dead_and_batches():
    proc, src, out, dlq = make({0: [m for _ in range(4) for m in (pay(1, 1.0, 1), b"bad", pay(2, 1.0, 2))]}, batch_size=5)
    while proc.next_batch():
        pass
    s = proc.stats
    assert isinstance(s, ProcessorStats)
    assert (s.read, s.processed, s.dead_lettered, s.batches) == (12, 8, 4, 3)
    assert s.read == s.processed + s.dead_lettered
    assert s.next_offsets == {0: 12}
    assert s.busy_s > 0
    assert s.started_at > 0


def test_state_accumulates_across_batches():
    proc, src, out, dlq = make({0: [pay(7, 1.5, i * 1000) for i in range(10)]}, batch_size=3)
    while proc.next_batch():
        pass
    latest = out.latest("user_id")[7]
    assert latest["txn_count"] == 10 and latest["amount_sum"] == 15.0
    assert latest["event_ts_ms"] == 9000
    assert len(out.items) == 4  # one write per batch


def test_state_is_per_partition_and_snapshots_as_arrow():
    proc, src, out, dlq = make({0: [pay(1, 1.0, 1)], 1: [pay(2, 2.0, 2), b"x"]})
    proc.next_batch()
    assert proc.stats.next_offsets == {0: 1, 1: 2}
    for partition, user in ((0, 1), (1, 2)):
        state = proc.runtime(partition).snapshot()["user_totals"]
        assert isinstance(state, pa.Table) and state.column_names == list(KeyedWindowAggregate.COLUMNS)
        assert state["key"].to_pylist() == [user]


def test_close_closes_the_source():
    proc, src, out, dlq = make({0: []})
    proc.close()
    assert src.closed


# -- run_local over the demo generator -----------------------------------------------------------
@pytest.mark.parametrize(("partitions", "batch_size"), [(1, 10_000), (3, 777), (4, 64)])
def test_run_local_matches_expected_features(partitions, batch_size):
    ev = generate_events(6000, users=150, seed=partitions, bad_fraction=0.01)
    parts: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    for key, payload in zip(ev.keys, ev.payloads):
        parts[int(key) % partitions].append(payload)
    run = run_local(payments_pipeline(), parts, batch_size=batch_size)
    feats, dead, proc = run.sinks["features"], run.dead_letters, run.processor
    assert proc.source.closed
    assert proc.stats.processed + proc.stats.dead_lettered == len(ev)
    assert proc.stats.processed == ev.table.num_rows
    assert proc.stats.dead_lettered == ev.bad == len(dead.items) == 60
    assert proc.stats.next_offsets == {p: len(v) for p, v in parts.items() if v}
    assert proc.lag() == {p: 0 for p in parts}
    expected = expected_features(ev.table)
    got = feats.latest("user_id")
    assert got.keys() == expected.keys()
    for user, exp in expected.items():
        row = got[user]
        assert row["txn_count"] == exp["txn_count"], user
        assert row["txn_count_1m"] == exp["txn_count_1m"], user
        assert math.isclose(row["amount_sum"], exp["amount_sum"], rel_tol=1e-9), user
        assert math.isclose(row["amount_sum_1m"], exp["amount_sum_1m"], rel_tol=1e-9), user


def test_run_local_dead_letters_are_exactly_the_bad_payloads():
    ev = generate_events(2000, users=50, bad_fraction=0.02)
    run = run_local(payments_pipeline(), {0: ev.payloads}, batch_size=500)
    dead = run.dead_letters
    assert len(run.rows("archive")) == ev.table.num_rows
    good = {json.dumps(r, separators=(",", ":")).encode() for r in ev.table.to_pylist()}
    assert len(dead.items) == ev.bad == 40
    assert all(d.value == ev.payloads[d.offset] for d in dead.items)
    assert not any(d.value in good for d in dead.items)
    assert sorted(d.offset for d in dead.items) == sorted(i for i, p in enumerate(ev.payloads) if p not in good)


def test_run_local_on_empty_partitions():
    run = run_local(payments_pipeline(), {0: [], 1: []})
    assert run.sinks["features"].items == [] and run.dead_letters.items == []
    assert run.processor.stats.batches == 0


# -- RunningTotals, the demo's aggregate ----------------------------------------------------------
def test_running_totals_rejects_unknown_output_names():
    with pytest.raises(ValueError, match=r"output_names has unknown columns \['average', 'median'\]"):
        RunningTotals("user_id", "amount", "event_ts", 1000, output_names={"count": "n", "median": "m", "average": "a"})


def test_running_totals_renames_and_selects_in_column_order():
    totals = RunningTotals("user_id", "amount", "event_ts", 1000, output_names={"sum": "total", "key": "uid"})
    out = totals.create().update(pa.table({"user_id": [4], "amount": [2.5], "event_ts": [10]}))
    assert out.column_names == ["uid", "total"]
    assert out.to_pylist() == [{"uid": 4, "total": 2.5}]
    assert totals.output_schema(pa.schema([("user_id", pa.int64()), ("amount", pa.float64()), ("event_ts", pa.int64())])).names == ["uid", "total"]


def test_running_totals_rejects_a_non_positive_window():
    with pytest.raises(ValueError, match="window_ms must be positive; got 0"):
        RunningTotals("user_id", "amount", "event_ts", 0)


def test_demo_feature_names_cover_the_feature_view():
    from fabric_ray.demo.payments import USER_PAYMENTS

    assert set(USER_PAYMENTS.feature_names) <= set(FEATURE_NAMES.values())
