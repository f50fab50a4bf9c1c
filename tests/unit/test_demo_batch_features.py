"""The demo's batch features: daily rows computed right, written per day on file:// and s3://, readable by Feast."""

from __future__ import annotations

import doctest
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fabric_ray.config import FabricConfig
from fabric_ray.demo import batch_features
from fabric_ray.demo.batch_features import (
    DAY_MS,
    LARGE_AMOUNT,
    daily_features,
    features_location,
    write_demo_batch_features,
)
from fabric_ray.demo.payments import generate_events
from fabric_ray.storage import Dataset, DatasetSpec, TimePartitioning

NOW_MS = 1_795_700_000_000  # 2026-11-26T12:13:20Z
TS = pa.timestamp("us", tz="UTC")


def test_doctests_pass():
    result = doctest.testmod(batch_features, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def expected(events: pa.Table) -> tuple[dict, dict]:
    """The daily aggregates computed with pandas, independently of the module."""
    df = events.to_pandas()
    df["day"] = df["event_ts"] // DAY_MS
    users = {
        (int(u), int(d)): (len(g), g["amount"].sum(), int((g["amount"] >= LARGE_AMOUNT).sum()))
        for (u, d), g in df.groupby(["user_id", "day"])
    }
    merchants = {
        (int(m), int(d)): (len(g), g["amount"].mean(), g["user_id"].nunique())
        for (m, d), g in df.groupby(["merchant_id", "day"])
    }
    return users, merchants


def test_daily_features_match_an_independent_computation():
    events = generate_events(5000, users=50, start_ms=NOW_MS - 2 * DAY_MS, mean_gap_ms=40_000, bad_fraction=0).table
    tables = daily_features(events, created_ms=NOW_MS)
    users, merchants = expected(events)
    u, m = tables["user_daily"], tables["merchant_daily"]
    assert u.schema == pa.schema([("user_id", pa.int64()), ("txn_count_1d", pa.int64()), ("amount_sum_1d", pa.float64()),
                                  ("large_txn_count_1d", pa.int64()), ("event_ts", TS), ("created_ts", TS)])
    assert m.schema == pa.schema([("merchant_id", pa.int64()), ("txn_count_1d", pa.int64()), ("amount_mean_1d", pa.float64()),
                                  ("distinct_users_1d", pa.int64()), ("event_ts", TS), ("created_ts", TS)])
    assert u.num_rows == len(users) and m.num_rows == len(merchants)
    assert len({d for _, d in users}) == 3  # the events span three UTC days
    for row in u.to_pylist():
        day = int(row["event_ts"].timestamp() * 1000) // DAY_MS - 1  # event time: the end of the day summarized
        n, total, large = users[(row["user_id"], day)]
        assert (row["txn_count_1d"], row["large_txn_count_1d"]) == (n, large)
        assert row["amount_sum_1d"] == pytest.approx(total)
        assert row["created_ts"] == datetime.fromtimestamp(NOW_MS / 1000, timezone.utc)
    for row in m.to_pylist():
        day = int(row["event_ts"].timestamp() * 1000) // DAY_MS - 1
        n, mean, distinct = merchants[(row["merchant_id"], day)]
        assert (row["txn_count_1d"], row["distinct_users_1d"]) == (n, distinct)
        assert row["amount_mean_1d"] == pytest.approx(mean)


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match=r"need columns \['merchant_id'\]"):
        daily_features(pa.table({"user_id": [1], "amount": [1.0], "event_ts": [0]}))


def test_demo_data_lands_per_view_and_day_under_the_storage_root(storage_root, tmp_path):
    cfg = FabricConfig(home=tmp_path / "home", storage=storage_root.config)
    report = write_demo_batch_features(cfg, source="events", events=3000, users=100, days=2, now_ms=NOW_MS)
    assert report.source == "events" and report.days == ("2026-11-24", "2026-11-25")  # complete days before now only
    assert 0 < report.payments <= 3000
    for view in ("user_daily", "merchant_daily"):
        loc = features_location(cfg, view)
        assert loc.uri == f"{storage_root.uri}/features/{view}"
        assert sorted(loc.list()) == ["2026-11-24.parquet", "2026-11-25.parquet"]
        assert report.files[view] == [loc.uri_of(n) for n in ("2026-11-24.parquet", "2026-11-25.parquet")]
        table = pq.read_table(loc.path, filesystem=loc.arrow_filesystem())
        assert table.num_rows == report.rows[view]
        latest = max(table["event_ts"].to_pylist())
        assert latest == datetime.fromtimestamp(NOW_MS // DAY_MS * DAY_MS / 1000, timezone.utc)  # never in the future
    again = write_demo_batch_features(cfg, source="events", events=3000, users=100, days=2, now_ms=NOW_MS)
    loc = features_location(cfg, "user_daily")
    assert len(loc.list()) == 2  # a day's file is replaced, not added to
    assert pq.read_table(loc.path, filesystem=loc.arrow_filesystem()).num_rows == again.rows["user_daily"]


def test_the_etl_dataset_is_used_when_it_exists(tmp_path):
    cfg = FabricConfig(home=tmp_path / "home")
    with pytest.raises(ValueError, match="no dataset 'payments_daily'"):
        write_demo_batch_features(cfg, source="etl", now_ms=NOW_MS)
    payments = generate_events(500, users=20, start_ms=NOW_MS - DAY_MS, mean_gap_ms=1000, bad_fraction=0).table
    payments = payments.select(["event_id", "user_id", "merchant_id", "amount", "event_ts"])
    spec = DatasetSpec("payments_daily", payments.schema, TimePartitioning("event_ts", "date"), key=("user_id",))
    from fabric_ray.storage import open_location

    Dataset.create(open_location(cfg.storage_root, cfg.storage).child("datasets", "payments_daily"), spec).write(payments)
    report = write_demo_batch_features(cfg, now_ms=NOW_MS)  # auto
    assert report.source == "etl" and report.payments == 500
    users, _ = expected(payments)
    assert report.rows["user_daily"] == len(users)


def test_feast_itself_materializes_the_written_rows(tmp_path):
    """The Parquet contract: Feast's own file offline store reads our rows, the latest per entity wins."""
    from fabric_ray.features.feast_repo import apply, feature_store

    cfg = FabricConfig(home=tmp_path / "home")
    write_demo_batch_features(cfg, source="events", events=4000, users=60, days=3, now_ms=NOW_MS)
    apply(cfg)
    store = feature_store(cfg)
    now = datetime.fromtimestamp(NOW_MS / 1000, timezone.utc)
    store.materialize(now - timedelta(days=5), now, feature_views=["user_daily", "merchant_daily"])
    loc = features_location(cfg, "user_daily")
    table = pq.read_table(loc.path, filesystem=loc.arrow_filesystem()).to_pylist()
    latest = {}
    for row in sorted(table, key=lambda r: r["event_ts"]):
        latest[row["user_id"]] = row
    users = sorted(latest)[:10]
    got = store.get_online_features(
        features=["user_daily:txn_count_1d", "user_daily:amount_sum_1d", "user_daily:large_txn_count_1d"],
        entity_rows=[{"user_id": u} for u in users],
    ).to_dict()
    assert got["txn_count_1d"] == [latest[u]["txn_count_1d"] for u in users]
    assert got["amount_sum_1d"] == pytest.approx([latest[u]["amount_sum_1d"] for u in users])
    assert got["large_txn_count_1d"] == [latest[u]["large_txn_count_1d"] for u in users]
