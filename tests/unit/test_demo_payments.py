"""fabric_ray.demo.payments: the deterministic generator, the spec and the direct feature computation."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest

from fabric_ray.demo.payments import (
    PAYMENTS_SCHEMA,
    FEATURE_NAMES,
    PAYMENTS_DECODER,
    USER_PAYMENTS,
    expected_features,
    generate_events,
)


def test_same_seed_same_bytes():
    a = generate_events(2000, users=100, seed=3, bad_fraction=0.01)
    b = generate_events(2000, users=100, seed=3, bad_fraction=0.01)
    assert a.payloads == b.payloads
    assert a.keys == b.keys
    assert a.table.equals(b.table)


def test_different_seed_differs():
    a = generate_events(500, seed=1)
    b = generate_events(500, seed=2)
    assert a.payloads != b.payloads
    assert a.table["amount"].to_pylist() != b.table["amount"].to_pylist()
    assert json.loads(a.payloads[0])["event_id"] == "evt-1-00000000"
    assert json.loads(b.payloads[0])["event_id"] == "evt-2-00000000"


@pytest.mark.parametrize(("n", "fraction", "bad"), [(1000, 0.01, 10), (1000, 0.0, 0), (3, 0.5, 2), (10_000, 0.001, 10), (999, 0.0015, 1)])
def test_bad_fraction_count(n, fraction, bad):
    ev = generate_events(n, users=50, bad_fraction=fraction)
    assert len(ev) == n == len(ev.payloads) == len(ev.keys)
    assert ev.bad == bad
    assert ev.table.num_rows == n - bad


def test_invalid_arguments_are_refused():
    for kwargs in ({"n": -1}, {"n": 1, "users": 0}, {"n": 1, "bad_fraction": 1.0}, {"n": 1, "bad_fraction": -0.1}):
        with pytest.raises(ValueError, match="need n >= 0, users >= 1, 0 <= bad_fraction < 1"):
            generate_events(**kwargs)


def test_zero_events():
    ev = generate_events(0)
    assert len(ev) == 0 and ev.table.num_rows == 0 and ev.table.schema == PAYMENTS_SCHEMA


def test_every_bad_payload_is_rejected_and_every_good_one_accepted():
    ev = generate_events(4000, users=200, bad_fraction=0.02)
    out = PAYMENTS_DECODER.decode(ev.payloads)
    assert len(out.rejected) == ev.bad == 80
    assert out.table.num_rows == ev.table.num_rows
    # the accepted rows are exactly the generator's good events, in order
    assert out.table.equals(ev.table)
    good = {json.dumps(r, separators=(",", ":")).encode() for r in ev.table.to_pylist()}
    assert all(ev.payloads[i] not in good for i, _ in out.rejected)
    assert all(ev.payloads[i] in good for i in out.kept.tolist())


def test_all_four_kinds_of_bad_payload_occur_and_are_rejected_for_the_right_reason():
    ev = generate_events(2000, users=50, bad_fraction=0.01)
    reasons = [reason for _, reason in PAYMENTS_DECODER.decode(ev.payloads).rejected]
    assert len(reasons) == 20
    kinds = {
        "truncated": sum(r.startswith("not valid JSON") for r in reasons),
        "missing_user": reasons.count("missing required field 'user_id'"),
        "amount_text": reasons.count("field 'amount': expected double, got 'twelve'"),
        "not_object": reasons.count("expected a JSON object, got list"),
    }
    assert kinds == {"truncated": 5, "missing_user": 5, "amount_text": 5, "not_object": 5}


def test_good_payloads_are_compact_json_keyed_by_user():
    ev = generate_events(300, users=20, bad_fraction=0)
    for key, payload, row in zip(ev.keys, ev.payloads, ev.table.to_pylist()):
        obj = json.loads(payload)
        assert obj == row
        assert key == str(obj["user_id"]).encode()
        assert 1 <= obj["user_id"] <= 20
        assert obj["email"] == f"user{obj['user_id']}@example.com"
        assert obj["amount"] > 0 and obj["currency"] in {"EUR", "USD", "GBP", "CHF"}
        assert len(obj["card_number"]) == 16
        assert b" " not in payload


def test_event_times_start_near_start_ms_and_are_not_sorted():
    ev = generate_events(2000, start_ms=1_000_000, mean_gap_ms=10, bad_fraction=0)
    ts = ev.table["event_ts"].to_pylist()
    assert 1_000_000 - 500 <= min(ts) and max(ts) < 1_000_000 + 2000 * 10 * 2
    assert ts != sorted(ts)


def test_table_has_the_payments_schema():
    assert generate_events(10).table.schema == PAYMENTS_SCHEMA


def test_spec_outputs_match_the_feature_view():
    outputs = set(FEATURE_NAMES.values())
    assert set(USER_PAYMENTS.feature_names) <= outputs
    assert USER_PAYMENTS.entity.join_key in outputs and "event_ts_ms" in outputs


# -- expected_features on a hand-made table ---------------------------------------------------
def hand_table(rows: list[tuple[int, float, int]]) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array([r[0] for r in rows], pa.int64()),
            "amount": pa.array([r[1] for r in rows], pa.float64()),
            "event_ts": pa.array([r[2] for r in rows], pa.int64()),
        }
    )


def test_expected_features_by_hand():
    t = hand_table(
        [
            (1, 10.0, 0),
            (1, 5.0, 59_999),  # same first window
            (1, 2.5, 60_000),  # next window: the latest for user 1
            (1, 1.0, 119_999),
            (2, 7.0, 200_000),
            (2, 3.0, 10),  # late, older window
            (3, 4.0, 5),
        ]
    )
    assert expected_features(t) == {
        1: {"txn_count": 4, "amount_sum": 18.5, "txn_count_1m": 2, "amount_sum_1m": 3.5},
        2: {"txn_count": 2, "amount_sum": 10.0, "txn_count_1m": 1, "amount_sum_1m": 7.0},
        3: {"txn_count": 1, "amount_sum": 4.0, "txn_count_1m": 1, "amount_sum_1m": 4.0},
    }


def test_expected_features_with_a_small_window():
    t = hand_table([(9, 1.0, 0), (9, 2.0, 10), (9, 4.0, 19), (9, 8.0, 20)])
    assert expected_features(t, window_ms=10)[9] == {"txn_count": 4, "amount_sum": 15.0, "txn_count_1m": 1, "amount_sum_1m": 8.0}
    assert expected_features(t, window_ms=100)[9]["txn_count_1m"] == 4


def test_expected_features_types():
    got = expected_features(hand_table([(1, 1.5, 0)]))
    row = got[1]
    assert type(next(iter(got))) is int
    assert type(row["txn_count"]) is int and type(row["txn_count_1m"]) is int
    assert type(row["amount_sum"]) is float and math.isclose(row["amount_sum"], 1.5)
